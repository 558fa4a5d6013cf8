"""One budget-aware training run as a function (the loop behind :func:`bap.train.train`, the unit a sweep trial calls).

Joint training (paper.md §2.3(a)): every optimizer step takes one batch from **every** domain (a mixed step, not
round-robin), sums the per-domain cross-entropies, each domain's budget penalty and the sharing loss over all
domains' switches. Small domains are cycled (reshuffled each pass) so that an epoch covers the largest domain once.

The budget is reached by training and then kept as a promise (:mod:`bap.budget`): each domain's target usage anneals
from 1.0 to its budget over the first ``budget_anneal`` of the steps; at the start of the last ``recovery`` of the
steps (or after the last step) any domain still over budget has its lowest-valued ON switches turned off until it
is within it -- after annealing a formality, reported as ``enforced_switches_off`` -- and the switches freeze while
the BNs and heads recover. Every epoch also reports the **budget-feasible** accuracy (``feasible_*``): that of the
network the run would deliver now, its budget enforced on a copy of the switches and BN statistics re-estimated,
which is what early stopping and the search rank. Before every evaluation the BN running
statistics are re-estimated on training batches under the current switches (momentum averages lag behind switches
that flip; training itself uses batch statistics, so this changes no training step). Then the model is pruned, the pruned
network's val predictions are compared with the switched one's (``pruned_agreement``), and ``metrics.json`` plus
``pruned/`` are written.

After every epoch a checkpoint directory is written and handed to ``report(metrics, checkpoint_dir)``;
``resume_from`` continues after that epoch and gives the same result as an uninterrupted run (each epoch's data
order and augmentation come from a generator seeded by (seed, epoch)).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from bap import metrics as M
from bap.budget import BudgetSchedule, enforce_budget, feasible_switches, within_budget
from bap.compiled import CompiledDomains, resolve_compile
from bap.config import TrainConfig
from bap.cost import Cost, count_cost, reference_cost, switch_costs, unpruned_cost
from bap.data import DomainData, load_data, prepare_batch
from bap.entrypoint import Report
from bap.evaluate import accuracies, predict
from bap.latency import measure_latency
from bap.losses import BudgetConstraint, SharingLoss, usage
from bap.neighbours import registered_run
from bap.network import MultiDomainNetwork, build_network
from bap.pretrain import ensure_backbone
from bap.prune import prune, save_pruned
from bap.runtime import (
    autocast,
    cycled_order,
    generator_for,
    input_layout,
    resolve_device,
    seed_everything,
    to_device_layout,
)
from bap.score import DECATHLON_BASELINE_ERRORS, decathlon_score
from bap.switches import binarize

CHECKPOINT_FILE = "state.pt"


def select_datasets(config: TrainConfig, data: Mapping[str, DomainData] | None) -> dict[str, DomainData]:
    """The run's domains, in a stable order: ``data`` (preloaded, e.g. shared by a sweep) or loaded from disk."""
    if data is None:
        return load_data(config.data, config.domains, cache_dir=config.cache_dir, size=config.image_size,
                         crop=config.crop)
    if config.domains is None:
        return dict(data)
    unknown = [d for d in config.domains if d not in data]
    if unknown:
        raise KeyError(f"unknown domains {unknown}; the data has domains {list(data)}")
    return {d: data[d] for d in config.domains}


def stacked_switches(model: MultiDomainNetwork) -> torch.Tensor:
    """All domains' binary switches, ``(domains, N)``, with straight-through gradients."""
    return torch.cat([binarize(conv.scores, conv.threshold) for _, conv in model.switched_convs()], dim=1)


class _Run:
    """The state of one run: model, losses, optimizers; built identically for a fresh start and for a resume."""

    def __init__(self, config: TrainConfig, datasets: dict[str, DomainData], device: torch.device) -> None:
        self.config, self.datasets, self.device = config, datasets, device
        crops = {d.crop for d in datasets.values()}
        if len(crops) != 1:
            raise ValueError(f"every domain must use the same input crop, got {crops}")
        crop = crops.pop()
        self.input_size = (3, crop, crop)
        seed_everything(config.seed)
        model = build_network(
            config.arch, {name: d.num_classes for name, d in datasets.items()},
            width=config.width, blocks=config.blocks, switch_init=config.switch_init,
            threshold=config.switch_threshold, switch_form=config.switch_form, train_backbone=config.train_backbone,
        )
        backbone = str(ensure_backbone(config, datasets)) if config.needs_pretraining else config.pretrained
        if backbone is not None:
            model.load_backbone(backbone)
        self.backbone = backbone
        self.costs = torch.cat(switch_costs(model, config.budget_cost, self.input_size)).to(device)  # type: ignore[arg-type]
        sharing_cost = config.sharing_cost or config.budget_cost
        self.sharing_costs = self.costs if sharing_cost == config.budget_cost else torch.cat(
            switch_costs(model, sharing_cost, self.input_size)).to(device)  # type: ignore[arg-type]
        self.model = to_device_layout(model, device)
        self.compiled = resolve_compile(config.compile, device)
        self.forward = CompiledDomains(self.model) if self.compiled else self.model
        domains = len(datasets)
        self.budget = BudgetConstraint([config.budget] * domains, penalty=config.budget_penalty,  # type: ignore[arg-type]
                                       dual_lr=config.dual_lr, hinge_weight=config.hinge_weight).to(device)
        self.sharing = SharingLoss(config.sharing, weight=config.sharing_weight,  # type: ignore[arg-type]
                                   learnable=config.sharing_learnable, union_budget=config.union_budget).to(device)
        self.switch_optimizer = torch.optim.Adam(
            [*self.model.switch_parameters(), *self.sharing.parameters()], lr=config.switch_lr
        )
        others = [p for n, p in self.model.named_parameters() if p.requires_grad and not n.endswith("scores")]
        if config.optimizer == "sgd":
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(
                others, lr=config.lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.AdamW(others, lr=config.lr, weight_decay=config.weight_decay)
        largest = max(len(d.train.labels) for d in datasets.values())
        self.steps = max(1, largest // config.batch_size)
        if config.steps_per_epoch is not None:
            self.steps = min(self.steps, config.steps_per_epoch)
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=config.epochs * self.steps)
        self.budget_schedule = BudgetSchedule.of(config.epochs * self.steps, config.budget_anneal, config.recovery)
        self.enforced: dict[str, int] | None = None  # switches the final enforcement turned off, once it ran
        self.train_images = {n: d.train.images.to(device) for n, d in datasets.items()}
        self.train_labels = {n: d.train.labels.to(device) for n, d in datasets.items()}
        self.history: list[dict[str, float]] = []
        self.unpruned = unpruned_cost(model, self.input_size)
        self.start_epoch = 0

    # -- checkpoints ---------------------------------------------------------------------------------------------
    def state_dict(self, epoch: int) -> dict[str, Any]:
        return {
            "epoch": epoch, "config": self.config.to_dict(), "model": self.model.state_dict(),
            "budget": self.budget.state_dict(), "sharing": self.sharing.state_dict(),
            "optimizer": self.optimizer.state_dict(), "switch_optimizer": self.switch_optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "history": self.history, "backbone": self.backbone,
            "enforced": self.enforced,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.budget.load_state_dict(state["budget"])
        self.sharing.load_state_dict(state["sharing"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.switch_optimizer.load_state_dict(state["switch_optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self.history = list(state["history"])
        self.enforced = state.get("enforced")
        self.start_epoch = int(state["epoch"]) + 1

    # -- one epoch -------------------------------------------------------------------------------------------------
    def enforce(self) -> None:
        """The final enforcement (once): every domain within its budget; the switches freeze from here on."""
        if self.enforced is None:
            self.enforced = enforce_budget(self.model, self.budget.budgets, self.costs)

    def _switch_terms(self, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(switches, usages, annealed targets, budget penalty + sharing loss) at global ``step``."""
        switches = stacked_switches(self.model)
        usages = usage(switches, self.costs)
        targets = self.budget_schedule.targets(self.budget.budgets, step)
        penalty = sum(self.budget.penalty(usages[d], d, targets[d]) for d in range(len(self.datasets)))
        return switches, usages, targets, penalty + self.sharing(switches, self.sharing_costs)

    def _step(self, step: int, batches: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
              sums: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step over a batch of every domain; returns (total loss, raw sharing loss) as tensors on
        the device, and adds each domain's loss to ``sums`` there: nothing in a step waits for the GPU."""
        config, device = self.config, self.device
        loss = torch.zeros((), device=device)
        for name, (x, y) in batches.items():
            with autocast(device, config.amp):
                logits = self.forward(x, name)
            ce = F.cross_entropy(logits.float(), y)
            sums[name] += ce.detach()
            loss = loss + ce
        frozen = self.budget_schedule.frozen(step)  # recovery: only BNs and heads train
        if not frozen:
            switches, usages, targets, terms = self._switch_terms(step)
            loss = loss + terms
        self.optimizer.zero_grad(set_to_none=True)
        self.switch_optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        self.schedule.step()
        if frozen:
            return loss.detach(), torch.zeros((), device=device)
        self.switch_optimizer.step()
        self.budget.dual_steps(usages.detach(), targets)
        with torch.no_grad():
            return loss.detach(), self.sharing.raw(switches.detach(), self.sharing_costs)

    def train_epoch(self, epoch: int, progress: bool) -> dict[str, float]:
        config, device = self.config, self.device
        generator = generator_for(config.seed, epoch, device=device if device.type == "cuda" else "cpu")
        batch = config.batch_size
        orders = {n: cycled_order(len(d.train.labels), self.steps * batch, generator).to(device)
                  for n, d in self.datasets.items()}
        sums = {name: torch.zeros((), device=device) for name in self.datasets}
        total_loss = torch.zeros((), device=device)
        sharing_total = torch.zeros((), device=device)
        self.model.train()
        steps = range(self.steps)
        if progress:
            from tqdm import tqdm

            steps = tqdm(steps, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, dynamic_ncols=True)
        for step in steps:
            global_step = epoch * self.steps + step
            if global_step == self.budget_schedule.enforce_step:
                self.enforce()
            batches = {}
            for name, data in self.datasets.items():
                index = orders[name][step * batch : (step + 1) * batch]
                batches[name] = (input_layout(prepare_batch(self.train_images[name][index], data, train=True,
                                                            generator=generator)), self.train_labels[name][index])
            loss, sharing = self._step(global_step, batches, sums)
            total_loss += loss
            sharing_total += sharing
        out = {M.domain_metric(M.DOMAIN_TRAIN_LOSS, n): float(s) / self.steps for n, s in sums.items()}
        out[M.TRAIN_LOSS] = float(total_loss) / self.steps
        out[M.SHARING_LOSS] = float(sharing_total) / self.steps
        out[M.BUDGET_TARGET] = float(self.budget_schedule.targets(self.budget.budgets, (epoch + 1) * self.steps)[0])
        return out

    @torch.no_grad()
    def recalibrate_norms(self, epoch: int, images_per_domain: int = 1024, key: int = 7) -> None:
        """Re-estimate every domain's BN running statistics under its current switches (cumulative average)."""
        model, batch = self.model, self.config.eval_batch_size
        norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        momenta = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        generator = generator_for(self.config.seed, epoch, key)
        for name, data in self.datasets.items():
            count = min(images_per_domain, len(data.train.labels))
            order = torch.randperm(len(data.train.labels), generator=generator)[:count].to(self.device)
            for start in range(0, count, batch):
                x = input_layout(prepare_batch(self.train_images[name][order[start : start + batch]], data,
                                               train=True, generator=generator))
                with autocast(self.device, self.config.amp):
                    model(x, name)
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum

    # -- metrics ---------------------------------------------------------------------------------------------------
    def _accuracies(self, split: str) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        predictions = {n: predict(self.model, d, split, device=self.device, batch_size=self.config.eval_batch_size,
                                  amp=self.config.amp) for n, d in self.datasets.items()}
        return accuracies(predictions, self.datasets, split), predictions

    def _feasible(self, epoch: int, accs: Mapping[str, float]) -> dict[str, float]:
        """Accuracy of the network the run would deliver now: the budget enforced, BN statistics re-estimated
        (equal to ``accs`` when every domain is within budget already). The run itself is left unchanged."""
        if not within_budget(self.model, self.budget.budgets, self.costs):
            with feasible_switches(self.model, self.budget.budgets, self.costs):
                self.recalibrate_norms(epoch, key=8)
                accs, _ = self._accuracies("val")
        out = {M.domain_metric(M.FEASIBLE_VAL_ACC, n): a for n, a in accs.items()}
        out[M.FEASIBLE_MEAN_VAL_ACC] = sum(accs.values()) / len(accs)
        out[M.FEASIBLE_SCORE] = self.score(accs)
        return out

    def _costs(self) -> dict[str, float]:
        model, size = self.model, self.input_size
        with torch.no_grad():
            switches = stacked_switches(model)
            usages = usage(switches, self.costs).cpu().tolist()
            on = switches.float().mean(dim=1).cpu().tolist()
        out: dict[str, float] = {}
        for d, name in enumerate(self.datasets):
            cost, reference = count_cost(model, name, size), reference_cost(model, name, size)
            out[M.domain_metric(M.USAGE, name)] = usages[d]
            out[M.domain_metric(M.SWITCHES_ON, name)] = on[d]
            out[M.domain_metric(M.PARAMS, name)] = float(cost.params)
            out[M.domain_metric(M.MACS, name)] = float(cost.macs)
            out[M.domain_metric(M.PARAMS_RATIO, name)] = cost.params / reference.params
            out[M.domain_metric(M.MACS_RATIO, name)] = cost.macs / reference.macs
            out[M.domain_metric(M.DUAL, name)] = float(self.budget.multipliers[d])
        union, reference = count_cost(model, None, size), reference_cost(model, None, size)
        out.update({
            M.UNION_PARAMS: float(union.params), M.UNION_MACS: float(union.macs),
            M.UNION_PARAMS_RATIO: union.params / reference.params, M.UNION_MACS_RATIO: union.macs / reference.macs,
            M.SHARING_WEIGHT: self.sharing.weight,
            M.UNPRUNED_PARAMS: float(self.unpruned.params), M.UNPRUNED_MACS: float(self.unpruned.macs),
        })
        return out

    def evaluate(self, epoch: int) -> tuple[dict[str, float], dict[str, torch.Tensor]]:
        """Val accuracies (current and budget-feasible), Decathlon scores and costs; and the val predictions."""
        accs, predictions = self._accuracies("val")
        out: dict[str, float] = {M.BUDGET: self.config.budget, M.MEAN_VAL_ACC: sum(accs.values()) / len(accs),
                                 M.SCORE: self.score(accs)}
        out.update({M.domain_metric(M.VAL_ACC, name): acc for name, acc in accs.items()})
        out.update(self._costs())
        out.update(self._feasible(epoch, accs))
        return out, predictions

    def score(self, accs: Mapping[str, float]) -> float:
        baseline = {n: d.baseline_error for n, d in self.datasets.items() if d.baseline_error is not None}
        if any(n not in baseline and n not in DECATHLON_BASELINE_ERRORS for n in accs):
            return math.nan  # a domain without a baseline error: no Decathlon score
        return decathlon_score(accs, baseline)


def _save_checkpoint(run: _Run, out_dir: Path, epoch: int) -> Path:
    root = out_dir / M.CHECKPOINTS_DIR
    directory = root / f"epoch_{epoch:04d}"
    directory.mkdir(parents=True, exist_ok=True)
    torch.save(run.state_dict(epoch), directory / CHECKPOINT_FILE)
    for old in root.glob("epoch_*"):
        if old != directory and old.name < directory.name:
            shutil.rmtree(old, ignore_errors=True)
    return directory


def latest_checkpoint(out_dir: str | Path) -> Path | None:
    """The newest checkpoint directory under ``out_dir``, if any."""
    found = sorted((Path(out_dir) / M.CHECKPOINTS_DIR).glob(f"epoch_*/{CHECKPOINT_FILE}"))
    return found[-1].parent if found else None


def train(
    config: TrainConfig,
    out_dir: str | Path,
    *,
    data: Mapping[str, DomainData] | None = None,
    report: Report | None = None,
    resume_from: str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """The run behind :func:`bap.train.train`, which documents the arguments."""
    started = time.perf_counter()
    config.validate()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = resolve_device(config.device)
    with registered_run():  # from the start: pretraining a backbone loads the machine too
        run = _Run(config, select_datasets(config, data), device)
        if resume_from is not None:
            state = torch.load(Path(resume_from) / CHECKPOINT_FILE, map_location=device, weights_only=False)
            run.load_state_dict(state)
        result = _epochs(run, out_dir, report, progress, started)
    if not result:  # resumed from the final checkpoint: nothing left to train
        result = json.loads((out_dir / M.METRICS_FILE).read_text())
    return result


def _epochs(run: _Run, out_dir: Path, report: Report | None, progress: bool, started: float) -> dict[str, Any]:
    config = run.config
    result: dict[str, Any] = {}
    for epoch in range(run.start_epoch, config.epochs):
        epoch_metrics = run.train_epoch(epoch, progress)
        last = epoch == config.epochs - 1
        if last:
            run.enforce()  # without a recovery phase the enforcement comes after the last step
        run.recalibrate_norms(epoch)  # eval-mode BN statistics for the current switches (training never reads them)
        evaluation, predictions = run.evaluate(epoch)
        epoch_metrics.update(evaluation)
        epoch_metrics[M.EPOCH] = float(epoch + 1)
        if last:
            enforced = run.enforced or {}
            epoch_metrics[M.ENFORCED_SWITCHES_OFF] = float(sum(enforced.values()))
            result = _finish(run, out_dir, epoch_metrics, predictions, enforced, started)
        run.history.append(epoch_metrics)
        checkpoint = _save_checkpoint(run, out_dir, epoch)
        if progress:
            print(_summary_line(epoch_metrics, config.epochs), flush=True)
        if report is not None:
            report(dict(epoch_metrics), checkpoint)
    return result


def _finish(run: _Run, out_dir: Path, final: dict[str, float], predictions: Mapping[str, torch.Tensor],
            enforced: Mapping[str, int], started: float) -> dict[str, Any]:
    """Prune, check the pruned network against the switched one (adds ``pruned_agreement`` to ``final``), save."""
    model = run.model.eval()
    pruned = prune(model).eval()
    union = count_cost(model, None, run.input_size)
    if count_cost(pruned, None, run.input_size) != union or sum(p.numel() for p in pruned.parameters()) != union.params:
        raise RuntimeError("pruned network's size differs from the counted union cost: a pruning bug")
    agree = total = 0
    for name, data in run.datasets.items():
        pruned_predictions = predict(pruned, data, "val", device=run.device, batch_size=run.config.eval_batch_size,
                                     amp=run.config.amp)
        agree += int((pruned_predictions == predictions[name]).sum())
        total += len(pruned_predictions)
    agreement = agree / max(total, 1)
    final[M.PRUNED_AGREEMENT] = agreement
    save_pruned(pruned, out_dir / M.PRUNED_DIR)
    latency = _latency(run, pruned)
    final.update(latency)
    test_predictions = {n: predict(pruned, d, "test", device=run.device, batch_size=run.config.eval_batch_size)
                        for n, d in run.datasets.items() if len(d.test.labels)}
    test_accs = accuracies(test_predictions, run.datasets, "test")
    reference = reference_cost(model, None, run.input_size)
    domains = {}
    for name in run.datasets:
        entry = {key: final[M.domain_metric(key, name)] for key in
                 (M.VAL_ACC, M.USAGE, M.SWITCHES_ON, M.PARAMS, M.MACS, M.PARAMS_RATIO, M.MACS_RATIO, M.DUAL)}
        entry[M.PARAMS] = int(entry[M.PARAMS])
        entry[M.MACS] = int(entry[M.MACS])
        entry[M.ENFORCED_SWITCHES_OFF] = enforced.get(name, 0)
        if name in test_accs:
            entry[M.TEST_ACC] = test_accs[name]
        entry.update({split[0]: value for key, value in latency.items()
                      if (split := M.split_domain_metric(key)) is not None and split[1] == name})
        domains[name] = entry
    result = {
        M.BUDGET: run.config.budget,
        M.MEAN_VAL_ACC: final[M.MEAN_VAL_ACC],
        M.SCORE: None if math.isnan(final[M.SCORE]) else final[M.SCORE],
        M.JSON_DOMAINS: domains,
        M.JSON_UNION: _cost_entry(union, reference),
        M.JSON_REFERENCE: _cost_entry(reference),
        M.JSON_UNPRUNED: _cost_entry(run.unpruned, reference),
        M.PRUNED_AGREEMENT: agreement,
        M.ENFORCED_SWITCHES_OFF: int(sum(enforced.values())),
        M.JSON_INPUT_SIZE: list(run.input_size),
        M.JSON_BACKBONE: run.backbone,
        M.JSON_LATENCY: {key: value for key, value in latency.items() if M.split_domain_metric(key) is None},
        M.JSON_WALL_SECONDS: round(time.perf_counter() - started, 2),
        M.JSON_HISTORY: [*run.history, dict(final)],
        M.JSON_CONFIG: run.config.to_dict(),
    }
    (out_dir / M.METRICS_FILE).write_text(json.dumps(result, indent=1))
    return result


def _latency(run: _Run, pruned: MultiDomainNetwork) -> dict[str, float]:
    """The pruned network's measured latency (bap.latency): on the CPU, and on the run's GPU when it has one."""
    seconds = run.config.latency_min_time_s
    if seconds <= 0:
        return {}
    out = measure_latency(pruned, run.input_size, min_time_s=seconds)
    if run.device.type == "cuda":
        on_gpu = measure_latency(pruned, run.input_size, device=run.device, min_time_s=seconds)
        out.update({k: v for k, v in on_gpu.items() if M.split_domain_metric(k) or k in M.LATENCY_METRICS})
    return out


def _cost_entry(cost: Cost, reference: Cost | None = None) -> dict[str, float]:
    """A cost as metrics.json holds it: params, MACs, FLOPs and, given the reference, the two ratios."""
    entry: dict[str, float] = {M.COST_PARAMS: cost.params, M.COST_MACS: cost.macs, M.COST_FLOPS: cost.flops}
    if reference is not None:
        entry[M.COST_PARAMS_RATIO] = cost.params / reference.params
        entry[M.COST_MACS_RATIO] = cost.macs / reference.macs
    return entry


def _summary_line(m: Mapping[str, float], epochs: int) -> str:
    return (f"epoch {int(m[M.EPOCH])}/{epochs}  loss {m[M.TRAIN_LOSS]:.3f}  mean val acc {m[M.MEAN_VAL_ACC]:.3f}  "
            f"score {m[M.SCORE]:.0f}  union params {m[M.UNION_PARAMS_RATIO]:.3f}x  "
            f"union MACs {m[M.UNION_MACS_RATIO]:.3f}x")
