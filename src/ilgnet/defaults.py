"""Every default the toolkit's commands and library share, with where it comes from."""
from __future__ import annotations

import os
from pathlib import Path

TRAIN_BATCH = 48            # the published train.prototxt's batch_size
VAL_BATCH = 50              # the published AVA1 test's batch_size: 400 x 50 = the 20,000 AVA1 val images
MAX_SCORE_WORKERS = 4       # scoring processes by default, at most (ilgnet.scoring.pool.default_workers)
SCORE_BATCH = 16            # net inputs per forward pass when scoring photos (the CPU is busy at 16)
PRECISIONS = ("fp32", "fp16", "int8")   # of an exported ONNX file (ilgnet.export.precision); fp32 the default
CALIBRATION_PHOTOS = 64     # photos an int8 file is calibrated on by default (MinMax ranges: settled by then)
CALIBRATION_STAND_IN = 32   # generated photos an int8 file is calibrated on when no photo nor val LMDB is known
# What runs a net when scoring (ilgnet.scoring.backends): auto picks the first of caffe (pycaffe), onnxruntime (the
# net exported to ONNX) and opencv (OpenCV's dnn module) that this machine has
BACKENDS = ("auto", "caffe", "onnxruntime", "opencv")
RAY_INSTALL = "pip install 'ilgnet[ray]'"  # the optional extra that scoring with Ray (ilgnet.scoring.cluster) needs
RESIZE = 256                # LMDB images are RESIZE x RESIZE (convert_imageset --resize_height/width 256)
INT32_MAX = 2**31 - 1       # the largest value of Caffe's int32 fields (max_iter, test_iter, batch sizes, ...)
SEED = 1                    # seed of partitions and LMDB record order
SKIPPED_WARNING = 0.01      # `ilgnet lmdb` warns loudly when more than this share of a set's photos was skipped
MODELS_DIR = Path("models")     # downloaded weights (registry files)
RUNS_DIR = Path("runs")         # training runs, one folder each
# Where exports made on the fly are kept when the caffemodel's folder cannot be written; setup's ILGNET_CACHE too
CACHE_DIR = Path(os.environ.get("ILGNET_CACHE") or Path.home() / ".cache" / "ilgnet-caffe")
