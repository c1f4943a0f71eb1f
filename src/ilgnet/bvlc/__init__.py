"""BVLC Caffe as the toolkit meets it, the bottom of the stack: its message schema (`proto`, from `caffe.proto`,
compiled without pycaffe), its files (`io`: Datum records and LMDBs, mean files, prototxt, loaded nets), its
binaries and pycaffe (`tools`: finding the build, running a tool with a log, GPUs), its logs read back (`logs`) and
blob shapes computed as Caffe computes them (`shapes`). Nothing here knows about AVA or ILGNet."""
