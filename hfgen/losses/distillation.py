"""Knowledge distillation: a student trained on a frozen teacher's outputs as well as on the labels.

    loss = alpha * soft + (1 - alpha) * hard

- ``hard``: the task's own loss on the labels (`classification_loss`);
- ``soft`` with ``kind="kl"`` (Hinton et al. 2015, arXiv:1503.02531): KL(p_teacher || p_student) between the
  temperature-softened distributions, times T^2 so its gradients keep their size as T changes.
  single_label: softmax over classes, ``T^2 * sum_c p_t,c (log p_t,c - log p_s,c)`` per example;
  multi_label: each label is its own two-way distribution (sigmoid), the binary KL averaged over labels;
  regression: the teacher's prediction is the soft target, squared error (no temperature).
- ``soft`` with ``kind="mse"`` (Tang et al. 2019, arXiv:1903.12136, for BiLSTM students): mean squared error
  between the raw logits (temperature unused).

Example::

    loss = distillation_loss(student_logits, teacher_logits, labels, "single_label", temperature=2.0, alpha=0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .classification import classification_loss


def soft_target_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, task: str, temperature: float = 1.0,
                     kind: str = "kl", reduction: str = "mean") -> torch.Tensor:
    """The distillation term alone: batch mean (``"mean"``) or per example (``"none"``, (batch,))."""
    student, teacher = student_logits.float(), teacher_logits.float()
    if task == "token":
        raise ValueError("distillation of token classifiers is not supported")
    if task == "regression" or kind == "mse":
        per_example = (student - teacher).pow(2).reshape(student.shape[0], -1).mean(-1)
    elif kind != "kl":
        raise ValueError(f"unknown distillation loss {kind!r}; expected kl or mse")
    elif task == "single_label":
        log_student = F.log_softmax(student / temperature, dim=-1)
        log_teacher = F.log_softmax(teacher / temperature, dim=-1)
        per_example = (log_teacher.exp() * (log_teacher - log_student)).sum(-1) * temperature**2
    elif task == "multi_label":
        s, t = student / temperature, teacher / temperature
        p_t = torch.sigmoid(t)
        # KL of two Bernoullis from log-sigmoids: p (log p - log q) + (1 - p) (log(1 - p) - log(1 - q))
        kl = p_t * (F.logsigmoid(t) - F.logsigmoid(s)) + (1 - p_t) * (F.logsigmoid(-t) - F.logsigmoid(-s))
        per_example = kl.mean(-1) * temperature**2
    else:
        raise ValueError(f"unknown task {task!r}; expected single_label, multi_label or regression")
    return per_example.mean() if reduction == "mean" else per_example


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, labels: torch.Tensor, task: str,
                      temperature: float = 2.0, alpha: float = 0.5, kind: str = "kl",
                      class_weights: torch.Tensor | None = None) -> torch.Tensor:
    """``alpha * soft_target_loss + (1 - alpha) * classification_loss`` (batch means; see the module docstring)."""
    soft = soft_target_loss(student_logits, teacher_logits, task, temperature, kind)
    if alpha >= 1.0:
        return soft
    return alpha * soft + (1.0 - alpha) * classification_loss(student_logits, labels, task, class_weights)
