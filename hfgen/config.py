"""Recipes: a YAML file (plus `key.sub=value` overrides) loaded into typed dataclasses.

A recipe is the whole specification of a run. Every section is a dataclass whose fields are
documented in place; `load_recipe` checks every key, type and required field before any work
starts, and its errors name the recipe file and the key at fault (suggesting the closest valid
key for a typo).
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Union

import yaml


class RecipeError(ValueError):
    """A recipe (or an override) is invalid. The message names the file and the key."""


# --------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------


@dataclass
class ModelSection:
    """What to train. Either `type` (a registered model type and its config fields, from
    scratch) or `pretrained` (a folder or Hub id to start from; further keys override its config)."""

    type: str | None = None  # e.g. hfgen-dcgan, hfgen-vae, bert
    pretrained: str | None = None  # folder or Hub repo id to start from
    revision: str | None = None  # branch, tag or commit of `pretrained` on the Hub
    # every other key under `model:` lands here and is checked against the config class
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class DataSection:
    """Where the examples come from and which columns hold what."""

    dataset: str  # catalog name (hfgen.data.catalog), local path, or Hub id
    train_split: str = "train"
    eval_split: str | None = "test"  # held-out split for evaluation; null to skip
    eval_holdout: float = 0.1  # when the data has no eval_split: this fraction of train_split is held out as it (seeded)
    image_column: str = "image"
    label_column: str | None = None  # set for class-conditional generators and classifiers
    text_column: str = "text"
    text_pair_column: str | None = None
    encoding: str = "utf-8"  # text encoding of local csv/tsv/json/jsonl/txt files (e.g. latin-1, cp1252)
    max_train_samples: int | None = None  # quick runs on a slice (first N after a seeded shuffle)
    max_eval_samples: int | None = None
    on_bad_image: Literal["fail", "skip"] = "fail"  # unreadable image files: stop, or drop and count
    random_flip: bool = False  # horizontal flips as augmentation (off: Fashion-MNIST is not mirror-symmetric)
    # iterate a larger-than-memory dataset instead of loading it (mlm, text contrastive, text classifier; needs
    # train.max_steps); under several processes each reads its own part (docs/scale_out.md)
    streaming: bool = False
    num_workers: int = 0  # DataLoader worker processes; 0 keeps the 2-core CPU for compute
    convert_image_mode: bool = False  # image encoders: convert grey<->RGB images to model.num_channels (grey->RGB copies the channel, RGB->grey is ITU-R 601 luma); false: a mismatch stops the run


@dataclass
class TrainSection:
    """The optimisation loop, precision, checkpoints and logging."""

    output_dir: str  # everything the run writes: checkpoints, samples, logs, final model
    num_epochs: int = 1
    max_steps: int | None = None  # when set, stop after this many optimizer steps (overrides num_epochs)
    batch_size: int = 32  # per process
    eval_batch_size: int | None = None  # defaults to batch_size
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1.0e-4
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_epsilon: float = 1.0e-8
    lr_scheduler: Literal["constant", "linear", "cosine", "one_cycle"] = "constant"
    warmup_steps: int = 0
    max_grad_norm: float | None = None  # clip gradients to this norm; null for no clipping
    # auto: bf16 where the chip runs it natively (GPU with bf16, CPU with AVX512-BF16/AMX), fp16 on older GPUs,
    # else fp32 (hfgen.train.hardware); no | bf16 | fp16 force one (fp16 only on GPU)
    mixed_precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    seed: int = 0
    save_every: int | None = 500  # optimizer steps between resumable checkpoints; null: only at the end
    keep_last: int = 2  # resumable checkpoints kept on disk
    # several machines that share no filesystem: each machine's first process writes the checkpoints into its own
    # output_dir (its local disk), and resume takes the newest checkpoint that every machine holds (docs/scale_out.md)
    save_on_each_node: bool = False
    resume: str = "auto"  # auto: newest complete checkpoint in output_dir; never; or a checkpoint path
    overwrite: bool = False  # allow writing into an output_dir that holds a finished run
    log_every: int = 50  # optimizer steps between logged scalars
    sample_every: int | None = 500  # image generators: steps between PNG sample grids
    eval_every: int | None = None  # steps between evaluations; null: at the end only
    # trackers, one name or a list (docs/trackers.md): auto (JSONL + TensorBoard when installed), jsonl, none, or any
    # tracker Accelerate supports (tensorboard, wandb, mlflow, comet_ml, aim, clearml, dvclive, swanlab, trackio;
    # pip install 'hfgen[<name>]'). JSONL (logs/metrics.jsonl), the run's own record, is written unless none
    report_to: str | list[str] = "auto"
    project: str = "hfgen"  # the trackers' project: wandb project, MLflow experiment, TensorBoard's logs/<project>
    run_name: str | None = None  # the run's name in wandb, MLflow and ClearML; null: output_dir's folder name
    num_processes: int | None = None  # expected process count; the run refuses to start if it differs
    cpu_threads: int | None = None  # torch threads per process on CPU; null: cores / local processes
    reuse_cpu_memory: bool = True  # CPU: keep freed tensor memory in the process (no page faults per step); ~10% faster
    # recompute each transformer layer's activations in the backward pass instead of keeping them: less memory, more
    # compute (docs/performance.md has the figures); transformers encoders only
    gradient_checkpointing: bool = False
    # several processes: BatchNorm statistics over the global batch (SimCLR, image classifiers), not each process's slice;
    # torch's SyncBatchNorm on GPU, hfgen's all-reduce BatchNorm on CPU (hfgen.train.sync_batchnorm); no effect on 1 process
    sync_batchnorm: bool = False
    compile: bool = False  # torch.compile each model in place (inductor) before training; docs/performance.md: when it pays


@dataclass
class HubSection:
    """Sharing the final model on the Hugging Face Hub (hfgen.hub). The token comes from the standard
    places (HF_TOKEN, `hf auth login`), never from the recipe; HF_ENDPOINT picks another Hub."""

    push: bool = False  # push the finished output_dir (model, card, eval_results.json, recipe.yaml, grids) in one commit
    repo_id: str | None = None  # namespace/name; created when missing
    private: bool = False  # visibility of a repo created by the push (an existing repo keeps its own)
    revision: str | None = None  # branch to push to, created from main when missing; null: main
    push_checkpoints: bool = False  # mirror each resumable checkpoint to checkpoint_branch, and resume from it (resume: auto) on a fresh machine
    checkpoint_branch: str = "checkpoints"  # branch holding the kept checkpoints, apart from the model's branch
    commit_message: str | None = None  # message of the final push; null: "Upload <model type> with hfgen"


@dataclass
class FIDSection:
    """Sample-quality evaluation of an image generator (gan, vae): FID, KID and precision/recall of
    `num_samples` generated images (fixed seed) against `data.eval_split` (hfgen.metrics)."""

    extractor_model: str | None = None  # domain extractor: an image classifier folder trained on the same data; null: no FID in training
    num_samples: int = 2000  # generated images per evaluation (and reference images, at most the split)
    inception_at_end: bool = False  # also score the final model with the standard Inception-v3 (~0.15 s/image on 2 CPU cores)


@dataclass
class GANSection:
    """Options of `method: gan` (hfgen.train.methods.gan)."""

    loss: Literal["non_saturating", "hinge"] = "non_saturating"
    generator_learning_rate: float | None = None  # null: train.learning_rate
    discriminator_learning_rate: float | None = None  # null: train.learning_rate
    ema_decay: float | None = 0.999  # generator EMA; null to disable. The saved generator is the EMA one.
    num_sample_images: int = 64  # images in each PNG grid, from a fixed seed
    fid: FIDSection = field(default_factory=FIDSection)  # every train.eval_every steps and at the end; the best model goes to output_dir/best


@dataclass
class VAESection:
    """Options of `method: vae` (hfgen.train.methods.vae)."""

    kl_warmup_steps: int = 0  # KL weight ramps linearly 0 -> 1 over this many steps (Bowman et al. 2016)
    num_sample_images: int = 64  # images in each PNG grid (prior samples + reconstructions)
    fid: FIDSection = field(default_factory=FIDSection)  # every train.eval_every steps and at the end; the best model goes to output_dir/best


@dataclass
class DiffusionSection:
    """Options of `method: diffusion` (hfgen.train.methods.diffusion): DDPM (Ho et al. 2020) with diffusers'
    `UNet2DModel` (`model.type: unet2d`) and `DDPMScheduler`; class-conditional when `data.label_column` is set."""

    num_train_timesteps: int = 1000  # T of the forward (noising) process
    beta_schedule: Literal["linear", "scaled_linear", "squaredcos_cap_v2"] = "squaredcos_cap_v2"  # cosine (Nichol & Dhariwal 2021)
    beta_start: float = 1.0e-4  # the linear schedules' first and last beta (Ho et al.); unused by the cosine one
    beta_end: float = 0.02
    prediction_type: Literal["epsilon", "v_prediction", "sample"] = "epsilon"  # what the UNet predicts: the noise (Ho et al.), v (Salimans & Ho 2022) or x0
    sampler: Literal["ddim", "dpm_solver", "ddpm"] = "ddim"  # sampler of the grids and FID: DDIM (Song et al. 2021), DPM-Solver++ (Lu et al. 2022), or ancestral DDPM
    num_inference_steps: int = 50  # sampler steps for the grids and FID
    ema_decay: float | None = 0.9999  # UNet EMA (the saved UNet is the EMA one); null to disable
    ema_warmup: bool = True  # EMA decay ramps up as 1 - (1 + step)^-2/3 (diffusers' use_ema_warmup) so short runs average recent weights
    num_sample_images: int = 64  # images in each PNG grid, from a fixed seed (each class in turn when conditional)
    fid: FIDSection = field(default_factory=FIDSection)  # every train.eval_every steps and at the end; the best model goes to output_dir/best


@dataclass
class TokenizerSection:
    """Options of `method: tokenizer` (hfgen.train.methods.tokenizer), and of the tokenizer an MLM run trains when it
    has none (`mlm.new_tokenizer`): a BERT WordPiece tokenizer trained on `data.train_split`. With
    `model.pretrained` (method tokenizer) that tokenizer's own pipeline is retrained instead."""

    vocab_size: int = 30522  # BERT's; the MLM head's cost grows linearly with it
    min_frequency: int = 2  # a piece must occur this often to get its own id
    lowercase: bool = True  # uncased, as bert-base-uncased and MiniLM
    limit_alphabet: int = 1000  # initial characters kept; rarer ones become [UNK]
    model_max_length: int = 512  # the length the saved tokenizer truncates to by default
    max_documents: int | None = None  # train on the first N documents only (quick runs); null: all


@dataclass
class MLMSection:
    """Options of `method: mlm` (hfgen.train.methods.mlm): BERT masked-LM pretraining with packed sequences and
    sparse prediction (Cramming, Geiping & Goldstein 2022; MosaicBERT, Portes et al. 2023)."""

    tokenizer: str | None = None  # folder or Hub id; null: model.pretrained's own, else one trained per mlm.new_tokenizer
    new_tokenizer: TokenizerSection = field(default_factory=TokenizerSection)  # used only when a tokenizer is trained
    max_length: int = 128  # tokens per packed sequence ([CLS] + documents joined by [SEP], split across sequences)
    mask_rate: float = 0.15  # share of tokens predicted (BERT); 0.3 as MosaicBERT
    sparse_prediction: bool = True  # vocabulary projection on masked positions only; false: the full head (same loss, ~4x slower)
    documents: Literal["line", "paragraph"] = "line"  # a row is a document, or blank rows separate documents (paragraph .txt files)
    attention: Literal["auto", "sdpa", "eager"] = "auto"  # kernel (same math); auto: eager on CPU (faster than SDPA's backward at 128 tokens), sdpa on GPU


@dataclass
class ImageAugmentSection:
    """SimCLR's two-view augmentation of images (hfgen.data.augment; Chen et al. 2020, appendix A), applied to
    whole batches in torch. Each view: random resized crop, horizontal flip, brightness/contrast jitter, gaussian
    blur and gaussian noise, each drawn per image."""

    crop_scale: list[float] = field(default_factory=lambda: [0.2, 1.0])  # crop area as a fraction of the image (SimCLR: 0.08-1 on ImageNet; small images need more context)
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 1.3333333])  # crop aspect ratio range (w/h)
    flip_p: float = 0.5  # probability of a left-right mirror
    jitter_p: float = 0.8  # probability of brightness/contrast jitter (SimCLR's colour distortion)
    brightness: float = 0.4  # brightness factor drawn from [1 - b, 1 + b]
    contrast: float = 0.4  # contrast factor drawn from [1 - c, 1 + c]
    grayscale_p: float = 0.2  # RGB images only: probability of dropping colour
    blur_p: float = 0.5  # probability of a gaussian blur (kernel ~10% of the side)
    blur_sigma: list[float] = field(default_factory=lambda: [0.1, 2.0])  # blur sigma range, in pixels
    noise_p: float = 0.0  # probability of additive gaussian noise
    noise_std: float = 0.05  # noise standard deviation, in [0, 1] pixel units


@dataclass
class ProbeSection:
    """Frozen-feature evaluation of an image encoder during and after pretraining (hfgen.metrics.probe): a linear
    probe (multinomial logistic regression fitted on train-split features, scored on the eval split) and a
    weighted k-nearest-neighbour classifier (cosine similarity). Needs `data.label_column`."""

    train_samples: int | None = 10000  # labelled train images the periodic probes fit on (seeded subset); null: the whole split
    final_train_samples: int | None = None  # the same for the probe at the end of the run; null: the whole split
    eval_samples: int | None = None  # eval-split images it is scored on; null: the whole split
    knn_k: int = 20  # neighbours that vote (Wu et al. 2018 use 200 on ImageNet; 20 suits 10 classes)
    knn_temperature: float = 0.07  # votes weigh exp(similarity / T)
    weight_decay: float = 1.0e-4  # L2 penalty of the logistic regression (on standardized features)
    max_iter: int = 200  # L-BFGS iterations of the logistic regression


@dataclass
class LoraSection:
    """LoRA (Hu et al. 2021, through peft): the pretrained weights stay frozen; each target linear layer learns a
    rank-`r` update scaled by `alpha / r`, and the head (a classifier's) trains whole. The output folder holds the
    merged model at its root (stock transformers / sentence-transformers: `pipeline()`, `SentenceTransformer` load it
    as usual) and the adapter alone in `adapter/` (`peft.PeftModel.from_pretrained(base, "<out>/adapter")`)."""

    r: int = 8  # rank of each update
    alpha: float = 16  # scaling: the update is multiplied by alpha / r
    dropout: float = 0.1  # dropout on the input of each LoRA branch
    # modules to adapt (names or a regex, as peft takes them); null: peft's default for the architecture (BERT: query, value)
    target_modules: list[str] | str | None = None
    modules_to_save: list[str] | None = None  # further modules trained whole and saved in the adapter; a classifier's head always is


@dataclass
class ContrastiveSection:
    """Options of `method: contrastive` (hfgen.train.methods.contrastive): sentence embeddings trained with InfoNCE over
    in-batch negatives gathered from every process. Unsupervised SimCSE (Gao et al. 2021) on `data.text_column`,
    or supervised pairs (`data.text_column` anchor, `data.text_pair_column` positive, optional hard negative)."""

    objective: Literal["simcse", "pairs"] = "simcse"  # simcse: one text column, dropout as the augmentation
    negative_column: str | None = None  # pairs: column of hard negatives (optional)
    temperature: float = 0.05  # SimCSE's
    pooling: Literal["mean", "cls"] = "mean"  # how token states become one embedding (saved with the model)
    mlp_head: bool = False  # SimCSE's MLP over the pooled embedding, used in training only (not saved)
    max_length: int = 32  # tokens per text in training (SimCSE: 32); longer texts are truncated and counted
    gather_across_processes: bool = True  # negatives from every process, gradients flowing back to their owner
    attn_implementation: Literal["auto", "eager", "sdpa"] = "auto"  # text: auto = eager on CPU (faster backward there), sdpa on GPU
    fast_dropout: bool = True  # text, CPU: dropout masks from 16-bit slices of 64-bit draws (same rate, cheaper; hfgen.train.fast_dropout)
    tokenizer: str | None = None  # folder or Hub id; null: model.pretrained's
    retrieval_dataset: str | None = "20newsgroups"  # labelled set for the before/after same-label recall@k check; null: skip
    retrieval_split: str = "test"
    retrieval_text_column: str = "text"
    retrieval_label_column: str = "label"
    retrieval_max_samples: int | None = 2000  # first N of the split after a seeded shuffle (embedding cost on CPU)
    retrieval_max_length: int = 128  # tokens per text when embedding the retrieval set
    retrieval_k: list[int] = field(default_factory=lambda: [1, 10])  # report recall@k for each k
    image_augment: ImageAugmentSection = field(default_factory=ImageAugmentSection)  # images (SimCLR): the two views
    probe: ProbeSection = field(default_factory=ProbeSection)  # images: linear probe + kNN every train.eval_every and at the end
    lora: LoraSection | None = None  # text: train LoRA adapters instead of every weight (peft); null: full fine-tuning


@dataclass
class SyntheticSection:
    """Generated labelled images added to an image classifier's training split (generative data augmentation): a
    class-conditional generator (hfgen DCGAN or VAE folder, or a `method: diffusion` pipeline; folder or Hub id)
    draws `images_per_class` images of every class, once before training, from `seed`. Classes are matched by name
    (the generator's `id2label`), else by id."""

    model: str  # the class-conditional generator
    images_per_class: int = 100  # generated images per class, added to the real training images
    seed: int = 0  # of the generated images (the same set for every run with this seed)
    revision: str | None = None  # branch, tag or commit of a Hub generator


@dataclass
class ClassifierSection:
    """Options of `method: classifier` (hfgen.train.methods.classifier): fine-tuning an encoder with a classification or
    regression head. Sentence pairs: set `data.text_pair_column`. Text columns and labels come from `data.*_column`;
    the final model is the best one on the validation split by `metric_for_best_model`, then scored on
    `data.eval_split` (the test split)."""

    task: Literal["single_label", "multi_label", "regression", "token"] = "single_label"  # token: one label per word (NER)
    tokenizer: str | None = None  # folder, Hub id or alias (hfgen.pretrained); null: model.pretrained's
    label_names: list[str] | None = None  # class order (ids 0..n-1); null: a ClassLabel's names, else sorted training labels
    threshold: float = 0.5  # multi_label: a label is predicted when its sigmoid exceeds this
    # tokens per example (a pair: both texts together); longer ones are truncated. auto: the smallest length that
    # covers max_length_quantile of the tokenised training texts, capped at the model's limit (and 512)
    max_length: int | Literal["auto"] = 128
    max_length_quantile: float = 0.95  # max_length auto: share of training examples that must fit uncut
    pad_to_max_length: bool = False  # pad every batch to max_length (slower: for fixed-shape hardware only)
    group_by_length: bool = True  # batches of similar lengths (less padding), batch order still shuffled per epoch
    cls_only_last_layer: bool = True  # BERT/RoBERTa heads read [CLS] only: run the last layer on it alone (same logits, ~15% faster)
    attn_implementation: Literal["auto", "eager", "sdpa"] = "auto"  # auto: eager on CPU (backward ~1.6x faster than sdpa's), sdpa on GPU
    fast_dropout: bool = True  # CPU: dropout masks from 16-bit slices of 64-bit draws (same rate, ~2.5x cheaper; hfgen.train.fast_dropout)
    label_all_tokens: bool = False  # token task: label every sub-word of a word, not only its first
    validation_split: str | None = "validation"  # split for model selection; when absent, carved out of training
    validation_size: float = 0.1  # fraction of train held out when there is no validation split (seeded, stratified); 0: none
    eval_every_epoch: bool = True  # evaluate on validation at each epoch end (and every train.eval_every steps if set)
    metric_for_best_model: str = "auto"  # auto: accuracy, f1_micro (multi_label), mse (regression), f1 (token)
    greater_is_better: bool | None = None  # null: from the metric (loss, mse, rmse, mae are lower-is-better)
    early_stopping_patience: int | None = None  # stop after this many evaluations without improvement; null: never
    early_stopping_threshold: float = 0.0  # an improvement must beat the best by more than this
    class_weights: Literal["balanced"] | list[float] | None = None  # loss weights per class; balanced: n / (k * count)
    layer_lr_decay: float | None = None  # layer l of L gets lr * decay^(L - l), head lr (ELECTRA, Clark et al. 2020)
    unseen_labels: Literal["error", "unknown"] = "error"  # eval labels absent from training: stop, or map to unknown_label
    unknown_label: str = "UNKNOWN"  # the extra class unseen eval labels map to (unseen_labels: unknown)
    drop_empty_texts: bool = True  # drop rows whose text is null/blank (counted and logged); false: stop with an error
    confusion_matrix: bool = True  # write confusion_matrix.png of the test split (single_label)
    freeze_encoder: bool = False  # image encoders: train the head only (a linear probe), encoder weights and BatchNorm statistics fixed
    image_crop_scale: list[float] | None = None  # images: random resized crop (area fraction range, e.g. [0.8, 1.0]) as training augmentation; null: none
    # distillation (Hinton et al. 2015): a fine-tuned sequence classifier (folder, Hub id) whose outputs on the training
    # texts (computed once at start, the teacher frozen) train this model beside the labels; null: labels only
    teacher: str | None = None
    distill_alpha: float = 0.5  # loss = alpha * soft-target loss + (1 - alpha) * the task loss on the labels
    distill_temperature: float = 2.0  # softens both distributions (kl); the soft term is scaled by T^2
    distill_loss: Literal["kl", "mse"] = "kl"  # kl: KL(teacher || student) at temperature T; mse: squared logit error (Tang et al. 2019)
    # a transfer set (Tang et al. 2019): this many altered copies of each training text (words masked with
    # distill_mask_prob; with distill_ngram_prob a copy is a random 1-5 word n-gram instead), labelled by the teacher
    # (its outputs as soft targets, its prediction as the label); 0: the training texts only
    distill_augment: int = 0
    distill_mask_prob: float = 0.1
    distill_ngram_prob: float = 0.25
    # an hfgen-rnn-classifier student: copy the word embeddings of this BERT-family folder / Hub id / alias (its
    # vocabulary must be the tokenizer's; model.embedding_dim follows it); null: random embeddings
    init_embeddings: str | None = None
    synthetic: SyntheticSection | None = None  # image classifiers: generated labelled images added to training; null: real images only
    lora: LoraSection | None = None  # text: train LoRA adapters (and the head) instead of every weight (peft); null: full fine-tuning


@dataclass
class AutoencoderSection:
    """Options of `method: autoencoder` (hfgen.train.methods.autoencoder): an image encoder pretrained by reconstruction.
    The sparsity penalty and the denoising corruption are model options (`model.sparsity_weight`,
    `model.denoising`); the encoder is scored by a linear probe and kNN on frozen features."""

    num_sample_images: int = 32  # eval images in each PNG grid, above their reconstructions
    probe: ProbeSection = field(default_factory=ProbeSection)  # linear probe + kNN every train.eval_every and at the end


# The method-specific section each method reads, keyed by `method`. The run functions live in
# hfgen.train.METHODS; a test checks both lists agree.
METHOD_SECTIONS: dict[str, type] = {"gan": GANSection, "vae": VAESection, "diffusion": DiffusionSection, "tokenizer": TokenizerSection, "mlm": MLMSection, "contrastive": ContrastiveSection, "classifier": ClassifierSection, "autoencoder": AutoencoderSection}


@dataclass
class Recipe:
    """A whole run. `method` picks hfgen.train.<method>; its options live in the section named
    after it (e.g. `gan:`), which may be left out to take the defaults."""

    method: str
    model: ModelSection
    data: DataSection
    train: TrainSection
    hub: HubSection = field(default_factory=HubSection)
    gan: GANSection | None = None
    vae: VAESection | None = None
    diffusion: DiffusionSection | None = None
    tokenizer: TokenizerSection | None = None
    mlm: MLMSection | None = None
    contrastive: ContrastiveSection | None = None
    classifier: ClassifierSection | None = None
    autoencoder: AutoencoderSection | None = None
    source: str | None = None  # the recipe file this came from (set by load_recipe, not YAML)

    @property
    def options(self) -> Any:
        """The method-specific section (`recipe.gan` for method gan, ...)."""
        return getattr(self, self.method)


# --------------------------------------------------------------------------------------------
# Ranges: every number a recipe holds, checked at load (a test checks that no numeric field is left out)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """Allowed values of a numeric field (each element of a list field; `ordered`: a [low, high] pair)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # low itself not allowed
    high_open: bool = False
    ordered: bool = False  # a list of two values, the first not above the second

    def allows(self, value: float) -> bool:
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (self.high is not None and (value > self.high or (self.high_open and value == self.high)))

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


POSITIVE = Range(low=0, low_open=True)  # > 0
AT_LEAST_ONE = Range(low=1)
NON_NEGATIVE = Range(low=0)
PROBABILITY = Range(low=0, high=1)
FRACTION = Range(low=0, high=1, low_open=True, high_open=True)  # strictly between 0 and 1
ANY = Range()  # a number of any value (e.g. a seed)

RANGES: dict[type, dict[str, Range]] = {
    DataSection: {"max_train_samples": AT_LEAST_ONE, "max_eval_samples": AT_LEAST_ONE, "num_workers": NON_NEGATIVE,
                  "eval_holdout": FRACTION},
    TrainSection: {
        "num_epochs": AT_LEAST_ONE, "max_steps": AT_LEAST_ONE, "batch_size": AT_LEAST_ONE, "eval_batch_size": AT_LEAST_ONE,
        "gradient_accumulation_steps": AT_LEAST_ONE, "learning_rate": POSITIVE, "weight_decay": NON_NEGATIVE,
        "adam_beta1": Range(low=0, high=1, high_open=True), "adam_beta2": Range(low=0, high=1, high_open=True),
        "adam_epsilon": POSITIVE, "warmup_steps": NON_NEGATIVE, "max_grad_norm": POSITIVE, "seed": NON_NEGATIVE,
        "save_every": AT_LEAST_ONE, "keep_last": NON_NEGATIVE, "log_every": AT_LEAST_ONE, "sample_every": AT_LEAST_ONE,
        "eval_every": AT_LEAST_ONE, "num_processes": AT_LEAST_ONE, "cpu_threads": AT_LEAST_ONE,
    },
    FIDSection: {"num_samples": Range(low=2)},
    GANSection: {"generator_learning_rate": POSITIVE, "discriminator_learning_rate": POSITIVE,
                 "ema_decay": Range(low=0, high=1, low_open=True, high_open=True), "num_sample_images": AT_LEAST_ONE},
    VAESection: {"kl_warmup_steps": NON_NEGATIVE, "num_sample_images": AT_LEAST_ONE},
    DiffusionSection: {"num_train_timesteps": Range(low=2), "beta_start": FRACTION, "beta_end": FRACTION, "num_inference_steps": AT_LEAST_ONE,
                       "ema_decay": Range(low=0, high=1, low_open=True, high_open=True), "num_sample_images": AT_LEAST_ONE},
    TokenizerSection: {"vocab_size": AT_LEAST_ONE, "min_frequency": AT_LEAST_ONE, "limit_alphabet": AT_LEAST_ONE,
                       "model_max_length": AT_LEAST_ONE, "max_documents": AT_LEAST_ONE},
    MLMSection: {"max_length": Range(low=3), "mask_rate": FRACTION},
    ImageAugmentSection: {
        "crop_scale": Range(low=0, high=1, low_open=True, ordered=True), "crop_ratio": Range(low=0, low_open=True, ordered=True),
        "flip_p": PROBABILITY, "jitter_p": PROBABILITY, "brightness": Range(low=0, high=1), "contrast": Range(low=0, high=1),
        "grayscale_p": PROBABILITY, "blur_p": PROBABILITY, "blur_sigma": Range(low=0, low_open=True, ordered=True),
        "noise_p": PROBABILITY, "noise_std": NON_NEGATIVE,
    },
    ProbeSection: {"train_samples": AT_LEAST_ONE, "final_train_samples": AT_LEAST_ONE, "eval_samples": AT_LEAST_ONE,
                   "knn_k": AT_LEAST_ONE, "knn_temperature": POSITIVE, "weight_decay": NON_NEGATIVE, "max_iter": AT_LEAST_ONE},
    ContrastiveSection: {"temperature": POSITIVE, "max_length": Range(low=2), "retrieval_max_samples": Range(low=2),
                         "retrieval_max_length": Range(low=2), "retrieval_k": AT_LEAST_ONE},
    ClassifierSection: {
        "threshold": FRACTION, "max_length": Range(low=2), "max_length_quantile": Range(low=0, high=1, low_open=True), "validation_size": Range(low=0, high=1, high_open=True),
        "early_stopping_patience": AT_LEAST_ONE, "early_stopping_threshold": NON_NEGATIVE, "class_weights": NON_NEGATIVE,
        "layer_lr_decay": Range(low=0, high=1, low_open=True), "image_crop_scale": Range(low=0, high=1, low_open=True, ordered=True),
        "distill_alpha": PROBABILITY, "distill_temperature": POSITIVE, "distill_augment": NON_NEGATIVE,
        "distill_mask_prob": PROBABILITY, "distill_ngram_prob": PROBABILITY,
    },
    AutoencoderSection: {"num_sample_images": AT_LEAST_ONE},
    SyntheticSection: {"images_per_class": AT_LEAST_ONE, "seed": NON_NEGATIVE},
    LoraSection: {"r": AT_LEAST_ONE, "alpha": POSITIVE, "dropout": Range(low=0, high=1, high_open=True)},
}


def check_ranges(section: Any, where: str, prefix: str) -> None:
    """Raise RecipeError for the first number of `section` (and its sub-sections) outside its `RANGES` entry."""
    rules = RANGES.get(type(section), {})
    for f in dataclasses.fields(section):
        value = getattr(section, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_ranges(value, where, key + ".")
            continue
        rule = rules.get(f.name)
        if rule is None or value is None or isinstance(value, (str, bool)):
            continue
        values = value if isinstance(value, list) else [value]
        if rule.ordered and len(values) != 2:
            raise RecipeError(f"{where}: {key}: {value!r} must be a [low, high] pair")
        for item in values:
            if not rule.allows(item):
                raise RecipeError(f"{where}: {key}: {value!r} is not allowed; it must be {rule.describe()}"
                                  + (" for every value" if isinstance(value, list) else ""))
        if rule.ordered and values[0] > values[1]:
            raise RecipeError(f"{where}: {key}: {value!r}: the first value must not exceed the second")


def _check_train_section(train: TrainSection, where: str) -> None:
    """Rules that relate two fields of `train`."""
    if train.max_steps is not None and train.warmup_steps > train.max_steps:
        raise RecipeError(f"{where}: train.warmup_steps {train.warmup_steps} is longer than the whole run "
                          f"(train.max_steps {train.max_steps}); it must be at most that")
    _check_trackers(train, where)


REPORT_TO_OWN = ("auto", "jsonl", "none")
"""hfgen's own `train.report_to` names; every other one is a tracker of Accelerate's (`report_to_names`)."""


def report_to_names() -> list[str]:
    """Every name `train.report_to` takes: hfgen's own, then each tracker of the installed Accelerate
    (`accelerate.utils.LoggerType`) but `all`, which would start whatever happens to be installed."""
    from accelerate.utils import LoggerType

    return [*REPORT_TO_OWN, *(t.value for t in LoggerType if t.value != "all")]


def report_to_list(report_to: str | list[str]) -> list[str]:
    """`train.report_to` as a list of names, in order, each once."""
    return list(dict.fromkeys([report_to] if isinstance(report_to, str) else report_to))


def _check_trackers(train: TrainSection, where: str) -> None:
    names, valid = report_to_list(train.report_to), report_to_names()
    if not names:
        raise RecipeError(f"{where}: train.report_to: [] names no tracker; use 'none' to log nothing, or one of {valid}")
    for name in names:
        if name not in valid:
            raise RecipeError(f"{where}: train.report_to: {name!r} is not a tracker{_suggest(name, valid)}; "
                              f"valid names: {valid}")
    if "none" in names and len(names) > 1:
        raise RecipeError(f"{where}: train.report_to: 'none' turns every tracker off, so it cannot be listed with "
                          f"{[n for n in names if n != 'none']}; keep one or the other")
    # wandb and the others refuse most punctuation in a project, and it names the TensorBoard folder under logs/
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._ -]*", train.project):
        raise RecipeError(f"{where}: train.project: {train.project!r} must start with a letter or digit and hold only "
                          "letters, digits, '.', '_', '-' and spaces (e.g. 'hfgen' or 'dcgan-fashion')")
    if train.run_name is not None and not train.run_name.strip():
        raise RecipeError(f"{where}: train.run_name: an empty name; set one, or null for output_dir's folder name")


# --------------------------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------------------------


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None) -> Recipe:
    """Read a recipe YAML, apply `key.sub=value` overrides, and validate it into a `Recipe`.

    Raises `RecipeError` naming the file and the key for an unknown key (with the closest valid
    one), a wrong type, a missing required key, or an unknown method/model type.
    """
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    try:
        raw = _safe_load_bounded(path.read_text(), str(path))
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of sections, got {type(raw).__name__}")
    for override in overrides or []:
        apply_override(raw, override, where=str(path))
    return recipe_from_dict(raw, where=str(path))


MAX_EXPANDED_NODES = 100_000  # a real recipe has a few hundred; a YAML alias bomb has billions


def _safe_load_bounded(text: str, where: str):
    """`yaml.safe_load`, refusing a document whose aliases would expand beyond `MAX_EXPANDED_NODES` values (the
    "billion laughs": a few hundred bytes of nested anchors that every later step would copy out in full)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        sizes: dict[int, int] = {}

        def expanded(n) -> int:  # values the node stands for once every alias is copied out; linear in the graph
            if id(n) not in sizes:
                sizes[id(n)] = 1  # a cycle counts once (safe_load builds it as a recursive object)
                if isinstance(n, yaml.SequenceNode):
                    sizes[id(n)] = 1 + sum(expanded(child) for child in n.value)
                elif isinstance(n, yaml.MappingNode):
                    sizes[id(n)] = 1 + sum(expanded(k) + expanded(v) for k, v in n.value)
            return sizes[id(n)]

        if expanded(node) > MAX_EXPANDED_NODES:
            raise RecipeError(f"{where}: its YAML aliases expand to more than {MAX_EXPANDED_NODES:,} values; "
                              "a recipe needs no more than a few hundred: write the values out")
        return loader.construct_document(node)
    finally:
        loader.dispose()


def apply_override(raw: dict, override: str, where: str = "recipe") -> None:
    """Set `a.b.c=value` in the nested dict `raw`; the value is parsed as YAML (`3`, `1e-4`, `null`, `[1, 2]`)."""
    key, sep, value = override.partition("=")
    if not sep or not key:
        raise RecipeError(f"{where}: override {override!r} is not of the form key.sub=value")
    parts = key.strip().split(".")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise RecipeError(
                f"{where}: override {override!r}: '{'.'.join(parts[: depth + 1])}' is a value, not a section"
            )
        node = child
    try:
        node[parts[-1]] = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError:
        node[parts[-1]] = value


def recipe_from_dict(raw: dict, where: str = "recipe") -> Recipe:
    """Validate a nested dict (as read from YAML) into a `Recipe`."""
    raw = dict(raw)
    if "source" in raw:
        raise RecipeError(f"{where}: 'source' is set by hfgen, not by the recipe")
    method = raw.get("method")
    if method is None:
        raise RecipeError(f"{where}: missing required key 'method' (one of {sorted(METHOD_SECTIONS)})")
    if method not in METHOD_SECTIONS:
        raise RecipeError(
            f"{where}: method: unknown method {method!r}{_suggest(str(method), METHOD_SECTIONS)}; "
            f"known methods: {sorted(METHOD_SECTIONS)}"
        )
    for other in METHOD_SECTIONS:
        if other != method and raw.get(other) is not None:
            raise RecipeError(f"{where}: section '{other}' does not apply to method '{method}'; remove it")
    raw.setdefault(method, {})
    model_raw = raw.get("model")
    if model_raw is not None:
        if not isinstance(model_raw, dict):
            raise RecipeError(f"{where}: model: expected a mapping, got {model_raw!r}")
        known = {"type", "pretrained", "revision"}
        if "config" in model_raw:
            raise RecipeError(f"{where}: model.config: put config fields directly under 'model:'")
        raw["model"] = {k: v for k, v in model_raw.items() if k in known}
        raw["model"]["config"] = {k: v for k, v in model_raw.items() if k not in known}
    recipe = _build(Recipe, raw, where, prefix="")
    recipe.source = where
    for name in ("data", "train", "hub", recipe.method):
        check_ranges(getattr(recipe, name), where, f"{name}.")
    _check_train_section(recipe.train, where)
    _check_model_section(recipe.model, where)
    _check_hub_section(recipe.hub, where)
    return recipe


def recipe_to_dict(recipe: Recipe) -> dict:
    """The recipe as the nested dict a YAML file would hold (model config fields flattened back)."""
    out = dataclasses.asdict(recipe)
    out.pop("source", None)
    model = out["model"]
    model.update(model.pop("config"))
    for name in METHOD_SECTIONS:
        if out.get(name) is None:
            out.pop(name, None)
    return out


def save_recipe(recipe: Recipe, path: str | os.PathLike) -> None:
    """Write the resolved recipe as YAML, atomically."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(recipe_to_dict(recipe), sort_keys=False))
    os.replace(tmp, path)


def _check_model_section(model: ModelSection, where: str) -> None:
    if (model.type is None) == (model.pretrained is None):
        raise RecipeError(f"{where}: model: set exactly one of 'model.type' (from scratch) or 'model.pretrained'")
    if model.type is None:
        return  # the config comes from the checkpoint; its fields are checked when it is loaded
    config_class = model_config_class(model.type, where)
    allowed = config_field_names(config_class)
    for key in model.config:
        if key not in allowed:
            raise RecipeError(
                f"{where}: unknown key 'model.{key}' for model type {model.type!r}"
                f"{_suggest(key, allowed, prefix='model.')}"
            )


def _check_hub_section(hub: HubSection, where: str) -> None:
    if (hub.push or hub.push_checkpoints) and not hub.repo_id:
        key = "hub.push" if hub.push else "hub.push_checkpoints"
        raise RecipeError(f"{where}: {key} is true but hub.repo_id is not set; set it to namespace/name")
    if hub.repo_id is not None and (hub.repo_id.count("/") != 1 or not all(hub.repo_id.split("/"))):
        raise RecipeError(f"{where}: hub.repo_id: {hub.repo_id!r} is not of the form namespace/name")
    if hub.push_checkpoints and hub.checkpoint_branch == (hub.revision or "main"):
        raise RecipeError(
            f"{where}: hub.checkpoint_branch {hub.checkpoint_branch!r} is the branch the model goes to; "
            "checkpoints need a branch of their own"
        )


DIFFUSERS_MODEL_TYPES = {"unet2d": "UNet2DModel"}
"""`model.type` values that name a diffusers model class (its __init__ arguments are the config keys)."""


def model_config_class(model_type: str, where: str = "recipe") -> type:
    """The config class registered for `model_type` (hfgen's own and every transformers type), or for a diffusers
    type (`DIFFUSERS_MODEL_TYPES`) the model class itself."""
    import hfgen.models  # noqa: F401  (registers hfgen's model types)
    from transformers import CONFIG_MAPPING

    if model_type in DIFFUSERS_MODEL_TYPES:
        import diffusers

        return getattr(diffusers, DIFFUSERS_MODEL_TYPES[model_type])
    try:
        return CONFIG_MAPPING[model_type]
    except KeyError:
        known = [t for t in CONFIG_MAPPING.keys() if t.startswith("hfgen-")] + list(DIFFUSERS_MODEL_TYPES) + ["bert", "..."]
        raise RecipeError(
            f"{where}: model.type: unknown model type {model_type!r}"
            f"{_suggest(model_type, list(CONFIG_MAPPING.keys()) + list(DIFFUSERS_MODEL_TYPES))}; e.g. {known}"
        ) from None


def config_field_names(config_class: type) -> set[str]:
    """Keys a config class accepts (its dataclass fields, or its __init__ parameters)."""
    if dataclasses.is_dataclass(config_class):
        names = {f.name for f in dataclasses.fields(config_class)}
    else:
        import inspect

        names = set(inspect.signature(config_class.__init__).parameters) - {"self", "kwargs"}
    return names | {"num_labels"}


# --------------------------------------------------------------------------------------------
# Typed construction
# --------------------------------------------------------------------------------------------


def _suggest(key: str, candidates, prefix: str = "") -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean '{prefix}{close[0]}'?" if close else ""


def _build(cls: type, raw: Any, where: str, prefix: str) -> Any:
    label = prefix.rstrip(".") or "recipe"
    if not isinstance(raw, dict):
        raise RecipeError(f"{where}: {label}: expected a mapping of keys, got {raw!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in raw:
        if key not in fields or key == "source":
            raise RecipeError(
                f"{where}: unknown key '{prefix}{key}'{_suggest(str(key), [f for f in fields if f != 'source'], prefix)}"
            )
    values = {}
    for name, f in fields.items():
        if name in raw:
            values[name] = _coerce(raw[name], hints[name], where, prefix + name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise RecipeError(f"{where}: missing required key '{prefix}{name}'")
    return cls(**values)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, key: str) -> Any:
    """Check `value` against the annotation `tp`, converting only where lossless (int -> float)."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where, key)
            except RecipeError as err:
                errors.append(err)
        if len(errors) == 1:
            raise errors[0]
        raise RecipeError(f"{where}: {key}: expected {_type_name(tp)}, got {value!r}")
    if origin is Literal:
        if value is False and "no" in args:  # YAML 1.1 reads a bare `no` as false
            return "no"
        if value in args and not isinstance(value, bool):
            return value
        raise RecipeError(f"{where}: {key}: {value!r} is not one of {list(args)}")
    if dataclasses.is_dataclass(tp):
        return _build(tp, {} if value is None else value, where, key + ".")
    if origin is list:
        if not isinstance(value, list):
            raise RecipeError(f"{where}: {key}: expected a list, got {value!r}")
        return [_coerce(v, args[0], where, f"{key}[{i}]") for i, v in enumerate(value)] if args else value
    if origin is dict:
        if not isinstance(value, dict):
            raise RecipeError(f"{where}: {key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        # YAML 1.1 reads `1e-4` (no dot) as a string; accept it as the number it plainly is
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, float, str, bool) and not (isinstance(value, tp) and not (tp is int and isinstance(value, bool))):
        raise RecipeError(f"{where}: {key}: expected {tp.__name__}, got {value!r} ({type(value).__name__})")
    return value
