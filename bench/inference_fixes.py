"""Before/after of the fixes the latency measurements led to, timed side by side in one run (CPU, fp32).

1. **No identity gathers** (``bap.prune``, commit e815417). Before it, every pruned conv reading the residual stream
   picked its kept inputs with ``index_select`` even when it kept all of them: a full copy of the activations per
   conv. "Before" is the same pruned model with those identity indices put back (what the old code built).
   Timed: the pruned multi-domain model, ``model(x, "a")``.
2. **BNs folded into the convs** (``bap.single_domain_module(..., fold_norms=True)``, what onnxruntime does to an
   exported file). Before: the plain single-domain network with its BNs as separate layers (one more pass over
   every activation).
3. **Channels-last** kernels and images (``bap.latency.time_module(..., channels_last=True)``), the layout oneDNN's
   CPU convolutions run fastest on; before, torch's default (NCHW) layout.
4. **Channel counts rounded to multiples of 8** (``single_domain_module(..., channel_multiple=8)``: zero kernel
   slices for channels the domain does not read); before, the live counts exactly (e.g. 37 of 64).

2-4 together are how ``bap.latency`` times a trial's models: the plain single-domain network of domain ``a``,
and its latency ratio to the unpruned network run the same way -- the figure a trial reports.

A full Decathlon ResNet-26 (width 1, 4 blocks per stage, 64 px) with one shared random input-channel pattern per
keep probability (every switch on; about 0.5 and 0.25 of the MACs). Each variant runs once per round, rounds
interleaved, ``torch.utils.benchmark`` ``blocked_autorange`` per call (median); the figure is the median over rounds.

    python bench/inference_fixes.py            # 5 rounds, ~4 min on 2 idle CPU cores
    python bench/inference_fixes.py --quick    # 2 rounds, short measurements (a smoke run, not a measurement)
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bap  # noqa: E402
from bap.export import single_domain_module  # noqa: E402
from bap.latency import time_module, unpruned_network  # noqa: E402
from bap.prune import PrunedConv2d  # noqa: E402
from bench.pruned_latency import OneDomain, set_pattern  # noqa: E402

INPUT = (3, 64, 64)
DOMAINS = {"a": 10, "b": 10}
KEEP = {"all on": 1.1, "keep 0.7": 0.7, "keep 0.45": 0.45}


def with_identity_gathers(pruned: bap.MultiDomainNetwork) -> bap.MultiDomainNetwork:
    """The pruned model as the code before e815417 built it: a conv fed by the residual stream (or the image) that
    keeps every input still gathers them, through an identity index."""
    before = copy.deepcopy(pruned)
    consumers = {link.consumer for link in before.channel_links()}
    for name, conv in before.switched_convs():
        if isinstance(conv, PrunedConv2d) and name not in consumers and conv.in_index is None:
            conv.in_index = torch.arange(conv.in_channels)
    return before


SINGLE = ("single-domain, BNs kept, NCHW (before)", "single-domain, BNs folded, NCHW",
          "single-domain, BNs folded, channels-last", "single-domain, folded, channels-last, x8 (after)")
MULTI = ("multi-domain, identity gathers (before)", "multi-domain, no identity gathers (after)")


def single_domain_variants(model: bap.MultiDomainNetwork) -> dict[str, tuple[torch.nn.Module, bool]]:
    """Name -> (module, channels_last) of the four stages of fixes 2-4."""
    kept, folded = single_domain_module(model, "a"), single_domain_module(model, "a", fold_norms=True)
    rounded = single_domain_module(model, "a", fold_norms=True, channel_multiple=8)
    return {SINGLE[0]: (kept, False), SINGLE[1]: (folded, False), SINGLE[2]: (folded, True),
            SINGLE[3]: (rounded, True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 rounds of short measurements (a smoke run)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds (default 5, --quick 2)")
    args = parser.parse_args()
    rounds = args.rounds or (2 if args.quick else 5)
    min_time = 0.01 if args.quick else 0.3
    width, blocks = (0.25, 1) if args.quick else (1.0, 4)
    threads = os.cpu_count() or 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    load = os.getloadavg()
    print(f"torch {torch.__version__}, {threads} threads, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
          f"ResNet-26 width {width} blocks {blocks}, {INPUT[1]} px")
    model = bap.MultiDomainResNet26(DOMAINS, width=width, blocks=blocks).eval()
    uniform = {name: torch.rand(mask.shape) for name, mask in model.switch_state("a").items()}
    dense = unpruned_network(model)
    variants: dict[tuple[str, str], tuple[torch.nn.Module, bool]] = {
        ("unpruned", name): v for name, v in single_domain_variants(dense).items()}
    macs: dict[str, float] = {"unpruned": 1.0}
    x = torch.randn(4, *INPUT)
    for label, p in KEEP.items():
        set_pattern(model, uniform, p)
        macs[label] = bap.count_cost(model, "a", INPUT).macs / bap.reference_cost(model, None, INPUT).macs
        pruned = bap.prune(model).eval()
        variants[(label, MULTI[0])] = (OneDomain(with_identity_gathers(pruned), "a"), False)
        variants[(label, MULTI[1])] = (OneDomain(pruned, "a"), False)
        variants.update({(label, name): v for name, v in single_domain_variants(pruned).items()})
        with torch.inference_mode():  # every variant computes the switched model's outputs
            expected = model(x, "a")
            for (name, _), (module, _) in variants.items():
                if name == label:
                    assert torch.allclose(module(x), expected, atol=1e-4, rtol=1e-4), (label, name)
    times: dict[tuple[tuple[str, str], int], list[float]] = {}
    for _ in range(rounds):
        for batch in (1, 64):
            for key, (module, channels_last) in variants.items():
                ms = time_module(module, INPUT, batch, min_time_s=min_time, threads=threads,
                                 channels_last=channels_last)
                times.setdefault((key, batch), []).append(ms)
    median = {key: statistics.median(values) for key, values in times.items()}
    print("\n| network | variant | MACs ratio | batch 1 ms | batch 64 ms | ratio to the unpruned, b1 / b64 |")
    print("|---|---|---|---|---|---|")
    for key in variants:
        label, name = key
        base = name if name in SINGLE else SINGLE[0]  # the unpruned network run the same way
        ratios = [median[(key, b)] / median[(("unpruned", base), b)] for b in (1, 64)]
        print(f"| {label} | {name} | {macs[label]:.3f} | {median[(key, 1)]:.2f} | {median[(key, 64)]:.1f} | "
              f"{ratios[0]:.2f} / {ratios[1]:.2f} |")
    print("\nafter / before, same network, same round (median over rounds of the per-round quotient):")
    steps = ((MULTI[0], MULTI[1], "no identity gathers"), (SINGLE[0], SINGLE[1], "BNs folded"),
             (SINGLE[1], SINGLE[2], "+ channels-last"), (SINGLE[2], SINGLE[3], "+ counts rounded to x8"),
             (SINGLE[0], SINGLE[3], "all (what bap.latency times)"))
    for label in ("unpruned", *KEEP):
        for before, after, what in steps:
            if (label, before) not in variants:
                continue
            speedups = [statistics.median(a / b for a, b in zip(times[((label, after), batch)],
                                                                 times[((label, before), batch)], strict=True))
                        for batch in (1, 64)]
            print(f"  {label:<9} {what:<30} batch 1 {speedups[0]:.2f}x, batch 64 {speedups[1]:.2f}x the time")


if __name__ == "__main__":
    main()
