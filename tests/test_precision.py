"""int8 and the speed work around it: static QDQ quantization calibrated on photos (`ilgnet export --precision int8
--calibrate`, `ilgnet predict --precision int8`), the CPU's integer kernels read from cpuinfo, the CPUs a process may
use (affinity and the cgroup quota), and the Scorer's preprocessing in its threads giving what it gave inline."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet
from ilgnet.data.images import decode_image
from ilgnet.pools import cpu_count, cpu_quota
from ilgnet.scoring.scorer import Scorer
from ilgnet.zoo.onnx_metadata import read_metadata
from ilgnet.export.precision import cpu_kernels, has_vnni


def test_the_integer_kernels_come_from_the_cpu_flags(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n\nprocessor\t: 1\nflags\t: avx2\n")
    assert cpu_kernels(info) == ["AVX2", "AVX-512", "AVX-512 VNNI"] and has_vnni(cpu_kernels(info))
    info.write_text("flags\t: fpu sse2 avx2 fma\n")
    assert cpu_kernels(info) == ["AVX2"] and not has_vnni(["AVX2"])
    assert cpu_kernels(tmp_path / "absent") == []


def test_the_cgroup_quota_bounds_the_cpus(tmp_path):
    own = tmp_path / "proc-cgroup"
    own.write_text("0::/box/job\n")
    (tmp_path / "cg" / "box" / "job").mkdir(parents=True)
    (tmp_path / "cg" / "cpu.max").write_text("max 100000\n")
    (tmp_path / "cg" / "box" / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "cg" / "box" / "job" / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path / "cg", own) == 1.5                   # the parent's limit holds for the child
    (tmp_path / "cg" / "box" / "cpu.max").write_text("max 100000\n")
    assert cpu_quota(tmp_path / "cg", own) is None
    assert cpu_quota(tmp_path / "cg", tmp_path / "absent") is None
    own.write_text("4:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n")               # cgroup v1
    (tmp_path / "v1" / "cpu" / "docker" / "abc").mkdir(parents=True)
    (tmp_path / "v1" / "cpu" / "docker" / "abc" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "v1" / "cpu" / "docker" / "abc" / "cpu.cfs_period_us").write_text("100000\n")
    (tmp_path / "v1" / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    (tmp_path / "v1" / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cpu_quota(tmp_path / "v1", own) == 0.5
    assert 1 <= cpu_count() <= len(__import__("os").sched_getaffinity(0))


def test_scores_with_preprocessing_in_threads_equal_those_made_inline(stand_in):
    threaded = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=2,
                      batch_size=4)
    inline = Scorer(stand_in["weights"], mean=stand_in["mean"], variant=SMALL, backend="onnxruntime", jobs=0,
                    batch_size=4)
    photos = sorted(stand_in["photos"].iterdir())
    table, skipped = threaded.score_files(photos)
    again, _ = inline.score_files(photos)
    readable = [p for p in photos if p.name != "broken.jpg"]
    by_images = inline.score_images([decode_image(p, 256) for p in readable])
    assert [s.path for s in skipped] == [str(stand_in["photos"] / "broken.jpg")] and len(table) == 6
    np.testing.assert_array_equal(table.p_high.to_numpy(), again.p_high.to_numpy())
    np.testing.assert_allclose(table.p_high.to_numpy(), by_images, rtol=0, atol=1e-6)


@pytest.mark.slow
def test_int8_quantizes_the_convolutions_calibrated_on_the_photos_given(stand_in, tmp_path, capsys):
    calibrate = tmp_path / "calibrate"
    calibrate.mkdir()
    photos = sorted(p for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")
    for photo in photos[:2]:
        shutil.copy(photo, calibrate / photo.name)
    check = [str(calibrate / photos[0].name), *map(str, photos[2:])]     # one calibration photo among them
    out = tmp_path / "small-int8.onnx"
    assert ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                   "--out", str(out), "--precision", "int8", "--calibrate", str(calibrate), "--check", *check]) == 0
    captured = capsys.readouterr()
    assert f"int8 calibrated on 2 photos of {calibrate}" in captured.err and "integer kernels" in captured.err
    line = next(line for line in captured.out.splitlines() if "against fp32" in line)
    assert "on 4 photos (the 1 calibrated on left out)" in line and "labels agree on" in line, line
    assert float(line.split("max |dp_high| ")[1].split()[0]) < 5e-2
    assert float(line.split("forward passes ")[1].split("x as fast")[0]) > 0
    facts = read_metadata(out)
    assert facts["precision"] == "int8" and facts["calibration"] == f"2 photos of {calibrate}"
    graph = onnx.load(str(out)).graph
    int8 = {t.name for t in graph.initializer if t.data_type == onnx.TensorProto.INT8}
    dequantized = {node.output[0] for node in graph.node if node.op_type == "DequantizeLinear"
                   and node.input[0] in int8}
    convolutions = [node for node in graph.node if node.op_type in ("Conv", "Gemm")]
    assert convolutions and all(node.input[1] in dequantized for node in convolutions)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrate", out.name]


def test_int8_checked_only_on_its_calibration_photos_is_refused_before_anything_is_written(stand_in, tmp_path,
                                                                                           capsys):
    calibrate = tmp_path / "calibrate"
    calibrate.mkdir()
    for photo in sorted(p for p in stand_in["photos"].iterdir() if p.name != "broken.jpg")[:2]:
        shutil.copy(photo, calibrate / photo.name)
    out = tmp_path / "small-int8.onnx"
    with pytest.raises(SystemExit) as exit:
        ilgnet(["export", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]),
                "--out", str(out), "--precision", "int8", "--calibrate", str(calibrate), "--check", str(calibrate)])
    assert exit.value.code == 2                                      # a usage error, as argparse's
    err = capsys.readouterr().err.splitlines()
    assert err[-1] == ("ilgnet export: error: --check: its 2 photos are all calibration photos (--calibrate), which "
                       "the check leaves out; give photos not calibrated on (nothing was written) "
                       "(see `ilgnet export --help`)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calibrate"]


@pytest.mark.slow
def test_predict_int8_exports_once_and_says_so(stand_in, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("ILGNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr("ilgnet.defaults.CACHE_DIR", tmp_path / "cache")
    model = ["--model", str(stand_in["weights"]), "--variant", SMALL, "--mean", str(stand_in["mean"]), "--quiet"]
    fp32, int8 = tmp_path / "fp32.jsonl", tmp_path / "int8.jsonl"
    assert ilgnet(["predict", str(stand_in["photos"]), *model, "--backend", "onnxruntime", "--out", str(fp32)]) == 0
    assert ilgnet(["predict", str(stand_in["photos"]), *model, "--precision", "int8", "--out", str(int8)]) == 0
    err = capsys.readouterr().err
    assert "ilgnet predict: int8 (" in err and "an approximation of the fp32 net; calibrated on 32 generated" in err
    rows = [json.loads(line) for line in int8.read_text().splitlines()]
    reference = {row["path"]: row["p_high"] for row in map(json.loads, fp32.read_text().splitlines())}
    assert len(rows) == 6 and {row["precision"] for row in rows} == {"int8"}
    assert max(abs(row["p_high"] - reference[row["path"]]) for row in rows) < 5e-2
    kept = list((tmp_path / "cache" / "onnx").glob("small.int8-*.onnx"))
    assert len(kept) == 1
    stamp = kept[0].stat().st_mtime_ns
    assert ilgnet(["predict", str(stand_in["photos"]), *model, "--precision", "int8", "--out", str(int8)]) == 0
    assert kept[0].stat().st_mtime_ns == stamp                          # kept, not made again


@pytest.mark.slow
def test_two_first_predicts_at_a_smaller_precision_share_one_export(stand_in, tmp_path):
    """Two `ilgnet predict --precision fp16` at once with the export not made yet: the first is paused (SIGSTOP) while
    its file is half written, the second is let start and seen waiting on the export's lock (the kernel's table of
    locks), then the first is let go; both score, from one file."""
    import os
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "ILGNET_CACHE": str(tmp_path / "cache")}
    args = [sys.executable, "-m", "ilgnet.cli", "predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]),
            "--variant", SMALL, "--mean", str(stand_in["mean"]), "--precision", "fp16", "--quiet", "--out"]
    first = subprocess.Popen([*args, str(tmp_path / "a.csv")], env=env, stderr=subprocess.PIPE, text=True)
    second = None
    try:
        deadline = time.monotonic() + 120
        while not list((tmp_path / "cache").rglob("*.onnx.partial")) and first.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.002)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the first export ended too soon"
        second = subprocess.Popen([*args, str(tmp_path / "b.csv")], env=env, stderr=subprocess.PIPE, text=True)
        while not any(line.split()[1:3] == ["->", "FLOCK"] and line.split()[5] == str(second.pid)
                      for line in open("/proc/locks").read().splitlines()):
            assert second.poll() is None and time.monotonic() < deadline, second.stderr.read()
            time.sleep(0.01)
    finally:
        os.kill(first.pid, signal.SIGCONT)
        first.wait(timeout=300)
    second.wait(timeout=300)
    assert (first.returncode, second.returncode) == (0, 0), first.stderr.read() + second.stderr.read()
    assert len(list((tmp_path / "cache" / "onnx").glob("small.fp16-*.onnx"))) == 1
    assert len((tmp_path / "a.csv").read_text().splitlines()) == len((tmp_path / "b.csv").read_text().splitlines())


@pytest.mark.parametrize("extra", [["--backend", "opencv"], ["--gpu", "0"]])
def test_predict_int8_runs_in_onnxruntime_on_the_cpu_only(stand_in, tmp_path, capsys, extra):
    with pytest.raises(SystemExit) as stop:
        ilgnet(["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--variant", SMALL,
                "--mean", str(stand_in["mean"]), "--precision", "int8", *extra])
    assert stop.value.code == 2 and "--precision int8 runs the variant's own net in onnxruntime" in \
        capsys.readouterr().err


@pytest.mark.parametrize("case", ["ave-same", "ave-no-pad", "ave-past-padding", "global"])
def test_average_pools_as_depthwise_convolutions_give_the_same_values(case, tmp_path):
    import onnxruntime
    from test_onnx_export import small_net

    from ilgnet.data.synthetic import random_caffemodel
    from ilgnet.export.converter import net_to_onnx
    from ilgnet.export.precision import pools_as_convolutions

    net = small_net(case)
    model = net_to_onnx(net, random_caffemodel(net, tmp_path / "w.caffemodel", seed=5))
    x = np.random.default_rng(1).uniform(-3, 3, (2, *net.layer[0].input_param.shape[0].dim[1:])).astype(np.float32)

    def run(proto):
        session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
        return session.run(None, {"data": x})[0]

    before = run(model)
    assert pools_as_convolutions(model) >= 1
    assert "AveragePool" not in {node.op_type for node in model.graph.node}
    np.testing.assert_allclose(run(model), before, rtol=1e-5, atol=1e-6)
