"""Typed configuration: what a model is, where its data comes from, and how it is trained.

The same dataclasses are written as ``config.json`` next to every checkpoint and release, are
loaded back with :func:`load_config`, and are exposed on the command line one-to-one: every
field ``foo_bar`` is the flag ``--foo-bar`` (field names are unique across the three sections).
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union, get_args, get_origin, get_type_hints

from cyclekit.errors import ConfigError
from cyclekit.io.files import atomic_write_text

DIRECTIONS = ("AtoB", "BtoA")  # G_AB maps domain A to B, G_BA maps B to A

# Allowed values of the string-valued options, checked in validate(); the one list of them
# (argparse choices, the network builders and the runtime read it from here).
CHOICES: dict[str, tuple[str, ...]] = {
    "generator": ("resnet", "unet", "unet_gia", "mobile_resnet"),
    "block": ("add", "concat"),
    "upsample": ("convtranspose", "resize_conv"),
    "norm": ("instance", "batch", "layer", "none"),
    "d_norm": ("instance", "batch", "none"),
    "discriminator": ("patchgan", "pixelgan"),
    "d_padding": ("official", "same"),
    "init": ("normal", "xavier", "kaiming", "orthogonal"),
    "preprocess": ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"),
    "on_bad_file": ("error", "skip"),
    "augment": ("none", "colour", "geometry", "full"),  # training images' augmentation (cyclekit.data.transforms.augment)
    "gan_loss": ("lsgan", "vanilla", "wgangp"),
    "lr_policy": ("linear", "cosine", "step", "constant"),
    "lr_step_unit": ("epoch", "step", "time"),
    # --colour-gain's input: every channel as it is (rgb), its chroma only (the pixel's channel mean
    # removed), or split: the chroma through a non-negative gain and the brightness through a signed one
    "colour_gain_mode": ("rgb", "chroma", "split"),
    "diff_augment": ("none", "translation", "cutout", "translation_cutout"),  # see train/augment.py
    "device": ("auto", "cpu", "cuda"),
    "precision": ("auto", "fp32", "bf16", "fp16"),
    "cuda_graphs": ("auto", "true", "false"),  # auto: wherever the step can be captured
    "backend": ("torch", "onnxruntime"),  # inference backends (translate, swap, serve, eval)
    "detector": ("auto", "dlib", "haar", "mediapipe"),  # face detectors (data faces, swap, serve)
    "blend": ("feather", "poisson"),  # swap paste-back (cyclekit.faces.blend)
    # swap's pasted region: the head found in the crop (cyclekit.faces.segment), or the whole crop
    "mask": ("head", "round", "square"),
    # --val-metric: the metric that picks run_dir/best/ (see cyclekit.metrics.evaluate; auto = psnr
    # where the test set has ground truth, else kid).
    "val_metric": ("auto", "cycle_l1", "identity_l1") + tuple(
        f"{m}{d}" for m in ("psnr", "ssim", "l1", "success", "kid", "fid") for d in ("", "_AtoB", "_BtoA")),
}


@dataclass
class ModelConfig:
    """The four networks. ``G_AB`` maps ``in_channels`` (domain A) to ``out_channels`` (domain B)."""

    in_channels: int = 3  # channels of domain A images (1 = grayscale, 3 = RGB)
    out_channels: int = 3  # channels of domain B images
    generator: str = "resnet"  # resnet | unet (official 7/8 levels) | unet_gia (GANs in Action) | mobile_resnet (compact student, see `cyclekit distill`)
    n_blocks: int = 9  # residual blocks of the ResNet generator (6 for 128 px, 9 for 256 px)
    ngf: int = 64  # generator filters in the first layer
    unet_levels: int = 8  # official U-Net: 7 for 128 px, 8 for 256 px
    block: str = "add"  # ResNet block: add (paper) | concat (the Keras seed tutorials)
    upsample: str = "convtranspose"  # convtranspose (paper) | resize_conv (no checkerboard)
    norm: str = "instance"  # generator normalisation: instance (paper) | batch | layer | none
    norm_affine: bool = False  # the Keras seeds use affine instance norm
    norm_before_tanh: bool = False  # the Keras seeds normalise the last conv before tanh
    residual: bool = False  # generators predict a change to their input (starts at identity)
    input_skip: bool = False  # the ResNet generator's last convolution also sees the input image (keeps its colours)
    pixel_shuffle: bool = False  # ResNet: no full-resolution layers; the input is pixel-unshuffled to H/2 and the output shuffled back (with --n-blocks 2 --batch-size 4: 2.5x fast's training images per CPU second in fp32; BENCHMARKS.md)
    colour_gain: float = 0.0  # ResNet: add g_c * input_c before the tanh, g_c >= 0 learned per channel, starting here (0 = off)
    colour_gain_mode: str = "rgb"  # what the gain passes: rgb (each channel) | chroma (x_c - mean_c x: hue without brightness) | split (chroma gain >= 0, brightness gain of either sign)
    colour_gain_luma: float = 0.0  # split mode: where the brightness gain starts (either sign; = colour_gain starts as rgb)
    dropout: float = 0.0  # dropout in the generator's residual blocks / U-Net levels (0 = off, as the paper)
    discriminator: str = "patchgan"  # patchgan (70x70 with d_layers=3) | pixelgan (1x1)
    ndf: int = 64  # discriminator filters in the first layer
    d_layers: int = 3  # PatchGAN stride-2 layers: 3 gives the paper's 70x70 receptive field
    d_scales: int = 1  # discriminators per domain at 1x, 1/2x, ... the image size, every scale weighed alike (1 = the paper)
    d_norm: str = "instance"  # discriminator normalisation: instance | batch | none
    d_spectral_norm: bool = False  # spectral normalisation of every discriminator convolution (Miyato et al. 2018; off = the paper)
    d_padding: str = "official"  # official (pad 1) | same (TensorFlow 'same', as the seeds)
    init: str = "normal"  # weight initialisation: normal (paper, N(0, init_gain)) | xavier | kaiming | orthogonal
    init_gain: float = 0.02  # standard deviation (normal) or gain of the initialisation
    image_size: int = 256  # the size the model was trained at (crop size)
    face_margin: float = 0.0  # face crops: box widened by this fraction (used by faces/)


@dataclass
class DataConfig:
    """Where the unpaired images come from and how they are prepared."""

    dataroot: str = ""  # folder with trainA/ trainB/ (testA/ testB/), or a seed-style .npz file
    dir_a: str = ""  # explicit folder of domain A images (overrides dataroot/trainA)
    dir_b: str = ""  # explicit folder of domain B images (overrides dataroot/trainB)
    preprocess: str = "resize_and_crop"  # how images become crop_size squares (the official modes)
    load_size: int = 286  # images are first resized to this (resize_and_crop, scale_width*)
    crop_size: int = 256  # then randomly cropped to this square (centre crop at test time)
    flip: bool = True  # random horizontal flips during training
    augment: str = "none"  # training augmentation: none (paper) | colour (light, white balance, contrast, saturation) | geometry (small rotations, zooms and shifts, and lower resolution) | full (both)
    on_bad_file: str = "error"  # error | skip (skip with a warning)
    max_images: int = 0  # use at most this many images per domain (0 = all)
    num_workers: int = 0  # DataLoader worker processes decoding images (0 = in the training process)
    serial_batches: bool = False  # pair A[i] with B[i] instead of a random B


@dataclass
class TrainConfig:
    """Optimisation, losses, schedule, logging and checkpoints."""

    run_dir: str = "runs/cyclegan"  # where config, metrics, samples, checkpoints and the release go
    seed: int = 0  # seed of every random choice (weights, data order, augmentation, pools)
    batch_size: int = 1  # images per domain per iteration (per process under torchrun)
    n_epochs: int = 100  # epochs at the initial learning rate
    n_epochs_decay: int = 100  # epochs of decay to zero afterwards
    max_steps: int = 0  # stop after this many iterations in total (0 = run all epochs)
    max_minutes: float = 0.0  # stop (and save) after this much wall time in this process (0 = no limit; with --lr-step-unit time: in the whole run)
    lr: float = 2e-4  # Adam learning rate of generators and discriminators
    beta1: float = 0.5  # Adam beta1 (the paper: 0.5)
    beta2: float = 0.999  # Adam beta2
    lr_policy: str = "linear"  # after n_epochs: linear decay to 0 (paper) | cosine | step | constant
    lr_step_unit: str = "epoch"  # the schedule advances per epoch (official), per step (TF2 seed) or with the time spent of --max-minutes (time: the epochs set only the constant/decay split)
    lr_decay_every: int = 50  # step policy: multiply by lr_gamma every this many epochs/steps
    lr_gamma: float = 0.1  # step policy: the factor applied every lr_decay_every
    gan_loss: str = "lsgan"  # adversarial loss: lsgan (paper, least squares) | vanilla (cross-entropy) | wgangp
    lambda_adv: float = 1.0  # weight of the adversarial terms in the generator objective
    lambda_cycle: float = 10.0  # paper's lambda, on both cycle terms
    lambda_identity: float = 0.5  # identity weight as a fraction of lambda_cycle (0 = off)
    lambda_gp: float = 10.0  # WGAN-GP gradient penalty weight
    d_loss_scale: float = 0.5  # the paper halves the discriminator objective
    pool_size: int = 50  # history of generated images shown to the discriminators (0 = latest only)
    log_every: int = 20  # iterations between metrics.jsonl rows
    save_every: int = 0  # iterations between resumable checkpoints (0 = at epoch ends only)
    save_minutes: float = 0.0  # epoch-end checkpoints at most this often (0 = every epoch end; short epochs on a GPU)
    sample_every_epochs: int = 1  # write samples/epoch_NNNN.png every this many epochs (0 = never)
    tensorboard: bool = False  # also log to run_dir/tensorboard (needs the tensorboard extra)
    progress: bool = True  # show a progress bar
    device: str = "auto"  # auto: the GPU when CUDA is available, else the CPU
    precision: str = "auto"  # auto: bf16 on CPUs with native bf16 (AVX512-BF16/AMX) and Ampere+ GPUs, fp16 on older GPUs, else fp32
    channels_last: bool = False  # NHWC memory layout (helps tensor-core GPUs; slower on CPU)
    compile: bool = False  # torch.compile the four networks (cached; falls back to eager with a warning)
    cuda_graphs: str = "auto"  # GPU: replay the fixed-shape step as one CUDA graph (auto: wherever it can: one process, bf16/fp32, fixed shapes; 3.0x-5.7x the official fp32 step on an H200)
    threads: int = 0  # torch CPU threads (0 = leave PyTorch's default)
    dist_timeout: float = 30.0  # torchrun runs: minutes a collective may wait for a silent rank before the run fails
    val_every: int = 0  # iterations between validations on a held-out slice of the test set (0 = off)
    val_metric: str = "auto"  # the metric that picks run_dir/best/ (auto: psnr with ground truth, else kid)
    val_images: int = 32  # test images per domain used for validation
    # recipe options (presets/fast.json); the defaults reproduce the paper
    lr_d: float = 0.0  # discriminators' learning rate (0 = the same as --lr); TTUR when different
    ema_decay: float = 0.0  # translate/export with an EMA of the generator weights (0 = off), see train/ema.py
    cycle_noise: float = 0.0  # std of Gaussian noise added to a translation before its cycle back (0 = off, the paper)
    diff_augment: str = "none"  # differentiable augmentation of every discriminator input: none (paper) | translation | cutout | translation_cutout
    lambda_nce: float = 0.0  # weight of CUT's patchwise contrastive loss per direction (0 = off, the paper), see train/nce.py
    init_from: str = ""  # a release (or run dir) whose two generators a new run starts from, to fine-tune; the discriminators start fresh ("" = random weights; "builtin" = the gender-swap model the package ships), see train/init_from.py
    half_res_warmup: str = "0"  # share of a --lr-step-unit time budget trained on half-size images (2x2 means) before the full size: a number in [0, 1) (0 = off) or auto (0.25 where training runs in fp32, 0 under bf16/fp16 autocast or on a GPU), see train/schedule.py


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    # ------------------------------------------------------------------ io
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any], source: str = "config") -> "Config":
        if not isinstance(d, dict):
            raise ConfigError(f"{source}: expected a JSON object with model/data/train sections")
        unknown = set(d) - {"model", "data", "train", "description"}
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; use model, data, train")
        return cls(model=_section_from_dict(ModelConfig, d.get("model", {}), f"{source}: model"),
                   data=_section_from_dict(DataConfig, d.get("data", {}), f"{source}: data"),
                   train=_section_from_dict(TrainConfig, d.get("train", {}), f"{source}: train"))

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    def save(self, path: Union[str, Path]) -> None:
        atomic_write_text(Path(path), self.to_json())

    def validate(self) -> "Config":
        validate_config(self)
        return self


def _section_from_dict(cls, d: Any, where: str):
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: expected an object, got {type(d).__name__}")
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(d) - names
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {sorted(unknown)}; known fields: {sorted(names)}")
    values = {k: coerce(yes_no_choice(k, v), hints[k], f"{where}.{k}") for k, v in d.items()}
    return cls(**values)


def coerce(value: Any, typ: Any, where: str) -> Any:
    """Convert a JSON/CLI value to the field's type, or raise a ConfigError naming the field."""
    origin = get_origin(typ)
    if origin is Union:  # Optional[X]
        args = [a for a in get_args(typ) if a is not type(None)]
        if value is None:
            return None
        return coerce(value, args[0], where)
    try:
        if typ is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("0", "false", "no", "off"):
                return False
            if isinstance(value, int) and value in (0, 1):
                return bool(value)
            raise ValueError
        if typ is int:
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            return int(value)
        if typ is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if typ is str:
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: {value!r} is not a valid {getattr(typ, '__name__', typ)}") from None
    return value


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


def field_index() -> dict[str, tuple[str, Any]]:
    """Map every field name to (section, type). Field names are unique across sections."""
    out: dict[str, tuple[str, Any]] = {}
    for section, cls in SECTIONS.items():
        for name, typ in get_type_hints(cls).items():
            assert name not in out, f"duplicate config field {name}"
            out[name] = (section, typ)
    return out


def yes_no_choice(name: str, value: Any) -> Any:
    """A yes/no that became a choice with auto (cuda_graphs): old booleans and on/yes/1/off/no/0 still work."""
    if "true" not in CHOICES.get(name, ()):
        return value
    low = str(value).lower()  # str(True) is "True"
    return "true" if low in ("1", "yes", "on", "true") else "false" if low in ("0", "no", "off", "false") else low


def set_field(cfg: Config, name: str, value: Any) -> None:
    section, typ = field_index()[name]
    setattr(getattr(cfg, section), name, coerce(yes_no_choice(name, value), typ, f"--{name.replace('_', '-')}"))


# Upper bounds for the model options: far above any published CycleGAN, low enough that a hostile
# or mistyped config.json cannot make a loader allocate gigabytes before anything is checked.
MODEL_LIMITS: dict[str, tuple[float, float]] = {
    "in_channels": (1, 64), "out_channels": (1, 64), "ngf": (1, 1024), "ndf": (1, 1024),
    "n_blocks": (0, 64), "unet_levels": (1, 12), "d_layers": (0, 10), "d_scales": (1, 4), "image_size": (1, 16384),
    "init_gain": (0.0, 10.0), "colour_gain": (0.0, 4.0),
    "colour_gain_luma": (-4.0, 4.0), "face_margin": (0.0, 4.0),
}


def _check_choices(obj: Any) -> None:
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.name in CHOICES and v not in CHOICES[f.name]:
            raise ConfigError(f"--{f.name.replace('_', '-')}: {v!r} is not one of {', '.join(CHOICES[f.name])}")


def validate_model_config(m: "ModelConfig", where: str = "") -> None:
    """Check a ModelConfig's choices and ranges (also used for every release that is loaded)."""
    prefix = f"{where}: " if where else ""
    try:
        _check_choices(m)
        for name, (lo, hi) in MODEL_LIMITS.items():
            v = getattr(m, name)
            if not math.isfinite(v) or not lo <= v <= hi:
                raise ConfigError(f"--{name.replace('_', '-')} must be between {lo:g} and {hi:g}, got {v}")
        if not 0.0 <= m.dropout < 1.0:
            raise ConfigError(f"--dropout must be in [0, 1), got {m.dropout}")
        if m.pixel_shuffle and m.generator != "resnet":
            raise ConfigError(f"--pixel-shuffle is a ResNet generator option, not one of --generator {m.generator}")
        if m.input_skip and m.generator != "resnet":
            raise ConfigError(f"--input-skip is a ResNet generator option, not one of --generator {m.generator}")
        if m.colour_gain and (m.generator != "resnet" or m.in_channels != m.out_channels):
            raise ConfigError(f"--colour-gain needs the ResNet generator and the same channels in both domains, "
                              f"got --generator {m.generator}, {m.in_channels} and {m.out_channels} channels; "
                              "set --colour-gain 0")
        if m.residual and m.in_channels != m.out_channels:
            raise ConfigError(f"--residual needs the same channels in both domains, got {m.in_channels} and {m.out_channels}")
    except ConfigError as exc:
        raise ConfigError(prefix + str(exc)) from None


def warmup_share(value: str) -> Optional[float]:
    """``--half-res-warmup`` as a share of the budget, or None for ``auto``; a ConfigError otherwise."""
    try:
        share = None if value == "auto" else float(value)
    except ValueError:
        share = -1.0
    if share is not None and not 0.0 <= share < 1.0:
        raise ConfigError(f"--half-res-warmup must be auto or a number in [0, 1) (0 = off), got {value!r}")
    return share


def validate_config(cfg: Config) -> None:
    """Check ranges and choices; raise one ConfigError that names the field and the fix."""
    validate_model_config(cfg.model)
    _check_choices(cfg.data)
    _check_choices(cfg.train)
    m, d, t = cfg.model, cfg.data, cfg.train
    positive = {"batch_size": t.batch_size, "crop_size": d.crop_size, "load_size": d.load_size}
    for name, v in positive.items():
        if v < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {v}")
    nonneg = {
        "n_epochs": t.n_epochs, "n_epochs_decay": t.n_epochs_decay, "max_steps": t.max_steps,
        "pool_size": t.pool_size, "lambda_cycle": t.lambda_cycle, "lambda_identity": t.lambda_identity,
        "lr": t.lr, "max_images": d.max_images, "num_workers": d.num_workers,
        "max_minutes": t.max_minutes, "threads": t.threads, "save_every": t.save_every, "val_every": t.val_every,
        "lr_d": t.lr_d, "cycle_noise": t.cycle_noise, "lambda_nce": t.lambda_nce, "save_minutes": t.save_minutes,
    }
    for name, v in nonneg.items():
        if not v >= 0:  # also refuses NaN
            raise ConfigError(f"--{name.replace('_', '-')} must not be negative, got {v}")
    if t.n_epochs + t.n_epochs_decay < 1 and t.max_steps == 0:
        raise ConfigError("nothing to train: set --n-epochs/--n-epochs-decay or --max-steps")
    if t.lr_step_unit == "time" and not t.max_minutes > 0:
        raise ConfigError("--lr-step-unit time schedules the learning rate over the time budget: give "
                          "--max-minutes (or use --lr-step-unit epoch)")
    if not 0.0 <= t.ema_decay < 1.0:
        raise ConfigError(f"--ema-decay must be in [0, 1) (0 = off), got {t.ema_decay}")
    warm = warmup_share(t.half_res_warmup)  # None: auto, which turns itself off where it cannot apply
    if warm and t.lr_step_unit != "time":
        raise ConfigError("--half-res-warmup is a share of the time budget: use it with --lr-step-unit time "
                          "and --max-minutes, or set --half-res-warmup 0 (or auto)")
    if warm and (d.crop_size % 2 or d.preprocess in ("scale_width", "none")):
        raise ConfigError(f"--half-res-warmup halves the training crops: it needs an even --crop-size (got "
                          f"{d.crop_size}) and a preprocess mode that crops (got {d.preprocess})")
    if t.val_images < 2:
        raise ConfigError(f"--val-images must be at least 2, got {t.val_images}")
    if not t.dist_timeout > 0:
        raise ConfigError(f"--dist-timeout must be a positive number of minutes, got {t.dist_timeout}")
    if t.log_every < 1:
        raise ConfigError(f"--log-every must be at least 1, got {t.log_every}")
    if d.preprocess in ("resize_and_crop", "scale_width_and_crop") and d.load_size < d.crop_size:
        raise ConfigError(f"--load-size ({d.load_size}) must be at least --crop-size ({d.crop_size}) for {d.preprocess}")
    if d.preprocess in ("scale_width", "none") and m.generator in ("unet", "unet_gia"):
        raise ConfigError(f"--preprocess {d.preprocess} keeps each image's shape, which the U-Net generators "
                          "cannot take (they need sides that are multiples of 2^levels); use resize_and_crop, "
                          "crop or scale_width_and_crop")
    if d.preprocess in ("scale_width", "none") and t.batch_size > 1:
        raise ConfigError(f"--preprocess {d.preprocess} keeps each image's own shape, so images cannot be "
                          "batched; use --batch-size 1 or a preprocess mode that crops")
    coarse, need = d.crop_size // 2 ** (m.d_scales - 1), 2 ** (m.d_layers + 2)
    if m.d_scales > 1 and m.discriminator == "patchgan" and coarse < need:
        raise ConfigError(f"--d-scales {m.d_scales} judges the {d.crop_size} px crops down to {coarse} px, too small "
                          f"for a PatchGAN with --d-layers {m.d_layers} (at least {need} px): use fewer scales or layers")
    if t.lambda_nce > 0 and (m.generator != "resnet" or m.block != "add" or m.n_blocks < 1):
        raise ConfigError(f"--lambda-nce compares the ResNet generator's encoder features: it needs --generator "
                          f"resnet, --block add and --n-blocks 1 or more (got {m.generator}, {m.block}, "
                          f"{m.n_blocks}); set --lambda-nce 0")
    if t.lambda_identity > 0 and m.in_channels != m.out_channels:
        raise ConfigError(f"the identity loss feeds domain B images to G_AB, so it needs the same channels in both "
                          f"domains (got --in-channels {m.in_channels}, --out-channels {m.out_channels}); "
                          "set --lambda-identity 0")


# ---------------------------------------------------------------------- files
def load_config(path: Union[str, Path]) -> Config:
    """Load a ``.json`` (or, with PyYAML installed, ``.yaml``) config file."""
    path = Path(path)
    if path.is_dir():
        path = path / "config.json"
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file; save the config as UTF-8 JSON or YAML") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return Config.from_dict(data, source=str(path))


def generator_config_for(model: ModelConfig, direction: str) -> ModelConfig:
    """The ModelConfig of one generator: ``AtoB`` as configured, ``BtoA`` with channels swapped."""
    if direction not in DIRECTIONS:
        raise ConfigError(f"direction must be AtoB or BtoA, got {direction!r}")
    if direction == "AtoB":
        return dataclasses.replace(model)
    return dataclasses.replace(model, in_channels=model.out_channels, out_channels=model.in_channels)

