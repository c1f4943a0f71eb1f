"""`ilgnet predict --ray` (ilgnet.scoring.cluster) on a local Ray runtime of 2 CPUs against the single-machine path:
the same
scores for the same photos, in the same order, the same skipped files, as CSV and Parquet, with each backend."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import SMALL

from ilgnet.cli import main as ilgnet


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray runtime with 2 CPUs, which `ilgnet predict --ray` joins (it starts none of its own)."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (`pip install -e .[test]` brings it)")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    yield ray
    ray.shutdown()


def predict(stand_in, out, *extra: str) -> list[str]:
    return ["predict", str(stand_in["photos"]), "--model", str(stand_in["weights"]), "--mean",
            str(stand_in["mean"]), "--variant", SMALL, "--quiet", "--batch", "2", "--out", str(out), *extra]


def _ray_processes() -> list[str]:
    """The PIDs of Ray's node processes (raylet, gcs_server) running on this machine, whoever started them."""
    found = []
    for comm in Path("/proc").glob("[0-9]*/comm"):
        try:
            if comm.read_text().strip() in ("raylet", "gcs_server"):
                found.append(comm.parent.name)
        except OSError:                         # ended meanwhile
            pass
    return found


@pytest.mark.slow
def test_no_cluster_at_the_address_is_one_line(stand_in, tmp_path):
    """`--ray auto` where no Ray cluster runs. `auto` finds any Ray runtime running on the machine, so this test comes
    before the first that starts local_ray (pytest runs a module's tests in order)."""
    pytest.importorskip("ray", reason="Ray is not installed (`pip install -e .[test]` brings it)")
    if running := _ray_processes():
        pytest.skip(f"a Ray runtime runs on this machine (process {running[0]}): `auto` would find it")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    result = subprocess.run([sys.executable, "-m", "ilgnet.cli", *predict(stand_in, tmp_path / "s.csv", "--backend",
                                                                         "opencv", "--ray", "auto")],
                            capture_output=True, text=True, env=env, cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "ilgnet predict: error: cannot reach the Ray cluster at auto: Could not find any running Ray instance" in \
        result.stderr


@pytest.mark.parametrize("backend", ["caffe", "onnxruntime", "opencv"])
def test_ray_scores_equal_the_single_machine_path(caffe, local_ray, stand_in, backend, tmp_path, capsys):
    assert ilgnet(predict(stand_in, tmp_path / "one.csv", "--backend", backend, "--workers", "1")) == 0
    alone = capsys.readouterr().err
    listed = tmp_path / "photos.txt"                # a list of paths, as for millions of photos on shared storage
    listed.write_text("".join(f"{p}\n" for p in sorted(stand_in["photos"].iterdir())))
    args = predict(stand_in, tmp_path / "ray.parquet", "--backend", backend, "--ray", "--workers", "2")
    assert ilgnet([args[0], f"@{listed}", *args[2:]]) == 0
    with_ray = capsys.readouterr().err
    expected, table = pd.read_csv(tmp_path / "one.csv"), pd.read_parquet(tmp_path / "ray.parquet")
    assert list(table.path) == list(expected.path) and len(table) == 6
    pd.testing.assert_series_equal(table.p_high, expected.p_high, atol=1e-6, rtol=0)
    assert list(table.label) == list(expected.label)
    not_scored = [line for line in alone.splitlines() if "not scored" in line]
    assert not_scored == [line for line in with_ray.splitlines() if "not scored" in line] and len(not_scored) == 2


def test_without_ray_one_line_says_how_to_install_it(stand_in, tmp_path):
    code = "import sys; sys.modules['ray'] = None; from ilgnet.cli import main; sys.exit(main(sys.argv[1:]))"
    result = subprocess.run([sys.executable, "-c", code, *predict(stand_in, tmp_path / "s.csv", "--backend",
                                                                  "opencv", "--ray")], capture_output=True, text=True)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "pip install 'ilgnet[ray]'" in result.stderr


@pytest.mark.parametrize("extra, message", [
    (["--ray", "photos.jpg"], "argument --ray: photos.jpg: not a Ray address (auto, HOST:PORT or ray://HOST:PORT); "
                              "with a local Ray runtime, put --ray after the photos"),
    (["--ray", "--gpu", "0"], "--actor-gpus 1 gives each actor a GPU"),
    (["--ray", "--backend", "opencv", "--actor-gpus", "1"], "the opencv backend runs on the CPU"),
    (["--ray", "--actor-cpus", "0"], "argument --actor-cpus: must be above 0, got 0"),
    (["--ray", "--actor-gpus", "-1"], "argument --actor-gpus: must be at least 0, got -1"),
])
def test_ray_arguments_are_checked_first(stand_in, tmp_path, capsys, extra, message):
    with pytest.raises(SystemExit) as exit_:
        ilgnet(predict(stand_in, tmp_path / "s.csv", *extra))
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_parquet_needs_a_file(stand_in, capsys):
    args = predict(stand_in, "unused", "--backend", "opencv", "--format", "parquet")
    with pytest.raises(SystemExit) as exit_:
        ilgnet(args[:args.index("--out")] + args[args.index("--out") + 2:])
    assert exit_.value.code == 2
    assert "Parquet is written to a file" in capsys.readouterr().err
