"""Throughput of `ilgnet predict` against a per-image loop like the published test.py, and against `caffe time`.

Measurements of the `ilgnet` deploy net on the same photos, side by side in one run, each after a warm-up and the
best of --repeat rounds in which the loop and both backends' `ilgnet predict` take turns (so the machine's load
falls on them alike; the single Scorers take turns in rounds of their own):
  per-image loop  what BestiVictory/ILGnet's test.py does for one photo, run over all of them: caffe.io.load_image,
                  a caffe.io.Transformer (resize to 227x227, BGR, x255, per-channel mean), one pycaffe forward per
                  photo;
  ilgnet predict  what the command runs (ilgnet.scoring.pool.ScorerPool): OpenCV decoding, 256 resize, centre crop,
                  mean image, batched forward passes, in --workers processes (default: as `ilgnet predict`), with
                  each backend: onnxruntime (the net exported to ONNX), opencv (OpenCV's dnn module) and caffe
                  (pycaffe);
  one Scorer      the same in a single process (the Python API's ilgnet.Scorer), each backend;
  caffe time      Caffe's own timing of the forward pass at the same batch on its all-zero input, no decoding.
Reported: images/s of each, the predict / loop ratios, onnxruntime's ratio to opencv, predict's overhead over
`caffe time`, and the wall time of the `ilgnet predict --backend onnxruntime` and `--backend opencv` commands
themselves (start-up and loading the 604 MB model into each process included; onnxruntime's export made before).
The machine's load average is printed first and last: other work on the cores shrinks the ratios.

    .venv/bin/python tools/bench_predict.py                  # or: make bench-predict

Photos: ../shared/data/ava-sample/images when present (87 real AVA photos, up to 800 pixels), else generated
ones of the same size range, repeated under new names up to --count. The model has random weights unless
--weights is given: the speed of a forward pass does not depend on the weight values.
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


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help=f"folder of photos (default: {SAMPLE} if present, else generated)")
    parser.add_argument("--count", type=int, default=96, help="photos scored by each method (default: 96)")
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

        generate(work / "generated", n_images=min(count, 48), seed=7, long_sides=(500, 800))
        source = work / "generated" / "images"
    originals = sorted(p for p in source.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not originals:
        raise SystemExit(f"no photos in {source}")
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


def pool_scoring(pool) -> Callable[[list[Path]], None]:
    """ScorerPool.score_files as a function of the photos, stopping the benchmark if any photo is skipped."""
    def score_all(paths: list[Path]) -> None:
        table, skipped = pool.score_files(paths)
        if skipped or len(table) != len(paths):
            raise SystemExit(f"{len(skipped)} photos were skipped: {skipped[:3]}")

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
    print(f"{label:42}: {images_per_s:6.2f} images/s{note}", flush=True)


def main() -> int:
    args = parse_args()
    from ilgnet.bvlc.tools import import_caffe
    from ilgnet.commands.predict import default_workers
    from ilgnet.scoring.pool import ScorerPool

    workers = {backend: args.workers or default_workers(backend) for backend in BACKENDS}
    caffe = import_caffe()
    caffe.set_mode_cpu()
    with tempfile.TemporaryDirectory(prefix="bench_predict_") as tmp:
        work = Path(tmp)
        paths = photo_set(args.images, args.count, work)
        files = model_files(caffe, args.weights, args.batch, work)
        load = os.getloadavg()[0]
        print(f"{len(paths)} photos, ilgnet deploy net, {os.cpu_count()} CPUs (load average {load:.2f}), batch "
              f"{args.batch}, best of {args.repeat} runs each", flush=True)
        options = dict(weights=files["weights"], mean=files["mean"], batch_size=args.batch)
        with ExitStack() as stack:
            methods = {"loop": per_image_loop(caffe, files), **{
                backend: pool_scoring(stack.enter_context(ScorerPool(workers[backend], backend=backend, **options)))
                for backend in BACKENDS}}
            seconds = best_seconds(methods, paths, paths[:args.batch * max(workers.values())], args.repeat)
        with ExitStack() as stack:
            singles = {f"{backend}_single": pool_scoring(stack.enter_context(ScorerPool(1, backend=backend,
                                                                                         **options)))
                       for backend in BACKENDS}
            seconds.update(best_seconds(singles, paths, paths[:args.batch], args.repeat))
        show("per-image loop (test.py)", len(paths) / seconds["loop"])
        for backend in BACKENDS:
            show(f"ilgnet predict --backend {backend} ({workers[backend]} process{'es' * (workers[backend] > 1)})",
                 len(paths) / seconds[backend])
            show(f"one Scorer, {backend} (1 process)", len(paths) / seconds[f"{backend}_single"])
        forward_ms = caffe_time(files, args.caffe_iterations, args.repeat)
        floor = args.batch / (forward_ms / 1000)
        show("caffe time (forward, 1 process)", floor, f" ({forward_ms:.0f} ms per batch of {args.batch})")
        command_s = {backend: cli_run(files, paths[0].parent, args.batch, backend) for backend in ("onnxruntime",
                                                                                                   "opencv")}
    per_image_floor = forward_ms / 1000 / args.batch
    figures = {
        "photos": len(paths), "batch": args.batch, "cpus": os.cpu_count(), "workers": workers, "repeat": args.repeat,
        "load_average_before": load, "load_average_after": os.getloadavg()[0],
        **{f"{name}_images_per_s": len(paths) / s for name, s in seconds.items()},
        **{f"{name}_speedup_over_loop": seconds["loop"] / s for name, s in seconds.items() if name != "loop"},
        "caffe_time_images_per_s": floor,
        "caffe_overhead_over_caffe_time": seconds["caffe"] / len(paths) / per_image_floor - 1,
        **{f"predict_{backend}_command_seconds": s for backend, s in command_s.items()},
        "onnxruntime_over_opencv": seconds["opencv"] / seconds["onnxruntime"],
        "onnxruntime_single_over_opencv_single": seconds["opencv_single"] / seconds["onnxruntime_single"],
    }
    print(f"\nilgnet predict --backend onnxruntime vs per-image loop: {figures['onnxruntime_speedup_over_loop']:.2f}x "
          f"(one Scorer: {figures['onnxruntime_single_speedup_over_loop']:.2f}x)\n"
          f"ilgnet predict --backend onnxruntime vs opencv       : {figures['onnxruntime_over_opencv']:.2f}x "
          f"(one Scorer each: {figures['onnxruntime_single_over_opencv_single']:.2f}x)\n"
          f"ilgnet predict --backend opencv vs per-image loop: {figures['opencv_speedup_over_loop']:.2f}x "
          f"(one Scorer: {figures['opencv_single_speedup_over_loop']:.2f}x)\n"
          f"ilgnet predict (caffe) vs per-image loop          : {figures['caffe_speedup_over_loop']:.2f}x "
          f"(one Scorer: {figures['caffe_single_speedup_over_loop']:.2f}x)\n"
          f"caffe backend's time per image over `caffe time`  : {figures['caffe_overhead_over_caffe_time']:+.1%}\n"
          f"`ilgnet predict` commands, start-up and model loading included: "
          f"{', '.join(f'{b} {t:.1f} s' for b, t in command_s.items())} for {len(paths)} photos\n"
          f"load average before / after                       : {load:.2f} / {figures['load_average_after']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
