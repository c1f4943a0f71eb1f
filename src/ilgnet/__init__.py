"""ILGNet image aesthetics classification reproduced on BVLC Caffe."""

__version__ = "0.1.0"
