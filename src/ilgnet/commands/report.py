"""`ilgnet report` (`make report`): the paper's Tables 2-4 and Figs. 3-5 from a campaign's runs, beside the paper's
own figures, as DIR/REPORT.md and a self-contained DIR/report.html (ilgnet.paper.report)."""
from __future__ import annotations

import sys

from ilgnet.commands.arguments import existing_folder, integer, output_folder, plan

EXAMPLES = """examples:
  ilgnet report runs/paper --out reports/paper
  ilgnet report runs/paper --out reports/paper --gpu 0 --plan paper      # fails on a cell the plan should fill
  ilgnet report runs/paper/ilgnet-ava2-seed1 runs/other --out reports/mixed --figure-run ilgnet-ava2-seed1"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "report", help="the paper's tables and figures from a campaign's runs: REPORT.md and report.html",
        description="Reads campaign runs (run folders, or runs folders holding them) and writes DIR/REPORT.md (with "
                    "fig3/4/5.png), DIR/report.html (the same, self-contained) and DIR/report.json: Tables 2 and 3 "
                    "(the paper's accuracy, ours as mean +- std over seeds on every val record once and by the "
                    "paper's 50-iteration protocol, the majority baseline, balanced accuracy), Table 4 (training time "
                    "from the logs, test time per image measured now for every net), Figs. 3-5 and the provenance of "
                    "every number. Needs Caffe (the test times and Fig. 5 run the nets).",
        epilog=EXAMPLES)
    parser.add_argument("runs", nargs="+", type=existing_folder, metavar="RUNS",
                        help="campaign run folders, or folders of them")
    parser.add_argument("--out", type=output_folder, required=True, help="folder to write the report into")
    parser.add_argument("--plan", type=plan, help="fail (exit 1, after writing) when a cell this plan should fill is "
                                                  "empty: a run not finished, a table cell short of its seeds, a "
                                                  "figure not drawn")
    parser.add_argument("--figure-run", metavar="NAME", help="the run of Figs. 3 and 5 (default: the first finished "
                                                             "ilgnet run of Table 3)")
    parser.add_argument("--gpu", type=integer(0), metavar="ID", help="time the nets and draw Fig. 5 on this GPU")
    parser.add_argument("--time-batch", type=integer(1), default=10, help="forward batch of the test-time "
                                                                          "measurement and Fig. 5 (default: 10)")
    parser.add_argument("--time-iterations", type=integer(1), default=3,
                        help="timed forward passes per net (default: 3)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.errors import BadInput
    from ilgnet.paper.plans import load_plan
    from ilgnet.paper.report import build, empty_cells, write_report

    expected = load_plan(args.plan) if args.plan else None
    report = build(args.runs, figure_run=args.figure_run, gpu=args.gpu, time_batch=args.time_batch,
                   time_iterations=args.time_iterations)
    for path in write_report(report, args.out):
        print(path)
    for run in report["runs"]:              # what REPORT.md flags, named where the user is looking
        if run.state != "finished":
            kept = "flagged in the tables" if run.evaluation is not None else "left out of the tables"
            print(f"ilgnet report: {run.name}: {run.state}" + (f": {run.message}" if run.message else "") +
                  f" ({kept})", file=sys.stderr)
    if expected is not None:
        empty = empty_cells(report, expected)
        if empty:
            raise BadInput(f"{args.out / 'REPORT.md'}: {len(empty)} cells of plan {expected.name} are empty: "
                           f"{'; '.join(empty)}")
        print(f"every cell of plan {expected.name} is filled", file=sys.stderr)
    return 0
