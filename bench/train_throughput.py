"""Training images/s of the switched multi-domain ResNet-26 against a plain ResNet-26 of the same width.

Both train on the same batches in one run (interleaved rounds, best of N), so the ratio is measured side by side.
Plain = ordinary nn.Conv2d/BatchNorm2d ResNet-26 with every weight trained; switched = frozen shared kernels with
per-domain input-channel switches (STE), per-domain BNs and heads trained (what a budget-aware run trains).
Goal (issue 3): the switches cost <= 10% (ratio >= 0.90).

    python bench/train_throughput.py                      # CPU: width 0.5, 32 px, batch 64
    python bench/train_throughput.py --width 1 --size 64 --batch 512 --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F
from torch import nn

from bap import MultiDomainResNet26
from bap.model import ZeroPadShortcut
from bap.runtime import autocast, input_layout, resolve_device, to_device_layout


class PlainBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = ZeroPadShortcut(cin, cout, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


def plain_resnet26(width: float, blocks: int, classes: int) -> nn.Module:
    stem, *stages = (max(1, round(w * width)) for w in (32, 64, 128, 256))
    layers: list[nn.Module] = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem)]
    cin = stem
    for cout in stages:
        for i in range(blocks):
            layers.append(PlainBlock(cin, cout, 2 if i == 0 else 1))
            cin = cout
    layers += [nn.BatchNorm2d(cin), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, classes)]
    return nn.Sequential(*layers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)
    plain = to_device_layout(plain_resnet26(args.width, args.blocks, 10), device)
    models = {"plain (all weights trained)": (plain, lambda m, x: m(x))}
    for form in ("activation", "kernel"):
        switched = MultiDomainResNet26({"a": 10, "b": 10}, width=args.width, blocks=args.blocks, switch_form=form)
        models[f"switched, {form} form"] = (to_device_layout(switched, device), lambda m, x: m(x, "a"))
    optimizers = {name: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
                  for name, (m, _) in models.items()}
    best = {name: 0.0 for name in models}
    batch = input_layout(x)
    for round_ in range(args.rounds + 1):  # round 0 warms up
        for name, (model, call) in models.items():
            model.train()
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(args.steps):
                with autocast(device, True):
                    loss = F.cross_entropy(call(model, batch).float(), y)
                optimizers[name].zero_grad(set_to_none=True)
                loss.backward()
                optimizers[name].step()
            if device.type == "cuda":
                torch.cuda.synchronize()
            rate = args.steps * args.batch / (time.perf_counter() - start)
            if round_ > 0:
                best[name] = max(best[name], rate)
    plain_rate = best["plain (all weights trained)"]
    print(f"device {device}, width {args.width}, {args.blocks} blocks/stage, {args.size} px, batch {args.batch}, "
          f"threads {torch.get_num_threads()}")
    for name, rate in best.items():
        print(f"  {name:<30} {rate:9.1f} images/s   ratio to plain {rate / plain_rate:.3f}")
    fastest = max(rate for name, rate in best.items() if name.startswith("switched"))
    verdict = "PASS" if fastest / plain_rate >= 0.90 else "FAIL"
    print(f"fastest switched form / plain = {fastest / plain_rate:.3f}  (goal >= 0.90: {verdict})")


if __name__ == "__main__":
    main()
