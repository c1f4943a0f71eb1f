"""`ilgnet test --engine caffe`: the real `caffe test` binary reads every val record exactly once (a second run for
the remainder when the count has no good divisor) and agrees with the pycaffe engine record by record, on the
small variant's calibrated stand-in model."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from caffe_data import random_images, write_lmdb
from conftest import SMALL

from ilgnet.cli import main
from ilgnet.evaluation import caffe_engine as caffe_test
from ilgnet.evaluation import in_process
from ilgnet.evaluation.results import prefix_protocol
from ilgnet.zoo.models import Model

pytest_plugins = ["caffe_data"]

LABELS = [1, 0, 1, 1, 0, 0, 1, 0, 1, 1, 0]        # 11 records: a prime count


@pytest.fixture(scope="module")
def eleven(caffe, small_dataset, tmp_path_factory):
    """11 PNG-encoded 240x240 val records (the first 5 those of small_dataset) with small_dataset's mean."""
    root = tmp_path_factory.mktemp("eleven") / "data"
    root.mkdir()
    write_lmdb(root / "val_lmdb", random_images(len(LABELS), 240, seed=2), LABELS, encoded=True)
    shutil.copy(small_dataset / "mean.binaryproto", root / "mean.binaryproto")
    (root / "split.json").write_text('{"partition": "ava2"}\n')
    return root


def test_coverage_reads_every_record_once():
    assert caffe_test.coverage(25_553, 50) == caffe_test.Coverage(23, 1111, 0)
    assert caffe_test.coverage(20_000, 50) == caffe_test.Coverage(50, 400, 0)
    assert caffe_test.coverage(11, 8) == caffe_test.Coverage(8, 1, 3)       # 8 records, then a run for 3
    assert caffe_test.coverage(10_007, 50) == caffe_test.Coverage(50, 200, 7)


@pytest.mark.parametrize("max_batch", [8, 11])
def test_caffe_test_agrees_with_pycaffe_record_by_record(eleven, small_caffemodel, max_batch):
    mean = eleven / "mean.binaryproto"
    ours = in_process.score_lmdb(Model(small_caffemodel, SMALL, mean), eleven / "val_lmdb", max_batch, progress=False)
    caffes = caffe_test.score_lmdb(SMALL, small_caffemodel, eleven / "val_lmdb", mean, max_batch)
    assert caffes.attrs["batch"] == max_batch
    assert caffes["key"].tolist() == ours["key"].tolist() and caffes["label"].tolist() == LABELS
    np.testing.assert_allclose(caffes[["p_0", "p_1"]].to_numpy(), ours[["p_0", "p_1"]].to_numpy(), atol=1e-5)
    assert caffes["predicted"].tolist() == ours["predicted"].tolist()


def test_the_cli_prints_the_same_table_from_either_engine(eleven, small_caffemodel, tmp_path, capsys):
    results = {}
    for engine in ("pycaffe", "caffe"):
        out = tmp_path / f"{engine}.json"
        assert main(["test", "--weights", str(small_caffemodel), "--variant", SMALL, "--data", str(eleven),
                     "--batch", "8", "--engine", engine, "--json", str(out)]) == 0
        results[engine] = json.loads(out.read_text())
        assert "| images scored | 11 (every val record once) |" in capsys.readouterr().out
    assert results["caffe"]["engine"] == "caffe" and results["caffe"]["forward_passes"] == 2
    for key in ("images", "correct", "accuracy", "confusion_matrix", "class_counts"):
        assert results["caffe"][key] == results["pycaffe"][key], key


def test_the_paper_protocol_is_caffe_tests_first_records(eleven, small_caffemodel, tmp_path, capsys):
    mean = eleven / "mean.binaryproto"
    measured = caffe_test.paper_protocol(SMALL, small_caffemodel, eleven / "val_lmdb", mean, batch=2,
                                         iterations=3)
    first_six = in_process.score_lmdb(Model(small_caffemodel, SMALL, mean), eleven / "val_lmdb", 6,
                                      progress=False).iloc[:6]
    assert (measured["images"], measured["records"]) == (6, 11)
    assert measured["accuracy"] == pytest.approx((first_six["predicted"] == first_six["label"]).mean())
    plain = tmp_path / "no-split"                                   # a data folder without split.json
    plain.mkdir()
    for name in ("val_lmdb", "mean.binaryproto"):
        (plain / name).symlink_to(eleven / name)
    with pytest.raises(SystemExit) as exit_:
        main(["test", "--weights", str(small_caffemodel), "--variant", SMALL, "--data", str(plain),
              "--paper-protocol"])
    assert exit_.value.code == 2
    assert f"--paper-protocol: {plain / 'split.json'} names no paper protocol" in capsys.readouterr().err


def on_a_terminal(args: list[str]) -> tuple[str, str]:
    """(stdout, what a terminal of 160 columns shows on stderr) of `python ARGS`: progress bars show on terminals
    only, as tqdm decides."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 160, 0, 0))
    proc = subprocess.Popen([sys.executable, *args], stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    shown = b""
    while True:
        try:
            chunk = os.read(master, 1 << 16)
        except OSError:                                         # the process closed its end
            break
        if not chunk:
            break
        shown += chunk
    out = proc.stdout.read().decode()
    assert proc.wait() == 0, shown.decode(errors="replace")[-3000:]
    return out, shown.decode(errors="replace")


def test_caffe_test_shows_what_it_loads_and_its_batches_as_they_come(eleven, ilgnet_caffemodel):
    """Minutes of `caffe test` on a CPU are not silent: the weights being checked and loaded (604 MB), then a bar
    over the batches Caffe logs, per run (8 records, then the remainder of 3), and the paper protocol's own."""
    size = f"({ilgnet_caffemodel.stat().st_size / 1e6:,.0f} MB)"
    ilgnet = ["-m", "ilgnet.cli", "test", "--weights", str(ilgnet_caffemodel), "--data", str(eleven), "--batch", "8"]
    out, shown = on_a_terminal([*ilgnet, "--engine", "caffe"])
    assert "| images scored | 11 (every val record once) |" in out
    assert f"checking {ilgnet_caffemodel.name} {size} ..." in shown
    assert "caffe test, 1 x 8:   0%|" in shown and f"loading {ilgnet_caffemodel.name} {size}" in shown
    assert "caffe test, 1 x 8: 100%|" in shown and "caffe test, 1 x 3: 100%|" in shown
    # The paper protocol (50 x 48 there; 4 x 2 here, for time): its bar moves batch by batch.
    paths = [str(ilgnet_caffemodel), str(eleven / "val_lmdb"), str(eleven / "mean.binaryproto")]
    out, shown = on_a_terminal(["-c", "from pathlib import Path; from ilgnet.evaluation.caffe_engine import "
                                      f"paper_protocol; print(paper_protocol('ilgnet', *map(Path, {paths}), batch=2, "
                                      "iterations=4)['images'])"])
    assert out == "8\n" and all(f"paper protocol, 4 x 2: {n * 25:3d}%|" in shown for n in range(5))
    out, shown = on_a_terminal(ilgnet)
    assert f"loading {ilgnet_caffemodel.name} {size} ..." in shown and "ilgnet test: 100%|" in shown


def test_the_paper_protocol_read_off_per_record_results_equals_caffe_test_past_the_end(eleven, ilgnet_caffemodel):
    """What a campaign reports as the paper's protocol (ilgnet.evaluation.results.prefix_protocol) without running
    `caffe test` again: 4 x 4 = 16 records of 11, wrapping around past the end as Caffe's Data layer does."""
    mean = eleven / "mean.binaryproto"
    measured = caffe_test.paper_protocol("ilgnet", ilgnet_caffemodel, eleven / "val_lmdb", mean, batch=4,
                                         iterations=4)
    frame = in_process.score_lmdb(Model(ilgnet_caffemodel, "ilgnet", mean), eleven / "val_lmdb", 8, progress=False)
    read_off = prefix_protocol(frame, batch=4, iterations=4)
    assert read_off["images"] == measured["images"] == 16 and read_off["distinct_records"] == 11
    assert read_off["accuracy"] == pytest.approx(measured["accuracy"], abs=1e-4)
