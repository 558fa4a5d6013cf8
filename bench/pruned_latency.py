"""Inference latency of pruned ResNet-26 models against the unpruned network: does pruning pay off as its MACs say?

A full Decathlon ResNet-26 (width 1, 4 blocks per stage, 64 px, three domains) gets one shared random input-channel
pattern per target union MACs ratio (about 0.75, 0.5, 0.25; every domain the same pattern, so the union is each
domain's pattern and an exported domain is the whole pruned network); the keep probability per target is found by
bisection on ``bap.count_cost``'s MACs ratio to ``bap.reference_cost``. Each is pruned (``bap.prune``) and timed
against the unpruned network put through ``bap.prune`` with every switch on (so both are ``PrunedConv2d``), and
against the switched model itself, at batch 1 and 64 on the CPU (torch threads = cores, eval, inference_mode):

- eager: the pruned multi-domain model called with a domain, ``model(x, "a")``;
- onnxruntime: ``bap.export_domain(..., format="onnx")`` run with intra_op threads = cores;
- torchscript: ``bap.export_domain(..., format="torchscript")`` run through ``torch.jit.load``.

Also timed: each pruned model with its kept channel counts rounded up to a multiple of 8 or 16 by adding back
channels that every domain has switched off (``bap.prune(model, channel_multiple=8)``: zero-masked, so the outputs
stay exact: checked), eager and in onnxruntime (the padded model traced as is, its zero-masked kernel columns kept;
``export_domain`` would fold them away again).

Every variant runs once per round, rounds interleaved, after a warm-up round; the figure is the median over rounds
(batch 1: the median of 5 calls per round). Only 3 rounds by default, to keep a full run near 5 minutes on 2
CPU cores: on a loaded machine pass --rounds 5 or more. Goal: latency ratio / MACs ratio <= 1.15 at batch 64.

    python bench/pruned_latency.py             # full run: 3 rounds, ~5 min on 2 idle CPU cores
    python bench/pruned_latency.py --quick     # a short run: 2 rounds, rounding to 8 only
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

import bap

INPUT = (3, 64, 64)
DOMAINS = {"a": 10, "b": 10, "c": 10}
TARGETS = (0.75, 0.5, 0.25)
CORES = os.cpu_count() or 1


def macs_ratio(model: bap.MultiDomainResNet26) -> float:
    return bap.count_cost(model, None, INPUT).macs / bap.reference_cost(model, None, INPUT).macs


def set_pattern(model: bap.MultiDomainResNet26, uniform: dict[str, torch.Tensor], p: float) -> None:
    """The same pattern for every domain: channel on where its fixed uniform draw is below ``p`` (the stem keeps
    the image's three channels)."""
    state = {name: (u < p) if name != "stem" else torch.ones_like(u, dtype=torch.bool) for name, u in uniform.items()}
    for domain in model.domains:
        model.set_switch_state(domain, state)


def search_p(model: bap.MultiDomainResNet26, uniform: dict[str, torch.Tensor], target: float) -> tuple[float, float]:
    """Bisection on the keep probability: the pattern is monotone in p (fixed draws), so is the MACs ratio."""
    lo, hi = 0.0, 1.0
    for _ in range(16):
        mid = (lo + hi) / 2
        set_pattern(model, uniform, mid)
        lo, hi = (mid, hi) if macs_ratio(model) < target else (lo, mid)
    p = (lo + hi) / 2
    set_pattern(model, uniform, p)
    return p, macs_ratio(model)


class OneDomain(nn.Module):
    def __init__(self, model: nn.Module, domain: str) -> None:
        super().__init__()
        self.model, self.domain = model, domain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x, self.domain)


def _jit_load(path: str) -> torch.jit.ScriptModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch marks torch.jit deprecated
        return torch.jit.load(path)


def ort_session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = CORES
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def onnx_as_is(model: nn.Module, path: Path) -> Path:
    """The padded pruned model's domain "a" traced to ONNX as it is (zero-masked columns stay in the kernels)."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(OneDomain(model, "a").eval(), (torch.randn(2, *INPUT),), str(path), dynamo=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=18,
                          training=torch.onnx.TrainingMode.PRESERVE)
    return path


def runner(kind: str, obj) -> Callable[[torch.Tensor, np.ndarray], object]:
    if kind == "eager":
        return lambda x, _n: obj(x, "a")
    if kind == "torchscript":
        return lambda x, _n: obj(x)
    return lambda _x, n: obj.run(None, {"input": n})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a short run: 2 rounds, rounding to 8 only")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 3, --quick 2)")
    parser.add_argument("--calls-b1", type=int, default=5, help="calls per round at batch 1")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 3)
    multiples = (8,) if args.quick else (8, 16)
    torch.set_num_threads(CORES)
    torch.manual_seed(0)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, onnxruntime {ort.__version__}, {CORES} cores, threads {CORES}, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")

    switched = bap.MultiDomainResNet26(DOMAINS, width=1.0, blocks=4).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # non-trivial BN statistics, so the exactness check can fail
        for module in switched.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.2)
                module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
    uniform = {name: torch.rand(mask.shape, generator=generator) for name, mask in switched.switch_state("a").items()}
    tmp = Path(tempfile.mkdtemp(prefix="pruned_latency_"))

    # variant name -> {kind: model/session}, plus counted MACs ratio and the reference model for the exactness check
    variants: dict[str, dict] = {}

    def add(name: str, model: bap.MultiDomainResNet26, eager: nn.Module, ratio: float, exported: bool,
            padded_onnx: bool = False) -> None:
        entry: dict = {"ratio": ratio, "ref": model, "eager": eager}
        if exported:
            entry["onnxruntime"] = ort_session(bap.export_domain(eager, "a", tmp / f"{len(variants)}.onnx",
                                                                 format="onnx", input_size=INPUT))
            entry["torchscript"] = _jit_load(str(bap.export_domain(
                eager, "a", tmp / f"{len(variants)}.pt", format="torchscript", input_size=INPUT))).eval()
        if padded_onnx:
            entry["onnxruntime"] = ort_session(onnx_as_is(eager, tmp / f"{len(variants)}.onnx"))
        variants[name] = entry

    start = time.perf_counter()
    set_pattern(switched, uniform, 1.1)
    full = switched
    add("unpruned (bap.prune, all on)", full, bap.prune(full).eval(), macs_ratio(full), exported=True)
    variants["switched model (all on)"] = {"ratio": macs_ratio(full), "ref": full, "eager": full}
    for target in TARGETS:
        model = copy.deepcopy(switched)
        p, ratio = search_p(model, uniform, target)
        model.eval()
        add(f"pruned {target:.2f} (p={p:.3f})", model, bap.prune(model).eval(), ratio, exported=True)
        for multiple in multiples:
            padded = bap.prune(model, channel_multiple=multiple).eval()
            add(f"pruned {target:.2f}, rounded to x{multiple}", model, padded, ratio, exported=False, padded_onnx=True)
    print(f"built and exported {len(variants)} variants in {time.perf_counter() - start:.0f} s")

    # exactness: every variant's domain "a" against the switched model's
    check = torch.randn(4, *INPUT)
    with torch.inference_mode():
        for name, entry in variants.items():
            want = entry["ref"](check, "a")
            for kind in ("eager", "onnxruntime", "torchscript"):
                if kind in entry:
                    got = runner(kind, entry[kind])(check, check.numpy())
                    got = torch.as_tensor(got[0] if isinstance(got, list) else got)
                    diff = (got - want).abs().max().item()
                    entry.setdefault("diff", {})[kind] = diff
                    assert diff <= 1e-4, f"{name} {kind}: max abs diff {diff}"
    worst = max(d for e in variants.values() for d in e["diff"].values())
    eager_pad = max(e["diff"]["eager"] for n, e in variants.items() if "rounded" in n)
    print(f"outputs match the switched model: max abs diff {worst:.2e} (rounded, eager: {eager_pad:.2e})")

    kinds = ("eager", "onnxruntime", "torchscript")
    times: dict[tuple[str, str, int], list[float]] = {}
    inputs = {b: torch.randn(b, *INPUT) for b in (1, 64)}
    arrays = {b: x.numpy() for b, x in inputs.items()}
    start = time.perf_counter()
    with torch.inference_mode():
        for round_ in range(rounds + 1):  # round 0 warms up
            for batch in (1, 64):
                calls = args.calls_b1 if batch == 1 else 1
                for name, entry in variants.items():
                    for kind in kinds:
                        if kind not in entry:
                            continue
                        run = runner(kind, entry[kind])
                        x, n = inputs[batch], arrays[batch]
                        if round_ == 0:  # warm-up: one call, not timed
                            run(x, n)
                            continue
                        samples = []
                        for _ in range(calls):
                            t0 = time.perf_counter()
                            run(x, n)
                            samples.append((time.perf_counter() - t0) * 1e3)
                        elapsed = statistics.median(samples)
                        times.setdefault((name, kind, batch), []).append(elapsed)
    print(f"timed {rounds} rounds in {time.perf_counter() - start:.0f} s; "
          f"load average now {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    med = {key: statistics.median(v) for key, v in times.items()}
    base = "unpruned (bap.prune, all on)"
    print("\nunpruned network, ms per batch (img/s):")
    for kind in kinds:
        cells = [f"b{b}: {med[base, kind, b]:.2f} ms ({b * 1e3 / med[base, kind, b]:.0f} img/s)" for b in (1, 64)]
        print(f"  {kind:12s} " + ", ".join(cells))
    print("\nlatency ratio to the unpruned network (ratio / MACs ratio); '-' = not built")
    header = ["variant", "MACs ratio"] + [f"{k} b{b}" for k in kinds for b in (1, 64)] + ["ms b64 eager/ort/ts"]
    print("| " + " | ".join(header) + " |")
    print("|---|" + "---:|" * (len(header) - 1))
    for name, entry in variants.items():
        cells = [name, f"{entry['ratio']:.3f}"]
        for kind in kinds:
            for batch in (1, 64):
                if (name, kind, batch) not in med:
                    cells.append("-")
                    continue
                r = med[name, kind, batch] / med[base, kind, batch]
                cells.append(f"{r:.3f} ({r / entry['ratio']:.2f})")
        cells.append(" / ".join(f"{med[name, k, 64]:.0f}" if (name, k, 64) in med else "-" for k in kinds))
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
