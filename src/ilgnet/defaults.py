"""Every default the toolkit's commands and library share, with where it comes from."""
from __future__ import annotations

from pathlib import Path

TRAIN_BATCH = 48            # the published train.prototxt's batch_size
VAL_BATCH = 50              # the published AVA1 test's batch_size: 400 x 50 = the 20,000 AVA1 val images
SCORE_BATCH = 16            # net inputs per forward pass when scoring photos (the CPU is busy at 16)
BACKENDS = ("caffe", "opencv")  # what runs a net when scoring (ilgnet.scoring.backends): pycaffe, or OpenCV's dnn module
RAY_INSTALL = "pip install 'ilgnet[ray]'"  # the optional extra that scoring with Ray (ilgnet.scoring.cluster) needs
RESIZE = 256                # LMDB images are RESIZE x RESIZE (convert_imageset --resize_height/width 256)
INT32_MAX = 2**31 - 1       # the largest value of Caffe's int32 fields (max_iter, test_iter, batch sizes, ...)
SEED = 1                    # seed of partitions and LMDB record order
SKIPPED_WARNING = 0.01      # `ilgnet lmdb` warns loudly when more than this share of a set's photos was skipped
MODELS_DIR = Path("models")     # downloaded weights (registry files)
RUNS_DIR = Path("runs")         # training runs, one folder each
