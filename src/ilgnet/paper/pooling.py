"""Which runs a report may average: never runs of different data, of different settings, nor one seed twice.

A run's pool key is what it read and how it trained: the sha256 of the mean, training list and val list its
model.json records (ilgnet.paper.integrity.data_key), and its training overrides (max_iter, batch sizes, base_lr:
RunSpec.train). The net and the solver profile (the recipe) already separate a report's cells. Runs of one cell with
different keys go in separate cells, each labelled by what differs; a second run of the same seed with the same key
(two runs folders given together, a renamed copy) is left out with the reason, the first by name counted.

The data a report names comes from the runs' own model.json records, never from the data folder as it is today
(`provenance`): a folder deleted and remade after a run shows the data that run read.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ilgnet.paper.integrity import data_key


@dataclass
class Pool:
    """Runs a report may average: `runs` (one per seed), the runs of the same key `left_out` ({name: reason}),
    and `label`, what sets this pool apart from the others of its cell (empty when the cell has one pool)."""
    key: tuple
    runs: list = field(default_factory=list)
    left_out: dict = field(default_factory=dict)
    label: str = ""


def pool_key(run) -> tuple:
    """(data_key of the run's model.json, its training overrides) for a report's RunResult (`model` its model.json
    record, `spec` its RunSpec)."""
    recipe = getattr(run.spec, "recipe", "released")          # the fine-tuning recipe is a setting too
    return data_key(run.model or {}), tuple(run.spec.train) + ((("recipe", recipe),) if recipe != "released" else ())


def _label(key: tuple, others: list[tuple]) -> str:
    """What sets `key` apart from `others`: `data 85ee85a9` (the first digits of the mean's sha256, else the val
    list's), and the overrides where they differ."""
    (digests, train) = key
    parts = []
    if any(other[0] != digests for other in others):
        named = [d for d in (digests[0], digests[2], digests[1]) if d]
        parts.append(f"data {named[0][:8]}" if named else "data not recorded")
    if any(other[1] != train for other in others):
        parts.append(", ".join(f"{k} {v}" for k, v in train) or "the profile's settings")
    return "; ".join(parts)


def pools(runs: list) -> list[Pool]:
    """The runs (finished ones of one cell) in pools by pool_key, in the order their first run comes (runs sorted
    by name), each seed once."""
    by_key: dict[tuple, Pool] = {}
    for run in sorted(runs, key=lambda r: r.name):
        pool = by_key.setdefault(pool_key(run), Pool(pool_key(run)))
        same = next((r for r in pool.runs if r.spec.seed == run.spec.seed), None)
        if same is None:
            pool.runs.append(run)
        else:
            pool.left_out[run.name] = f"seed {run.spec.seed} again, with the same data and settings as {same.name}"
    found = list(by_key.values())
    for pool in found:
        pool.label = _label(pool.key, [p.key for p in found if p is not pool])
    return found


def provenance(runs: list) -> list[dict]:
    """Each data the runs read, from their model.json records: the folder and its partition, seed and resize as
    recorded when the run began, the val records evaluated (evaluation.json), the sha256 of train.txt, val.txt and
    mean.binaryproto, and whether the folder still holds that data (`current`, False for a stale run's)."""
    found: dict[tuple, dict] = {}
    for run in runs:
        if not run.model:
            continue
        key = (run.model.get("data"), data_key(run.model))
        partition = run.model.get("partition") or {}
        entry = found.setdefault(key, {
            "folder": run.model.get("data"), "partition": partition.get("partition"), "seed": partition.get("seed"),
            "delta": partition.get("delta"), "synthetic": bool(partition.get("synthetic")),
            "resize": run.model.get("resize"), "records": {"train": None, "val": None},
            "sha256": dict(zip(("train.txt", "val.txt", "mean.binaryproto"),
                               (key[1][1], key[1][2], key[1][0]))),
            "current": True, "runs": []})
        entry["runs"].append(run.name)
        entry["current"] &= run.state != "stale"
        if run.evaluation:
            entry["records"]["val"] = run.evaluation.get("images")
        if entry["current"] and entry["records"]["train"] is None and Path(str(entry["folder"])).is_dir():
            from ilgnet.data.folder import DataFolder

            folder = DataFolder(Path(entry["folder"]))
            try:
                entry["records"]["train"] = (folder.read_json(folder.lmdb_json).get("train") or {}).get("records")
            except ValueError:              # an lmdb.json cut short: the count stays unknown
                pass
    return list(found.values())
