"""Caffe logs read back: a real `caffe train` log (tiny net) as CSV and curves, and the authors' caffe test logs."""
from __future__ import annotations

import re

import pandas as pd
import pytest
from caffe_data import write_dataset

from ilgnet.bvlc.logs import parse_test_log, parse_train_log
from ilgnet.bvlc.tools import run_tool
from ilgnet.evaluation.reports import replay_report
from ilgnet.training.curves import write_train_summary

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
    assert list(frame.columns) == ["iteration", "seconds", "loss", "lr", "test_accuracy", "test_loss", "health"]
    assert (frame["health"] == "").all() and frame.attrs["diverged_at"] is frame.attrs["saturated_at"] is None
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
    assert csv.read_text().splitlines()[0] == "iteration,seconds,loss,lr,test_accuracy,test_loss,health"
    assert len(csv.read_text().splitlines()) == len(frame) + 1
    seconds = [row.split(",")[1] for row in csv.read_text().splitlines()[1:]]
    assert all(len(value.partition(".")[2]) <= 6 for value in seconds), seconds     # glog's microseconds, no more
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


def glog(stamp: str, message: str) -> str:
    """One glog line as Caffe's solver writes it, at `stamp` (MMDD or YYYYMMDD, then the time)."""
    return f"I{stamp}  1001 solver.cpp:218] {message}\n"


def training_lines(stamps: list[str]) -> str:
    return "".join(glog(stamp, f"Iteration {10 * i} (0.1 iter/s, 100s/10 iters), loss = 0.5")
                   for i, stamp in enumerate(stamps))


def test_case_05_seconds_rise_through_new_year(bugcase, capsys):
    """A glog without years in its stamps, across midnight of 31 December: 31 s, 631 s, 1221 s, 1821 s after the
    first line (23:40:00), not minus a year after midnight."""
    from ilgnet.cli import main

    log = bugcase("05-log-new-year") / "train.log"
    frame = parse_train_log(log)
    assert frame["iteration"].tolist() == [0, 50, 100, 150]
    assert frame["seconds"].round(1).tolist() == [31.0, 631.0, 1221.0, 1821.0]
    assert frame["test_accuracy"].tolist()[::2] == [0.51, 0.68]
    assert main(["log", str(log)]) == 0
    assert capsys.readouterr().out == f"{log.with_name('train_log.csv')}: 4 rows, iterations 0 to 150; " \
                                      f"{log.with_name('curves.png')}\n"
    assert log.with_name("train_log.csv").read_text().splitlines()[2] == "50,631.0001,0.65,1e-05,,,"


@pytest.mark.parametrize("stamps, seconds", [
    # Without glog's header line: the year is one in which the dates exist.
    (["1231 23:59:50.000000", "0101 00:00:10.000000", "0101 00:10:10.000000"], [0, 20, 620]),
    # A line from another thread stamped a moment earlier, around midnight: no year gained or lost for it.
    (["1231 23:59:59.990000", "0101 00:00:00.010000", "1231 23:59:59.995000", "0101 00:00:01.000000"],
     [0, 0.02, 0.005, 1.01]),
    # 29 February: a leap year is taken, and the run goes on into March.
    (["0228 23:00:00.000000", "0229 23:00:00.000000", "0301 01:00:00.000000"], [0, 86400, 93600]),
    # Two New Years, with gaps of months (a run resumed later into the same log).
    (["1231 23:00:00.000000", "0601 00:00:00.000000", "1231 23:00:00.000000", "0101 01:00:00.000000"],
     [0, 151 * 86400 + 3600, 365 * 86400, 365 * 86400 + 7200]),
    # glog 0.6+ writes the year: nothing to guess.
    (["20251231 23:59:00.000000", "20260101 00:01:00.000000"], [0, 120]),
])
def test_year_less_stamps_roll_over_as_the_clock_did(tmp_path, stamps, seconds):
    log = tmp_path / "train.log"
    log.write_text(training_lines(stamps))
    frame = parse_train_log(log)
    assert frame["seconds"].round(3).tolist() == seconds


def test_a_log_without_training_iterations_is_an_error(tmp_path, capsys):
    from ilgnet.cli import main

    log = tmp_path / "test.log"
    log.write_text(glog("0101 10:00:00.000000", "Iteration 0, Testing net (#0)") +
                   glog("0101 10:00:05.000000", "    Test net output #0: accuracy = 0.5"))
    assert main(["log", str(log)]) == 1
    assert f"error: {log}: no training iteration logged" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["test.log"]


def test_outputs_go_where_asked(tmp_path, capsys):
    from ilgnet.cli import main

    log = tmp_path / "train.log"
    log.write_text(training_lines(["0101 10:00:00.000000", "0101 10:01:40.000000"]))
    csv, png = tmp_path / "out" / "t.csv", tmp_path / "plots" / "c.png"
    assert main(["log", str(log), "--csv", str(csv), "--png", str(png)]) == 0
    assert csv.read_text().splitlines() == ["iteration,seconds,loss,lr,test_accuracy,test_loss,health",
                                            "0,0.0,0.5,,,,", "10,100.0,0.5,,,,"]
    assert png.read_bytes()[:4] == b"\x89PNG" and not (tmp_path / "train_log.csv").exists()


@pytest.mark.parametrize("solver_lines, smooth, labels", [
    ("", None, ["train loss", "test loss"]),
    ("average_loss: 20\n", None, ["train loss (Caffe's mean of the last 20 iterations)", "test loss"]),
    ("average_loss: 1\n", 3, ["train loss", "train loss, rolling mean of 3 displayed values", "test loss"]),
])
def test_curve_labels_say_smoothed_only_where_it_is(tmp_path, monkeypatch, solver_lines, smooth, labels):
    """The solver parameters `caffe train` prints hold average_loss when it is set; Caffe then displays the mean
    of that many iterations' losses. Without it (the toolkit's profiles), nothing is smoothed."""
    import matplotlib.figure

    from ilgnet.training.curves import plot_curves

    log = tmp_path / "train.log"
    log.write_text(glog("0101 10:00:00.000000", "Initializing solver from parameters: ") + "test_iter: 2\n" +
                   solver_lines + "base_lr: 0.01\n" +
                   training_lines([f"0101 10:0{i}:00.000000" for i in range(4)]) +
                   glog("0101 10:05:00.000000", "Iteration 30, Testing net (#0)") +
                   glog("0101 10:05:01.000000", "    Test net output #0: loss = 0.7 (* 1 = 0.7 loss)"))
    shown = {}
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig",
                        lambda fig, *args, **kwargs: shown.update(labels=fig.axes[0].get_legend_handles_labels()[1]))
    plot_curves(parse_train_log(log), tmp_path / "curves.png", smooth=smooth)
    assert shown["labels"] == labels


def displays(losses: list[float], *, batch: int | None = 4, start: int = 0) -> str:
    """A `caffe train` log: the TRAIN net Caffe prints (its Data layer's batch_size), then one display per loss:
    the loss line, the loss output with its weight, an accuracy output and the learning rate."""
    net = "" if batch is None else (glog("0101 10:00:00.000000", "Creating training net from net file: t.prototxt") +
                                    glog("0101 10:00:00.000001", "Initializing net from parameters: ") +
                                    f"layer {{\n  type: \"Data\"\n  data_param {{\n    batch_size: {batch}\n  }}\n}}\n")
    return net + "".join(glog(f"0101 10:01:{i:02d}.000000", line) for i, loss in enumerate(losses, start) for line in (
        f"Iteration {i} (1 iter/s, 1s/1 iters), loss = {loss:g}",
        f"    Train net output #0: loss1/loss = {loss:g} (* 1 = {loss:g} loss)",
        "    Train net output #1: loss1/top-1 = 0.5", f"Iteration {i}, lr = 0.5"))


@pytest.mark.parametrize("loss, batch, images", [
    (87.3365, 1, 1), (43.6683, 4, 2), (65.5024, 4, 3), (87.3365, 4, 4), (1.81951, 48, 1), (0.693147, 4, 0),
    (43.7, 4, 0), (1.83, 48, 0), (87.3365 * 5 / 48, 48, 5), (float("nan"), 4, 0), (0.0, 4, 0),
])
def test_saturated_images_are_read_from_the_mean_loss(loss, batch, images):
    """SoftmaxWithLoss adds at most -log(FLT_MIN) = 87.3365 per image and divides by the batch: k images at the
    clamp (the rest at 0) make k x 87.3365 / batch, which Caffe prints to 6 digits."""
    from ilgnet.bvlc.logs import SATURATED_LOSS, saturated_images

    assert round(SATURATED_LOSS, 4) == 87.3365
    assert saturated_images(loss, batch) == images


@pytest.mark.parametrize("losses, saturated", [
    ([1.09, 43.6683, 43.6683, 65.5024, 43.6683], (1, 3, 3, 4)),     # a real run at base_lr 0.5: 3 displays in a row
    ([1.09, 43.6683, 43.6683, 0.7, 43.6683, 87.3365], None),       # broken by a display off the clamp
    ([87.3365, 87.3365], None),                                     # only two
    ([0.7, 21.8341, 21.8341, 21.8341], (1, 3, 1, 4)),               # one image of four at the clamp, three times
])
def test_a_loss_at_the_clamp_for_three_displays_in_a_row_is_saturation(tmp_path, losses, saturated, capsys):
    from ilgnet.bvlc.logs import Health
    from ilgnet.cli import main

    text = displays(losses)
    health = Health()
    for line in text.splitlines(keepends=True):
        health.feed(line)
    assert health.train_batch == 4 and health.saturated == saturated and health.diverged is None
    log = tmp_path / "train.log"
    log.write_text(text)
    assert main(["log", str(log)]) == 0
    frame = pd.read_csv(tmp_path / "train_log.csv", keep_default_na=False)
    clamped = [i for i, loss in enumerate(losses) if loss > 20]
    assert frame.loc[frame["health"] == "saturated", "iteration"].tolist() == clamped
    err = capsys.readouterr().err
    if saturated:
        first, last = saturated[:2]
        assert err == (f"ilgnet log: this run SATURATED: the training loss sat at SoftmaxWithLoss's clamp, "
                       f"-log(FLT_MIN) = 87.3365 per image, from iteration {first} to {last} (3 displays in a row; "
                       f"at the last, {saturated[2]} of the batch's 4 images there and the others at 0) (health "
                       f"column: saturated)\n")
    else:
        assert err == ""


def test_without_the_printed_net_no_batch_and_no_saturation_is_claimed():
    from ilgnet.bvlc.logs import Health

    health = Health()
    for line in displays([87.3365] * 5, batch=None).splitlines(keepends=True):
        health.feed(line)
    assert health.train_batch is None and health.saturated is None


@pytest.mark.parametrize("lines, diverged", [
    ([("Iteration 5 (1 iter/s, 1s/1 iters), loss = -nan", "")], (5, "the training loss became nan")),
    ([("Iteration 4 (1 iter/s, 1s/1 iters), loss = 0.7", ""), ("    Train net output #0: loss1/loss = inf "
                                                               "(* 1 = inf loss)", "")],
     (4, "the training output loss1/loss became inf")),
    # Caffe's Accuracy layer reads 1 on NaN scores: the loss output shows it.
    ([("Iteration 6, Testing net (#0)", ""), ("    Test net output #0: loss1/loss = -nan (* 1 = -nan loss)", ""),
      ("    Test net output #1: loss1/top-1 = 1", "")], (6, "the test output loss1/loss became nan")),
    ([("Iteration 8, Testing net (#0)", ""), ("Test loss: nan", "")], (8, "the test loss became nan")),
])
def test_what_is_not_finite_is_named_with_its_iteration(tmp_path, lines, diverged, capsys):
    from ilgnet.cli import main

    log = tmp_path / "train.log"
    log.write_text(displays([0.7, 0.69]) + "".join(glog(f"0101 10:02:{i:02d}.000000", message)
                                                   for i, (message, _) in enumerate(lines)))
    frame = parse_train_log(log)
    assert (frame.attrs["diverged_at"], frame.attrs["diverged"]) == diverged
    assert frame.set_index("iteration").loc[diverged[0], "health"] == "diverged"
    assert main(["log", str(log)]) == 0
    assert capsys.readouterr().err == (f"ilgnet log: this run DIVERGED: {diverged[1]} at iteration {diverged[0]} "
                                       f"(health column: diverged)\n")
