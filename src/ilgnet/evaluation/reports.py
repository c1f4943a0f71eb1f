"""What a test measured, said in full: the metrics as a markdown table beside the paper's figure, and what a
published `caffe test` log really covered.

`caffe test -iterations N` feeds batch x N records: past the end of the LMDB its Data layer wraps around to the
first record again, and short of the end it stops early. The published ILGNet figures are such runs: 50 iterations,
2,500 of AVA1's 20,000 val images and 2,400 of AVA2's 25,553.
"""
from __future__ import annotations

from pathlib import Path

from ilgnet.bvlc.logs import parse_test_log

# The paper's figure per protocol, with the caffe test run behind it (facts from the authors' published logs).
PAPER = {
    "ava1": {"table": "Table 2", "setting": "AVA1, ILGNet-Inc.V1, δ = 0", "accuracy": 0.8168,
             "batch": 50, "iterations": 50, "val_images": 20_000},
    "ava2": {"table": "Table 3", "setting": "AVA2, ILGNet-Inc.V1", "accuracy": 0.8550,
             "batch": 48, "iterations": 50, "val_images": 25_553},
}


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
    if corr := result.get("correlations"):
        rows += [(f"{name} of p_high against the mean score ({corr['images']:,} images)", f"{corr[key]:.4f}")
                 for name, key in (("SRCC", "srcc"), ("PLCC", "plcc"))]
    protocol_row = "accuracy by the paper's protocol"
    if measured := result.get("paper_protocol"):
        rows.append((protocol_row, f"{_percent(measured['accuracy'])} ({measured['iterations']} caffe-test iterations "
                                   f"x batch {measured['batch']} = {measured['images']:,} records read, of "
                                   f"{measured['records']:,})"))
    val_list = result.get("val_list")
    if val_list:
        rows.insert(1, ("listed val images not in the LMDB", f"{val_list['not_in_lmdb']:,} of the "
                                                            f"{val_list['listed']:,} in {Path(val_list['file']).name}"))
    if paper:
        images = paper["batch"] * paper["iterations"]
        paper_column = {"images scored": f"{images:,} of {paper['val_images']:,} ({paper['iterations']} caffe-test "
                                         f"iterations x batch {paper['batch']})",
                        "accuracy": _percent(paper["accuracy"]), protocol_row: _percent(paper["accuracy"])}
        lines = [f"| metric | this run | paper, {paper['table']} ({paper['setting']}) |", "|---|---|---|"]
        lines += [f"| {name} | {value} | {paper_column.get(name, 'not reported')} |" for name, value in rows]
        lines.append(f"\nThe paper's {_percent(paper['accuracy'])} comes from `caffe test` run for "
                     f"{paper['iterations']} iterations at batch {paper['batch']}: the first {images:,} records of "
                     f"the val LMDB, not all {paper['val_images']:,} (see the authors' published test logs).")
    else:
        lines = ["| metric | this run |", "|---|---|"] + [f"| {name} | {value} |" for name, value in rows]
    if result.get("correlations"):
        lines.append("\nSRCC and PLCC set p_high beside each image's mean vote, as score-predicting models report "
                     "them; ILGNet predicts a class (high or low), not a score distribution, so its p_high is read "
                     "as a score here.")
    if val_list and val_list["not_in_lmdb"]:
        lines.append(f"\n{val_list['not_in_lmdb']:,} of the {val_list['listed']:,} images listed in {val_list['file']} "
                     f"never reached the val LMDB (skipped.txt beside it says why): the scores above leave them out.")
    labels = result["confusion_matrix"]["labels"]
    lines += ["", "Confusion matrix (rows: true label, columns: predicted label):", "",
              "| true \\ predicted | " + " | ".join(map(str, labels)) + " |", "|---" * (len(labels) + 1) + "|"]
    lines += [f"| {label} | " + " | ".join(f"{n:,}" for n in row) + " |"
              for label, row in zip(labels, result["confusion_matrix"]["counts"])]
    return "\n".join(lines) + "\n"


def replay_report(log: Path) -> str:
    """What a published `caffe test` log measured: its score and how many images that score covers."""
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


def overlap_report(overlap: dict, model: str) -> str:
    """What ilgnet.evaluation.results.train_overlap found, in words: how many val images the model was trained on
    (a WARNING line with the count), and the accuracy on the others."""
    lines = []
    if "val_list" in overlap:
        val = overlap["val_list"]
        lines.append(f"WARNING: {model} was trained on {val['in_training']:,} of the {val['images']:,} images of "
                     f"{val['path']} (its training list: {overlap['train_list']})." if val["in_training"] else
                     f"None of the {val['images']:,} images of {val['path']} is in {model}'s training list.")
    scored, unseen = overlap["scored"], overlap["unseen_metrics"]
    if scored["in_training"]:
        lines.append(f"{scored['in_training']:,} of the {scored['images']:,} records scored are training images of "
                     f"{model}; on the other {scored['images'] - scored['in_training']:,}: " +
                     (f"accuracy {_percent(unseen['accuracy'])}, balanced accuracy "
                      f"{_percent(unseen['balanced_accuracy'])}, majority-class baseline "
                      f"{_percent(unseen['majority_baseline']['accuracy'])}" if unseen else "none left") +
                     (f", SRCC {corr['srcc']:.4f}, PLCC {corr['plcc']:.4f} against the mean score."
                      if (corr := overlap.get("unseen_correlations")) else "."))
    return "".join(f"{line}\n" for line in lines)
