"""A model measured on every record of a val LMDB exactly once, by either engine -- in this process by any scoring
backend (`in_process`) or with the `caffe test` binary (`caffe_engine`) -- into one results table (`results`), then
the metrics beside the majority baseline (`metrics`) and the report beside the paper's figure (`reports`).
`evaluate` (ilgnet.evaluation.evaluation) does it all and returns an `Evaluation`; it is loaded on first use, so
that importing a light module of this package does not load the scoring backends."""


def __getattr__(name: str):
    if name in ("evaluate", "Evaluation"):
        from ilgnet.evaluation import evaluation

        return getattr(evaluation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
