"""Single-domain baselines for the Decathlon score: a plain network trained on one domain alone.

The score of a domain is 250 at its baseline error (paper.md §3). For the offline mini-decathlon the baseline errors
ship in ``bap/data/mini_baseline.json``, measured with this fixed recipe and reproduced by::

    python -m bap baseline --data mini --out bap/data/mini_baseline.json

Recipe: the same ResNet-26 as the default run (width 0.25, 1 block per stage), from scratch, every switch ON and
all weights trained, SGD (nesterov, momentum 0.9, wd 5e-4) with a one-cycle schedule peaking at lr 0.05,
batch 32, 15 epochs, seed 0; the error is measured on the val split with the centre crop. An error of 0 would make
the score undefined, so it is floored at one val image's worth (1 / val size), the resolution of the measurement.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bap.data import load_data
from bap.evaluate import accuracies, predict
from bap.pretrain import train_plain
from bap.runtime import resolve_device

RECIPE = {"width": 0.25, "blocks": 1, "epochs": 15, "lr": 0.05, "batch_size": 32, "seed": 0}


def measure_baselines(spec: str = "mini", domains: list[str] | None = None, device: str = "auto",
                      **recipe: float) -> dict[str, float]:
    """Val error of a plain single-domain network per domain, trained with :data:`RECIPE` (overridable)."""
    settings = {**RECIPE, **recipe}
    datasets = load_data(spec, domains)
    errors = {}
    for name, data in datasets.items():
        model = train_plain({name: data}, width=settings["width"], blocks=int(settings["blocks"]),
                            epochs=int(settings["epochs"]), lr=settings["lr"],
                            batch_size=int(settings["batch_size"]), seed=int(settings["seed"]), device=device)
        predicted = predict(model, data, "val", device=resolve_device(device))
        error = 1.0 - accuracies({name: predicted}, {name: data}, "val")[name]
        errors[name] = round(max(error, 1.0 / len(data.val.labels)), 4)
        print(f"{name}: val error {errors[name]:.4f}", flush=True)
    return errors


def add_parser(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser("baseline", help="measure single-domain baseline errors (Decathlon score)")
    parser.add_argument("--data", default="mini", help="'mini' or a Visual Decathlon root folder")
    parser.add_argument("--domains", default=None, help="comma-separated subset (default: all)")
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", required=True, help="JSON file to write {domain: error}")
    parser.set_defaults(run=_run)


def _run(args: argparse.Namespace) -> int:
    domains = args.domains.split(",") if args.domains else None
    errors = measure_baselines(args.data, domains, args.device, epochs=args.epochs)
    Path(args.out).write_text(json.dumps(errors, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out}")
    return 0
