"""AVA turned into Caffe inputs, in the order the data flows: AVA.txt and its lists (`ava`) -> the paper's
partitions (`partitions`) -> a data folder's names (`folder`) -> photos decoded as convert_imageset decodes them
(`images`) -> LMDBs and the mean image (`lmdb_build`, with what each was built from in `lmdb_inputs`). `synthetic`
generates a small AVA-format dataset for the demo and the tests."""
