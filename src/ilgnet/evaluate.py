"""`ilgnet test`: a caffemodel scored on every record of a val LMDB exactly once, with honest metrics.

`caffe test -iterations N` feeds batch x N records: past the end of the LMDB its Data layer wraps around to the
first record again, and short of the end it stops early. The published ILGNet figures are such runs: 50 iterations,
2,500 of AVA1's 20,000 val images and 2,400 of AVA2's 25,553. Here the records are read from the LMDB in Caffe's
order, transformed as the Data layer's TEST phase does (centre crop, minus the mean image at the same offset, via
ilgnet.scorer.Scorer) and forwarded through the deploy net in batches whose last one is simply shorter, so every
record counts once. Accuracy alone flatters a skewed set (AVA1's val set is 80 % "high"), so balanced accuracy,
the majority-class baseline, the confusion matrix, ROC AUC and per-class accuracy come with it.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

# The paper's figure per protocol, with the caffe test run behind it (facts from the authors' published logs).
PAPER = {
    "ava1": {"table": "Table 2", "setting": "AVA1, ILGNet-Inc.V1, δ = 0", "accuracy": 0.8168,
             "batch": 50, "iterations": 50, "val_images": 20_000},
    "ava2": {"table": "Table 3", "setting": "AVA2, ILGNet-Inc.V1", "accuracy": 0.8550,
             "batch": 48, "iterations": 50, "val_images": 25_553},
}


def lmdb_records(lmdb_path: Path):
    """(key, BGR uint8 image HxWxC, label) for every record, in key order: the order Caffe's Data layer reads."""
    import cv2
    import lmdb
    import numpy as np

    from ilgnet.caffe_tools import import_caffe

    caffe = import_caffe()
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False, readahead=False)
    try:
        with env.begin() as txn:
            for key, value in txn.cursor():
                datum = caffe.proto.caffe_pb2.Datum.FromString(value)
                if datum.encoded:
                    image = cv2.imdecode(np.frombuffer(datum.data, np.uint8), cv2.IMREAD_UNCHANGED)
                    if image is None:
                        raise ValueError(f"{lmdb_path}: record {key.decode(errors='replace')} does not decode")
                    image = image[:, :, None] if image.ndim == 2 else image
                else:
                    image = caffe.io.datum_to_array(datum).transpose(1, 2, 0)
                yield key.decode(errors="replace"), image, datum.label
    finally:
        env.close()


def lmdb_size(lmdb_path: Path) -> int:
    import lmdb

    if not (Path(lmdb_path) / "data.mdb").is_file():
        raise FileNotFoundError(f"{lmdb_path} is not an LMDB (no data.mdb)")
    env = lmdb.open(str(lmdb_path), readonly=True, lock=False)
    try:
        return env.stat()["entries"]
    finally:
        env.close()


def score_lmdb(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, batch: int = 50, *,
               gpu: int | None = None, progress: bool = True):
    """Per-record results: DataFrame(key, label, predicted, p_0 .. p_k), one row per LMDB record, in LMDB order."""
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from ilgnet.scorer import Scorer

    total = lmdb_size(lmdb_path)
    scorer = Scorer(weights, mean=mean_file, variant=variant, batch_size=batch, jobs=0, gpu=gpu)
    keys, labels, probs, inputs = [], [], [], []

    def flush():
        probs.append(scorer.forward(np.stack(inputs)))
        inputs.clear()

    for key, image, label in tqdm(lmdb_records(lmdb_path), total=total, unit="img", desc="ilgnet test",
                                  disable=not progress, file=sys.stderr):
        if image.shape[:2] != tuple(scorer.image_size):
            raise ValueError(f"{lmdb_path}: record {key} is {image.shape[1]}x{image.shape[0]}, the mean image "
                             f"{mean_file} is {scorer.image_size[1]}x{scorer.image_size[0]}: Caffe needs them equal")
        keys.append(key)
        labels.append(label)
        inputs.append(scorer.preprocess(image)[0])
        if len(inputs) == batch:
            flush()
    if inputs:
        flush()
    if len(keys) != total or not keys:
        raise ValueError(f"{lmdb_path}: read {len(keys)} records, the LMDB says it holds {total}")
    p = np.concatenate(probs)
    frame = pd.DataFrame({"key": keys, "label": labels, "predicted": p.argmax(axis=1)})
    for k in range(p.shape[1]):
        frame[f"p_{k}"] = p[:, k]
    return frame


def roc_auc(labels, scores) -> float | None:
    """Area under the ROC curve of `scores` for label 1 (Mann-Whitney U / n0 n1, ties counted half)."""
    import numpy as np
    from scipy.stats import rankdata

    labels = np.asarray(labels)
    positives, negatives = (labels == 1).sum(), (labels != 1).sum()
    if positives == 0 or negatives == 0:
        return None
    ranks = rankdata(scores)
    return float((ranks[labels == 1].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def metrics(frame) -> dict:
    """Accuracy, balanced accuracy, majority baseline, confusion matrix, ROC AUC and per-class accuracy."""
    import pandas as pd

    classes = sorted(set(frame["label"]) | set(frame["predicted"]) |
                     set(range(sum(c.startswith("p_") for c in frame.columns))))
    confusion = pd.crosstab(frame["label"], frame["predicted"]).reindex(index=classes, columns=classes, fill_value=0)
    counts = confusion.sum(axis=1)
    present = [c for c in classes if counts[c] > 0]
    per_class = {str(c): float(confusion.loc[c, c] / counts[c]) for c in present}
    majority = int(counts.idxmax())
    correct = int(sum(confusion.loc[c, c] for c in classes))
    return {
        "images": len(frame),
        "correct": correct,
        "accuracy": correct / len(frame),
        "balanced_accuracy": sum(per_class.values()) / len(per_class),
        "majority_baseline": {"class": majority, "accuracy": float(counts[majority] / len(frame))},
        "class_counts": {str(c): int(counts[c]) for c in classes},
        "per_class_accuracy": per_class,
        "confusion_matrix": {"rows": "true label", "columns": "predicted label", "labels": classes,
                             "counts": confusion.to_numpy().tolist()},
        "roc_auc": roc_auc(frame["label"], frame["p_1"]) if "p_1" in frame and len(classes) == 2 else None,
    }


def summarize(frame, *, variant: str, weights: Path, lmdb_path: Path, mean_file: Path, batch: int) -> dict:
    """metrics() of score_lmdb's frame plus what was scored and how."""
    return {"variant": variant, "weights": str(weights), "lmdb": str(lmdb_path), "mean_file": str(mean_file),
            "batch": batch, "forward_passes": -(-len(frame) // batch), **metrics(frame)}


def evaluate(variant: str, weights: Path, lmdb_path: Path, mean_file: Path, batch: int = 50, *,
             gpu: int | None = None, progress: bool = True) -> dict:
    """Scores every record of `lmdb_path` once; returns summarize()'s dict."""
    frame = score_lmdb(variant, weights, lmdb_path, mean_file, batch, gpu=gpu, progress=progress)
    return summarize(frame, variant=variant, weights=weights, lmdb_path=lmdb_path, mean_file=mean_file, batch=batch)


def protocol_of(data_dir: Path) -> str | None:
    """ava1 / ava2 from the split.json `ilgnet split` wrote, None for other partitions or none found."""
    summary_path = Path(data_dir) / "split.json"
    if not summary_path.is_file():
        return None
    summary = json.loads(summary_path.read_text())
    partition = summary.get("partition")
    if partition == "published":
        partition = str(summary.get("dataset", "")).lower()
    return partition if partition in PAPER else None


def _percent(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f} %"


def markdown_report(result: dict, protocol: str | None = None) -> str:
    """The metrics as a markdown table, beside the paper's figure for `protocol` when given."""
    paper = PAPER.get(protocol or "")
    rows = [("images scored", f"{result['images']:,} (every val record once)"),
            ("accuracy", _percent(result["accuracy"])),
            ("balanced accuracy", _percent(result["balanced_accuracy"])),
            ("majority-class baseline", f"{_percent(result['majority_baseline']['accuracy'])} "
                                        f"(always class {result['majority_baseline']['class']})"),
            ("ROC AUC", "n/a" if result["roc_auc"] is None else f"{result['roc_auc']:.4f}")]
    rows += [(f"accuracy on class {c} ({result['class_counts'][c]:,} images)", _percent(v))
             for c, v in result["per_class_accuracy"].items()]
    if paper:
        images = paper["batch"] * paper["iterations"]
        paper_column = {"images scored": f"{images:,} of {paper['val_images']:,} ({paper['iterations']} caffe-test "
                                         f"iterations x batch {paper['batch']})",
                        "accuracy": _percent(paper["accuracy"])}
        lines = [f"| metric | this run | paper, {paper['table']} ({paper['setting']}) |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {paper_column.get(name, 'not reported')} |" for name, value in rows]
        lines.append(f"\nThe paper's {_percent(paper['accuracy'])} comes from `caffe test` run for "
                     f"{paper['iterations']} iterations at batch {paper['batch']}: the first {images:,} records of "
                     f"the val LMDB, not all {paper['val_images']:,} (see the authors' published test logs).")
    else:
        lines = ["| metric | this run |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    labels = result["confusion_matrix"]["labels"]
    lines += ["", "Confusion matrix (rows: true label, columns: predicted label):", "",
              "| true \\ predicted | " + " | ".join(map(str, labels)) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(f"{n:,}" for n in row) + " |"
              for label, row in zip(labels, result["confusion_matrix"]["counts"])]
    return "\n".join(lines) + "\n"


def replay_report(log: Path) -> str:
    """What a published `caffe test` log measured: its score and how many images that score covers."""
    from ilgnet.caffelog import parse_test_log

    score = parse_test_log(log)
    text = (f"{log}: caffe test ran {score.iterations} iterations x batch {score.batch_size} (Data layer "
            f"batch_size) = {score.images:,} images from {score.source}\n"
            f"{score.output} = {score.score:.4f} ({_percent(score.score)})"
            f"{f', loss {score.loss:.4f}' if score.loss is not None else ''}\n")
    protocol = next((p for p in PAPER if p in score.source.lower()), None)
    if protocol:
        val = PAPER[protocol]["val_images"]
        covered = min(score.images, val)
        text += (f"The published {protocol.upper()} val list holds {val:,} images: this score covers the first "
                 f"{covered:,} LMDB records ({100 * covered / val:.1f} %)"
                 f"{', wrapping around past the end' if score.images > val else ''}.\n")
    return text


def _resolve_weights(spec: str, mean: Path | None, models: Path) -> tuple[Path, Path | None]:
    """--weights as a file, or as a published model name from the registry (then its mean file by default)."""
    from ilgnet import weights as registry

    if Path(spec).is_file():
        return Path(spec), mean
    entries = registry.load_registry()
    if spec in registry.PUBLISHED_MODELS:
        entry = entries[spec]
        model = models / entry.file
        if not model.is_file():
            raise FileNotFoundError(f"{model} is missing: run `ilgnet weights fetch {spec}` first")
        return model, mean or models / entries[entry.companions[0]].file
    raise FileNotFoundError(f"--weights {spec}: no such file, and not one of {', '.join(registry.PUBLISHED_MODELS)}")


def register(subparsers) -> None:
    parser = subparsers.add_parser("test", help="score a caffemodel on every record of a val LMDB exactly once")
    parser.add_argument("--variant", default="ilgnet", help="net variant of the weights (default: ilgnet)")
    parser.add_argument("--weights", help="a .caffemodel, or ilgnet-ava1 / ilgnet-ava2 (the published models)")
    parser.add_argument("--data", type=Path, help="folder with val_lmdb and mean.binaryproto (from `ilgnet lmdb`)")
    parser.add_argument("--mean", type=Path, help="mean image (default: DATA/mean.binaryproto, or the published "
                                                  "model's own mean for ilgnet-ava1/2)")
    parser.add_argument("--batch", type=int, default=50, help="forward batch size (default: 50)")
    parser.add_argument("--gpu", type=int, help="GPU id (default: CPU)")
    parser.add_argument("--protocol", choices=sorted(PAPER), help="paper figure to compare with (default: from "
                                                                   "DATA/split.json)")
    parser.add_argument("--json", type=Path, help="write the metrics as JSON here")
    parser.add_argument("--markdown", type=Path, help="write the markdown table here")
    parser.add_argument("--per-image", type=Path, help="write per-record results (key, label, predicted, p_k) as CSV")
    parser.add_argument("--models", type=Path, default=Path("models"), help="models folder for ilgnet-ava1/2")
    parser.add_argument("--replay", type=Path, metavar="LOG", help="instead: read a published caffe test log and "
                                                                    "state its accuracy and the images it covered")
    parser.set_defaults(func=run)


def run(args) -> int:
    if args.replay:
        if not args.replay.is_file():
            raise FileNotFoundError(f"{args.replay} does not exist")
        print(replay_report(args.replay), end="")
        return 0
    if not (args.weights and args.data):
        raise ValueError("--weights and --data are required (or --replay LOG)")
    if args.batch < 1:
        raise ValueError(f"--batch must be positive, got {args.batch}")
    weights, mean = _resolve_weights(args.weights, args.mean, args.models)
    mean = mean or args.data / "mean.binaryproto"
    for path in (args.data / "val_lmdb", mean):
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
    frame = score_lmdb(args.variant, weights, args.data / "val_lmdb", mean, args.batch, gpu=args.gpu)
    result = summarize(frame, variant=args.variant, weights=weights, lmdb_path=args.data / "val_lmdb",
                       mean_file=mean, batch=args.batch)
    protocol = args.protocol or protocol_of(args.data)
    if protocol:
        result["paper"] = {"protocol": protocol, **PAPER[protocol]}
    table = markdown_report(result, protocol)
    print(table, end="")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    if args.markdown:
        args.markdown.write_text(table)
    if args.per_image:
        frame.to_csv(args.per_image, index=False)
    return 0
