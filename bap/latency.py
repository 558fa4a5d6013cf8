"""Measured inference latency of a pruned multi-domain network, next to the unpruned one, per domain.

What is timed is what a deployment runs: each domain's plain single-domain network
(:func:`bap.export.single_domain_module`: the domain's unused channels removed -- the kept counts padded to a
multiple of :data:`CHANNEL_MULTIPLE` with zero kernel slices, which CPU kernels run faster than odd counts --, its
BNs folded into its convs as onnxruntime folds them in an exported file, its head), eval mode, kernels and images
channels-last, under ``torch.inference_mode``, with random images of the run's input size. Beside it, in the same call, the same
domain's *unpruned* network (every switch on, rebuilt from the model's config) is timed the same way, so the ratio
``pruned ms / unpruned ms`` is measured side by side on the same machine under the same load -- the figure to set
against the MACs ratio. Timing is ``torch.utils.benchmark``'s ``blocked_autorange`` (median over blocks, warm-up
first, CUDA synchronised); per batch size pruned and unpruned alternate for :data:`ROUNDS` rounds, each
``min_time_s / ROUNDS`` long, and the figures are medians over the rounds (the ratio: of the per-round ratios).

:func:`measure_latency` returns metrics under :mod:`bap.metrics`' names: per domain ``latency_<device>_b<batch>_ms/<d>``
(ms per call of a whole batch) and ``..._ratio/<d>``; flat, the slowest domain's ms and ``max ms / max unpruned
ms``; ``latency_threads`` (the torch threads used), ``latency_channel_multiple`` and ``latency_neighbours`` (other
training runs live on this machine when the timing started or when it ended -- the larger count --,
:mod:`bap.neighbours`: above 0 the times are noisy).
"""

from __future__ import annotations

import copy
import statistics
from collections.abc import Sequence

import torch
from torch import nn
from torch.utils import benchmark

from bap import metrics as M
from bap.export import single_domain_module
from bap.neighbours import other_runs
from bap.network import MultiDomainNetwork, network_from_config

__all__ = ["DEFAULT_MIN_TIME_S", "measure_latency", "time_module", "unpruned_network"]

DEFAULT_MIN_TIME_S = 0.2
CHANNEL_MULTIPLE = 8  # live channel counts padded to a multiple of 8: faster on CPUs than odd counts (RESULTS.md)
ROUNDS = 3  # pruned and unpruned alternate this many times per batch size: a burst of load skews one round only


def unpruned_network(model: MultiDomainNetwork) -> MultiDomainNetwork:
    """A network of ``model``'s architecture with every switch on (fresh weights: only its shapes are timed)."""
    dense = network_from_config(model.config, model.family)
    for domain in dense.domains:
        dense.set_switch_state(domain, {name: torch.ones(conv.in_channels, dtype=torch.bool)
                                        for name, conv in dense.switched_convs()})
    return dense.eval()


def time_module(module: nn.Module, input_size: tuple[int, int, int], batch: int, *,
                device: str | torch.device = "cpu", min_time_s: float = DEFAULT_MIN_TIME_S,
                threads: int | None = None, channels_last: bool = True) -> float:
    """Median milliseconds of one ``module(x)`` call on a batch of ``batch`` random images of ``input_size``.

    A copy of ``module`` is timed. ``channels_last``: time it with its kernels, and the images, in channels-last memory format
    (what oneDNN's CPU convolutions and cuDNN's run fastest on: ``bench/inference_fixes.py``)."""
    device = torch.device(device)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    module = copy.deepcopy(module).to(device=device, memory_format=memory_format).eval()  # the caller's stays put
    x = torch.randn(batch, *input_size, device=device).contiguous(memory_format=memory_format)
    timer = benchmark.Timer(stmt="run(x)", globals={"run": _inference(module), "x": x},
                            num_threads=threads or torch.get_num_threads())
    return timer.blocked_autorange(min_run_time=min_time_s).median * 1e3


def _inference(module: nn.Module):  # noqa: ANN202 - a closure for the timer's statement
    def run(x: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(x)

    return run


def measure_latency(
    model: MultiDomainNetwork,
    input_size: tuple[int, int, int],
    *,
    domains: Sequence[str] | None = None,
    device: str | torch.device = "cpu",
    min_time_s: float = DEFAULT_MIN_TIME_S,
    threads: int | None = None,
    batches: Sequence[int] = M.LATENCY_BATCHES,
    channel_multiple: int | None = CHANNEL_MULTIPLE,
) -> dict[str, float]:
    """Time ``model``'s domains (a pruned or a switched network) and their unpruned twins on ``device``.

    Args:
        model: the network; left unchanged (its single-domain modules are copies).
        input_size: ``(C, H, W)`` the network sees.
        domains: which domains (default: all); the flat metrics cover these.
        device: ``"cpu"`` or a CUDA device (``"cuda"``, ``"cuda:1"``); the metric names say ``cpu`` or ``cuda``.
        min_time_s: seconds each network runs at least per batch size (split over :data:`ROUNDS` rounds).
        threads: torch threads for the timing (default: ``torch.get_num_threads()``, what the run was given).
        batches: batch sizes, each one of :data:`bap.metrics.LATENCY_BATCHES`.
        channel_multiple: live channel counts padded to a multiple of this (:func:`bap.single_domain_module`;
            ``export_domain(model, ..., channel_multiple=8)`` writes the same network of the same model); None:
            the live channels exactly.

    Raises:
        ValueError: an unknown device or batch size, naming the allowed values; KeyError: an unknown domain.
    """
    try:
        kind = torch.device(device).type
    except RuntimeError:  # not a device torch knows
        kind = str(device)
    if kind not in M.LATENCY_DEVICES:
        raise ValueError(f"latency device {device!r} is not one of {', '.join(M.LATENCY_DEVICES)} (or cuda:N)")
    names = list(model.domains if domains is None else domains)
    for name in names:
        model.domain_index(name)
    threads = threads or torch.get_num_threads()
    neighbours = other_runs()
    dense = unpruned_network(model)
    out: dict[str, float] = {}
    slowest: dict[int, tuple[float, float]] = {}
    for name in names:
        pruned = single_domain_module(model, name, fold_norms=True, channel_multiple=channel_multiple)
        unpruned = single_domain_module(dense, name, fold_norms=True, channel_multiple=channel_multiple)
        for batch in batches:
            ms_name = M.latency_metric(kind, batch)
            pairs = [(time_module(pruned, input_size, batch, device=device, min_time_s=share, threads=threads),
                      time_module(unpruned, input_size, batch, device=device, min_time_s=share, threads=threads))
                     for share in [min_time_s / ROUNDS] * ROUNDS]
            ms, ref = statistics.median(p for p, _ in pairs), statistics.median(r for _, r in pairs)
            out[M.domain_metric(ms_name, name)] = ms
            out[M.domain_metric(M.latency_metric(kind, batch, M.LATENCY_RATIO), name)] = statistics.median(
                p / r for p, r in pairs)
            worst_ms, worst_ref = slowest.get(batch, (0.0, 0.0))
            slowest[batch] = (max(worst_ms, ms), max(worst_ref, ref))
    for batch, (ms, ref) in slowest.items():
        out[M.latency_metric(kind, batch)] = ms
        out[M.latency_metric(kind, batch, M.LATENCY_RATIO)] = ms / ref
    out[M.LATENCY_THREADS] = float(threads)
    out[M.LATENCY_CHANNEL_MULTIPLE] = float(channel_multiple or 1)
    out[M.LATENCY_NEIGHBOURS] = float(max(neighbours, other_runs()))
    return out
