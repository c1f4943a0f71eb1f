"""Solver profiles: Table 1 and the published values, test_iter coverage, and every committed solver file
driving real Caffe SGD on the ilgnet train_val."""
import warnings

import numpy as np
import pytest
from caffe_data import write_dataset
from conftest import SMALL
from google.protobuf import text_format

from ilgnet import nets
from ilgnet.bvlc.proto import SolverParameter
from ilgnet.nets import solvers

# (base_lr, stepsize, max_iter) from the paper's Table 1 and from the published ILGnet solver files.
EXPECTED = {
    "ava1-delta0": (1e-4, 100_000, 475_000),
    "ava1-delta1": (1e-5, 19_000, 760_000),
    "ava2": (1e-5, 13_325, 533_000),
    "published-ava1": (1e-4, 115_000, 475_000),
    "published-ava2": (1e-5, 13_325, 533_000),
}


def build(profile, **kwargs):
    return solvers.solver(profile, net="train_val.prototxt", snapshot_prefix="runs/x/snapshots/ilgnet", **kwargs)


@pytest.mark.parametrize("profile", list(EXPECTED))
def test_profile_values(profile):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = build(profile, val_batch=50)
    assert (s.base_lr, s.stepsize, s.max_iter) == pytest.approx(EXPECTED[profile])
    expected = ("step", pytest.approx(0.96), pytest.approx(0.9), pytest.approx(2e-4), "SGD")
    assert (s.lr_policy, s.gamma, s.momentum, s.weight_decay, s.type) == expected
    assert s.solver_mode == SolverParameter.GPU and s.net == "train_val.prototxt"


def test_published_profiles_keep_their_test_and_snapshot_settings():
    a1, a2 = build("published-ava1", val_batch=50, val_size=20_000), build("published-ava2")
    assert (a1.test_iter[0], a1.test_interval, a1.snapshot, a1.display) == (400, 4750, 4750, 20)
    assert (a2.test_iter[0], a2.test_interval, a2.snapshot, a2.display) == (533, 533, 5330, 20)


def test_published_profile_warns_what_it_covers():
    with pytest.warns(UserWarning, match=r"published-ava2: test_iter 533 x val batch 48 = 25,584 images .* "
                                         r"all 25,553 val images, 31 of them twice"):
        build("published-ava2", val_batch=48)
    with pytest.warns(UserWarning, match=r"2,400 images per test pass: 12.0% of the 20,000"):
        build("published-ava1", val_batch=6)


def test_table1_profiles_derive_test_iter_to_read_the_val_set_once():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert build("ava2", val_size=25_553, val_batch=23).test_iter == [1111]
        assert build("ava1-delta0", val_size=20_000, val_batch=50).test_iter == [400]
        assert build("ava1-delta1", val_size=17, val_batch=17, mode="CPU").solver_mode == SolverParameter.CPU
    s = build("ava2", val_size=25_553, val_batch=23)
    assert (s.test_interval, s.snapshot) == (5330, 5330)


@pytest.mark.parametrize("profile, max_iter, periods", [
    ("ava2", None, (5330, 5330)),
    ("ava2", 2_000, (20, 20)),                  # tests and snapshots before the end, as often as the full run
    ("ava1-delta0", 2_000, (20, 20)),
    ("published-ava2", 2_000, (2, 20)),         # its test interval is a thousandth of the run
    ("ava2", 60, (1, 0)),                       # 0: only the snapshot at the end
    ("ava2", 1_066_000, (10_660, 10_660)),
])
def test_test_and_snapshot_periods_follow_the_run_length(profile, max_iter, periods):
    assert solvers.periods(profile, max_iter) == periods
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        s = build(profile, val_size=25_553, val_batch=23, max_iter=max_iter)
    assert (s.test_interval, s.snapshot, s.max_iter) == (*periods, max_iter or EXPECTED[profile][2])


def test_a_batch_that_does_not_divide_the_val_set_warns():
    with pytest.warns(UserWarning, match="test_iter 512 x val batch 50 = 25,600 .* 47 of them twice"):
        assert build("ava2", val_size=25_553, val_batch=50).test_iter == [512]


def test_val_batch_for_divides_the_val_set():
    assert solvers.val_batch_for(25_553, 50) == 23  # 25,553 = 11 x 23 x 101
    assert solvers.val_batch_for(20_000, 50) == 50
    assert solvers.val_batch_for(20_000, 48) == 40
    assert solvers.val_batch_for(7, 50) == 7
    assert solvers.val_batch_for(10_007, 50) == 50  # prime: a batch of 1 would crawl


def test_bad_requests_are_clear_errors():
    with pytest.raises(ValueError, match="ava2 derives test_iter from the val set: give val_batch"):
        build("ava2")
    with pytest.raises(ValueError, match="unknown solver profile 'ava3'"):
        build("ava3", val_batch=50)
    with pytest.raises(ValueError, match="GPU or CPU"):
        build("ava2", val_batch=23, mode="TPU")
    with pytest.raises(ValueError, match="max_iter must be positive, got 0"):
        build("ava2", val_batch=23, max_iter=0)


@pytest.fixture(scope="module")
def small_train_val(caffe, tmp_path_factory):
    """The SMALL variant's train_val on a tiny LMDB: the solver files drive any net; this one steps fast."""
    root = tmp_path_factory.mktemp("solver")
    data = write_dataset(root / "data", train_labels=[0, 1, 1, 0], val_labels=[1, 0], size=256)
    path = root / "train_val.prototxt"
    path.write_text(str(nets.train_val(SMALL, train_lmdb=data / "train_lmdb", val_lmdb=data / "val_lmdb",
                                       mean_file=data / "mean.binaryproto", train_batch=2, val_batch=2)))
    return path


@pytest.mark.parametrize("profile", list(solvers.PROFILES))
def test_committed_solver_file_drives_caffe_sgd(caffe, profile, repo, small_train_val, tmp_path):
    """The committed file, with its net pointed at the small variant's train_val on a tiny LMDB, CPU mode and no test
    pass before the first step (hundreds of test iterations), loads in caffe.SGDSolver and takes a step that
    moves the weights."""
    caffe_pb2 = caffe.proto.caffe_pb2
    s = text_format.Parse((repo / "solvers" / f"{profile}.prototxt").read_text(), caffe_pb2.SolverParameter())
    assert s.net == "prototxt/ilgnet/train_val.prototxt" and s.snapshot_prefix.startswith("runs/")
    s.net, s.solver_mode, s.snapshot_prefix = str(small_train_val), caffe_pb2.SolverParameter.CPU, str(tmp_path / "s")
    s.test_initialization = False
    path = tmp_path / "solver.prototxt"
    path.write_text(str(s))
    solver = caffe.SGDSolver(str(path))
    assert len(solver.test_nets) == 1 and solver.test_nets[0].blobs["data"].data.shape == (2, 3, 227, 227)
    classifier = "loss1/classifier_ava"                         # the SMALL variant's final classifier
    before = solver.net.params[classifier][0].data.copy()
    solver.step(1)
    assert solver.iter == 1
    assert np.isfinite(solver.net.blobs["loss1/loss"].data) and not np.array_equal(
        before, solver.net.params[classifier][0].data)


def test_the_committed_table1_solvers_read_each_val_image_once(repo):
    """Only the published AVA2 solver's test pass reads images twice (its own test_iter, for batches of 50), and
    generation says so; the Table 1 ava2 solver gets the val batch `ilgnet train` picks, 23, as its comment says."""
    from ilgnet.nets.generated import generated_files

    files, caught = generated_files()
    assert caught == ["published-ava2: test_iter 533 x val batch 50 = 26,650 images per test pass: all 25,553 val "
                      "images, 1,097 of them twice"]
    text = (repo / "solvers" / "ava2.prototxt").read_text()
    assert text == files["solvers/ava2.prototxt"] and "test_iter: 1111\n" in text
    assert "# With the published AVA2 val list: test_iter 1111 x val batch 23 = 25,553 images per test pass: each " \
           "of the 25,553 val images once.\n" in text
