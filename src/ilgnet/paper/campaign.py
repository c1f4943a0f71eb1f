"""A campaign: every run of a plan trained (`ilgnet.training.runs.train`) and scored on every val record once
(`ilgnet.evaluation.evaluate`), one after another on this machine, several at once (one per local GPU, or
`jobs` on the CPU), or as Ray tasks on a cluster. What is finished is skipped, what was interrupted is resumed
from its newest snapshot, and a run that diverges or fails is recorded as such without stopping the others.

Each run's state lives in its folder (ilgnet.paper.runstate); one run is executed by ilgnet.paper.execute; this module
makes the plan's missing data folders and schedules the runs.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import wait
from pathlib import Path

from ilgnet.data.folder import DataFolder
from ilgnet.errors import MissingFile, UserError
from ilgnet.fileio import waiting_lock
from ilgnet.paper.execute import execute
from ilgnet.paper.plans import Plan, RunSpec
from ilgnet.pools import cpu_count
from ilgnet.paper.runstate import (DATA_LOCK, EXIT_INTERRUPTED, TO_RUN, RunState, ignore, release_lost, run_state,
                                   status, update_record)


def missing_data(plan: Plan) -> list[Path]:
    """The data folders the plan's runs read that have no train_lmdb, val_lmdb or mean yet."""
    folders = dict.fromkeys(plan.data_folder(spec) for spec in plan.runs)
    missing = []
    for folder in folders:
        try:
            DataFolder(folder).require_lmdbs()
        except UserError:
            missing.append(folder)
    return missing


def prepare_data(plan: Plan, *, progress: bool = True, notify: Callable[[str], None] = ignore) -> list[Path]:
    """Makes the plan's missing data folders from its synthetic AVA (ilgnet.data.synthetic: AVA.txt and photos in
    DATA/synthetic-ava, made once); returns the folders it made. MissingFile naming them, and how to make them,
    when the plan has no synthetic AVA."""
    missing = missing_data(plan)
    if not missing:
        return []
    if plan.synthetic is None:
        raise MissingFile(f"data folders missing: {', '.join(map(str, missing))} (" + (
            plan.makes_data or "`ilgnet split` and `ilgnet lmdb`, or `make paper-data`, make them; see docs/PAPER.md")
            + ")")
    # Two campaigns on one data folder: the second waits for the first, then finds its data made.
    Path(plan.data_dir).mkdir(parents=True, exist_ok=True)
    with waiting_lock(Path(plan.data_dir) / DATA_LOCK):
        return _make_data(plan, missing_data(plan), progress=progress, notify=notify)


def _make_data(plan: Plan, missing: list[Path], *, progress: bool, notify: Callable[[str], None]) -> list[Path]:
    """prepare_data's work, under the data folder's lock: the synthetic AVA (again when unfinished), then each
    missing data folder split and built."""
    from ilgnet.data import synthetic
    from ilgnet.data.make import Partition, make_data_folder

    ava = Path(plan.data_dir) / "synthetic-ava"
    images, seed = plan.synthetic["images"], plan.synthetic["seed"]
    if not synthetic.is_complete(ava, n_images=images, seed=seed):
        redo = " (again: the one there was not finished, or was made with other settings)" if ava.exists() else ""
        notify(f"a synthetic AVA of {images:,} photos in {ava}{redo}")
        synthetic.generate(ava, n_images=images, seed=seed)
    for folder in missing:
        name = folder.name.removesuffix("-320")
        resize = 320 if folder.name.endswith("-320") else 256
        partition = Partition(name.split("-")[0], ava_txt=ava / "AVA.txt", seed=seed, test_size=max(1, images // 10),
                              delta=1.0 if name == "ava1-delta1" else 0.0, facts={"synthetic": True})
        notify(f"{folder}: split {name} of the synthetic AVA, LMDBs at {resize}")
        make_data_folder(folder, partition, ava / "images", resize=resize, seed=seed, progress=progress,
                         notify=notify)
    return missing


def _child(plan: Plan, spec: RunSpec, gpu: str | None, docker: bool, blas_threads: int | None) -> None:
    """A spawned process's run (one per GPU, or one of `jobs` on the CPU, whose BLAS, in `caffe train` and in
    pycaffe, then takes `blas_threads` threads: its share of the cores); its state is in its folder; the exit status
    says only whether it was interrupted."""
    if blas_threads:
        os.environ["OPENBLAS_NUM_THREADS"] = os.environ["OMP_NUM_THREADS"] = str(blas_threads)
    try:
        execute(plan, spec, gpu=gpu, docker=docker, progress=False)
    except KeyboardInterrupt:
        raise SystemExit(EXIT_INTERRUPTED) from None


def _run_in_processes(plan: Plan, specs: list[RunSpec], slots: list[str | None], *, docker: bool,
                      notify: Callable[[str], None]) -> None:
    """Runs `specs` in spawned processes, one per slot (a GPU id, or None for the CPU) at a time. On Ctrl-C the
    running ones are interrupted too (Caffe snapshots), waited for, and KeyboardInterrupt is raised."""
    context = multiprocessing.get_context("spawn")
    pending, free, running = list(specs), list(slots), {}
    threads = max(1, cpu_count() // len(slots)) if None in slots else None     # CPU jobs share the cores
    try:
        while pending or running:
            while pending and free:
                spec, slot = pending.pop(0), free.pop(0)
                process = context.Process(target=_child, args=(plan, spec, slot, docker, threads), name=spec.name)
                process.start()
                running[process.sentinel] = (process, spec, slot)
                notify(f"{spec.name}: started on {'the CPU' if slot is None else f'GPU {slot}'}")
            for sentinel in wait(list(running)):
                process, spec, slot = running.pop(sentinel)
                process.join()
                free.append(slot)
                if (process.exitcode or 0) < 0 and plan.run_dir(spec).is_dir():     # killed: no handler ran
                    how = signal.Signals(-process.exitcode).name if -process.exitcode in signal.valid_signals() \
                        else f"signal {-process.exitcode}"
                    run_dir = plan.run_dir(spec)
                    update_record(plan, spec, run_dir, state="failed", message=f"its process was killed by {how}; "
                                  f"the next campaign resumes it from its newest snapshot", **release_lost(run_dir))
                notify(f"{spec.name}: {run_state(plan, spec).state}")
    except KeyboardInterrupt:
        for process, _, _ in running.values():
            if process.is_alive():
                os.kill(process.pid, signal.SIGINT)
        for process, _, _ in running.values():
            process.join()
        raise


def _ray_task(plan: Plan, spec: RunSpec, docker: bool) -> str:
    """A Ray task's run: on the GPU Ray gave it (CUDA_VISIBLE_DEVICES shows it as device 0), else on the CPU."""
    from ilgnet.scoring.cluster import import_ray

    return execute(plan, spec, gpu="0" if import_ray().get_gpu_ids() else None, docker=docker, progress=False)


def _run_on_ray(plan: Plan, specs: list[RunSpec], address: str, *, cpus: float | None, docker: bool,
                notify: Callable[[str], None]) -> None:
    """One Ray task per run holding one GPU (or `cpus` CPUs, on the CPU): on the cluster at `address`, or the Ray
    runtime this process already started, else a local one. A task that dies is recorded as failed."""
    from ilgnet.scoring.cluster import connect, import_ray

    ray = import_ray()
    started = connect(ray, address)
    resources = {"num_cpus": cpus, "num_gpus": 0} if cpus else {"num_cpus": 1, "num_gpus": 1}
    task = ray.remote(_ray_task).options(max_retries=0, **resources)
    refs = {}
    try:
        for spec in specs:
            refs[task.remote(plan, spec, docker)] = spec
            notify(f"{spec.name}: submitted to Ray ({'GPU' if not cpus else f'{cpus:g} CPUs'})")
        while refs:
            [done], _ = ray.wait(list(refs), num_returns=1)
            spec = refs.pop(done)
            try:
                state = ray.get(done)
            except ray.exceptions.RayError as err:
                run_dir = plan.run_dir(spec)
                run_dir.mkdir(parents=True, exist_ok=True)
                message = str(err).strip().splitlines()[-1]
                update_record(plan, spec, run_dir, state="failed", message=f"the Ray task failed: {message}; the "
                              f"next campaign resumes it from its newest snapshot", **release_lost(run_dir))
                state = "failed"
            notify(f"{spec.name}: {state}")
    except KeyboardInterrupt:
        for ref in refs:
            ray.cancel(ref)
        raise
    finally:
        if started:
            ray.shutdown()


def run_campaign(plan: Plan, *, gpus: list[str] | None = None, jobs: int = 1, ray: str | None = None,
                 ray_cpus: float | None = None, docker: bool = False, progress: bool = True,
                 notify: Callable[[str], None] = ignore, slurm=None) -> list[RunState]:
    """Runs what the plan has not done yet (not started, interrupted, failed), skipping what is finished, running
    elsewhere or diverged; returns every run's state afterwards.

    Where: `ray` (an address, or "" for the runtime this process started or a local one): a Ray task per run;
    `gpus` of this machine: one run per GPU at a time (one GPU: one after another, in this process); else the CPU,
    `jobs` runs at a time; `slurm` (ilgnet.paper.slurm.SlurmOptions): submitted as one Slurm job array, and not
    waited for. The data folders are checked (or made, for a synthetic plan) before any run starts, and a Ray
    address that takes no connection is refused before that (ToolFailed, in seconds)."""
    if ray:
        from ilgnet.scoring.cluster import check_reachable

        check_reachable(ray)
    prepare_data(plan, progress=progress, notify=notify)
    states = status(plan)
    todo = [s.spec for s in states if s.state in TO_RUN]
    for s in states:
        if s.state == "stale":
            notify(f"{s.spec.name}: stale, not run again: {s.message}; its results stand for the data it recorded "
                   f"only (move {s.run_dir} aside to train it on today's data, or restore its data)")
        elif s.state not in TO_RUN:
            notify(f"{s.spec.name}: {s.state}{f' ({s.message})' if s.message else ''}, skipped")
    if slurm is not None:
        from ilgnet.paper.slurm import submit

        submit(plan, todo, slurm, notify=notify)
    elif ray is not None:
        _run_on_ray(plan, todo, ray, cpus=ray_cpus, docker=docker, notify=notify)
    elif (gpus and len(gpus) > 1) or jobs > 1:
        _run_in_processes(plan, todo, list(gpus) if gpus else [None] * jobs, docker=docker, notify=notify)
    else:
        gpu = gpus[0] if gpus else None
        for spec in todo:
            notify(f"{spec.name}: {run_state(plan, spec).state}, now on {'the CPU' if gpu is None else f'GPU {gpu}'}")
            notify(f"{spec.name}: {execute(plan, spec, gpu=gpu, docker=docker, progress=progress, notify=notify)}")
    return status(plan)
