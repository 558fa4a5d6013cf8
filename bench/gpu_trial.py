"""Training speed of one sweep trial on one GPU, against the H200 anchor (paper.md §9).

Synthetic data, ResNet-26 (width 1, 4 blocks per stage), bf16 autocast and channels_last on CUDA, SGD. Measured in
one run, side by side:

1. images/s of the plain network (every weight trained) and of the switched one (frozen shared convs, per-domain
   switches, BNs and heads trained; 10 domains, one domain's batch per step, round robin), eager and compiled
   (``bap.compiled.CompiledDomains``: one graph serves every domain), at 64 px (the anchor's size) and 72 px,
   with the achieved TFLOP/s against the device's bf16 peak (training FLOPs counted as 3 x forward, as the anchor);
2. the aggregate images/s of 1, 2, 4 and 8 trial processes sharing the GPU as Ray fractional GPUs would place them
   (switched, eager, batch 128, as the anchor; plain processes started together, each timing the same window);
3. one joint-training epoch over nine domains of ~174k packed uint8 images in all (the non-ImageNet Decathlon
   training sets), 72 px stored, random 64 px crops and flips on the device, switched and compiled, batch 512 per
   domain.

Goals (issue 16): switched compiled at 64 px >= 40k img/s at b512; switches cost <= 10 % against plain compiled;
4 packed trials >= 3.5x one trial; the epoch in <= 10 s. Needs only torch (no Ray): ``python bench/gpu_trial.py``
(under 5 minutes on an H200); ``--smoke`` runs everything tiny on the CPU (compiling with Dynamo's ``eager`` backend:
it checks the script and the one-graph tracing, not inductor) in about a minute.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, bap not installed

from bap import MultiDomainResNet26  # noqa: E402
from bap.compiled import CompiledDomains  # noqa: E402
from bap.cost import reference_cost  # noqa: E402
from bap.data.domain import DomainData, DomainSplit  # noqa: E402
from bap.data.transforms import prepare_batch  # noqa: E402
from bap.runtime import autocast, input_layout, to_device_layout  # noqa: E402
from bench.train_throughput import plain_resnet26  # noqa: E402

DOMAINS = {f"domain{i}": 10 + i for i in range(10)}
# dense bf16 tensor-core peaks (TFLOP/s), from the vendors' data sheets
BF16_PEAKS = {"H200": 989.4, "H100": 989.4, "A100": 312.0, "L40S": 362.1, "L4": 121.0}
DECATHLON_TRAIN_IMAGES = 174_000


@dataclass(frozen=True)
class Settings:
    device: torch.device
    width: float
    blocks: int
    sizes: tuple[int, ...]
    batch: int
    steps: int
    trial_batch: int
    concurrency: tuple[int, ...]
    window_s: float
    epoch_images: int
    epoch_stored: int
    epoch_crop: int
    backend: str = "inductor"  # torch.compile's backend (the smoke run only traces: "eager")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _switched(s: Settings) -> MultiDomainResNet26:
    return to_device_layout(MultiDomainResNet26(DOMAINS, width=s.width, blocks=s.blocks), s.device)


def _step_fn(s: Settings, kind: str, compiled: bool) -> tuple[Callable[[torch.Tensor, int], None], torch.nn.Module]:
    """One training step ``step(x, i)`` (i picks the domain, round robin) and the model it trains."""
    names = list(DOMAINS)
    if kind == "plain":
        model = to_device_layout(plain_resnet26(s.width, s.blocks, 10), s.device)
        forward = torch.compile(model, backend=s.backend) if compiled else model

        def call(x: torch.Tensor, i: int) -> torch.Tensor:
            return forward(x)
    else:
        model = _switched(s)
        forward = CompiledDomains(model, backend=s.backend) if compiled else model

        def call(x: torch.Tensor, i: int) -> torch.Tensor:
            return forward(x, names[i % len(names)])
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    labels = torch.zeros(s.batch, dtype=torch.long, device=s.device)

    def step(x: torch.Tensor, i: int) -> None:
        with autocast(s.device, True):
            logits = call(x, i)
        loss = F.cross_entropy(logits.float(), labels[: len(x)])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step, model


def _rate(step: Callable[[torch.Tensor, int], None], x: torch.Tensor, steps: int, device: torch.device) -> float:
    for i in range(len(DOMAINS) + 2):  # warm up every domain (and compile)
        step(x, i)
    _sync(device)
    start = time.perf_counter()
    for i in range(steps):
        step(x, i)
    _sync(device)
    return steps * len(x) / (time.perf_counter() - start)


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in BF16_PEAKS.items() if key in name), None)


def single_trial_table(s: Settings) -> list[dict[str, object]]:
    rows = []
    peak = _peak(s.device)
    for size in s.sizes:
        x = input_layout(torch.randn(s.batch, 3, size, size, device=s.device))
        flops = 3 * reference_cost(_switched(s).cpu(), "domain0", (3, size, size)).flops
        for kind in ("plain", "switched"):
            for compiled in (False, True):
                torch.manual_seed(0)
                step, _ = _step_fn(s, kind, compiled)
                rate = _rate(step, x, s.steps, s.device)
                tflops = rate * flops / 1e12
                rows.append({"size": size, "model": kind, "compiled": compiled, "batch": s.batch, "img/s": rate,
                             "TFLOP/s": tflops, "of peak": None if peak is None else tflops / peak})
    return rows


def _trial_process(s: Settings, start: mp.Event, out: mp.Queue) -> None:  # type: ignore[valid-type]
    torch.manual_seed(0)
    step, _ = _step_fn(s, "switched", compiled=False)
    x = input_layout(torch.randn(s.trial_batch, 3, s.sizes[0], s.sizes[0], device=s.device))
    for i in range(len(DOMAINS)):
        step(x, i)
    _sync(s.device)
    out.put("ready")
    start.wait()
    images, began = 0, time.perf_counter()
    while time.perf_counter() - began < s.window_s:
        for i in range(4):
            step(x, i)
        _sync(s.device)
        images += 4 * len(x)
    out.put(images / (time.perf_counter() - began))


def concurrency_table(s: Settings) -> list[dict[str, object]]:
    context = mp.get_context("spawn")  # CUDA cannot be forked
    rows = []
    for count in s.concurrency:
        start, out = context.Event(), context.Queue()
        procs = [context.Process(target=_trial_process, args=(s, start, out)) for _ in range(count)]
        for proc in procs:
            proc.start()
        for _ in procs:
            assert out.get(timeout=600) == "ready"
        start.set()
        rates = [out.get(timeout=600) for _ in procs]
        for proc in procs:
            proc.join()
        rows.append({"trials": count, "batch": s.trial_batch, "aggregate img/s": sum(rates),
                     "per trial": sum(rates) / count})
    single = rows[0]["aggregate img/s"]
    for row in rows:
        row["x one trial"] = row["aggregate img/s"] / single  # type: ignore[operator]
    return rows


def epoch_seconds(s: Settings) -> dict[str, object]:
    """One joint-training epoch: every step a batch of every domain, augmented on the device from packed uint8."""
    domains = {f"domain{i}": 10 + i for i in range(9)}
    per_domain = s.epoch_images // len(domains)
    model = to_device_layout(MultiDomainResNet26(domains, width=s.width, blocks=s.blocks), s.device)
    forward = CompiledDomains(model, backend=s.backend)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    generator = torch.Generator(device=s.device).manual_seed(0)
    data, images, labels = {}, {}, {}
    for name, classes in domains.items():
        stored = torch.randint(0, 256, (per_domain, 3, s.epoch_stored, s.epoch_stored), dtype=torch.uint8,
                               device=s.device, generator=generator)
        images[name] = stored
        labels[name] = torch.randint(0, classes, (per_domain,), device=s.device, generator=generator)
        empty = DomainSplit(stored[:0].cpu(), labels[name][:0].cpu())
        data[name] = DomainData(name, classes, empty, empty, empty, (0.5,) * 3, (0.25,) * 3, s.epoch_crop, True,
                                tuple(map(str, range(classes))))

    def run(steps: int) -> None:
        for _ in range(steps):
            loss = torch.zeros((), device=s.device)
            for name in domains:
                index = torch.randint(0, per_domain, (s.batch,), device=s.device, generator=generator)
                x = input_layout(prepare_batch(images[name][index], data[name], train=True, generator=generator))
                with autocast(s.device, True):
                    logits = forward(x, name)
                loss = loss + F.cross_entropy(logits.float(), labels[name][index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()

    run(2)  # compile
    _sync(s.device)
    steps = max(1, per_domain // s.batch)
    start = time.perf_counter()
    run(steps)
    _sync(s.device)
    seconds = time.perf_counter() - start
    return {"images": steps * s.batch * len(domains), "steps": steps, "seconds": seconds,
            "img/s": steps * s.batch * len(domains) / seconds}


def _fmt(value: object) -> str:
    return f"{value:,.1f}" if isinstance(value, float) else str(value)


def print_table(title: str, rows: list[dict[str, object]]) -> None:
    print(f"\n{title}")
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        cells = []
        for key in header:
            value = row[key]
            if key == "of peak":
                cells.append("n/a" if value is None else f"{value:.1%}")
            elif key == "TFLOP/s":
                cells.append(f"{value:.1f}")
            elif key == "x one trial":
                cells.append(f"{value:.2f}x")
            else:
                cells.append(_fmt(value))
        print("| " + " | ".join(cells) + " |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="everything tiny, on the CPU: checks the script runs")
    parser.add_argument("--skip", nargs="*", default=[], choices=["single", "concurrency", "epoch"])
    args = parser.parse_args(argv)
    if args.smoke:
        s = Settings(torch.device("cpu"), width=0.125, blocks=1, sizes=(16,), batch=8, steps=2, trial_batch=4,
                     concurrency=(1, 2), window_s=0.5, epoch_images=72, epoch_stored=18, epoch_crop=16,
                     backend="eager")
    else:
        if not torch.cuda.is_available():
            print("error: no CUDA device (use --smoke to check the script on the CPU)", file=sys.stderr)
            return 2
        torch.backends.cudnn.benchmark = True
        s = Settings(torch.device("cuda"), width=1.0, blocks=4, sizes=(64, 72), batch=512, steps=30, trial_batch=128,
                     concurrency=(1, 2, 4, 8), window_s=8.0, epoch_images=DECATHLON_TRAIN_IMAGES, epoch_stored=72,
                     epoch_crop=64)
    name = torch.cuda.get_device_name(s.device) if s.device.type == "cuda" else "CPU"
    print(f"bench/gpu_trial.py on {name}, torch {torch.__version__}, ResNet-26 width {s.width}, {s.blocks} blocks/stage")
    began = time.perf_counter()
    if "single" not in args.skip:
        rows = single_trial_table(s)
        print_table("one trial (training images/s; TFLOP/s = 3 x forward FLOPs x img/s)", rows)
        by = {(r["size"], r["model"], r["compiled"]): r["img/s"] for r in rows}
        size = s.sizes[0]
        switched, plain = by[(size, "switched", True)], by[(size, "plain", True)]
        print(f"switched compiled / plain compiled at {size} px: {switched / plain:.3f} (goal >= 0.90); "  # type: ignore[operator]
              f"switched compiled {switched:,.0f} img/s (goal >= 40,000 on an H200)")
    if "concurrency" not in args.skip:
        rows = concurrency_table(s)
        print_table(f"trials sharing the device (switched, eager, {s.sizes[0]} px)", rows)
        four = next((r for r in rows if r["trials"] == 4), None)
        if four is not None:
            print(f"4 trials: {four['x one trial']:.2f}x one trial (goal >= 3.5x)")
    if "epoch" not in args.skip:
        epoch = epoch_seconds(s)
        print(f"\none joint epoch over 9 domains: {epoch['images']:,} images ({epoch['steps']} steps of {s.batch} per "
              f"domain), {epoch['seconds']:.2f} s, {epoch['img/s']:,.0f} img/s (goal <= 10 s for ~174k images)")
    print(f"\nwhole benchmark: {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
