"""Throughput of `ilgnet predict --ray` (ilgnet.scoring.cluster.score_with_ray) on a local Ray runtime, with 1 and 2
actors,
beside the single-machine path (ilgnet.scoring.pool.ScorerPool) on the same photos.

The `ilgnet` deploy net with random weights (ilgnet.data.synthetic.random_caffemodel: the speed of a forward pass does
not depend on the weight values), the opencv backend unless --backend caffe, one CPU per actor. For each pool it
prints the wall time of a whole call (starting the actors and loading the 604 MB model into each included, the Ray
runtime's own start not, as on a running cluster), and the throughput once started: the photos beyond one batch
per actor over the time beyond a call that scores only that first batch per actor. Photos as
tools/bench_predict.py takes them.

    .venv/bin/python tools/bench_ray.py               # or: make bench-ray
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from bench_predict import photo_set


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=Path, help="folder of photos (default: as tools/bench_predict.py)")
    parser.add_argument("--count", type=int, default=480, help="photos scored by each run (default: 480)")
    parser.add_argument("--batch", type=int, default=16, help="photos per batch (default: 16)")
    parser.add_argument("--backend", choices=["opencv", "caffe"], default="opencv")
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray runtime (default: 2)")
    return parser.parse_args()


def timed(function, *args, **kwargs) -> float:
    started = time.perf_counter()
    table, skipped = function(*args, **kwargs)
    if skipped:
        raise SystemExit(f"{len(skipped)} photos were skipped: {skipped[:3]}")
    return time.perf_counter() - started


def main() -> int:
    args = parse_args()
    import numpy as np
    import ray

    from ilgnet import nets
    from ilgnet.data.synthetic import random_caffemodel
    from ilgnet.scoring.cluster import score_with_ray
    from ilgnet.scoring.pool import ScorerPool

    with tempfile.TemporaryDirectory(prefix="bench_ray_") as tmp:
        work = Path(tmp)
        paths = photo_set(args.images, args.count, work)
        options = dict(weights=random_caffemodel(nets.deploy("ilgnet"), work / "ilgnet.caffemodel"),
                       mean=np.full((3, 256, 256), 100, np.float32), variant="ilgnet", backend=args.backend)
        print(f"{len(paths)} photos, ilgnet deploy net, {args.backend} backend, batch {args.batch}, {os.cpu_count()} "
              f"CPUs (load average {os.getloadavg()[0]:.2f}); wall time of each call, actor start and model "
              f"loading included", flush=True)
        with ScorerPool(1, batch_size=args.batch, **options) as pool:
            seconds = timed(pool.score_files, paths)
        print(f"single machine, one Scorer, loaded  : {len(paths) / seconds:6.2f} images/s ({seconds:.1f} s)")
        ray.init(num_cpus=args.cpus, include_dashboard=False, logging_level="WARNING")
        try:
            for actors in (1, 2):
                first = actors * args.batch
                start = timed(score_with_ray, paths[:first], actors=actors, batch_size=args.batch, **options)
                seconds = timed(score_with_ray, paths, actors=actors, batch_size=args.batch, **options)
                print(f"--ray, {actors} actor{'s' if actors > 1 else ' '} of 1 CPU            : "
                      f"{len(paths) / seconds:6.2f} images/s ({seconds:.1f} s); once started "
                      f"{(len(paths) - first) / (seconds - start):6.2f} images/s (first batches {start:.1f} s)",
                      flush=True)
        finally:
            ray.shutdown()
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
