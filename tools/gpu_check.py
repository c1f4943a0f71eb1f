"""The Python half of tools/gpu-check.sh (standard library only: the GPU machine has no Caffe dependencies).

  python3 gpu_check.py nets REPO DATA WORK    write the nets and solvers the check runs into WORK
  python3 gpu_check.py report WORK            print the results table from the logs in WORK/logs

Nets: each variant's committed train_val.prototxt with its LMDB and mean paths pointed at DATA (the bundle's
generated dataset), TRAIN batch 48 and TEST batch 50, once with every layer on its default engine (cuDNN where
the build has it) and once each with `engine: CUDNN` and `engine: CAFFE` written into every convolution,
pooling, LRN, ReLU and softmax layer.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

VARIANTS = ("ilgnet", "ilgnet-bn")
TRAIN_BATCH = 48
TEST_BATCH = 50
TEST_ITERATIONS = 4
TRAIN_ITERATIONS = 350
DISPLAY = 50
TOLERANCE = 1e-4


def _point_at_data(text: str, data: Path) -> str:
    text = re.sub(r'source: "[^"]*"', f'source: "{data / "lmdb"}"', text)
    text = re.sub(r'mean_file: "[^"]*"', f'mean_file: "{data / "mean.binaryproto"}"', text)
    text = re.sub(r"(phase: TRAIN.*?batch_size: )\d+", rf"\g<1>{TRAIN_BATCH}", text, count=1, flags=re.S)
    return re.sub(r"(phase: TEST.*?batch_size: )\d+", rf"\g<1>{TEST_BATCH}", text, count=1, flags=re.S)


def _with_engine(text: str, engine: str) -> str:
    text = re.sub(r"^(\s*)(convolution_param|pooling_param|lrn_param) \{$",
                  rf"\1\2 {{\n\1  engine: {engine}", text, flags=re.M)
    text = re.sub(r'^(\s*)type: "ReLU"$', rf'\1type: "ReLU"\n\1relu_param {{\n\1  engine: {engine}\n\1}}',
                  text, flags=re.M)
    return re.sub(r'^(\s*)type: "SoftmaxWithLoss"$',
                  rf'\1type: "SoftmaxWithLoss"\n\1softmax_param {{\n\1  engine: {engine}\n\1}}', text, flags=re.M)


def _solver(net: Path, prefix: Path, *, max_iter: int, display: int, mode: str) -> str:
    return "\n".join([
        f'train_net: "{net}"',       # the TRAIN phase only: the check tests with `caffe test`
        "base_lr: 0.001",
        'lr_policy: "fixed"',
        "momentum: 0.9",
        "weight_decay: 0.0002",
        f"max_iter: {max_iter}",
        f"display: {display}",
        "snapshot: 0",
        f"snapshot_after_train: {'true' if max_iter == 0 else 'false'}",
        f'snapshot_prefix: "{prefix}"',
        f"solver_mode: {mode}",
        "random_seed: 1",
        "",
    ])


def write_nets(repo: Path, data: Path, work: Path) -> None:
    for variant in VARIANTS:
        out = work / variant
        out.mkdir(parents=True, exist_ok=True)
        text = _point_at_data((repo / "prototxt" / variant / "train_val.prototxt").read_text(), data)
        (out / "train_val.prototxt").write_text(text)
        for engine in ("CUDNN", "CAFFE"):
            (out / f"train_val-{engine.lower()}.prototxt").write_text(_with_engine(text, engine))
        net = out / "train_val.prototxt"
        # A 0-iteration CPU run writes the filler-initialised weights both `caffe test` runs load.
        (out / "solver-weights.prototxt").write_text(
            _solver(net, out / "init", max_iter=0, display=0, mode="CPU"))
        (out / "solver-train.prototxt").write_text(
            _solver(net, out / "train", max_iter=TRAIN_ITERATIONS, display=DISPLAY, mode="GPU"))


# ---- report ----

def _read(logs: Path, name: str) -> str | None:
    path = logs / f"{name}.log"
    return path.read_text(errors="replace") if path.exists() else None


def _test_outputs(log: str) -> dict[str, float]:
    """The mean outputs `caffe test` prints last: `] loss1/loss = 0.69 (* 1 = 0.69 loss)`."""
    return {name: float(value) for name, value in
            re.findall(r"caffe\.cpp:\d+\] ([\w/.-]+) = ([-+\d.eE]+|nan|inf)", log)}


def _forward_backward_ms(log: str) -> float | None:
    match = re.search(r"Average Forward-Backward: ([\d.]+) ms", log)
    return float(match.group(1)) if match else None


def _training_rate(log: str) -> tuple[float, int, float] | None:
    """Images/s over the display windows after the first (which holds cuDNN's algorithm search), the number of
    iterations they cover, and the last loss."""
    windows = [(float(lapse), int(iters)) for lapse, iters in
               re.findall(r"Iteration \d+ \([\d.]+ iter/s, ([\d.]+)s/(\d+) iters\)", log)]
    losses = re.findall(r"Iteration \d+.*?, loss = ([-+\d.eE]+|nan)", log)
    steady = windows[2:]  # windows[0] is iteration 0, windows[1] iterations 1-50
    if not steady or not losses:
        return None
    seconds = sum(lapse for lapse, _ in steady)
    iterations = sum(iters for _, iters in steady)
    return TRAIN_BATCH * iterations / seconds, iterations, float(losses[-1])


def _peak_mib(logs: Path, name: str) -> str:
    path = logs / f"{name}.mem"
    if not path.exists():
        return "n/a (no nvidia-smi)"
    samples = [int(line) for line in path.read_text().split() if line.strip().isdigit()]
    if len(samples) < 2:
        return "n/a (no samples)"
    return f"{max(samples) - samples[0]:,} MiB (above the {samples[0]:,} MiB in use before)"


def _status(logs: Path) -> dict[str, str]:
    path = logs / "steps.txt"
    lines = path.read_text().splitlines() if path.exists() else []
    return {name: f"{verdict} in {seconds} s" for name, verdict, seconds in (line.split() for line in lines)}


def report(work: Path) -> int:
    logs = work / "logs"
    status = _status(logs)
    rows: list[tuple[str, str]] = []
    failed = False

    def row(check: str, result: str) -> None:
        rows.append((check, result))

    info = _read(logs, "machine") or ""
    for line in info.splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            row(key.strip(), value.strip())

    cpu, gpu, tf32 = (_read(logs, n) for n in ("cpu-test-ilgnet", "gpu-test-ilgnet", "gpu-test-ilgnet-tf32"))
    cpu_out = _test_outputs(cpu) if cpu else {}
    if cpu_out:
        row(f"ilgnet `caffe test` CPU ({TEST_ITERATIONS} x {TEST_BATCH} images)",
            ", ".join(f"{k} {v:.6g}" for k, v in cpu_out.items()))
    for label, log in (("ilgnet `caffe test` GPU, FP32 (NVIDIA_TF32_OVERRIDE=0)", gpu),
                       ("ilgnet `caffe test` GPU, cuDNN's default math (TF32 allowed)", tf32)):
        out = _test_outputs(log) if log else {}
        if not out or not cpu_out:
            continue
        diff = max(abs(out[k] - cpu_out[k]) for k in cpu_out if k in out)
        strict = "FP32" in label
        agree = diff <= TOLERANCE
        failed |= strict and not agree
        verdict = ("equal to the CPU within 1e-4" if agree else "DIFFERS from the CPU by more than 1e-4")
        row(label, ", ".join(f"{k} {v:.6g}" for k, v in out.items()) + f"; max difference {diff:.2g}: {verdict}")

    for variant in VARIANTS:
        for engine in ("cudnn", "caffe"):
            log = _read(logs, f"time-{variant}-{engine}")
            ms = _forward_backward_ms(log) if log else None
            if ms:
                row(f"{variant} `caffe time` forward-backward, batch {TRAIN_BATCH}, engine {engine.upper()}",
                    f"{ms:.1f} ms = {TRAIN_BATCH * 1000 / ms:,.0f} images/s")
        trainings = [(f"train-{variant}", f"{variant} `caffe train`")]
        if variant == "ilgnet":
            trainings.append(("image-train-ilgnet", "ilgnet `caffe train` of the CUDA Docker image"))
        for name, what in trainings:
            log = _read(logs, name)
            rate = _training_rate(log) if log else None
            if rate:
                images_s, iterations, loss = rate
                row(f"{what}, {TRAIN_ITERATIONS} iterations at batch {TRAIN_BATCH} from LMDB",
                    f"{images_s:,.0f} images/s (iterations {DISPLAY}-{DISPLAY + iterations}), "
                    f"last loss {loss:.4g}, peak GPU memory {_peak_mib(logs, name)}")
    not_run = logs / "image-train-ilgnet.not-run"
    if not_run.exists():
        row("ilgnet `caffe train` of the CUDA Docker image",
            f"not run: {not_run.read_text().strip().removeprefix('docker-caffe: ')}")

    for name, result in status.items():
        if not result.startswith("ok"):
            failed = True
        row(f"step {name}", result)

    print("| check | result |\n|---|---|")
    for check, result in rows:
        print(f"| {check} | {result} |")
    return 1 if failed else 0


def main(argv: list[str]) -> int:
    if len(argv) == 4 and argv[0] == "nets":
        write_nets(Path(argv[1]).resolve(), Path(argv[2]).resolve(), Path(argv[3]).resolve())
        return 0
    if len(argv) == 2 and argv[0] == "report":
        return report(Path(argv[1]))
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
