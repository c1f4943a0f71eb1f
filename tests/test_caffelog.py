"""Caffe logs read back: a real `caffe train` log (tiny net) as CSV and curves, and the authors' caffe test logs."""
from __future__ import annotations

import re

import pytest
from caffe_data import write_dataset

from ilgnet.caffe_tools import run_tool
from ilgnet.caffelog import parse_test_log, parse_train_log
from ilgnet.curves import write_train_summary
from ilgnet.reports import replay_report

MAX_ITER, TEST_INTERVAL, BASE_LR = 6, 3, 0.01


def tiny_train_val(caffe, data):
    """Data layers on the test LMDBs (crop 16 of 24x24, mean subtracted), one InnerProduct, loss and accuracy."""
    n = caffe.NetSpec()
    layers = []
    for phase, source, batch in [(caffe.TRAIN, "train_lmdb", 2), (caffe.TEST, "val_lmdb", 2)]:
        n.data, n.label = caffe.layers.Data(
            ntop=2, include=dict(phase=phase), data_param=dict(source=str(data / source), batch_size=batch,
                                                               backend=caffe.params.Data.LMDB),
            transform_param=dict(crop_size=16, mean_file=str(data / "mean.binaryproto"), scale=1 / 256))
        if phase == caffe.TRAIN:
            layers += list(n.to_proto().layer)
    n.fc = caffe.layers.InnerProduct(n.data, num_output=2, weight_filler=dict(type="xavier"))
    n.loss = caffe.layers.SoftmaxWithLoss(n.fc, n.label)
    n.accuracy = caffe.layers.Accuracy(n.fc, n.label)
    net = caffe.proto.caffe_pb2.NetParameter(name="tiny")
    net.layer.extend(layers + list(n.to_proto().layer))
    return net


@pytest.fixture(scope="module")
def train_log(caffe, tmp_path_factory):
    """The log of a real 6-iteration `caffe train` run, then 3 more iterations resumed into the same log."""
    root = tmp_path_factory.mktemp("caffelog")
    data = write_dataset(root / "data", train_labels=[0, 1, 0, 1], val_labels=[1, 0, 1, 1], size=24)
    (root / "train_val.prototxt").write_text(str(tiny_train_val(caffe, data)))
    solver = caffe.proto.caffe_pb2.SolverParameter(
        net=str(root / "train_val.prototxt"), test_iter=[2], test_interval=TEST_INTERVAL, base_lr=BASE_LR,
        lr_policy="fixed", max_iter=MAX_ITER, display=1, snapshot_prefix=str(root / "tiny"),
        solver_mode=caffe.proto.caffe_pb2.SolverParameter.CPU)
    (root / "solver.prototxt").write_text(str(solver))
    log = root / "train.log"
    run_tool("caffe", ["train", "-solver", root / "solver.prototxt"], log_path=log)
    solver.max_iter = MAX_ITER + 3
    (root / "solver.prototxt").write_text(str(solver))
    run_tool("caffe", ["train", "-solver", root / "solver.prototxt", "-snapshot",
                       root / f"tiny_iter_{MAX_ITER}.solverstate"], log_path=log)
    return log


def test_train_log_rows_match_the_log_text(train_log):
    frame = parse_train_log(train_log, accuracy_blob="accuracy")
    text = "\n".join(line for line in train_log.read_text().splitlines() if "solver.cpp:" in line)
    logged_losses = {int(i): float(v) for i, v in re.findall(r"\] Iteration (\d+) \(.*\), loss = (\S+)", text)}
    tests = re.findall(r"Iteration (\d+), Testing net \(#0\)\n.*Test net output #0: accuracy = (\S+)\n"
                       r".*Test net output #1: loss = (\S+)", text)
    assert list(frame.columns) == ["iteration", "seconds", "loss", "lr", "test_accuracy", "test_loss"]
    # Every iteration of both runs, once: the resumed run continues the count.
    assert frame["iteration"].tolist() == list(range(MAX_ITER + 4))
    assert frame["seconds"].is_monotonic_increasing and frame["seconds"].iloc[0] > 0   # from the log's first line
    for i, loss in logged_losses.items():
        assert frame.set_index("iteration").loc[i, "loss"] == pytest.approx(loss)
    assert set(frame["lr"].dropna()) == {BASE_LR}
    tested = frame.dropna(subset=["test_accuracy"]).set_index("iteration")
    # A resumed run tests its first iteration again; the dict, like the parser, keeps the later values.
    expected = {int(i): (float(accuracy), float(loss)) for i, accuracy, loss in tests}
    assert sorted(tested.index) == sorted(expected) == [0, TEST_INTERVAL, MAX_ITER, MAX_ITER + TEST_INTERVAL]
    for i, (accuracy, loss) in expected.items():
        assert tested.loc[i, "test_accuracy"] == pytest.approx(accuracy)
        assert tested.loc[i, "test_loss"] == pytest.approx(loss)


def test_old_glog_dates_parse_the_same(train_log, tmp_path):
    """The authors' logs come from a glog that writes no year (I0105 11:14:20...); Debian 12's writes one."""
    old = tmp_path / "old.log"
    old.write_text(re.sub(r"^([IWEF])\d{4}(\d{4} )", r"\1\2", train_log.read_text(), flags=re.M))
    assert "I2" not in old.read_text()[:2000]
    new_frame = parse_train_log(train_log, accuracy_blob="accuracy")
    old_frame = parse_train_log(old, accuracy_blob="accuracy")
    assert old_frame.equals(new_frame)


def test_summary_writes_csv_and_png(train_log, tmp_path):
    csv, png = tmp_path / "log.csv", tmp_path / "curves.png"
    frame = write_train_summary(train_log, accuracy_blob="accuracy", csv=csv, png=png)
    assert csv.read_text().splitlines()[0] == "iteration,seconds,loss,lr,test_accuracy,test_loss"
    assert len(csv.read_text().splitlines()) == len(frame) + 1
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


@pytest.mark.parametrize("name, accuracy, batch, images, val_images",
                         [("AVA1", 0.8168, 50, 2_500, "20,000"), ("AVA2", 0.855, 48, 2_400, "25,553")])
def test_published_caffe_test_logs(shared_data, name, accuracy, batch, images, val_images):
    log = shared_data / "ilgnet-published" / "results" / f"{name}_result.txt"
    score = parse_test_log(log)
    assert (score.output, score.score, score.batch_size, score.iterations, score.images) == \
        ("loss1/top-1", accuracy, batch, 50, images)
    assert len(score.batch_scores) == 50
    assert sum(score.batch_scores) / 50 == pytest.approx(accuracy, abs=1e-6)   # equal batches: mean of batch means
    report = replay_report(log)
    assert f"= {images:,} images" in report and f"{100 * accuracy:.2f} %" in report
    assert f"val list holds {val_images} images" in report


def test_a_training_log_is_not_a_test_log(train_log):
    with pytest.raises(ValueError, match="not a `caffe test` log"):
        parse_test_log(train_log)
