"""ILGNet image aesthetics classification reproduced on BVLC Caffe."""

__version__ = "0.1.0"


def __getattr__(name: str):
    # `ilgnet.Scorer` without importing numpy, OpenCV and pycaffe for every `ilgnet` command.
    if name == "Scorer":
        from ilgnet.scoring.scorer import Scorer

        return Scorer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
