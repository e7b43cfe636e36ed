"""Sample-quality evaluation inside generator training (gan, vae): FID and friends with the
recipe's domain extractor every `train.eval_every` steps, the best model kept in output_dir/best,
and the final figures with the domain and (optionally) the Inception extractor."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from ..config import Recipe

logger = logging.getLogger("hfgen")


class GeneratorEvaluation:
    """Holds the extractor and the best FID so far; `evaluate(model, step)` returns metrics with an
    `eval_` prefix and saves the model to output_dir/best when its FID is the best yet.
    Call on the main process only."""

    def __init__(self, recipe: Recipe, device):
        from ..metrics.features import ModelFeatures

        options = recipe.options.fid
        self.recipe, self.options, self.device = recipe, options, device
        self.split = recipe.data.eval_split
        if options.extractor_model is not None and not self.split:
            raise ValueError(f"{recipe.source}: {recipe.method}.fid.extractor_model needs data.eval_split (the reference images)")
        if options.extractor_model is not None and not Path(options.extractor_model).exists():
            raise FileNotFoundError(
                f"{recipe.source}: {recipe.method}.fid.extractor_model: {options.extractor_model!r} does not exist; "
                "train one first (e.g. recipes/finetune/image_encoder_fashion_mnist.yaml) or set it to null"
            )
        if (options.extractor_model is not None or options.inception_at_end) and self.split:
            from ..data import DatasetError, build_dataset

            if self.split not in build_dataset(recipe.data.dataset):  # fail now, not after training
                raise DatasetError(
                    f"{recipe.source}: {recipe.method}.fid compares samples with data.eval_split={self.split!r}, which "
                    f"{recipe.data.dataset} does not have; set data.eval_split to a split of real images, or turn the "
                    f"FID off ({recipe.method}.fid.extractor_model: null, inception_at_end: false)"
                )
        self.extractor = ModelFeatures(options.extractor_model, device) if options.extractor_model else None
        self.best_fid: float | None = None
        self.best_step: int | None = None

    @property
    def enabled(self) -> bool:
        return self.extractor is not None

    def evaluate(self, model, step: int, extractor=None) -> dict:
        from ..metrics.features import evaluate_generator

        extractor = extractor or self.extractor
        results = evaluate_generator(
            model, extractor, self.recipe.data.dataset, self.split,
            num_samples=self.options.num_samples, num_real=self.options.num_samples, seed=0,
        )
        prefix = "eval_" if extractor is self.extractor else "eval_inception_"
        metrics = {f"{prefix}{k}": v for k, v in results.items() if isinstance(v, (int, float))}
        metrics[f"{prefix}extractor"] = results["extractor"]
        if extractor is self.extractor and (self.best_fid is None or results["fid"] < self.best_fid):
            self.best_fid, self.best_step = results["fid"], step
            save_best(model, Path(self.recipe.train.output_dir) / "best")
            logger.info("step %d: FID %.3f (best so far; saved to output_dir/best)", step, results["fid"])
        return metrics

    # saved in every checkpoint (the engine's `stateful`, as JSON): a resumed run keeps its best
    def state_dict(self) -> dict:
        return {"best_fid": self.best_fid, "best_step": self.best_step}

    def load_state_dict(self, state: dict) -> None:
        self.best_fid, self.best_step = state["best_fid"], state["best_step"]

    def summary(self) -> dict:
        return {"best_fid": self.best_fid, "best_fid_step": self.best_step} if self.best_fid is not None else {}


def save_best(model, folder: Path) -> None:
    """save_pretrained into a temporary folder, then swap it in for the old best."""
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    old = folder.with_name(folder.name + ".old")
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)



def final_sample_quality(evaluation: GeneratorEvaluation, model, step: int) -> dict:
    """End-of-run figures: domain-extractor metrics (and the best FID seen) when configured, plus
    Inception-v3 metrics when `fid.inception_at_end`."""
    results: dict = {}
    if evaluation.enabled:
        results.update(evaluation.evaluate(model, step))
        results.update(evaluation.summary())
    if evaluation.options.inception_at_end:
        from ..metrics.features import InceptionFeatures

        results.update(evaluation.evaluate(model, step, extractor=InceptionFeatures(evaluation.device)))
    return results
