"""`ilgnet nets` (`make nets`): the net variants as a markdown table of input size, parameters and CPU forward time."""
from __future__ import annotations

import os

from ilgnet.commands.arguments import integer


def register(subparsers) -> None:
    from ilgnet.nets import VARIANTS

    parser = subparsers.add_parser("nets", help="table of the net variants: parameters, input size, CPU forward time")
    parser.add_argument("--variants", nargs="+", metavar="VARIANT", choices=list(VARIANTS),
                        help="only these variants (default: all)")
    parser.add_argument("--batch", type=integer(1), default=1, help="forward batch size (default: 1)")
    parser.add_argument("--iterations", type=integer(1), default=5, help="timed forward passes per net (default: 5)")
    parser.set_defaults(func=run)


def run(args) -> int:
    from ilgnet.bvlc.tools import import_caffe
    from ilgnet.nets import VARIANTS, forward_time, get_variant

    import_caffe()                          # no table's header without the Caffe that times its rows
    print(f"| variant | input | parameters | CPU forward, batch {args.batch} (ms) | net |")
    print("|---|---|---:|---:|---|")
    for v in map(get_variant, args.variants or VARIANTS):
        params, ms = forward_time(v, batch=args.batch, iterations=args.iterations)
        print(f"| {v.name} | {v.input_size}x{v.input_size} | {params:,} | {ms:,.0f} | {v.summary} |", flush=True)
    print(f"\nParameters and time of the deploy net (the auxiliary classifiers of googlenet-bn-* only train); "
          f"median of {args.iterations} pycaffe forward passes after one warm-up, {os.cpu_count()} CPU cores.")
    return 0
