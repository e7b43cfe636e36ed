"""The distillation loss against hand-computed values."""

import math

import pytest
import torch

from hfgen.losses.classification import classification_loss
from hfgen.losses.distillation import distillation_loss, soft_target_loss


def test_single_label_kl_at_temperature_equals_the_formula_by_hand():
    student, teacher, labels = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]]), torch.tensor([0])
    T, alpha = 2.0, 0.25
    # at T=2: student logits (0.5, 0), teacher (0, 1)
    p_s = [math.exp(0.5) / (math.exp(0.5) + 1), 1 / (math.exp(0.5) + 1)]
    p_t = [1 / (1 + math.e), math.e / (1 + math.e)]
    kl = sum(t * (math.log(t) - math.log(s)) for t, s in zip(p_t, p_s))
    ce = -math.log(math.e / (math.e + 1))  # cross-entropy of the student at T=1 on label 0
    expected = alpha * kl * T**2 + (1 - alpha) * ce
    got = distillation_loss(student, teacher, labels, "single_label", temperature=T, alpha=alpha)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_multi_label_is_the_binary_kl_per_label_averaged():
    student, teacher = torch.tensor([[0.0, 3.0]]), torch.tensor([[2.0, -1.0]])
    T = 1.5

    def bernoulli_kl(p, q):
        return p * math.log(p / q) + (1 - p) * math.log((1 - p) / (1 - q))

    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    expected = T**2 * (bernoulli_kl(sigmoid(2 / T), sigmoid(0 / T)) + bernoulli_kl(sigmoid(-1 / T), sigmoid(3 / T))) / 2
    assert soft_target_loss(student, teacher, "multi_label", temperature=T).item() == pytest.approx(expected, rel=1e-6)


def test_mse_kind_regression_and_the_edges_of_alpha():
    student, teacher, labels = torch.tensor([[1.0, -1.0], [0.0, 0.0]]), torch.tensor([[2.0, 1.0], [0.0, 1.0]]), torch.tensor([1, 0])
    # (1 + 4) / 2 for row 0, (0 + 1) / 2 for row 1, mean 1.5; temperature plays no part
    assert soft_target_loss(student, teacher, "single_label", temperature=4.0, kind="mse").item() == pytest.approx(1.5)
    regression = soft_target_loss(torch.tensor([[1.0], [3.0]]), torch.tensor([[0.0], [1.0]]), "regression")
    assert regression.item() == pytest.approx((1 + 4) / 2)
    hard = classification_loss(student, labels, "single_label")
    assert distillation_loss(student, teacher, labels, "single_label", alpha=0.0).item() == pytest.approx(hard.item())
    soft = soft_target_loss(student, teacher, "single_label", temperature=2.0)
    assert distillation_loss(student, teacher, labels, "single_label", temperature=2.0, alpha=1.0).item() == pytest.approx(soft.item())


def test_the_soft_term_is_zero_when_the_student_matches_the_teacher_and_token_tasks_are_refused():
    logits = torch.randn(5, 3)
    assert soft_target_loss(logits, logits.clone(), "single_label", temperature=3.0).abs().item() < 1e-6
    with pytest.raises(ValueError, match="token"):
        soft_target_loss(torch.zeros(2, 4, 3), torch.zeros(2, 4, 3), "token")
