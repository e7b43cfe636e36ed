"""Losses, one per file. Losses that couple two models (generator vs discriminator) are used by
the training methods; a model's own loss (e.g. the VAE's ELBO) lives in its model file so the
model folder stays self-contained."""

from .adversarial import discriminator_loss, generator_loss

__all__ = ["discriminator_loss", "generator_loss"]
