"""`ilgnet campaign` (`make campaign`, `make paper`, `make paper-demo`): every run of a plan trained and evaluated,
one after another here, one per local GPU, or as Ray tasks on a cluster; what is finished is skipped, what was
interrupted resumed (ilgnet.paper.campaign)."""
from __future__ import annotations

import sys
from pathlib import Path

from ilgnet.commands.arguments import UsageError, gpus, integer, output_folder, plan, ray_address, real

EXAMPLES = """examples:
  ilgnet campaign table3 --gpus 0                   # Table 3's runs, one after another on GPU 0
  ilgnet campaign paper --gpus 0,1,2,3 --seeds 1,2,3   # every table, one run per GPU at a time
  ilgnet campaign paper --ray auto                  # one Ray task per run, each holding a GPU of the cluster
  ilgnet campaign plans/paper-demo.toml --cpu       # the toy campaign of `make paper-demo`
  ilgnet campaign paper --status                    # where each run stands, changing nothing"""


def _seeds(text: str) -> list[int]:
    return [integer(0)(part) for part in text.split(",")]


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
    parser.add_argument("plan", type=plan, metavar="PLAN", help="table2, table3, table4, paper, or a plan file (.toml)")
    parser.add_argument("--runs", type=output_folder, help="runs folder (default: the plan's, runs/PLAN)")
    parser.add_argument("--data", type=output_folder,
                        help="folder holding the data folders ava1, ava1-delta1, ava2 and their -320 versions "
                             "(default: the plan's, data/)")
    parser.add_argument("--models", type=Path, help="where bvlc_googlenet and the Inception weights are "
                                                    "(default: the plan's, models/)")
    parser.add_argument("--seeds", type=_seeds, help="seeds of every run, e.g. 1,2,3 (default: the plan's; 1,2 for "
                                                     "the built-in plans)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--gpus", type=gpus, help="GPUs of this machine: one run per GPU at a time (0,1,2,3 or all)")
    where.add_argument("--cpu", action="store_true", help="train on the CPU (the default)")
    where.add_argument("--ray", nargs="?", const="", metavar="ADDRESS", type=ray_address,
                       help="one Ray task per run, each holding one GPU: on the cluster at ADDRESS (auto, HOST:PORT, "
                            "ray://HOST:10001), else a local Ray runtime. Every node must see the data, models and "
                            "runs folders at the same paths (shared storage)")
    parser.add_argument("--jobs", type=integer(1), default=1,
                        help="with --cpu: runs at a time, each a process of its own (default: 1)")
    parser.add_argument("--ray-cpus", type=real(0, above=True), metavar="N",
                        help="with --ray: each task takes N CPUs and trains on the CPU instead of a GPU")
    parser.add_argument("--docker", action="store_true", help="run Caffe in the ilgnet-caffe Docker image")
    parser.add_argument("--status", action="store_true", help="only print the status table")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


def _notify(message: str) -> None:
    print(f"ilgnet campaign: {message}", file=sys.stderr, flush=True)


def run(args) -> int:
    from ilgnet.bvlc.tools import gpu_count, require_gpus
    from ilgnet.errors import UserError
    from ilgnet.paper.campaign import REFUSED, run_campaign, status, status_table
    from ilgnet.paper.plans import load_plan

    if args.ray_cpus is not None and args.ray is None:
        raise UsageError("--ray-cpus goes with --ray")
    if args.jobs > 1 and (args.gpus or args.ray is not None):
        raise UsageError("--jobs is for runs on the CPU; with --gpus, one run per GPU runs at a time")
    chosen = load_plan(args.plan, seeds=args.seeds, runs_dir=args.runs, data_dir=args.data, models_dir=args.models)
    devices = None
    if args.gpus:
        require_gpus(args.gpus, docker=args.docker)     # one line now, not a failed run per GPU later
        devices = [str(i) for i in range(gpu_count())] if args.gpus == "all" else args.gpus.split(",")
    if args.status:
        if not chosen.runs_dir.is_dir():
            _notify(f"{chosen.runs_dir} does not exist yet: no run of plan {chosen.name} has started there")
        print(status_table(status(chosen)), end="")
        return 0
    print(f"plan {chosen.name}: {len(chosen.runs)} runs in {chosen.runs_dir}", file=sys.stderr)
    try:
        states = run_campaign(chosen, gpus=devices, jobs=args.jobs, ray=args.ray, ray_cpus=args.ray_cpus,
                              docker=args.docker, progress=not args.quiet, notify=_notify)
    except KeyboardInterrupt:
        print(status_table(status(chosen)), end="")
        raise
    print(status_table(states), end="")
    bad = [s.spec.name for s in states if s.state in REFUSED]
    if bad:
        kinds = " or ".join(k for k in REFUSED if any(s.state == k for s in states))
        raise UserError(f"{len(bad)} of {len(states)} runs {'are ' if kinds == 'stale' else ''}{kinds}: "
                        f"{', '.join(bad)} (the table says why)")
    return 0
