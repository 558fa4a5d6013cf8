"""Command line: ``python -m bap train ...`` (one budget-aware run) and ``python -m bap sizes``."""

from __future__ import annotations

import argparse
import sys

from bap import baseline, cli_train
from bap.cost import count_layer_costs
from bap.model import MultiDomainResNet26


def _sizes(args: argparse.Namespace) -> int:
    model = MultiDomainResNet26({"domain": 10}, width=args.width, blocks=args.blocks)
    layers = count_layer_costs(model, "domain", input_size=(3, args.size, args.size))
    conv = [c for name, c in layers.items() if name not in ("norms", "head")]
    params, macs = sum(c.params for c in conv), sum(c.macs for c in conv)
    print(f"ResNet-26 (width {args.width}, {args.blocks} blocks/stage) at {args.size} px:")
    print(f"  3x3 conv weights: {params:,}")
    print(f"  conv MACs: {macs / 1e9:.3f} G  (= {2 * macs / 1e9:.3f} GFLOPs)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bap", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    sizes = commands.add_parser("sizes", help="print the backbone's parameters and MACs")
    sizes.add_argument("--width", type=float, default=1.0)
    sizes.add_argument("--blocks", type=int, default=4)
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
