"""Frozen configuration dataclasses, one per concern.

Defaults are the paper's numbers (DeiT-S on ImageNet, `jobs/presets/paper.yaml` only sets the data root).
Items marked [choice] are where the paper is silent and the project decided; see docs/METHOD.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from .errors import ConfigError, check, check_non_negative, check_options, check_positive, check_prob

MAX_WIDTH = 2**20  # head widths above this do not fit a device (the paper's K is 65536 = 2**16)
SEED_LIMIT = 2**32  # seeds reach numpy's legacy seeding, which takes 32 bits

# each backbone's (width, depth, heads); mst/models/backbone.py maps the name to its timm model
ARCH_SIZES = {"vit_test": (48, 2, 3), "vit_smoke": (192, 4, 3), "deit_small": (384, 12, 6),
              "vit_base": (768, 12, 12)}


@dataclass(frozen=True)
class ModelConfig:
    arch: Literal["vit_test", "vit_smoke", "deit_small", "vit_base"] = "deit_small"
    """Backbone size from the registry in mst/models/backbone.py; deit_small = timm vit_small_patch16_224."""
    patch_size: int = 16
    """Side of a square patch in pixels; the global crop size must be a multiple of it."""
    embed_dim: int = 0
    """Token width [choice at small scale]; 0 keeps the arch's own (384 for deit_small)."""
    depth: int = 0
    """Number of transformer blocks; 0 keeps the arch's own (12 for deit_small)."""
    num_heads: int = 0
    """Attention heads, which must divide the width; 0 keeps the arch's own (6 for deit_small)."""
    drop_path: float = 0.1
    """Stochastic depth rate of the student (the teacher never drops)."""
    out_dim: int = 65536
    """Width K of the DINO head's last (weight-normed) layer."""
    head_hidden_dim: int = 2048
    """Hidden width of the DINO head's MLP."""
    head_bottleneck_dim: int = 256
    """Width of the L2-normalised bottleneck before the last layer."""
    head_layers: int = 3
    """Number of linear layers in the head's MLP."""
    head_use_bn: bool = False
    """BatchNorm in the head's MLP (SyncBN when distributed)."""
    norm_last_layer: bool = False
    """Freeze the weight-norm gain of the last layer at 1 (DINO recommends False for ViT-S)."""

    @property
    def size(self) -> tuple[int, int, int]:
        """(width, depth, heads) the backbone is built at: the arch's own where a field is 0."""
        own = ARCH_SIZES[self.arch]
        return self.embed_dim or own[0], self.depth or own[1], self.num_heads or own[2]

    def __post_init__(self) -> None:
        check_options(self, "model")
        check_positive(self.patch_size, "model.patch_size", "16")
        check_prob(self.drop_path, "model.drop_path")
        for key in ("embed_dim", "depth", "num_heads"):
            check_non_negative(getattr(self, key), f"model.{key}")
            check(getattr(self, key) <= MAX_WIDTH, f"model.{key}", f"{getattr(self, key)} is larger than "
                  f"{MAX_WIDTH}, which no device holds", f"e.g. --set model.{key}=0 (the arch's own)")
        width, _, heads = self.size
        check(width % heads == 0, "model.num_heads", f"{heads} heads do not divide the width {width}",
              f"e.g. --set model.num_heads={next(h for h in (6, 4, 3, 2, 1) if width % h == 0)}")
        for key in ("out_dim", "head_hidden_dim", "head_bottleneck_dim"):
            check_positive(getattr(self, key), f"model.{key}", "256")
            check(getattr(self, key) <= MAX_WIDTH, f"model.{key}", f"{getattr(self, key)} is larger than "
                  f"{MAX_WIDTH}, which no device holds", f"e.g. --set model.{key}=65536")
        check(self.head_layers >= 1, "model.head_layers", f"must be >= 1, got {self.head_layers}",
              "e.g. --set model.head_layers=3")


@dataclass(frozen=True)
class DataConfig:
    name: Literal["fashion_mnist", "folder"] = "folder"
    """Data set: Fashion-MNIST from the Debian package, or an ImageNet-style folder (train/ and val/)."""
    root: str = "/datasets/imagenet"
    """Folder of the data set. Fashion-MNIST: where the package put the IDX files."""
    train_subset: int = 0
    """Use only this many training images (a fixed, seeded choice); 0 uses all."""
    test_subset: int = 0
    """Use only this many test/validation images; 0 uses all."""
    num_workers: int = 8
    """Data-loader worker processes per rank (0 loads in the main process)."""
    index_dir: str = ""
    """Folder data sets: where the cached file list of each split goes (JSON, keyed by the folder's path and
    mtimes); empty: $MST_CACHE_DIR, else $XDG_CACHE_HOME/mst, else ~/.cache/mst."""

    def __post_init__(self) -> None:
        check_non_negative(self.train_subset, "data.train_subset")
        check_non_negative(self.test_subset, "data.test_subset")
        check_non_negative(self.num_workers, "data.num_workers")


@dataclass(frozen=True)
class AugmentConfig:
    global_size: int = 224
    """Side of the two global crops (also the backbone's native image size)."""
    local_size: int = 96
    """Side of the local crops."""
    n_local: int = 8
    """Number of local crops per image (multi-crop); 0 disables them."""
    global_scale: tuple[float, float] = (0.4, 1.0)
    """RandomResizedCrop area range of global crops."""
    local_scale: tuple[float, float] = (0.05, 0.4)
    """RandomResizedCrop area range of local crops."""
    flip_prob: float = 0.5
    """Horizontal flip probability."""
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.2, 0.1)
    """ColorJitter brightness, contrast, saturation, hue."""
    jitter_prob: float = 0.8
    """Probability of applying the colour jitter."""
    gray_prob: float = 0.2
    """Probability of converting to greyscale."""
    blur_prob: tuple[float, float, float] = (1.0, 0.1, 0.5)
    """Gaussian blur probability for (global view 1, global view 2, local views)."""
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    """Range of the blur's sigma, drawn uniformly."""
    solarize_prob: tuple[float, float, float] = (0.0, 0.2, 0.0)
    """Solarisation probability for (global view 1, global view 2, local views)."""
    solarize_threshold: int = 128
    """Pixels at or above this uint8 value are inverted by solarisation."""
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    """Per-channel normalisation mean (ImageNet)."""
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    """Per-channel normalisation standard deviation (ImageNet)."""
    eval_resize: int = 256
    """Evaluation: resize the short side to this."""
    eval_crop: int = 224
    """Evaluation: centre crop of this side."""
    backend: Literal["v2", "batched", "split"] = "v2"
    """Training multi-crop implementation, same distribution: v2 = mst.augment.v2 per sample in the dataset;
    batched = mst.augment.batched per batch in the loader's collate (~20x v2's samples/s on a CPU core at 32 px,
    ~1.6x at 224 px: benchmarks/results/augment_*.md); split = decode (reduced-size JPEG decode when the
    crops allow), crop and flip to uint8 in the loader workers, the photometric ops batched inside the
    training step on its device (both mst.augment.split; benchmarks/results/data.md)."""

    def __post_init__(self) -> None:
        check_options(self, "augment")
        check_positive(self.global_size, "augment.global_size", "224")
        check_positive(self.local_size, "augment.local_size", "96")
        check(self.local_size <= self.global_size, "augment.local_size",
              f"local crops ({self.local_size}) larger than global crops ({self.global_size})",
              f"set augment.local_size <= {self.global_size}")
        check_non_negative(self.n_local, "augment.n_local")
        for key in ("global_scale", "local_scale", "blur_sigma"):
            lo, hi = getattr(self, key)
            check(0 < lo <= hi, f"augment.{key}", f"needs 0 < low <= high, got ({lo}, {hi})",
                  f"e.g. --set augment.{key}=[0.4,1.0]")
        for key in ("global_scale", "local_scale"):
            check(getattr(self, key)[1] <= 1.0, f"augment.{key}", "an area fraction cannot exceed 1",
                  f"e.g. --set augment.{key}=[0.4,1.0]")
        for key in ("flip_prob", "jitter_prob", "gray_prob"):
            check_prob(getattr(self, key), f"augment.{key}")
        for key in ("blur_prob", "solarize_prob"):
            for p in getattr(self, key):
                check_prob(p, f"augment.{key}")
        check(0 <= self.solarize_threshold <= 255, "augment.solarize_threshold",
              f"must lie in [0, 255], got {self.solarize_threshold}", "e.g. --set augment.solarize_threshold=128")
        check(min(self.std) > 0, "augment.std", "a standard deviation must be > 0", "use e.g. [0.229,0.224,0.225]")
        check(self.eval_crop <= self.eval_resize, "augment.eval_crop",
              f"centre crop {self.eval_crop} larger than the resized image {self.eval_resize}",
              f"set augment.eval_crop <= {self.eval_resize}")


@dataclass(frozen=True)
class MaskConfig:
    strategy: Literal["attention", "random", "none"] = "attention"
    """attention: mask among the teacher's lowest-attention patches (MST); random: any patch; none."""
    ratio: float = 0.5
    """[choice] `attention` only: the fraction of patches eligible for masking, the lowest-attention ones
    (`random` makes every patch eligible and ignores it)."""
    prob: float = 0.5
    """[choice] Each eligible patch is masked with this probability p (under `random`, every patch: p is the
    expected masked fraction; under `attention`, ratio x p is)."""
    replace: Literal["token", "bert"] = "token"
    """token: a learned [MASK] vector (MST); bert: 80 % [MASK] / 10 % another patch / 10 % unchanged."""

    def __post_init__(self) -> None:
        check_options(self, "mask")
        check_prob(self.ratio, "mask.ratio")
        check_prob(self.prob, "mask.prob")


@dataclass(frozen=True)
class DecoderConfig:
    kind: Literal["pixelshuffle", "deconv"] = "pixelshuffle"
    """[choice] pixelshuffle: conv + pixel shuffle (cheap); deconv: a stack of transposed convolutions."""
    norm: Literal["bn", "none"] = "bn"
    """Normalisation inside the decoder (the appendix ablates with and without BN)."""
    hidden_dim: int = 256
    """[choice] Channels of the pixelshuffle decoder's 3x3 conv / the first deconv stage."""

    def __post_init__(self) -> None:
        check_options(self, "decoder")
        check_positive(self.hidden_dim, "decoder.hidden_dim", "256")


@dataclass(frozen=True)
class LossConfig:
    restore_weight: float = 0.6
    """v1: weight of the L1 restoration loss (appendix §7, §10)."""
    dino_weight: float = 1.0
    """v2: weight of the DINO loss; 0 gives pure masked image modelling."""
    restore_target: Literal["image", "masked"] = "image"
    """image: L1 over every pixel of the global crop (MST); masked: only the masked patches (BERT style)."""
    student_temp: float = 0.1
    """Student softmax temperature."""
    teacher_temp: float = 0.07
    """Teacher temperature after the warm-up."""
    warmup_teacher_temp: float = 0.04
    """Teacher temperature at the start of the warm-up."""
    warmup_teacher_temp_epochs: int = 30
    """Epochs of linear teacher-temperature warm-up."""
    center_momentum: float = 0.9
    """EMA momentum of the centre of the teacher's logits."""

    def __post_init__(self) -> None:
        check_non_negative(self.restore_weight, "loss.restore_weight")
        check_non_negative(self.dino_weight, "loss.dino_weight")
        check(self.restore_weight + self.dino_weight > 0, "loss.dino_weight", "both loss weights are 0",
              "set loss.dino_weight or loss.restore_weight > 0")
        check_options(self, "loss")
        for key in ("student_temp", "teacher_temp", "warmup_teacher_temp"):
            check_positive(getattr(self, key), f"loss.{key}", "0.04")
        check_non_negative(self.warmup_teacher_temp_epochs, "loss.warmup_teacher_temp_epochs")
        check(0 <= self.center_momentum < 1, "loss.center_momentum",
              f"must lie in [0, 1), got {self.center_momentum}", "e.g. --set loss.center_momentum=0.9")


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 5e-4
    """Base learning rate for a batch of 256; the run uses lr x batch_size / 256 (2e-3 at 1024)."""
    min_lr: float = 1e-6
    """Learning rate at the end of the cosine schedule."""
    warmup_epochs: int = 10
    """Linear learning-rate warm-up, in epochs (stepped per iteration)."""
    weight_decay: float = 0.04
    """Weight decay at the start (cosine to weight_decay_end). DINO's groups: every tensor of 2 or more
    dimensions decays (class token, position embeddings and [MASK] token included); biases and 1-D tensors
    (norms) get none."""
    weight_decay_end: float = 0.4
    """Weight decay at the end."""
    momentum_teacher: float = 0.996
    """Teacher EMA momentum at the start (cosine to 1)."""
    momentum_teacher_end: float = 1.0
    """Teacher EMA momentum at the end."""
    clip_grad: float = 3.0
    """Gradient-norm clipping threshold, applied as `clip_mode` says (0 disables) [DINO]."""
    clip_mode: Literal["per_param", "global"] = "per_param"
    """per_param: each parameter tensor whose gradient norm exceeds clip_grad is scaled by
    clip_grad / (norm + 1e-6) (DINO's rule); global: torch's clip_grad_norm_ over all gradients together."""
    freeze_last_layer_epochs: int = 1
    """Keep the head's last layer frozen for this many epochs."""
    betas: tuple[float, float] = (0.9, 0.999)
    """AdamW betas."""

    def __post_init__(self) -> None:
        check_positive(self.lr, "optim.lr", "5e-4")
        check_non_negative(self.min_lr, "optim.min_lr")
        check_non_negative(self.warmup_epochs, "optim.warmup_epochs")
        check_non_negative(self.weight_decay, "optim.weight_decay")
        check_non_negative(self.weight_decay_end, "optim.weight_decay_end")
        for key in ("momentum_teacher", "momentum_teacher_end"):
            check(0 <= getattr(self, key) <= 1, f"optim.{key}", f"must lie in [0, 1], got {getattr(self, key)}",
                  f"e.g. --set optim.{key}=0.996")
        check_non_negative(self.clip_grad, "optim.clip_grad")
        check_options(self, "optim")
        check_non_negative(self.freeze_last_layer_epochs, "optim.freeze_last_layer_epochs")
        check(all(0 <= b < 1 for b in self.betas), "optim.betas", f"must lie in [0, 1), got {self.betas}",
              "e.g. --set optim.betas=[0.9,0.999]")


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 100
    """Pre-training epochs (schedules are laid over epochs x iterations per epoch)."""
    batch_size: int = 1024
    """Global batch size over all ranks (1024 images on 128 DCUs in the paper: 8 per device)."""
    seed: int = 0
    """Seed of the run; sweeps derive it from (base seed, repeat, stage)."""
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """auto: bf16 on GPUs that support it, else fp16 with loss scaling on GPUs, fp32 on the CPU."""
    checkpoint_every: int = 500
    """Write a checkpoint every this many steps (and at every epoch end); bounds what a hard kill loses."""
    log_every: int = 10
    """Append to metrics.jsonl every this many steps."""
    threads: int = 0
    """torch threads per process; 0: on the CPU, the cores left after the data-loader workers."""
    balance_every: int = 50
    """Every this many steps (and at the last one), measure the gradient norms of v1 L_rec and v2 L_dino on
    the backbone (two extra backward passes) and log them with their ratio; 0 never."""

    def __post_init__(self) -> None:
        check_positive(self.epochs, "train.epochs", "100")
        check_positive(self.batch_size, "train.batch_size", "64")
        check(0 <= self.seed < SEED_LIMIT, "train.seed", f"must lie in [0, 2^32), got {self.seed}",
              "e.g. --set train.seed=0")
        check_options(self, "train")
        check_positive(self.checkpoint_every, "train.checkpoint_every", "500")
        check_positive(self.log_every, "train.log_every", "10")
        check_non_negative(self.threads, "train.threads")
        check_non_negative(self.balance_every, "train.balance_every")


LINEAR_RECIPES = ("appendix", "dino", "custom")
LINEAR_NORMS = ("none", "batchnorm")


@dataclass(frozen=True)
class EvalConfig:
    knn_ks: tuple[int, ...] = (10, 20, 100, 200)
    """k values of the weighted k-NN, all from one pass over the top max(k)."""
    knn_temperature: float = 0.07
    """Temperature T of the k-NN votes exp(sim / T)."""
    knn_source: Literal["teacher", "student"] = "teacher"
    """Which backbone's features the k-NN and probes use."""
    knn_chunk_size: int = 0
    """Test queries per chunk of the k-NN (bounds memory); 0 sizes chunks so a similarity block is ~128 MiB."""
    feature_batch_size: int = 256
    """Batch size of feature extraction."""
    linear_recipe: Literal["appendix", "dino", "custom"] = "appendix"
    """Where the linear probe's SGD lr comes from: appendix = 0.00024 as the appendix §5 prints it; dino =
    DINO's evaluation default 0.001 x linear_batch_size / 256 (0.004 at 1024); custom = linear_lr."""
    linear_lr: float = 0.0
    """The probe's lr under linear_recipe=custom (then > 0); 0 under the named recipes, which fix their own."""
    linear_batch_size: int = 1024
    """Linear probe batch size."""
    linear_epochs: int = 100
    """Linear probe epochs (cosine schedule)."""
    linear_momentum: float = 0.9
    """Linear probe SGD momentum."""
    linear_weight_decay: float = 0.0
    """Linear probe weight decay."""
    linear_norm: Literal["none", "batchnorm"] = "none"
    """What the probe's input passes first: none = DINO's plain linear layer on the raw features; batchnorm = a
    BatchNorm without affine parameters (per-feature standardisation, running statistics at test time). A class
    token can carry a large offset shared by every image with per-feature spreads 10x apart, which a plain probe
    at a short schedule never undoes (smoke scale, width 64, 10 epochs: 40.3 plain vs 55.4 standardised at
    lr 0.01; docs/SMOKE_RECIPE.md)."""
    linear_cached_features: bool = False
    """Extract features once without augmentation and train the probe on them (faster; labelled in results)."""
    supervised_epochs: int = 100
    """Epochs of the supervised baseline."""
    supervised_lr: float = 5e-4
    """Base lr (per 256 images) of the supervised baseline's AdamW."""
    supervised_batch_size: int = 256
    """Batch size of the supervised baseline."""
    supervised_weight_decay: float = 0.05
    """AdamW weight decay of the supervised baseline (DeiT's value)."""
    supervised_label_smoothing: float = 0.1
    """Label smoothing of the supervised baseline's cross-entropy (DeiT's value)."""
    baselines: bool = False
    """knn and linear probes also record the stage's recipe on the run's random-init network and on raw pixels,
    cached per budget and seed under the runs root (mst/eval/baselines.py); off: at ImageNet scale each is a job."""
    curve_steps: tuple[int, ...] = ()
    """Steps after which the learning curve's k-NN is logged (metrics.jsonl, record `curve`); 0 = init, () = off."""
    curve_subset: tuple[int, int] = (2000, 1000)
    """(train, test) images of the curve's k-NN: the first N of each split's stable subset (mst.data)."""
    attention_threshold: float = 0.6
    """Attention maps keep the top patches holding this fraction of the mass (0 shows raw maps)."""
    attention_images: tuple[str, ...] = ("astronaut", "chelsea", "coffee", "rocket")
    """Images for attention maps: scikit-image sample names or file paths."""

    def __post_init__(self) -> None:
        check(len(self.knn_ks) > 0 and all(k > 0 for k in self.knn_ks), "eval.knn_ks",
              f"needs positive k values, got {self.knn_ks}", "e.g. --set eval.knn_ks=[10,20,100,200]")
        check_positive(self.knn_temperature, "eval.knn_temperature", "0.07")
        check(self.knn_source in ("teacher", "student"), "eval.knn_source",
              f"unknown source '{self.knn_source}'", "choose one of teacher, student")
        check_non_negative(self.knn_chunk_size, "eval.knn_chunk_size")
        for key in ("feature_batch_size", "linear_batch_size", "linear_epochs",
                    "supervised_epochs", "supervised_batch_size"):
            check_positive(getattr(self, key), f"eval.{key}", "256")
        check(self.linear_recipe in LINEAR_RECIPES, "eval.linear_recipe", f"unknown recipe '{self.linear_recipe}'",
              f"choose one of {', '.join(LINEAR_RECIPES)}")
        check(self.linear_norm in LINEAR_NORMS, "eval.linear_norm", f"unknown norm '{self.linear_norm}'",
              f"choose one of {', '.join(LINEAR_NORMS)}")
        if self.linear_recipe == "custom":
            check_positive(self.linear_lr, "eval.linear_lr", "0.01")
        else:
            check(self.linear_lr == 0, "eval.linear_lr", f"the '{self.linear_recipe}' recipe fixes the probe's lr",
                  "set eval.linear_recipe=custom to use your own eval.linear_lr")
        check_positive(self.supervised_lr, "eval.supervised_lr", "5e-4")
        check_non_negative(self.supervised_weight_decay, "eval.supervised_weight_decay")
        check(0 <= self.supervised_label_smoothing < 1, "eval.supervised_label_smoothing",
              f"must lie in [0, 1), got {self.supervised_label_smoothing}",
              "e.g. --set eval.supervised_label_smoothing=0.1")
        check(0 <= self.linear_momentum < 1, "eval.linear_momentum", f"must lie in [0, 1), got "
              f"{self.linear_momentum}", "e.g. --set eval.linear_momentum=0.9")
        check_non_negative(self.linear_weight_decay, "eval.linear_weight_decay")
        check_prob(self.attention_threshold, "eval.attention_threshold")
        check(min(self.curve_steps, default=0) >= 0, "eval.curve_steps", "a step is < 0", "use steps >= 0")
        check_positive(min(self.curve_subset), "eval.curve_subset", "[2000,1000]")


@dataclass(frozen=True)
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    """Backbone, head and sizes."""
    data: DataConfig = field(default_factory=DataConfig)
    """Data set and loading."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Multi-crop BYOL augmentation and evaluation transforms."""
    mask: MaskConfig = field(default_factory=MaskConfig)
    """Which student patches are masked, and how."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """The global image decoder (thrown away after pre-training)."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Loss weights, targets and temperatures."""
    optim: OptimConfig = field(default_factory=OptimConfig)
    """AdamW and its schedules."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Run length, batch, seed, precision, checkpoints."""
    eval: EvalConfig = field(default_factory=EvalConfig)
    """Downstream evaluation."""

    def __post_init__(self) -> None:
        size, patch = self.augment.global_size, self.model.patch_size
        if size % patch or self.augment.local_size % patch:
            raise ConfigError(
                f"config key 'model.patch_size': crops of {size} and {self.augment.local_size} px are not "
                f"multiples of the patch size {patch}; choose sizes divisible by it")
        if self.data.name == "fashion_mnist":
            for key in ("global_size", "local_size", "eval_crop"):
                value = getattr(self.augment, key)
                if value > 32:
                    raise ConfigError(
                        f"config key 'augment.{key}': crops of {value} px are larger than the 32 px "
                        f"Fashion-MNIST images; set augment.{key} <= 32")
