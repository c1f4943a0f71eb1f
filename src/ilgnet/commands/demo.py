"""`ilgnet demo` (`make demo`): the whole toolkit on a generated dataset in AVA's own format, on the CPU.

1. a synthetic AVA: AVA.txt with vote histograms and OpenCV-made photos whose quality follows the votes
   (ilgnet.data.synthetic);
2. `ilgnet split ava2`: the paper's AVA2 rule, top and bottom 10 % by mean score, split 50/50;
3. `ilgnet lmdb`: train_lmdb, val_lmdb and the mean image;
4. `ilgnet train`: the full `ilgnet` net (150.9 million parameters) with the paper's AVA2 solver profile (base_lr
   1e-5), cut to 60 iterations at batch 16. There are no ImageNet weights here, so it trains from scratch, which
   the synthetic photos allow: their label shows as sharpness, contrast, colour and exposure;
5. `ilgnet test`: every held-out (val) image scored once, beside the majority-class baseline;
6. `ilgnet predict --top 5 --html` on a handful of held-out photos: the best five, and all of them ranked in a
   gallery (report.html), plus the training curves (curves.png).

Each step prints the command that does the same by hand.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from pathlib import Path

from ilgnet.commands.arguments import integer, output_folder
from ilgnet.errors import UsageError
from ilgnet.fileio import atomic_write_text

DEFAULT_WORK = Path("work/demo")
MARKER = ".ilgnet-demo"
# Sized so that `make demo` stays well under 10 minutes on 2 CPU cores: 3,000 AVA.txt rows give AVA2 300 training
# and 300 held-out photos; 60 iterations at batch 16 show each training photo about 3 times. (An iteration costs
# about the same at batch 8 as at 16: updating the 150.9 million weights dominates.)
DEFAULTS = {"images": 3000, "iterations": 60, "batch": 16, "held_out": 40, "seed": 1}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline on a generated AVA-format dataset, on the CPU (`make demo`)",
        description="The whole toolkit on a dataset it generates in AVA's own format, on the CPU (a GPU with "
                    "--gpu), sized to finish in under ten minutes on two CPU cores: a synthetic AVA.txt with "
                    "photos whose quality follows their votes; the AVA2 split; LMDBs and the mean image; the "
                    "`ilgnet` net trained from scratch for a few iterations; a test on every held-out image; "
                    "a handful of held-out photos "
                    "scored and ranked in an HTML gallery. Each step prints the `ilgnet` command that does the same "
                    "on real data. Everything goes to WORK, which is emptied first (only if an earlier demo made "
                    "it).",
        epilog="examples:\n"
               "  ilgnet demo\n"
               "  ilgnet demo --work /tmp/demo --images 1000 --iterations 20\n"
               "  make demo")
    parser.add_argument("--work", type=output_folder, default=DEFAULT_WORK,
                        help=f"folder for everything the demo writes; emptied first (default: {DEFAULT_WORK})")
    parser.add_argument("--images", type=integer(1), default=DEFAULTS["images"],
                        help=f"rows of the synthetic AVA.txt; AVA2 keeps 20 %% of them (default: {DEFAULTS['images']})")
    parser.add_argument("--iterations", type=integer(1), default=DEFAULTS["iterations"],
                        help=f"training iterations (default: {DEFAULTS['iterations']})")
    parser.add_argument("--batch", type=integer(1), default=DEFAULTS["batch"],
                        help=f"training batch size (default: {DEFAULTS['batch']})")
    parser.add_argument("--held-out", type=integer(1), default=DEFAULTS["held_out"],
                        help=f"held-out photos given to `ilgnet predict` (default: {DEFAULTS['held_out']})")
    parser.add_argument("--seed", type=integer(0), default=DEFAULTS["seed"],
                        help="seed of data, split and LMDB order")
    parser.add_argument("--gpu", type=integer(0), metavar="ID",
                        help="train, test and predict on this GPU (default: CPU)")
    parser.set_defaults(func=run)


def _step(number: int, title: str, command: str) -> float:
    print(f"\n== {number}. {title}\n   $ {command}", flush=True)
    return time.perf_counter()


def _done(started: float, timings: dict, name: str) -> None:
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"   ({timings[name]:.1f} s)", flush=True)


def _fresh_work_dir(work: Path) -> None:
    """Empties `work` for a new run, but only if it is missing, empty, or an earlier demo's folder."""
    if work.exists() and any(work.iterdir()) and not (work / MARKER).exists():
        raise UsageError(f"argument --work: {work} exists and was not made by `ilgnet demo`; give another folder")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    (work / MARKER).write_text("made by `ilgnet demo`; it empties this folder when run again\n")


def evaluate_held_out(weights: Path, data: Path, out: Path, *, gpu: int | None, progress: bool) -> dict:
    """Step 5, what `ilgnet test --weights WEIGHTS --data DATA --json OUT` does (ilgnet.evaluation.evaluate): the
    evaluation of every held-out record, written to `out` and returned as its JSON dict."""
    from ilgnet.data.folder import DataFolder
    from ilgnet.evaluation import evaluate
    from ilgnet.zoo.models import resolve_model

    folder = DataFolder(data)
    result = evaluate(resolve_model(weights), folder, gpu=gpu, protocol=folder.protocol(), progress=progress).to_json()
    atomic_write_text(out, json.dumps(result, indent=2, allow_nan=False) + "\n")
    return result


YOUR_PHOTOS = "YOUR_PHOTOS"     # the placeholder of the closing `predict` command


def run_demo(work: Path = DEFAULT_WORK, *, images: int = DEFAULTS["images"], iterations: int = DEFAULTS["iterations"],
             batch: int = DEFAULTS["batch"], held_out: int = DEFAULTS["held_out"], seed: int = DEFAULTS["seed"],
             gpu: int | None = None, progress: bool = True) -> dict:
    """Runs the demo in `work`; returns the summary it also writes to work/demo.json."""
    from ilgnet.data import synthetic
    from ilgnet.data.ava import read_list_file
    from ilgnet.data.folder import DataFolder
    from ilgnet.data.make import Partition, make_lmdbs, make_split
    from ilgnet.scoring.gallery import write_gallery
    from ilgnet.scoring.scorer import Scorer
    from ilgnet.training.plan import TrainOptions
    from ilgnet.training.curves import summary_files
    from ilgnet.training.runs import train
    from ilgnet.zoo.runfolder import RunFolder

    work = Path(work)
    _fresh_work_dir(work)
    ava, data, runs = work / "ava", work / "data", work / "runs"
    timings: dict[str, float] = {}
    started_all = time.perf_counter()

    started = _step(1, f"synthetic AVA: {images:,} vote histograms and photos", f"(ilgnet.data.synthetic) -> {ava}")
    rows = synthetic.generate(ava, n_images=images, seed=seed)
    _done(started, timings, "generate")

    started = _step(2, "AVA2 split: top and bottom 10 % by mean score, 50/50",
                    f"ilgnet split ava2 --ava-txt {ava / 'AVA.txt'} --seed {seed} --out {data}")
    split = make_split(data, Partition("ava2", ava_txt=ava / "AVA.txt", seed=seed))
    print(f"   train {split['train']['images']} {split['train']['labels']}, val {split['val']['images']} "
          f"{split['val']['labels']} (labels 0 = low, 1 = high)")
    _done(started, timings, "split")

    started = _step(3, "LMDBs and mean image", f"ilgnet lmdb --split {data} --images {ava / 'images'} --seed {seed}")
    lmdb = make_lmdbs(data, ava / "images", seed=seed, progress=progress)
    _done(started, timings, "lmdb")

    device = "CPU" if gpu is None else f"GPU {gpu}"
    test_interval = math.ceil(iterations / 3)   # three test passes for the curves, besides the one at the start
    started = _step(4, f"train the `ilgnet` net from scratch on the {device}: {iterations} iterations at batch {batch}",
                    f"ilgnet train --variant ilgnet --profile ava2 --data {data} --runs {runs} --name ilgnet-demo "
                    f"--models {work / 'models'} {'--cpu' if gpu is None else f'--gpu {gpu}'} --max-iter {iterations} "
                    f"--train-batch {batch} --test-interval {test_interval}")
    print("   (no ImageNet weights in the demo: training from scratch is intended)")
    options = TrainOptions("ilgnet", "ava2", data, name="ilgnet-demo", runs_dir=runs, models_dir=work / "models",
                           gpu=None if gpu is None else str(gpu), max_iter=iterations, train_batch=batch,
                           display=max(1, iterations // 20), test_interval=test_interval)
    weights = train(options, progress=progress)
    _done(started, timings, "train")

    started = _step(5, "test on every held-out image",
                    f"ilgnet test --variant ilgnet --weights {weights} --data {data} --json {work / 'test.json'}")
    result = evaluate_held_out(weights, data, work / "test.json", gpu=gpu, progress=progress)
    baseline = result["majority_baseline"]["accuracy"]
    auc = "n/a" if result["roc_auc"] is None else f"{result['roc_auc']:.3f}"
    print(f"   accuracy {result['accuracy']:.1%} on {result['images']} held-out images; majority-class baseline "
          f"{baseline:.1%}; balanced accuracy {result['balanced_accuracy']:.1%}; ROC AUC {auc}")
    _done(started, timings, "test")

    photos = work / "held_out"
    started = _step(6, f"score {held_out} held-out photos and rank them",
                    f"ilgnet predict {photos} --model {weights} --mean {data / 'mean.binaryproto'} --top 5 "
                    f"--html {work / 'report.html'}")
    photos.mkdir()
    val_rows = read_list_file(DataFolder(data).list_file("val"))
    chosen = val_rows.sample(n=min(held_out, len(val_rows)), random_state=seed)
    for image_id in chosen["image_id"]:
        shutil.copy2(ava / "images" / f"{image_id}.jpg", photos)
    scorer = Scorer.from_model(weights, mean=data / "mean.binaryproto", gpu=gpu)   # as `ilgnet predict` resolves it
    table, skipped = scorer.score_files(sorted(photos.iterdir()))
    write_gallery(work / "report.html", table, skipped, about={
        "model": str(weights), "variant": scorer.model.variant, "mean": str(data / "mean.binaryproto"),
        "backend": scorer.backend})
    truth = rows.set_index("image_id")["mean"]
    table["ava_mean"] = [truth[int(Path(p).stem)] for p in table["path"]]
    table.to_csv(work / "predictions.csv", index=False, float_format="%.6f")
    top = table.sort_values("p_high", ascending=False, kind="stable").head(5)
    print(top.to_string(index=False, formatters={"p_high": "{:.4f}".format, "ava_mean": "{:.2f}".format}))
    _done(started, timings, "predict")

    timings["total"] = round(time.perf_counter() - started_all, 1)
    run_dir = runs / "ilgnet-demo"
    train_log_csv, curves_png = summary_files(RunFolder(run_dir).train_log)
    summary = {
        "images": images, "iterations": iterations, "batch": batch, "seed": seed,
        "train_images": split["train"]["images"], "val_images": split["val"]["images"],
        "lmdb_records": {name: lmdb[name]["records"] for name in ("train", "val")},
        "accuracy": result["accuracy"], "majority_baseline": baseline,
        "balanced_accuracy": result["balanced_accuracy"], "roc_auc": result["roc_auc"],
        "top5_high": int(top["label"].sum()), "top5_mean_score": float(top["ava_mean"].mean()),
        "skipped": len(skipped), "weights": str(weights), "curves": str(curves_png),
        "gallery": str(work / "report.html"),
        "train_log": str(train_log_csv), "seconds": timings,
        # The run folder carries its variant and mean (model.json): all `predict` needs besides the photos.
        "score_your_photos": f"{typed_ilgnet()} predict {YOUR_PHOTOS} --model {run_dir} --html my-photos.html "
                             f"--out my-photos.csv",
    }
    (work / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def typed_ilgnet() -> str:
    """`ilgnet` as this shell can type it: the name where PATH finds one, else the path of the script running
    (`make demo` runs .venv/bin/ilgnet, which a shell without the venv activated does not find)."""
    running = Path(sys.argv[0])
    if running.name != "ilgnet" or shutil.which("ilgnet"):
        return "ilgnet"
    relative = os.path.relpath(running.absolute())
    return relative if not relative.startswith("..") else str(running.absolute())


def run(args) -> int:
    summary = run_demo(args.work, images=args.images, iterations=args.iterations, batch=args.batch,
                       held_out=args.held_out, seed=args.seed, gpu=args.gpu)
    above = summary["accuracy"] > summary["majority_baseline"]
    print(f"\n== demo finished in {summary['seconds']['total']:.0f} s\n"
          f"   held-out accuracy {summary['accuracy']:.1%} vs majority baseline {summary['majority_baseline']:.1%}: "
          f"{'above' if above else 'NOT above'} the baseline\n"
          f"   training curves: {summary['curves']}\n   gallery: {summary['gallery']}\n"
          f"   summary: {args.work / 'demo.json'}\n"
          f"   score your own photos with the net it trained (a folder, files or @LIST for {YOUR_PHOTOS}):\n"
          f"   {summary['score_your_photos']}\n"
          f"   (it learned synthetic photos only, so its scores of real ones mean nothing; the published models,\n"
          f"   --model ilgnet-ava1 or ilgnet-ava2 after `ilgnet weights fetch NAME`, score real photos)")
    if not above:
        print("ilgnet demo: the net did not learn better than guessing the majority class; try more --iterations",
              file=sys.stderr)
    return 0 if above else 1
