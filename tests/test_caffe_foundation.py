"""The ground everything stands on: the Caffe that `make setup` built trains, tests and converts images."""
import os
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
from google.protobuf import text_format

from ilgnet.bvlc.tools import run_tool, tool_path


@pytest.fixture(scope="module")
def bright_dark_lmdb(caffe, tmp_path_factory):
    """An LMDB made by convert_imageset from 40 generated JPEGs: dark noise is class 0, bright noise class 1."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    lines = []
    for i in range(40):
        label = i % 2
        level = 190 if label else 60
        image = np.clip(rng.normal(level, 25, size=(24, 30, 3)), 0, 255).astype(np.uint8)
        cv2.imwrite(str(root / f"img{i:02d}.jpg"), image)
        lines.append(f"img{i:02d}.jpg {label}\n")
    (root / "list.txt").write_text("".join(lines))
    db = root / "train_lmdb"
    run_tool("convert_imageset", ["--resize_height=16", "--resize_width=16", "--shuffle",
                                  f"{root}/", root / "list.txt", db])
    return db


def tiny_net(caffe, lmdb_path, batch):
    n = caffe.NetSpec()
    n.data, n.label = caffe.layers.Data(source=str(lmdb_path), backend=caffe.proto.caffe_pb2.DataParameter.LMDB,
                                        batch_size=batch, ntop=2,
                                        transform_param=dict(mean_value=[125], scale=1 / 64.0))
    n.score = caffe.layers.InnerProduct(n.data, num_output=2, weight_filler=dict(type="xavier"))
    n.loss = caffe.layers.SoftmaxWithLoss(n.score, n.label)
    n.accuracy = caffe.layers.Accuracy(n.score, n.label)
    return n.to_proto()


def write_solver(caffe, tmp_path, lmdb_path, max_iter=40):
    net_file = tmp_path / "net.prototxt"
    net_file.write_text(str(tiny_net(caffe, lmdb_path, batch=8)))
    caffe_pb2 = caffe.proto.caffe_pb2
    solver = caffe_pb2.SolverParameter(net=str(net_file), base_lr=0.01, lr_policy="fixed", momentum=0.9,
                                       max_iter=max_iter, display=2, snapshot_prefix=str(tmp_path / "tiny"),
                                       solver_mode=caffe_pb2.SolverParameter.CPU)
    solver_file = tmp_path / "solver.prototxt"
    solver_file.write_text(text_format.MessageToString(solver))
    return net_file, solver_file


def test_convert_imageset_writes_the_records(caffe, bright_dark_lmdb):
    import lmdb

    with lmdb.open(str(bright_dark_lmdb), readonly=True, lock=False) as env:
        assert env.stat()["entries"] == 40
        with env.begin() as txn:
            key, value = next(iter(txn.cursor()))
    datum = caffe.proto.caffe_pb2.Datum.FromString(value)
    assert (datum.channels, datum.height, datum.width) == (3, 16, 16)
    assert re.fullmatch(rb"\d{8}_img\d\d\.jpg", key)


def test_caffe_train_lowers_the_loss_and_caffe_test_reports_accuracy(caffe, tmp_path, bright_dark_lmdb):
    net_file, solver_file = write_solver(caffe, tmp_path, bright_dark_lmdb)
    log = run_tool("caffe", ["train", f"-solver={solver_file}"]).stdout
    losses = [float(v) for v in re.findall(r"Iteration \d+.*?, loss = ([\d.e+-]+)", log)]
    assert len(losses) >= 5, log[-2000:]
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
    weights = tmp_path / "tiny_iter_40.caffemodel"
    assert weights.is_file()

    test_log = run_tool("caffe", ["test", f"-model={net_file}", f"-weights={weights}", "-iterations=5"]).stdout
    accuracy = float(re.search(r"\] accuracy = ([\d.]+)", test_log).group(1))
    assert accuracy > 0.9, test_log[-1500:]


def test_pycaffe_sgd_solver_lowers_the_loss(caffe, tmp_path, bright_dark_lmdb):
    _, solver_file = write_solver(caffe, tmp_path, bright_dark_lmdb)
    solver = caffe.SGDSolver(str(solver_file))
    losses = []
    for _ in range(30):
        solver.step(1)
        losses.append(float(solver.net.blobs["loss"].data))
    assert np.mean(losses[-5:]) < 0.5 * np.mean(losses[:5]), losses
    assert solver.iter == 30


def run_doctor(env_overrides):
    env = dict(os.environ, **env_overrides)
    return subprocess.run([sys.executable, "-m", "ilgnet.cli", "doctor"], capture_output=True, text=True, env=env)


def test_doctor_reports_the_caffe_in_use(caffe):
    result = run_doctor({})
    assert result.returncode == 0, result.stderr
    assert re.search(r"caffe version\s*: 1\.0\.0", result.stdout)
    assert str(tool_path("caffe").resolve()) in result.stdout
    assert "BLAS          : OpenBLAS" in result.stdout
    assert "status        : OK" in result.stdout


def test_doctor_fails_with_advice_when_caffe_is_not_found(tmp_path):
    result = run_doctor({"ILGNET_CAFFE_ROOT": str(tmp_path / "no-caffe-here")})
    assert result.returncode == 1
    assert "NOT FOUND" in result.stderr and "make setup" in result.stderr


def test_doctor_fails_when_the_caffe_binary_is_broken(caffe, tmp_path):
    """A caffe binary cut short (as an interrupted copy leaves it) must be reported, not trusted."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    truncated = bin_dir / "caffe"
    truncated.write_bytes(tool_path("caffe").resolve().read_bytes()[:4096])
    truncated.chmod(0o755)
    result = run_doctor({"ILGNET_CAFFE_ROOT": str(tmp_path)})
    assert result.returncode == 1
    assert "BROKEN" in result.stderr and str(truncated) in result.stderr


FATAL = "F0102 10:00:00.000000  4242 net.cpp:757] Check failed: target_blobs.size() == source_layer.blobs_size()"


@pytest.mark.parametrize("script, message", [
    # Caffe aborting on a failed check: the F line, not the stack trace glog prints after it.
    (f"echo 'I0102 10:00:00.000000  4242 caffe.cpp:1] Starting'; echo '{FATAL}'; echo '*** Check failure stack "
     f"trace: ***'; echo '    @  0x7f google::LogMessage::Fail()'; kill -ABRT $$",
     "bash -c was killed by SIGABRT; last message: Check failed: target_blobs.size() == source_layer.blobs_size()"),
    # The kernel's out-of-memory killer: no error line of its own, so the last line it printed.
    ("echo 'I0102 10:00:00.000000  4242 solver.cpp:1] Iteration 0, Testing net (#0)'; kill -KILL $$",
     "bash -c was killed by SIGKILL (probably out of memory); last message: Iteration 0, Testing net (#0)"),
    ("echo 'docker: permission denied'; echo; exit 3",
     "bash -c exited with 3; last message: docker: permission denied"),
])
def test_a_failed_tool_is_one_line_naming_its_log(caffe, tmp_path, script, message):
    """Not the last 15 raw lines of the log: how it ended, its last error line and where the whole log is (run_logged
    runs tools in the Caffe build's environment, so this needs the build)."""
    from ilgnet.bvlc.tools import run_logged
    from ilgnet.errors import ToolFailed

    log = tmp_path / "train.log"
    for keep in (True, False):
        with pytest.raises(ToolFailed) as failed:
            run_logged(["bash", "-c", script], log_path=log, keep=keep)
        assert str(failed.value) == f"{message}; full output in {log}"
    with pytest.raises(ToolFailed, match=f"^{re.escape(message)}$"):
        run_logged(["bash", "-c", script])
