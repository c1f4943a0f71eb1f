"""ilgnet.data.lmdb_writer: the task stream covers every listed image once, in list order, with tasks shrinking
towards its end; raw records are the same bytes whether they come back through shared memory or pickled."""
from pathlib import Path

import lmdb
import numpy as np
import pandas as pd
import pytest

from ilgnet.data import lmdb_build
from ilgnet.data.lmdb_writer import (MAX_IMAGES_PER_TASK, MIN_IMAGES_PER_TASK, LmdbJob, _tasks, release,
                                     shared_buffers)


def _job(count: int, seed: int) -> LmdbJob:
    frame = pd.DataFrame({"filename": [f"{i}.jpg" for i in range(count)], "label": [i % 2 for i in range(count)]})
    return LmdbJob(frame, np.random.default_rng(seed).permutation(count), Path("x.partial"), [], Path("x.txt"))


@pytest.mark.parametrize("counts, workers", [([900, 100], 2), ([5], 1), ([3000, 1], 4), ([1000], 16)])
def test_the_task_stream_covers_each_list_once_in_order_shrinking_to_the_end(counts, workers):
    jobs = [_job(count, seed) for seed, count in enumerate(counts)]
    tasks = list(_tasks(jobs, Path("/photos"), workers, MAX_IMAGES_PER_TASK))
    for index, job in enumerate(jobs):
        items = [item for i, task in tasks if i == index for item in task]
        assert [position for position, *_ in items] == list(range(len(job.order)))
        assert [name for _, name, _, _ in items] == [f"{row}.jpg" for row in job.order]
        assert all(path == Path("/photos") / name for _, name, path, _ in items)
    sizes = [len(task) for _, task in tasks]
    assert [i for i, _ in tasks] == sorted(i for i, _ in tasks)           # one LMDB after the other
    assert all(size <= MAX_IMAGES_PER_TASK for size in sizes)
    # Each task but a list's last (cut where the list ends) is at least the floor and no larger than the one before.
    ends = {max(n for n, (i, _) in enumerate(tasks) if i == index) for index in range(len(jobs))}
    assert all(size >= MIN_IMAGES_PER_TASK for n, size in enumerate(sizes) if n not in ends)
    assert all(sizes[n] >= sizes[n + 1] for n in range(len(sizes) - 1) if n not in ends)


def test_shared_buffers_are_for_raw_records_and_removed_by_release():
    assert shared_buffers(2, 256, "png") == []
    buffers = shared_buffers(2, 256, None)
    assert len(buffers) == 5 and all(buffer.size >= 3 * 256 * 256 for buffer in buffers)
    release(buffers)
    with pytest.raises(FileNotFoundError):
        type(buffers[0])(buffers[0].name)


def test_no_shared_buffers_where_they_would_take_over_half_of_the_free_shared_memory(monkeypatch, tmp_path):
    from collections import namedtuple

    from ilgnet.data import lmdb_writer

    usage = namedtuple("usage", "total used free")
    buffers = shared_buffers(2, 256, None)
    needed = sum(buffer.size for buffer in buffers)
    release(buffers)
    monkeypatch.setattr(lmdb_writer.shutil, "disk_usage", lambda path: usage(0, 0, 2 * needed - 1))
    assert shared_buffers(2, 256, None) == []
    monkeypatch.setattr(lmdb_writer.shutil, "disk_usage", lambda path: usage(0, 0, 2 * needed))
    release(buffers := shared_buffers(2, 256, None))
    assert len(buffers) == 5
    monkeypatch.undo()
    monkeypatch.setattr(lmdb_writer, "SHARED_MEMORY", str(tmp_path / "none"))   # shared memory kept elsewhere
    release(buffers := shared_buffers(2, 256, None))
    assert len(buffers) == 5


def _records(path: Path) -> list[tuple[bytes, bytes]]:
    env = lmdb.open(str(path), readonly=True, lock=False)
    try:
        with env.begin() as txn:
            return list(txn.cursor())
    finally:
        env.close()


def test_records_through_shared_memory_and_pickled_are_the_same_bytes(shared_data, tmp_path, monkeypatch):
    images = shared_data / "ava-sample" / "images"
    names = sorted(path.name for path in images.iterdir())[:12]
    built = {}
    for way in ("shared", "pickled"):
        split = tmp_path / way
        split.mkdir()
        (split / "train.txt").write_text("".join(f"{name} {i % 2}\n" for i, name in enumerate(names[:9])))
        (split / "val.txt").write_text("".join(f"{name} 1\n" for name in names[9:]))
        if way == "pickled":              # as where the system has no shared memory to spare
            monkeypatch.setattr(lmdb_build, "shared_buffers", lambda *args: [])
        summary = lmdb_build.build_split(split, images, jobs=2, progress=False)
        assert summary["train"]["records"] == 9 and summary["val"]["records"] == 3
        built[way] = {name: _records(split / f"{name}_lmdb") for name in ("train", "val")}
        built[way]["mean"] = (split / "mean.binaryproto").read_bytes()
    assert built["shared"] == built["pickled"]
