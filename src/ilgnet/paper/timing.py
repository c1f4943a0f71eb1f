"""Table 4's measurements and the machine they were made on: training time and speed read from a run's log, test
time per image measured now for every net with the same batch and backend, and the hardware and Caffe named."""
from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
from pathlib import Path

from ilgnet.bvlc.logs import train_segments
from ilgnet.bvlc.tools import build_info, caffe_version, tool_path
from ilgnet.errors import UserError
from ilgnet.nets import forward_time


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, with the cores this process may use."""
    name = "unknown CPU"
    try:
        match = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        name = match.group(1).strip() if match else platform.processor() or name
    except OSError:
        pass
    return f"{name}, {len(os.sched_getaffinity(0))} cores"


def gpu_name(gpu: str | int) -> str:
    """The name Caffe's `device_query` gives GPU `gpu` (the first of a list), or why it could not say."""
    device = str(gpu).split(",")[0]
    try:
        result = subprocess.run([str(tool_path("caffe")), "device_query", "-gpu", device], capture_output=True,
                                text=True, timeout=120)
    except (UserError, OSError, subprocess.TimeoutExpired) as err:
        return f"GPU {device} (caffe device_query: {err})"
    match = re.search(r"\] Name: (.+)$", result.stdout + result.stderr, re.M)
    return match.group(1).strip() if match else f"GPU {device} (caffe device_query named none)"


def environment(gpu: str | int | None = None) -> dict:
    """Where a run or a measurement ran: host, CPU, GPU (None on the CPU), the Caffe version and how it was built
    (BLAS, CUDA, cuDNN), as ilgnet.bvlc.tools finds them; `caffe` says so where this machine has no Caffe (a run in
    Docker)."""
    info = {"host": socket.gethostname(), "cpu": cpu_model(), "gpu": None if gpu is None else gpu_name(gpu)}
    try:
        info.update(caffe=caffe_version(), build=build_info())
    except UserError as err:
        info.update(caffe=f"not found on this machine ({err})", build=None)
    return info


def training_time(log: Path) -> dict | None:
    """A run's training time from its Caffe log, over all its `caffe train` segments (a resumed run has several;
    the time between an interruption and the resumption is not counted): `seconds` of Caffe's own wall time
    (start-up, training, test passes, snapshots), `iterations` trained and `iterations_per_second` over the
    training iterations alone. None for a log that displays no iteration."""
    if not Path(log).is_file():
        return None
    segments = train_segments(log)
    if not segments:
        return None
    iterations = sum(s["last_iteration"] - s["first_iteration"] for s in segments)
    training = sum(s["training_seconds"] for s in segments)
    return {"seconds": sum(s["seconds"] for s in segments), "iterations": iterations, "segments": len(segments),
            "iterations_per_second": iterations / training if training > 0 else None}


def test_times(variants, *, batch: int, iterations: int, gpu: int | None = None, single=()) -> dict[str, dict]:
    """variant -> {ms_per_image, seconds_per_image_batch1, batch, iterations, backend}: the median forward time of
    each deploy net, random weights standing in for trained ones (a forward pass takes the same time), over
    `iterations` passes of `batch` images (the throughput batch) after a warm-up, and for the variants in `single`
    also of one image (as a phone or a web service scores one photo; the paper's Table 4 gives seconds per image;
    None for the others), in pycaffe on the CPU or on GPU `gpu`: every net measured the same way, now, on this
    machine."""
    backend = "pycaffe, CPU" if gpu is None else f"pycaffe, GPU {gpu}"
    times = {}
    for variant in variants:
        _, ms = forward_time(variant, batch=batch, iterations=iterations, gpu=gpu)
        one = None
        if variant in single:
            one = ms / 1000 if batch == 1 else forward_time(variant, batch=1, iterations=iterations, gpu=gpu)[1] / 1000
        times[variant] = {"ms_per_image": ms / batch, "seconds_per_image_batch1": one, "batch": batch,
                          "iterations": iterations, "backend": backend}
    return times


def hardware(record: dict) -> str:
    """A campaign record's machine in words: CPU, GPU where one was used, and host."""
    env = record.get("environment") or {}
    return f"{env.get('cpu', '?')}" + (f"; {env['gpu']}" if env.get("gpu") else "") + f" ({env.get('host', '?')})"


def training_memory(log: Path) -> int | None:
    """The bytes Caffe reports its TRAIN net's blobs need ("Memory required for data", the last value logged before
    the first "Network initialization done"): activations and their gradients, not the weights. None when the log
    has no such line."""
    memory = None
    try:
        with open(log, errors="replace") as lines:
            for line in lines:
                if "Network initialization done" in line:
                    break
                if match := re.search(r"Memory required for data: (\d+)", line):
                    memory = int(match[1])
    except OSError:
        return None
    return memory
