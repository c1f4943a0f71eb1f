"""Every known difference between the paper, the authors' release and this toolkit, as one table.

Each row: what differs, the paper's words (with their section), what the authors' release does (their README,
deploy and solver files, published `caffe test` logs), what this toolkit does, and the switch that changes it (or
"none"). The report (ilgnet.paper.report) and docs/REPRODUCING.md show the same rows.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Difference:
    topic: str
    paper: str
    release: str
    toolkit: str
    switch: str


DIFFERENCES = (
    Difference("input size",
               "\"The size of the input receptive field of ILGNet is 224 x 224\" (Sec. 3.2)",
               "deploy.prototxt takes 227 x 227 crops of 256 x 256 images",
               "227 x 227 centre crops of 256 x 256 records for the GoogLeNet nets (as released), 299 of 320 for "
               "ILGNet-Inc.V3/V4", "none: the released weights are used at 227"),
    Difference("AVA1 sizes",
               "training set 234,599, test set 19,930 (Sec. 4.1); the WCSP slides say 235,599 / 19,930",
               "README: 235,529 training and 20,000 test images",
               "profiles ava1-delta0 / ava1-delta1 read data/ava1 and data/ava1-delta1: a new random draw of "
               "20,000 val images (the README's size), or the published lists with ILGNET_REPO; delta 1 drops "
               "training images with |mean - 5| < 1, the val set keeps delta 0",
               "`ilgnet split published`, `make ava1-lmdb ILGNET_REPO=...`"),
    Difference("evaluation",
               "a test set of 19,930 images for AVA1, 25,553 for AVA2 (Sec. 4.1)",
               "the published caffe test logs score the first 50 batches: 2,500 of AVA1's val images (batch 50), "
               "2,400 of AVA2's (batch 48)",
               "every val image once; the logs' 50-iteration prefix is shown beside it as the published logs' "
               "protocol, never as the paper's", "`ilgnet test --paper-protocol` repeats the logs' protocol"),
    Difference("fine-tuning recipe",
               "\"the inception modules are fixed and the connected local and global features layers are fine "
               "tuned\" (Sec. 1); \"The high level features together with 2 inception modules are fine tuned\" "
               "(Sec. 5)",
               "train.prototxt trains every layer, the new layers at lr_mult 10",
               "recipe `paper` (Sec. 1: stem and every inception module at lr_mult 0), `paper-sec5` (the last two "
               "inception modules fine-tuned too) and `released`; the built-in paper plan uses `paper`, the "
               "released-model rows `released`", "`ilgnet train --recipe`, plan key `recipe`, plan `recipes`"),
    Difference("ILGNet-Inc.V1-BN's pretrained weights",
               "GoogLeNet V1 with batch normalization (Sec. 4.2); which ImageNet model it starts from is not said",
               "no BN model was released",
               "bvlc_googlenet's weights; its BatchNorm and Scale layers start fresh (they train under every recipe)",
               "`ilgnet train --weights`"),
    Difference("Inception-v3/v4 cut points",
               "\"the first 1/3 of recent GoogLeNet V3 and V4\" (Sec. 4.2)", "no net was released",
               "cut after inception_b1, the first 17 x 17 block (5 of v3's 11 blocks, 6 of v4's 16): a cut at the "
               "first module of the middle resolution, not a third by block count (docs/NETS.md)", "none"),
    Difference("ILGNet-without-Inc.",
               "\"a modified network of ILGNet-Inc.V1-BN ... we replace all the inception module with corresponding "
               "ordinal convolutional layer\" (Sec. 4.2)", "no net was released",
               "ILGNet-Inc.V1-BN with each inception module one 3 x 3 convolution as wide as the module's output, "
               "newly initialised", "none"),
    Difference("Fig. 5's layers (1)-(7)",
               "\"The labels of (1)-(7) means the same in Fig. 2\"; \"The connected layer of local and global "
               "features are shown at last\" (Sec. 4.4)", "-",
               "this toolkit's reading: conv1, conv2, inception 3a, 3b, 4a, `temp` (the connected layer, 1,024-d) "
               "and `temp_cjy`; the density and binary-pattern claims are tested on `temp` and `temp_cjy`", "none"),
    Difference("Fig. 4's x axis",
               "\"Loss vs. epoch\", x from 0 to 10,000 (Fig. 4)", "-",
               "10,000 epochs of AVA1 cannot be iterations x batch / images at Table 4's training days: the curves "
               "are drawn against iterations and against epochs (iteration x batch / training images)", "none"),
    Difference("Table 4's test time",
               "\"the average time on the test set of AVA1 and a Nvidia GTX980ti card\", seconds per image (Sec. 4.3)",
               "-", "the trained nets over the val set (the campaign's scoring of every val record, LMDB reading "
               "included, at the plan's val_batch, on the run's device) and at batch 1 (the median of single-image "
               "forward passes of each Table 4 run's trained net, timed right after that scoring); the throughput "
               "batch measured when the report is written (random weights; GPU with --gpu); seconds per image",
               "`ilgnet campaign --gpus`, `ilgnet report --gpu --time-batch`"),
    Difference("solver",
               "Table 1: stepsize 100,000 / 19,000 / 13,325, max_iter 475,000 / 760,000 / 533,000",
               "the published AVA1 solver steps at 115,000",
               "Table 1's values; test_iter covers the val set once", "`ilgnet train --profile published-ava1`"),
)

HEADER = ["what", "the paper (section)", "the release", "this toolkit", "switch"]


def rows() -> list[list[str]]:
    """The table's rows, in HEADER's order."""
    return [[d.topic, d.paper, d.release, d.toolkit, d.switch] for d in DIFFERENCES]
