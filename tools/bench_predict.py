"""Throughput of `ilgnet predict` against a per-image loop like the published test.py, and against `caffe time`.

Measurements of the `ilgnet` deploy net on the same photos, side by side in one run, each after a warm-up and the
best of --repeat rounds in which the loop and both backends' `ilgnet predict` take turns (so the machine's load
falls on them alike; the single Scorers take turns in rounds of their own):
  per-image loop  what BestiVictory/ILGnet's test.py does for one photo, run over all of them: caffe.io.load_image,
                  a caffe.io.Transformer (resize to 227x227, BGR, x255, per-channel mean), one pycaffe forward per
                  photo;
  ilgnet predict  what the command runs (ilgnet.scoring.pool.ScorerPool): OpenCV decoding, 256 resize, centre crop,
                  mean image, batched forward passes, in --workers processes (default: as `ilgnet predict`), with
                  each backend: onnxruntime (the net exported to ONNX) at fp32 and at int8 (`--precision int8`:
                  the net's int8 export, calibrated on every third distinct photo, its agreement with fp32
                  measured on the others), opencv (OpenCV's dnn module) and caffe (pycaffe);
  one Scorer      the same in a single process (the Python API's ilgnet.Scorer), each backend;
  caffe time      Caffe's own timing of the forward pass at the same batch on its all-zero input, no decoding.
Reported: images/s of each, the predict / loop ratios side by side with each one's precision, int8's label
agreement with fp32 and its largest |p_high difference| on the photos not calibrated on, the CPU's integer kernels,
onnxruntime's ratio to opencv, predict's overhead over `caffe time`, and the wall time of the `ilgnet predict
--backend onnxruntime` and `--backend opencv` commands themselves (start-up and loading the 604 MB model into each
process included; onnxruntime's export made before). The machine's load average is printed first and last: other
work on the cores shrinks the ratios.

    .venv/bin/python tools/bench_predict.py                  # or: make bench-predict

Photos: ../shared/data/ava-sample/images when present (87 real AVA photos, up to 800 pixels; all of them by
default), else 96 generated ones of the same size range; repeated under new names up to --count. The model has
random weights unless --weights is given: the speed of a forward pass does not depend on the weight values (int8's
agreement with fp32 does: random weights say little about a trained model's).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO.parent / "shared" / "data" / "ava-sample" / "images"
AVA_CHANNEL_MEAN_BGR = (91.0, 99.46, 107.85)   # the published AVA1 mean image, averaged per channel
BACKENDS = ("onnxruntime", "opencv", "caffe")
INT8 = "onnxruntime_int8"       # `ilgnet predict --backend onnxruntime --precision int8`
CALIBRATE_EVERY = 3             # int8 is calibrated on every third distinct photo; agreement is measured on the rest


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help=f"folder of photos (default: {SAMPLE} if present, else generated)")
    parser.add_argument("--count", type=int, help="photos scored by each method (default: every sample photo, 87, "
                                                  "else 96)")
    parser.add_argument("--batch", type=int, default=16, help="Scorer and caffe time batch size (default: 16)")
    parser.add_argument("--workers", type=int, help="ilgnet predict processes (default: as `ilgnet predict`)")
    parser.add_argument("--weights", type=Path, help="an ilgnet caffemodel (default: random weights)")
    parser.add_argument("--caffe-iterations", type=int, default=10, help="`caffe time` iterations (default: 10)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="time each method this many times and keep its best run (default: 2)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    return parser.parse_args()


def photo_set(source: Path | None, count: int, work: Path) -> list[Path]:
    """`count` photo paths in `work`: the source photos (or generated ones) copied round-robin under new names."""
    if source is None and SAMPLE.is_dir():
        source = SAMPLE
    if source is None:
        from ilgnet.data.synthetic import generate

        generate(work / "generated", n_images=min(count or 96, 48), seed=7, long_sides=(500, 800))
        source, count = work / "generated" / "images", count or 96
    originals = sorted(p for p in source.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not originals:
        raise SystemExit(f"no photos in {source}")
    count = count or len(originals)
    photos = work / "photos"
    photos.mkdir()
    paths = []
    for i in range(count):
        original = originals[i % len(originals)]
        paths.append(photos / f"{i:05d}_{original.name}")
        shutil.copyfile(original, paths[-1])
    return paths


def model_files(caffe, weights: Path | None, batch: int, work: Path) -> dict[str, Path]:
    """Deploy prototxts at batch 1 and `batch`, a caffemodel, and the mean as .binaryproto and .npy."""
    import numpy as np

    from ilgnet import nets

    files = {}
    for name, size in (("deploy_1", 1), ("deploy_batch", batch)):
        files[name] = work / f"{name}.prototxt"
        files[name].write_text(str(nets.deploy("ilgnet", batch=size)))
    if weights is None:
        weights = work / "random.caffemodel"
        caffe.Net(str(files["deploy_1"]), caffe.TEST).save(str(weights))
    files["weights"] = weights
    mean = np.broadcast_to(np.array(AVA_CHANNEL_MEAN_BGR, np.float32)[:, None, None], (3, 256, 256))
    files["mean_npy"] = work / "mean.npy"
    np.save(files["mean_npy"], mean)
    files["mean"] = work / "mean.binaryproto"
    files["mean"].write_bytes(caffe.io.array_to_blobproto(mean[None]).SerializeToString())
    return files


def per_image_loop(caffe, files: dict[str, Path]) -> Callable[[list[Path]], None]:
    """The published test.py's steps, photo after photo, as a function of the photos (the net loaded once)."""
    import numpy as np

    net = caffe.Net(str(files["deploy_1"]), caffe.TEST, weights=str(files["weights"]))
    transformer = caffe.io.Transformer({"data": net.blobs["data"].data.shape})
    transformer.set_transpose("data", (2, 0, 1))
    transformer.set_mean("data", np.load(files["mean_npy"]).mean(1).mean(1))
    transformer.set_raw_scale("data", 255)
    transformer.set_channel_swap("data", (2, 1, 0))

    def score_all(paths: list[Path]) -> None:
        for path in paths:
            net.blobs["data"].data[...] = transformer.preprocess("data", caffe.io.load_image(str(path)))
            net.forward()

    return score_all


def pool_scoring(pool, tables: dict | None = None, name: str = "") -> Callable[[list[Path]], None]:
    """ScorerPool.score_files as a function of the photos, stopping the benchmark if any photo is skipped; the last
    table scored goes to tables[name]."""
    def score_all(paths: list[Path]) -> None:
        table, skipped = pool.score_files(paths)
        if skipped or len(table) != len(paths):
            raise SystemExit(f"{len(skipped)} photos were skipped: {skipped[:3]}")
        if tables is not None:
            tables[name] = table

    return score_all


def best_seconds(methods: dict[str, Callable], paths: list[Path], warm_up: list[Path], repeat: int) -> dict:
    """The best of `repeat` timed runs of each method over the photos, after a warm-up run on `warm_up`; the methods
    take turns in each round, so a change in the machine's load falls on all of them alike."""
    for method in methods.values():
        method(warm_up)
    best = dict.fromkeys(methods, float("inf"))
    for _ in range(repeat):
        for name, method in methods.items():
            started = time.perf_counter()
            method(paths)
            best[name] = min(best[name], time.perf_counter() - started)
    return best


def caffe_time(files: dict[str, Path], iterations: int, repeat: int) -> float:
    """Caffe's average forward pass (ms) of the deploy net at the benchmark batch, on the CPU; the best of `repeat`."""
    from ilgnet.bvlc.tools import run_tool

    runs = []
    for _ in range(repeat):
        out = run_tool("caffe", ["time", "-model", files["deploy_batch"], "-iterations", iterations]).stdout
        match = re.search(r"Average Forward pass: ([\d.]+) ms", out)
        if not match:
            raise SystemExit(f"no 'Average Forward pass' in caffe time's output:\n{out[-2000:]}")
        runs.append(float(match[1]))
    return min(runs)


def cli_run(files: dict[str, Path], photos: Path, batch: int, backend: str) -> float:
    """Wall seconds of the `ilgnet predict` command on the photo folder, start-up and model loading included."""
    command = [str(Path(sys.executable).with_name("ilgnet")), "predict", str(photos), "--model", str(files["weights"]),
               "--mean", str(files["mean"]), "--batch", str(batch), "--quiet", "--out", str(photos.parent / "p.csv"),
               "--backend", backend]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def show(label: str, images_per_s: float, note: str = "") -> None:
    print(f"{label:62}: {images_per_s:6.2f} images/s{note}", flush=True)


def int8_file(files: dict[str, Path], paths: list[Path], work: Path) -> tuple[Path, str, set[str]]:
    """The int8 export `ilgnet predict --precision int8` runs for the benchmark's model, calibrated on every
    CALIBRATE_EVERY-th distinct photo (copies in work/calibration); its calibration, and those photos' names."""
    from ilgnet.bvlc.io import load_mean
    from ilgnet.scoring.precision import smaller_export
    from ilgnet.zoo.models import Model

    originals = sorted({path.name.split("_", 1)[1] for path in paths})[::CALIBRATE_EVERY]
    folder = work / "calibration"
    folder.mkdir()
    for path in paths:
        if path.name.split("_", 1)[1] in originals and not (folder / path.name.split("_", 1)[1]).exists():
            shutil.copyfile(path, folder / path.name.split("_", 1)[1])
    model = Model(files["weights"], "ilgnet", files["mean"])
    path, facts = smaller_export(model, load_mean(files["mean"]), "int8", work=work / "cache", photos=folder)
    return path, facts["calibration"], set(originals)


def agreement(tables: dict, name: str, calibrated: set[str]) -> tuple[int, float, float, float]:
    """On the photos whose originals were not calibrated on: (how many; labels agreeing with fp32's, share; the
    largest and mean |p_high difference|) of method `name`."""
    import numpy as np

    ours, theirs = (tables[key].set_index("path").p_high for key in (name, "onnxruntime"))
    kept = [path for path in theirs.index if Path(path).name.split("_", 1)[1] not in calibrated]
    ours, theirs = ours.loc[kept].to_numpy(), theirs.loc[kept].to_numpy()
    difference = np.abs(ours - theirs)
    return len(kept), float(((ours > 0.5) == (theirs > 0.5)).mean()), float(difference.max()), float(difference.mean())


def main() -> int:
    args = parse_args()
    from ilgnet.bvlc.tools import import_caffe
    from ilgnet.scoring.pool import default_workers
    from ilgnet.pools import cpu_count
    from ilgnet.scoring.pool import ScorerPool
    from ilgnet.export.precision import cpu_kernels

    workers = {backend: args.workers or default_workers(backend) for backend in BACKENDS}
    workers[INT8] = workers["onnxruntime"]
    caffe = import_caffe()
    caffe.set_mode_cpu()
    kernels = ", ".join(cpu_kernels()) or "none known"
    tables: dict = {}
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        paths = photo_set(args.images, args.count, work)
        files = model_files(caffe, args.weights, args.batch, work)
        files["int8"], calibration, calibrated = int8_file(files, paths, work)
        load = os.getloadavg()[0]
        print(f"{len(paths)} photos, ilgnet deploy net, {os.cpu_count()} CPUs ({cpu_count()} usable; integer "
              f"kernels: {kernels}; load average {load:.2f}), batch {args.batch}, best of {args.repeat} runs each; "
              f"int8 calibrated on {calibration}", flush=True)
        options = {"mean": files["mean"], "batch_size": args.batch}
        weights = {**dict.fromkeys(BACKENDS, files["weights"]), INT8: files["int8"]}
        backend_of = {**{b: b for b in BACKENDS}, INT8: "onnxruntime"}
        with ExitStack() as stack:
            methods = {"loop": per_image_loop(caffe, files), **{
                name: pool_scoring(stack.enter_context(ScorerPool(workers[name], backend=backend_of[name],
                                                                  weights=weights[name], **options)), tables, name)
                for name in (INT8, *BACKENDS)}}
            seconds = best_seconds(methods, paths, paths[:args.batch * max(workers.values())], args.repeat)
        with ExitStack() as stack:
            singles = {f"{name}_single": pool_scoring(stack.enter_context(ScorerPool(
                1, backend=backend_of[name], weights=weights[name], **options))) for name in (INT8, *BACKENDS)}
            seconds.update(best_seconds(singles, paths, paths[:args.batch], args.repeat))
        compared, agree, max_difference, mean_difference = agreement(tables, INT8, calibrated)
        show("per-image loop (test.py)", len(paths) / seconds["loop"])
        for name in (INT8, *BACKENDS):
            label = f"--backend {backend_of[name]}" + (" --precision int8" if name == INT8 else "")
            show(f"ilgnet predict {label} ({workers[name]} process{'es' * (workers[name] > 1)})",
                 len(paths) / seconds[name])
            show(f"one Scorer, {label} (1 process)", len(paths) / seconds[f"{name}_single"])
        forward_ms = caffe_time(files, args.caffe_iterations, args.repeat)
        floor = args.batch / (forward_ms / 1000)
        show("caffe time (forward, 1 process)", floor, f" ({forward_ms:.0f} ms per batch of {args.batch})")
        command_s = {backend: cli_run(files, paths[0].parent, args.batch, backend) for backend in ("onnxruntime",
                                                                                                   "opencv")}
    per_image_floor = forward_ms / 1000 / args.batch
    figures = {
        "photos": len(paths), "batch": args.batch, "cpus": os.cpu_count(), "usable_cpus": cpu_count(),
        "integer_kernels": kernels, "workers": workers, "repeat": args.repeat, "int8_calibration": calibration,
        "load_average_before": load, "load_average_after": os.getloadavg()[0],
        **{f"{name}_images_per_s": len(paths) / s for name, s in seconds.items()},
        **{f"{name}_speedup_over_loop": seconds["loop"] / s for name, s in seconds.items() if name != "loop"},
        "int8_compared_photos": compared, "int8_label_agreement": agree, "int8_max_p_high_difference": max_difference,
        "int8_mean_p_high_difference": mean_difference,
        "caffe_time_images_per_s": floor,
        "caffe_overhead_over_caffe_time": seconds["caffe"] / len(paths) / per_image_floor - 1,
        **{f"predict_{backend}_command_seconds": s for backend, s in command_s.items()},
        "onnxruntime_over_opencv": seconds["opencv"] / seconds["onnxruntime"],
        "onnxruntime_single_over_opencv_single": seconds["opencv_single"] / seconds["onnxruntime_single"],
    }
    ratio = {name: figures[f"{name}_speedup_over_loop"] for name in (INT8, *BACKENDS)}
    single = {name: figures[f"{name}_single_speedup_over_loop"] for name in (INT8, *BACKENDS)}
    print(f"\nagainst the per-image loop, `ilgnet predict` (one Scorer) side by side:\n"
          f"  onnxruntime int8 {ratio[INT8]:.2f}x ({single[INT8]:.2f}x) | onnxruntime fp32 {ratio['onnxruntime']:.2f}x "
          f"({single['onnxruntime']:.2f}x) | opencv fp32 {ratio['opencv']:.2f}x ({single['opencv']:.2f}x) | "
          f"caffe fp32 {ratio['caffe']:.2f}x ({single['caffe']:.2f}x)\n"
          f"int8 against fp32 (onnxruntime) on the {compared} photos not calibrated on: labels agree on {agree:.1%}, "
          f"max |dp_high| "
          f"{max_difference:.2e}, mean {mean_difference:.2e}; int8 {seconds['onnxruntime'] / seconds[INT8]:.2f}x as "
          f"fast; integer kernels: {kernels}\n"
          f"ilgnet predict --backend onnxruntime vs opencv       : {figures['onnxruntime_over_opencv']:.2f}x "
          f"(one Scorer each: {figures['onnxruntime_single_over_opencv_single']:.2f}x)\n"
          f"caffe backend's time per image over `caffe time`  : {figures['caffe_overhead_over_caffe_time']:+.1%}\n"
          f"`ilgnet predict` commands, start-up and model loading included: "
          f"{', '.join(f'{b} {t:.1f} s' for b, t in command_s.items())} for {len(paths)} photos\n"
          f"load average before / after                       : {load:.2f} / {figures['load_average_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
