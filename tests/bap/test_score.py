import pytest

from bap import decathlon_score
from bap.score import FINETUNE_BASELINE_ACCURACY


def test_finetune_baseline_scores_2500():
    accuracies = {d: a / 100 for d, a in FINETUNE_BASELINE_ACCURACY.items()}
    assert decathlon_score(accuracies) == pytest.approx(2500.0)


def test_perfect_and_worse_than_twice_baseline():
    assert decathlon_score({"svhn": 1.0}) == pytest.approx(1000.0)
    assert decathlon_score({"svhn": 0.5}) == 0.0


def test_published_row_piggyback():
    row = [57.69, 65.29, 79.87, 96.99, 57.45, 97.27, 79.09, 87.63, 97.24, 47.48]  # paper.md §4.1, S = 2838
    domains = ["imagenet12", "aircraft", "cifar100", "daimlerpedcls", "dtd", "gtsrb", "vgg-flowers", "omniglot",
               "svhn", "ucf101"]
    assert decathlon_score({d: a / 100 for d, a in zip(domains, row)}) == pytest.approx(2838, abs=3)  # published accuracies are rounded


def test_override_baseline_and_bad_inputs():
    assert decathlon_score({"digits": 0.9}, baseline={"digits": 0.1}) == pytest.approx(250.0)
    with pytest.raises(KeyError, match="no baseline error for domain 'digits'"):
        decathlon_score({"digits": 0.9})
    with pytest.raises(ValueError, match=r"accuracy of domain 'svhn' must be in \[0, 1\]"):
        decathlon_score({"svhn": 95.0})
