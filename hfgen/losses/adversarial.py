"""GAN losses on discriminator logits.

- ``non_saturating`` (Goodfellow et al. 2014, the DCGAN default): D minimises
  ``softplus(-D(x)) + softplus(D(G(z)))`` (binary cross-entropy with real=1, fake=0); G minimises
  ``softplus(-D(G(z)))`` instead of the saturating ``-softplus(D(G(z)))``.
- ``hinge`` (Lim & Ye 2017; Miyato et al. 2018): D minimises ``relu(1 - D(x)) + relu(1 + D(G(z)))``;
  G minimises ``-D(G(z))``.

Example::

    d_loss = discriminator_loss(discriminator(real), discriminator(fake.detach()), "hinge")
    g_loss = generator_loss(discriminator(fake), "hinge")
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_KINDS = ("non_saturating", "hinge")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """Mean discriminator loss over the batch, in float32 (logits may be bf16 under autocast)."""
    real_logits, fake_logits = real_logits.float(), fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
    if kind == "hinge":
        return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {LOSS_KINDS}")


def generator_loss(fake_logits: torch.Tensor, kind: str = "non_saturating") -> torch.Tensor:
    """Mean generator loss over the batch, in float32."""
    fake_logits = fake_logits.float()
    if kind == "non_saturating":
        return F.softplus(-fake_logits).mean()
    if kind == "hinge":
        return -fake_logits.mean()
    raise ValueError(f"unknown GAN loss {kind!r}; expected one of {LOSS_KINDS}")
