"""Inspect a data source.

Usage::

    python -m bap.data info --data mini
    python -m bap.data show --data mini --out grid.png [--domains digits,signs] [--split val]
    python -m bap.data show --data /datasets/decathlon-1.0 --out decathlon.png
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from bap.data.domain import DomainData
from bap.data.load import load_data
from bap.data.show import show


def describe(datasets: Mapping[str, DomainData]) -> str:
    """One line per domain: classes, split sizes, stored size, crop, flip and baseline error."""
    lines = [f"{'domain':<14}{'classes':>8}{'train':>9}{'val':>8}{'test':>8}  size crop flip  baseline_error"]
    for d in datasets.values():
        baseline = "-" if d.baseline_error is None else f"{d.baseline_error:.4f}"
        lines.append(
            f"{d.name:<14}{d.num_classes:>8}{len(d.train):>9}{len(d.val):>8}{len(d.test):>8}"
            f"  {d.size:>4} {d.crop:>4} {'yes' if d.flip else 'no':>4}  {baseline}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bap.data", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text in (
        ("info", "print classes and split sizes"),
        ("show", "write a PNG grid per class"),
    ):
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--data", required=True, help='"mini", or the path of a Visual Decathlon or ImageNet-to-Sketch root')
        p.add_argument("--domains", default=None, help="comma-separated domain names (default: all)")
        p.add_argument("--cache-dir", default=None, help="where packed tensors are cached")
        p.add_argument("--seed", type=int, default=0, help="mini only: generation and split seed")
        p.add_argument("--workers", type=int, default=None, help="Decathlon only: JPEG-decoding threads")
        if name == "show":
            p.add_argument("--out", required=True, help="PNG file to write")
            p.add_argument("--split", default="train", choices=("train", "val", "test"))
    args = parser.parse_args(argv)
    domains = args.domains.split(",") if args.domains else None
    datasets = load_data(args.data, domains, cache_dir=args.cache_dir, seed=args.seed, workers=args.workers)
    if args.command == "info":
        print(describe(datasets))
    else:
        print(f"wrote {show(datasets, args.out, args.split)}")


if __name__ == "__main__":
    main()
