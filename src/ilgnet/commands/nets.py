"""`ilgnet nets` (`make nets`): the net variants as a markdown table of input size, parameters and CPU forward time."""
from __future__ import annotations

import os

from ilgnet.commands.arguments import integer


def register(subparsers) -> None:
    from ilgnet.nets import VARIANTS

    parser = subparsers.add_parser(
        "nets", help="table of the net variants: parameters, input size, CPU forward time",
        description="Prints a markdown table of the net variants `ilgnet train` can train: the published ILGNet "
                    "(ilgnet), ILGNet with batch normalisation (ilgnet-bn) or with each inception module replaced "
                    "by one convolution (ilgnet-noinc), GoogLeNet-BN cut at three depths (googlenet-bn-third, "
                    "-two-thirds, -full), and ILGNet's head on Inception-v3 and v4 trunks (ilgnet-inc3, "
                    "ilgnet-inc4). Each row gives the input size, the deploy net's parameter count and its median "
                    "CPU forward time through pycaffe after one warm-up pass, so it needs the Caffe build.",
        epilog="examples:\n"
               "  ilgnet nets\n"
               "  ilgnet nets --variants ilgnet googlenet-bn-third --batch 8 --iterations 3\n"
               "  make nets")
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
