"""A model measured on every record of a val LMDB exactly once, by either engine -- in this process
(`pycaffe_engine`) or with the `caffe test` binary (`caffe_engine`) -- into one results table (`results`), then
the metrics beside the majority baseline (`metrics`) and the report beside the paper's figure (`reports`)."""
