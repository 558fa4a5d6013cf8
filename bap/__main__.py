"""Command line: ``python -m bap train ...`` (one budget-aware run) and ``python -m bap sizes``."""

from __future__ import annotations

import argparse
import sys

from bap import baseline, cli_train
from bap.choices import ARCHS
from bap.cost import count_layer_costs, reference_cost
from bap.network import build_network


def _sizes(args: argparse.Namespace) -> int:
    model = build_network(args.arch, {"domain": args.classes}, width=args.width, blocks=args.blocks)
    size = (3, args.size, args.size)
    layers = count_layer_costs(model, "domain", input_size=size)
    conv = [c for name, c in layers.items() if name not in ("norms", "head")]
    params, macs = sum(c.params for c in conv), sum(c.macs for c in conv)
    total = reference_cost(model, "domain", size)
    shape = f" (width {args.width}, {args.blocks} blocks/stage)" if args.arch == "resnet26" else ""
    print(f"{args.arch}{shape} at {args.size} px, one domain of {args.classes} classes:")
    print(f"  conv weights: {params:,}")
    print(f"  conv MACs: {macs / 1e9:.3f} G  (= {2 * macs / 1e9:.3f} GFLOPs)")
    print(f"  with BNs and head: {total.params:,} params, {total.macs / 1e9:.3f} GMACs "
          f"(= {total.flops / 1e9:.3f} GFLOPs)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sizes = commands.add_parser("sizes", help="print the backbone's parameters and MACs")
    sizes.add_argument("--arch", choices=ARCHS, default="resnet26")
    sizes.add_argument("--width", type=float, default=1.0, help="resnet26 only")
    sizes.add_argument("--blocks", type=int, default=4, help="resnet26 only")
    sizes.add_argument("--classes", type=int, default=10, help="classes of the one domain's head")
    sizes.add_argument("--size", type=int, default=64, help="input size in px")
    sizes.set_defaults(run=_sizes)
    train = commands.add_parser("train", help="one budget-aware training run: train, enforce the budget, prune",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    cli_train.build_parser(train)
    train.set_defaults(run=cli_train.run)
    baseline.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
