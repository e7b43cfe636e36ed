"""`method: contrastive` on images — SimCLR (Chen et al. 2020, arXiv:2002.05709). Called by
`hfgen.train.methods.contrastive.run` when the recipe's model is an hfgen image encoder; same recipe section
(`contrastive:` with `temperature`, `gather_across_processes`, and the image-only `image_augment` and `probe`).

Each batch becomes two augmented views per image (`hfgen.data.augment`, torch, on the batch), both go through the
encoder and a projection head in one forward pass, and NT-Xent (`hfgen.losses.nt_xent`) pulls the two views of an
image together against every other view in the global batch: embeddings are gathered from every process with
gradients flowing back to their owners. The projection head is dropped after pretraining: the saved model is the
`ImageEncoderModel`, which `ImageEncoderForImageClassification.from_pretrained` loads. The encoder is scored by a
linear probe and kNN on frozen features every `train.eval_every` steps and at the end.
"""

from __future__ import annotations

import logging

import torch

from ...config import Recipe, RecipeError
from ...data import save_image_grid, to_float
from ...data.augment import simclr_views
from ...losses.nt_xent import nt_xent_loss
from ...models.image_encoder import ImageEncoderForContrastiveLearning
from ..batches import build_dataloader
from ..engine import Final, Step, TrainingRun
from ..encoder_probe import EncoderProbe
from ..image_splits import image_processor_files, load_image_splits
from ..models import build_model
from ..optim import backward_and_step, build_optimizer

logger = logging.getLogger("hfgen")

VIEWS_SEED = 1234  # the example views drawn into samples/views.png


class SimCLR:
    """`method: contrastive` with an hfgen image encoder, on the training engine."""

    name, unit = "simclr", "images"

    def __init__(self, recipe: Recipe):
        self.recipe, self.options = recipe, recipe.contrastive

    def build(self, run: TrainingRun) -> None:
        recipe, options, train, data = self.recipe, self.options, run.train, self.recipe.data
        self.run = run
        if options.lora is not None:
            raise RecipeError(f"{recipe.source}: contrastive.lora applies to text encoders (transformers); SimCLR trains the image encoder whole")
        encoder = build_model(recipe)  # ImageEncoderModel: fresh, or the encoder of a pretrained folder
        model = ImageEncoderForContrastiveLearning(encoder.config)  # + a fresh projection head
        model.image_encoder = encoder
        self.config = config = encoder.config
        self.splits = splits = load_image_splits(recipe, config.image_size, config.num_channels)
        loader = build_dataloader(splits.train, train.batch_size, seed=train.seed, shuffle=True, drop_last=True, num_workers=data.num_workers)
        self.eval_batch = train.eval_batch_size or train.batch_size
        self.probe = EncoderProbe(run.accelerator, splits, options.probe, self.eval_batch, train.seed)
        optimizer = build_optimizer(model.parameters(), train)
        _, (self.model,), (self.optimizer,) = run.prepare(loader, [model], [optimizer])
        self.unwrapped = run.accelerator.unwrap_model(self.model)
        if run.is_main_process:
            write_views(splits.train, options.image_augment, run.output_dir / "samples" / "views.png")

    def step(self, batch) -> Step:
        options = self.options
        images = to_float(batch["pixel_values"])  # (batch, channels, height, width) in [0, 1]
        first, second = simclr_views(images, options.image_augment)  # global RNG: checkpointed per process
        embeddings = self.model(torch.cat([first, second])).embeddings.float()  # (2 * batch, projection_dim)
        z_first, z_second = embeddings.chunk(2)
        loss = nt_xent_loss(z_first, z_second, temperature=options.temperature, gather_across_processes=options.gather_across_processes)
        backward_and_step(self.run.accelerator, loss, self.model, self.optimizer, self.run.train.max_grad_norm)
        return Step(losses={"loss": loss}, count=images.shape[0], extras={"positive_top1": _positive_top1(embeddings.detach())})

    def evaluate(self, final: bool = False) -> dict:
        return self.probe.evaluate(self.model, lambda x: self.unwrapped.image_encoder(x).pooler_output, final)

    def finish(self, results: dict) -> Final:
        results.update(self.evaluate(final=True))
        results["unreadable_images_skipped"] = self.splits.unreadable_skipped
        if self.splits.holdout is not None:
            results["eval_holdout"] = self.splits.holdout
        encoder = self.unwrapped.image_encoder  # the projection head is dropped here
        return Final(model=encoder, files=image_processor_files(self.config), card_family="image_encoder",
                     pipeline_tag="image-feature-extraction")


@torch.no_grad()
def _positive_top1(embeddings: torch.Tensor) -> torch.Tensor:
    """How often a view's most similar other view is its partner (this process's batch), on the device."""
    normalized = torch.nn.functional.normalize(embeddings, dim=1)
    similarity = normalized @ normalized.T
    similarity.fill_diagonal_(-2.0)
    half = embeddings.shape[0] // 2
    partner = torch.cat([torch.arange(half, 2 * half), torch.arange(half)]).to(similarity.device)
    return (similarity.argmax(dim=1) == partner).float().mean()


def write_views(images, augment, path: Path, count: int = 16) -> None:
    """A PNG of `count` training images (top row) and two SimCLR views of each (rows below), from a fixed seed."""
    originals = to_float(torch.stack([images[i]["pixel_values"] for i in range(min(count, len(images)))]))
    first, second = simclr_views(originals, augment, generator=torch.Generator().manual_seed(VIEWS_SEED))
    save_image_grid(torch.cat([originals, first, second]), path, nrow=len(originals))
