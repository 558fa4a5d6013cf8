"""``python -m bap train``: one budget-aware run from the command line (flags generated from TrainConfig)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path
from typing import Any

import yaml

from bap import metrics as M
from bap.config import TrainConfig

HELP = {
    "data": "'mini' (offline mini-decathlon), a Visual Decathlon root folder or an ImageNet-to-Sketch root folder",
    "arch": "resnet26 (the Decathlon network) or a torchvision ResNet: resnet18 | resnet34 | resnet50 | resnet101 | "
            "resnet152",
    "image_size": "stored image side in px (default: the data's, Decathlon 72, ImageNet-to-Sketch 224)",
    "crop": "side of the network's input in px (default: the data's, Decathlon 64, ImageNet-to-Sketch 224)",
    "domains": "comma-separated subset of domains (default: every domain found)",
    "budget": "share of the backbone each domain may use, in (0, 1]",
    "budget_cost": "unit of the budget: switches | params | macs",
    "budget_penalty": "lagrangian (dual ascent) | hinge",
    "budget_anneal": "fraction of the steps over which the target usage falls from 1.0 to the budget",
    "recovery": "last fraction of the steps: budget enforced, switches frozen, BNs and heads recover",
    "sharing": "parameter-sharing loss: none | union | intersection | jaccard | pairwise | consensus",
    "sharing_cost": "unit the sharing loss weighs switches in: switches | params | macs (default: budget_cost)",
    "sharing_weight": "weight of the sharing loss (initial weight if learnable)",
    "union_budget": "optional hinge budget on the union (what pruning keeps)",
    "pretrained": "local backbone checkpoint (resnet26: bap's; torchvision ResNets: torchvision's state-dict file, "
                  "e.g. resnet50-0676ba61.pth); default: resnet26 pretrains one (cached) for pretrain_epochs",
    "steps_per_epoch": "cap on optimizer steps per epoch (smoke runs)",
    "width": "resnet26 only: width multiplier (1.0 = the Decathlon network)",
    "blocks": "resnet26 only: BasicBlocks per stage (4 = ResNet-26)",
    "device": "auto | cpu | cuda",
    "latency_min_time_s": "seconds each latency measurement of the pruned network runs at the end (every domain, "
                          "batch 1 and 64, CPU and the run's GPU); 0 = no timing",
    "compile": "torch.compile the training step, one graph serving every domain (default: on for CUDA, off on CPU)",
}


def _parse_optional(kind: Any) -> Any:
    def parse(text: str) -> Any:
        return None if text.lower() in ("none", "") else kind(text)

    return parse


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    hints = typing.get_type_hints(TrainConfig)
    for field in dataclasses.fields(TrainConfig):
        if field.name == "extra":
            continue
        flag = "--" + field.name.replace("_", "-")
        hint = hints[field.name]
        help_text = HELP.get(field.name, "")
        base = [a for a in typing.get_args(hint) if a is not type(None)]
        kind = base[0] if base else hint
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        if field.name == "domains":
            parser.add_argument(flag, default=None, help=help_text)
        elif kind in (int, float, str):
            parser.add_argument(flag, type=_parse_optional(kind) if base else kind, default=None,
                                help=f"{help_text} (default: {field.default})".strip())


def build_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--config", help="YAML file of TrainConfig values; flags override it")
    parser.add_argument("--out", required=True, help="output folder: checkpoints, metrics.json, pruned/")
    parser.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    add_config_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    values: dict[str, Any] = {}
    if args.config:
        loaded = yaml.safe_load(Path(args.config).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"--config {args.config!r} must hold a mapping of TrainConfig fields")
        values.update(loaded)
    for field in dataclasses.fields(TrainConfig):
        value = getattr(args, field.name, None)
        if value is not None:
            values[field.name] = value
    return TrainConfig.from_dict(values)


def run(args: argparse.Namespace) -> int:
    from bap.train import latest_checkpoint, train

    try:
        config = config_from_args(args)
    except (ValueError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "args.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    resume_from = latest_checkpoint(out) if args.resume else None
    if resume_from is not None:
        print(f"resuming from {resume_from}")
    try:
        result = train(config, out, resume_from=resume_from, progress=True)
    except (ValueError, KeyError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    union = result[M.JSON_UNION]
    print(f"\nmean val acc {result[M.MEAN_VAL_ACC]:.3f}   score {result[M.SCORE]}")
    for name, domain in result[M.JSON_DOMAINS].items():
        print(f"  {name:<14} val acc {domain[M.VAL_ACC]:.3f}   usage {domain[M.USAGE]:.3f}   "
              f"params {domain[M.PARAMS]:,}   MACs {domain[M.MACS]:,}")
    print(f"union: {union[M.COST_PARAMS]:,} params ({union[M.COST_PARAMS_RATIO]:.3f}x of one single-domain backbone), "
          f"{union[M.COST_MACS] / 1e6:.2f} M MACs = {union[M.COST_FLOPS] / 1e6:.2f} M FLOPs "
          f"({union[M.COST_MACS_RATIO]:.3f}x)")
    print(f"pruned/switched agreement on val: {result[M.PRUNED_AGREEMENT]:.4f}")
    latency = result.get(M.JSON_LATENCY) or {}
    if latency:
        b1, b64 = (M.latency_metric("cpu", b) for b in M.LATENCY_BATCHES)
        ratio = M.latency_metric("cpu", 64, M.LATENCY_RATIO)
        print(f"CPU latency of the slowest domain ({int(latency[M.LATENCY_THREADS])} threads, "
              f"{int(latency[M.LATENCY_NEIGHBOURS])} other runs on this machine): {latency[b1]:.2f} ms at batch 1, "
              f"{latency[b64]:.1f} ms per batch of 64 ({latency[ratio]:.2f}x the unpruned network's)")
    print(f"wrote {out / M.METRICS_FILE}")
    return 0
