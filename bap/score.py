"""The Visual Decathlon score (Rebuffi et al. 2017; paper.md §3).

``S = Σ_d α_d · max(0, E_d^max − E_d)^γ`` with ``γ = 2``, ``E_d^max = 2 · E_d^base`` and ``α_d = 1000 / (E_d^max)^γ``,
where ``E`` is the error as a fraction: a domain scores 1000 at zero error and 250 at its baseline error.
"""

from __future__ import annotations

from collections.abc import Mapping

# Test accuracies (%) of the fine-tuning baseline of Rebuffi et al. 2017; they give S = 2500 exactly.
FINETUNE_BASELINE_ACCURACY: dict[str, float] = {
    "imagenet12": 59.87,
    "aircraft": 60.34,
    "cifar100": 82.12,
    "daimlerpedcls": 92.82,
    "dtd": 55.53,
    "gtsrb": 97.53,
    "vgg-flowers": 81.41,
    "omniglot": 87.69,
    "svhn": 96.55,
    "ucf101": 51.20,
}
DECATHLON_BASELINE_ERRORS: dict[str, float] = {
    domain: round(1.0 - accuracy / 100.0, 6) for domain, accuracy in FINETUNE_BASELINE_ACCURACY.items()
}
GAMMA = 2.0


def domain_score(accuracy: float, baseline_error: float) -> float:
    """One domain's share of the Decathlon score (0 to 1000)."""
    max_error = 2.0 * baseline_error
    alpha = 1000.0 / max_error**GAMMA
    return alpha * max(0.0, max_error - (1.0 - accuracy)) ** GAMMA


def decathlon_score(accuracies: Mapping[str, float], baseline: Mapping[str, float] | None = None) -> float:
    """Decathlon score of per-domain accuracies in [0, 1].

    Args:
        accuracies: top-1 accuracy per domain, as fractions.
        baseline: baseline *error* per domain (fraction); defaults to the fine-tuning baseline of the 10 Decathlon
            domains. Entries given here override the defaults for those domains.

    Raises:
        ValueError: an accuracy outside [0, 1] or a baseline error outside (0, 1].
        KeyError: a domain with no baseline error.
    """
    errors = dict(DECATHLON_BASELINE_ERRORS)
    errors.update(baseline or {})
    total = 0.0
    for domain, accuracy in accuracies.items():
        if not 0.0 <= accuracy <= 1.0:
            raise ValueError(f"accuracy of domain {domain!r} must be in [0, 1], got {accuracy}")
        if domain not in errors:
            raise KeyError(
                f"no baseline error for domain {domain!r}; known domains are {sorted(errors)}: "
                "pass baseline={domain: error}"
            )
        if not 0.0 < errors[domain] <= 1.0:
            raise ValueError(f"baseline error of domain {domain!r} must be in (0, 1], got {errors[domain]}")
        total += domain_score(accuracy, errors[domain])
    return total
