import json
import subprocess
import sys

import pytest
import torch

from bap import load_pruned
from bap import metrics as M
from bap.config import TrainConfig
from bap.train import latest_checkpoint, train

TINY_RUN = {"width": 0.125, "blocks": 1, "steps_per_epoch": 3, "batch_size": 16, "pretrain_epochs": 0,
            "epochs": 2, "domains": ("digits", "signs", "textures"), "device": "cpu", "latency_min_time_s": 0.02}
USAGE_TOLERANCE = 1e-6  # the final enforcement makes usage <= budget exactly (float rounding only)


def _strip(result):
    """The result without what is measured rather than computed (wall time, latency), as JSON text (NaN == NaN)."""
    def computed(value):
        if isinstance(value, dict):
            return {k: computed(v) for k, v in value.items() if not M.is_measured(k)}
        return [computed(v) for v in value] if isinstance(value, list) else value

    kept = {k: computed(v) for k, v in result.items() if k not in (M.JSON_WALL_SECONDS, M.JSON_LATENCY)}
    return json.dumps(kept, sort_keys=True)


def test_tiny_run_keeps_the_budget_and_prunes_exactly(tmp_path, mini_data):
    reports = []
    result = train(TrainConfig(budget=0.3, sharing="jaccard", **TINY_RUN), tmp_path,
                   data=mini_data, report=lambda m, c: reports.append((m, c)))
    assert [m[M.EPOCH] for m, _ in reports] == [1.0, 2.0]
    saved = json.loads((tmp_path / M.METRICS_FILE).read_text())
    assert saved[M.BUDGET] == 0.3 and saved == json.loads(json.dumps(result))
    for name in TINY_RUN["domains"]:
        domain = saved[M.JSON_DOMAINS][name]
        assert domain[M.USAGE] <= 0.3 + USAGE_TOLERANCE
        assert {"val_acc", "usage", "params", "macs"} <= set(domain)
    assert set(saved[M.JSON_UNION]) >= {"params", "macs", "params_ratio", "macs_ratio"}
    assert saved[M.JSON_UNION]["macs_ratio"] < 1.0
    assert saved[M.PRUNED_AGREEMENT] == 1.0
    pruned = load_pruned(tmp_path / "pruned")
    assert sum(p.numel() for p in pruned.parameters()) == saved[M.JSON_UNION]["params"]
    final = reports[-1][0]
    assert final[M.PRUNED_AGREEMENT] == 1.0 and final[M.UNION_PARAMS] == saved[M.JSON_UNION]["params"]
    b1 = M.latency_metric("cpu", 1)
    assert final[b1] > 0 and saved[M.JSON_LATENCY][b1] == final[b1]  # the pruned network, timed at the end
    assert all(saved[M.JSON_DOMAINS][d][b1] == final[M.domain_metric(b1, d)] for d in TINY_RUN["domains"])
    assert not any(M.is_measured(k) for m, _ in reports[:-1] for k in m)
    assert (reports[-1][1] / "state.pt").is_file()


def test_every_reported_metric_and_metrics_json_key_is_in_the_vocabulary(tmp_path, mini_data):
    """A metric bap.train reports (or a metrics.json key it writes) that bap.metrics does not know fails here, not as
    a NaN column in a report."""
    reports = []
    result = train(TrainConfig(budget=0.5, sharing="union", **{**TINY_RUN, "epochs": 1}), tmp_path,
                   data=mini_data, report=lambda m, c: reports.append(m))
    unknown = sorted({k for m in reports for k in m if not M.is_known_metric(k)})
    assert not unknown, f"metrics missing from bap.metrics: {unknown}"
    assert M.is_finished(reports[-1]) and not any(M.is_finished(m) for m in reports[:-1])
    known_json = {M.BUDGET, M.MEAN_VAL_ACC, M.SCORE, M.PRUNED_AGREEMENT, M.ENFORCED_SWITCHES_OFF, M.JSON_DOMAINS,
                  M.JSON_UNION, M.JSON_REFERENCE, M.JSON_UNPRUNED, M.JSON_CONFIG, M.JSON_INPUT_SIZE, M.JSON_HISTORY,
                  M.JSON_BACKBONE, M.JSON_WALL_SECONDS, M.JSON_LATENCY}
    assert set(result) == known_json
    costs = {M.COST_PARAMS, M.COST_MACS, M.COST_FLOPS, M.COST_PARAMS_RATIO, M.COST_MACS_RATIO}
    assert set(result[M.JSON_UNION]) == set(result[M.JSON_UNPRUNED]) == costs
    assert set(result[M.JSON_REFERENCE]) == {M.COST_PARAMS, M.COST_MACS, M.COST_FLOPS}
    for entry in result[M.JSON_DOMAINS].values():
        assert set(entry) <= {*M.PER_DOMAIN, M.ENFORCED_SWITCHES_OFF}
    unpruned = result[M.JSON_UNPRUNED]
    assert unpruned[M.COST_MACS_RATIO] == 1.0 and unpruned[M.COST_PARAMS_RATIO] > 1.0  # every domain's BNs, heads
    assert reports[-1][M.UNPRUNED_PARAMS] == unpruned[M.COST_PARAMS]


def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path, mini_data):
    config = TrainConfig(budget=0.5, sharing="union", **{**TINY_RUN, "epochs": 3})
    straight = train(config, tmp_path / "straight", data=mini_data)
    again = train(config, tmp_path / "again", data=mini_data)
    assert _strip(straight) == _strip(again)

    class Crash(Exception):
        pass

    def crash_after_first_epoch(metrics, checkpoint):
        if metrics[M.EPOCH] == 1.0:
            raise Crash

    with pytest.raises(Crash):
        train(config, tmp_path / "resumed", data=mini_data, report=crash_after_first_epoch)
    checkpoint = latest_checkpoint(tmp_path / "resumed")
    assert checkpoint is not None and checkpoint.name == "epoch_0000"
    resumed = train(config, tmp_path / "resumed", data=mini_data, resume_from=checkpoint)
    assert _strip(resumed) == _strip(straight)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"budget": 1.5}, r"budget must be in \(0, 1\]"),
        ({"budget": 0.0}, r"budget must be in \(0, 1\]"),
        ({"sharing": "dice"}, r"sharing must be one of \['none', 'union', 'intersection', 'jaccard', 'pairwise', "
                              r"'consensus'\]"),
        ({"budget_cost": "flops"}, r"budget_cost must be one of \['switches', 'params', 'macs'\]"),
        ({"optimizer": "lbfgs"}, r"optimizer must be one of"),
        ({"colour": 1}, r"unknown training config keys \['colour'\]"),
        ({"switch_init": 0.001}, "switch_init .* must be above switch_threshold"),
        ({"latency_min_time_s": -1.0}, "latency_min_time_s must be >= 0"),
    ],
)
def test_bad_config(override, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict({**TINY_RUN, **override})


def test_unknown_domain(tmp_path, mini_data):
    with pytest.raises(KeyError, match=r"unknown domains \['svhn'\]"):
        train(TrainConfig(**{**TINY_RUN, "domains": ("digits", "svhn")}), tmp_path, data=mini_data)


def test_cli_writes_metrics(tmp_path):
    out = tmp_path / "x"
    command = [sys.executable, "-m", "bap", "train", "--data", "mini", "--budget", "0.5", "--sharing", "jaccard",
               "--epochs", "2", "--out", str(out), "--width", "0.125", "--steps-per-epoch", "2",
               "--pretrain-epochs", "0", "--domains", "digits,faces"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved[M.JSON_DOMAINS]) == {"digits", "faces"}
    assert "union:" in done.stdout and "FLOPs" in done.stdout
    bad = subprocess.run([*command[:-8], "--budget", "2"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "budget must be in (0, 1]" in bad.stderr


def test_a_short_run_reaches_its_budget_by_training_and_reports_what_it_would_deliver(tmp_path, mini_data):
    """Annealing brings usage to the budget before the final enforcement (a formality), the recovery phase trains
    with the switches fixed, and every epoch reports the budget-feasible accuracy: that of the network with the
    budget enforced now, which differs from the plain accuracy while a domain is over budget, and equals it after."""
    reports = []
    config = TrainConfig(budget=0.3, **{**TINY_RUN, "epochs": 3, "steps_per_epoch": 6}, budget_anneal=0.5,
                         recovery=0.3)
    result = train(config, tmp_path, data=mini_data, report=lambda m, c: reports.append(m))
    domains = TINY_RUN["domains"]
    first, last = reports[0], reports[-1]
    assert [round(m[M.BUDGET_TARGET], 6) for m in reports] == [round(1 - 0.7 * 6 / 9, 6), 0.3, 0.3]
    over = [d for d in domains if first[M.domain_metric(M.USAGE, d)] > 0.3 + USAGE_TOLERANCE]
    assert over, "the first epoch ends above the budget (the target is still annealing)"
    assert first[M.FEASIBLE_MEAN_VAL_ACC] != first[M.MEAN_VAL_ACC]
    for d in domains:
        assert last[M.domain_metric(M.USAGE, d)] <= 0.3 + USAGE_TOLERANCE
        assert last[M.domain_metric(M.FEASIBLE_VAL_ACC, d)] == last[M.domain_metric(M.VAL_ACC, d)]
    assert last[M.FEASIBLE_MEAN_VAL_ACC] == last[M.MEAN_VAL_ACC] == result[M.MEAN_VAL_ACC]
    assert result[M.ENFORCED_SWITCHES_OFF] == last[M.ENFORCED_SWITCHES_OFF]
    assert result[M.PRUNED_AGREEMENT] == 1.0


def test_feasible_switches_leave_the_model_exactly_as_it_was():
    from bap.budget import enforce_budget, feasible_switches, within_budget
    from bap.cost import switch_costs
    from tests.bap.helpers import randomize_norms, tiny_model

    model = tiny_model()
    randomize_norms(model)
    costs = torch.cat(switch_costs(model, "params", (3, 32, 32)))
    budgets = torch.tensor([0.4, 0.4, 0.4])
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert not within_budget(model, budgets, costs)
    with feasible_switches(model, budgets, costs) as cut:
        assert sum(cut.values()) > 0 and within_budget(model, budgets, costs)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.add_(1.0)  # a recalibration inside changes the statistics
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert sum(enforce_budget(model, budgets, costs).values()) == sum(cut.values())
