"""`ilgnet campaign` (`make campaign`, `make paper`, `make paper-demo`): every run of a plan trained and evaluated,
one after another here, one per local GPU, or as Ray tasks on a cluster; what is finished is skipped, what was
interrupted resumed (ilgnet.paper.campaign)."""
from __future__ import annotations

import argparse
import re
import shlex
import sys
from dataclasses import replace
from pathlib import Path

from ilgnet.commands.arguments import INPUT, VALUE, Arg, gpus, integer, output_folder, plan, ray_address, real
from ilgnet.errors import UsageError

ARGS = (Arg("PLAN", "plan", VALUE), Arg("--gpus", "gpus", VALUE, about="gpu"),
        Arg("--ray", "ray", VALUE, about="address"), Arg("--apptainer", "apptainer", INPUT, "the Apptainer image"))

EXAMPLES = """examples:
  ilgnet campaign table3 --gpus 0                   # Table 3's runs, one after another on GPU 0
  ilgnet campaign paper --gpus 0,1,2,3 --seeds 1,2,3   # every table, one run per GPU at a time
  ilgnet campaign paper --ray auto                  # one Ray task per run, each holding a GPU of the cluster
  ilgnet campaign plans/paper-demo.toml --cpu       # the toy campaign of `make paper-demo`
  ilgnet campaign paper --slurm --slurm-parallel 4 --partition gpu --time 2-00:00:00   # a Slurm job array
  ilgnet campaign paper --slurm --apptainer ilgnet-caffe.sif --dry-run   # print the sbatch script only
  ilgnet campaign paper --status                    # where each run stands, changing nothing"""
SLURM_ONLY = ("slurm_parallel", "slurm_cpus", "partition", "account", "time", "qos", "sbatch", "apptainer", "dry_run",
              "wait")


def _seeds(text: str) -> list[int]:
    return [integer(0)(part) for part in text.split(",")]



def slurm_time(text: str) -> str:
    """A time limit in one of sbatch's formats: MINUTES, MINUTES:SECONDS, HOURS:MINUTES:SECONDS, DAYS-HOURS,
    DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS (sbatch(1), --time)."""
    if not re.fullmatch(r"\d+(:\d+){0,2}|\d+-\d+(:\d+){0,2}", text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a Slurm time limit (e.g. 90, 4:00:00 or 2-00:00:00)")
    return text

def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "campaign", help="train and evaluate every run of a plan (the paper's tables, or a TOML plan file)",
        description="Trains and evaluates every run of PLAN (a net variant, a solver profile, a seed): the built-in "
                    "plans table2, table3, table4 and paper (all three), or a TOML plan file (docs/PAPER.md). Runs "
                    "that are finished are skipped, interrupted ones resumed from their newest snapshot, failed ones "
                    "tried again; a run that diverges or fails is recorded and the others go on. Prints one status "
                    "table of all runs (state, iteration, accuracy, ETA); exit status 1 when a run "
                    "diverged, failed or is stale (finished on data its data folder no longer holds), 130 after a "
                    "Ctrl-C (running runs snapshot first).",
        epilog=EXAMPLES)
    parser.add_argument("plan", type=plan, metavar="PLAN", help="table2, table3, table4, paper, recipes, official "
                                                                 "(AVA's official split), or a plan file (.toml)")
    parser.add_argument("--runs", type=output_folder, help="runs folder (default: the plan's, runs/PLAN)")
    parser.add_argument("--data", type=output_folder,
                        help="folder holding the data folders ava1, ava1-delta1, ava2 and their -320 versions "
                             "(default: the plan's, data/; official's data/official)")
    parser.add_argument("--models", type=Path, help="where bvlc_googlenet and the Inception weights are "
                                                    "(default: the plan's, models/)")
    parser.add_argument("--seeds", type=_seeds, help="seeds of every run, e.g. 1,2,3 (default: the plan's; 1,2 for "
                                                     "the built-in plans, 1,2,3 for official)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=gpus, help="GPUs of this machine: one run per GPU at a time (0,1,2,3 or all)")
    where.add_argument("--cpu", action="store_true", help="train on the CPU (the default)")
    where.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", type=ray_address,
                       help="one Ray task per run, each holding one GPU: on the cluster at ADDRESS (auto, HOST:PORT, "
                            "ray://HOST:10001), else a local Ray runtime. Every node must see the data, models and "
                            "runs folders at the same paths (shared storage)")
    where.add_argument("--slurm", action="store_true",
                       help="submit the runs that are not finished as one Slurm job array (one task per run, each "
                            "holding one GPU) and return; every node must see the data, models and runs folders at "
                            "the same paths (docs/SLURM.md)")
    slurm = parser.add_argument_group("with --slurm")
    slurm.add_argument("--slurm-parallel", type=integer(1), metavar="N", help="at most N tasks running at once")
    slurm.add_argument("--slurm-cpus", type=integer(1), metavar="N",
                       help="each task trains on the CPU with N CPUs instead of holding a GPU")
    for name, what in (("partition", "the partition"), ("account", "the account charged"),
                       ("time", "each task's time limit (e.g. 2-00:00:00); it snapshots 5 min before and requeues"),
                       ("qos", "the quality of service")):
        slurm.add_argument(f"--{name}", type=slurm_time if name == "time" else str, help=f"sbatch --{name}: {what}")
    slurm.add_argument("--sbatch", action="append", default=[], metavar="OPTIONS",
                       help="further sbatch options, as one argument (e.g. --sbatch='--mem=32G --constraint=a100')")
    slurm.add_argument("--apptainer", type=Path, metavar="IMAGE.sif",
                       help="run each task in this Apptainer image (`make apptainer-image`), with --nv and the "
                            "data, models and runs folders bound")
    slurm.add_argument("--dry-run", action="store_true", help="print the sbatch script, submit nothing")
    slurm.add_argument("--wait", action="store_true",
                       help="wait for the runs' tasks to end, then print the status table (exit 1 unless every "
                            "run finished; a Ctrl-C stops the waiting, not the tasks)")
    parser.add_argument("--only", type=lambda text: text.split(","), metavar="RUN[,RUN]",
                        help="only these runs of the plan (what each Slurm task runs)")
    parser.add_argument("--jobs", type=integer(1), default=1,
                        help="with --cpu: runs at a time, each a process of its own (default: 1)")
    parser.add_argument("--ray-cpus", type=real(0, above=True), metavar="N",
                        help="with --ray: each task takes N CPUs and trains on the CPU instead of a GPU")
    parser.add_argument("--docker", action="store_true", help="run Caffe in the ilgnet-caffe Docker image")
    parser.add_argument("--status", action="store_true",
                        help="only print the status table (and, after --slurm, each run's Slurm task and its state)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _notify(message: str) -> None:
    print(f"ilgnet campaign: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ilgnet.bvlc.tools import gpu_count, require_gpus
    from ilgnet.errors import UserError
    from ilgnet.paper.campaign import run_campaign
    from ilgnet.paper.runstate import REFUSED, status, status_table
    from ilgnet.paper.plans import load_plan
    from ilgnet.paper.slurm import slurm_table as slurm_status

    if args.ray_cpus is not None and args.ray is None:
        raise UsageError("--ray-cpus goes with --ray")
    if args.jobs > 1 and args.slurm:
        raise UsageError("--jobs is for runs on this machine's CPU; with --slurm, --slurm-parallel caps the tasks")
    if args.jobs > 1 and (args.gpus or args.ray is not None):
        raise UsageError("--jobs is for runs on the CPU; with --gpus, one run per GPU runs at a time")
    given = [f"--{name.replace('_', '-')}" for name in SLURM_ONLY if getattr(args, name) not in (None, False, [])]
    if given and not args.slurm:
        raise UsageError(f"{given[0]} goes with --slurm")
    if args.apptainer and args.docker:
        raise UsageError("--apptainer and --docker are two ways to run Caffe: choose one")
    chosen = load_plan(args.plan, seeds=args.seeds, runs_dir=args.runs, data_dir=args.data, models_dir=args.models)
    if args.only:
        unknown = sorted(set(args.only) - {spec.name for spec in chosen.runs})
        if unknown:
            raise UsageError(f"--only: plan {chosen.name} has no run {unknown[0]}")
        chosen = replace(chosen, runs=tuple(spec for spec in chosen.runs if spec.name in args.only))
    devices = None
    if args.gpus:
        require_gpus(args.gpus, docker=args.docker)     # one line now, not a failed run per GPU later
        devices = [str(i) for i in range(gpu_count())] if args.gpus == "all" else args.gpus.split(",")
    if args.status:
        if not chosen.runs_dir.is_dir():
            _notify(f"{chosen.runs_dir} does not exist yet: no run of plan {chosen.name} has started there")
        print(status_table(status(chosen)), end="")
        print(slurm_status(chosen), end="")
        return 0
    slurm = _slurm_options(args, chosen) if args.slurm else None
    if args.dry_run:
        return _dry_run(chosen, slurm)
    print(f"plan {chosen.name}: {len(chosen.runs)} runs in {chosen.runs_dir}", file=sys.stderr)
    try:
        states = run_campaign(chosen, gpus=devices, jobs=args.jobs, ray=args.ray, ray_cpus=args.ray_cpus,
                              docker=args.docker, progress=not args.quiet, notify=_notify, slurm=slurm)
        if slurm is not None and args.wait:
            states = _wait(chosen)
    except KeyboardInterrupt:
        print(status_table(status(chosen)), end="")
        raise
    print(status_table(states), end="")
    if slurm is not None:
        print(slurm_status(chosen), end="")
        if args.wait and (left := [s.spec.name for s in states if s.state != "finished"]):
            raise UserError(f"{len(left)} of {len(states)} runs did not finish: {', '.join(left)} (the tables say "
                            f"why; the task logs are RUNS/RUN.slurm.log)")
    bad = [s.spec.name for s in states if s.state in REFUSED]
    if bad:
        kinds = " or ".join(k for k in REFUSED if any(s.state == k for s in states))
        raise UserError(f"{len(bad)} of {len(states)} runs {'are ' if kinds == 'stale' else ''}{kinds}: "
                        f"{', '.join(bad)} (the table says why)")
    return 0


def _slurm_options(args, chosen):
    """SlurmOptions for `args`: each task loads the same plan (absolute paths) and runs one of its runs; checked
    (the Apptainer image and binds; sbatch and squeue here unless --dry-run) before any data is made."""
    from ilgnet.bvlc.apptainer import check_image_file
    from ilgnet.paper.slurm import SlurmOptions, check

    source = args.plan if chosen.source == "built-in" else str(Path(args.plan).resolve())
    task = [source, "--runs", str(chosen.runs_dir.resolve()), "--data", str(Path(chosen.data_dir).resolve()),
            "--models", str(Path(chosen.models_dir).resolve())]
    if args.seeds:
        task += ["--seeds", ",".join(map(str, args.seeds))]
    binds = []
    if args.apptainer:
        check_image_file(args.apptainer)            # before the folders to bind are made
        for folder in (chosen.runs_dir, chosen.data_dir):
            Path(folder).mkdir(parents=True, exist_ok=True)
        binds = [chosen.runs_dir, chosen.data_dir, Path.cwd()] + \
            [p for p in (Path(chosen.models_dir),) if p.is_dir()] + \
            ([] if chosen.source == "built-in" else [Path(source).parent])
    options = SlurmOptions(tuple(task), parallel=args.slurm_parallel, cpus=args.slurm_cpus, partition=args.partition,
                           account=args.account, time=args.time, qos=args.qos,
                           sbatch=tuple(part for text in args.sbatch for part in shlex.split(text)),
                           apptainer=args.apptainer, binds=tuple(sorted({Path(b).resolve() for b in binds})),
                           docker=args.docker)
    check(options, submitting=not args.dry_run)
    return options


def _dry_run(chosen, options) -> int:
    """Prints the sbatch script the campaign would submit now (or says that there is nothing to submit)."""
    from ilgnet.paper.runstate import TO_RUN, status
    from ilgnet.paper.slurm import batch_script, to_submit

    todo = to_submit(chosen, [s.spec for s in status(chosen) if s.state in TO_RUN], _notify)
    if not todo:
        _notify("nothing to submit: every run is finished, queued or running")
        return 0
    print(batch_script(chosen, todo, options), end="")
    return 0


def _wait(chosen):
    """Waits until no run of the plan has a live Slurm task; returns the runs' states."""
    from ilgnet.paper.runstate import status
    from ilgnet.paper.slurm import wait_for

    wait_for(chosen, poll_s=2.0, notify=_notify)
    return status(chosen)
