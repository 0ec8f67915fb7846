"""Configuration: frozen dataclasses, validated on construction, loaded from flat YAML files.

A config file has one section per dataclass (``model``, ``loss``, ``optim``, ``data``, ``masks``,
``train``); every field may be given, none is inherited from another file. ``--set a.b=c`` overrides are
parsed as YAML scalars and checked against the field's type; an unknown key is an error.
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

GAN_MODES = ("wgangp", "lsgan", "hinge", "vanilla")
FAMILIES = ("dualpath", "ce", "gl", "gntipt", "gmcnn")
REC_NORMS = ("l1", "l2")
HOLE_WEIGHTINGS = ("area", "per_sample")
DISC_TYPES = ("patch", "resdis")
SKIP_TYPES = ("conv1x1", "identity")
FUSIONS = ("add", "concat")
NORMS = ("instance", "none")
PREFILLS = ("none", "harmonic", "biharmonic")
UPSAMPLES = ("deconv", "resize")
REC_ADV = ("dmatch_l2", "gan")
KL_DIRECTIONS = ("prior_post", "post_prior")
PRIOR_SIGMAS = ("adaptive", "unit")
D2_FAKES = ("raw", "composite", "both")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the field and the value."""


def _check(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def _check_choice(section: str, name: str, value: Any, choices: tuple[str, ...]) -> None:
    _check(value in choices, f"{section}.{name}={value!r} is not one of {', '.join(choices)}")


def _check_positive(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value > 0, f"{section}.{name}={value!r} must be > 0")


def _check_nonnegative(section: str, obj: Any, *names: str) -> None:
    for name in names:
        value = getattr(obj, name)
        _check(value >= 0, f"{section}.{name}={value!r} must be >= 0")


@dataclass(frozen=True)
class ModelConfig:
    """Encoders, generators and discriminators (see generator.py and discriminator.py)."""

    family: str = "dualpath"  # dualpath (the paper / PICNet); ce, gl: Context Encoders, GLCIC baselines
    ngf: int = 32  # channels of the first encoder block; doubled per level up to max_channels
    max_channels: int = 128  # channel cap (PICNet's img_f)
    z_channels: int = 128  # channels of the spatial latent z (PICNet: 128×8×8 at 256²)
    n_down: int = 4  # downsampling ResBlocks after the start block; total stride 2**(n_down+1)
    share_trunk: bool = True  # one encoder trunk for I_m and I_c (PICNet) or separate E1/E2 (paper)
    skip: str = "conv1x1"  # residual shortcut: 1×1 conv always (PICNet) or identity when shapes allow
    prior_blocks: int = 6  # ResBlocks before the prior head (generation path, I_m); +1 head = 7
    posterior_blocks: int = 0  # ResBlocks before the posterior head (reconstruction path, I_c)
    share_generator: bool = True  # G1 and G2 share weights (PICNet) or are separate networks
    fusion: str = "add"  # how the masked image's feature f_m joins the latent feature: add or concat
    output_scales: int = 4  # multi-scale RGB outputs from the last decoders (1 = final image only)
    attention: bool = True  # short+long term attention in the generator
    attention_level: int = 1  # decoder index after which attention runs (1 → stride 8, 32² at 256²)
    norm: str = "instance"  # normalisation inside the decoder blocks
    upsample: str = "deconv"  # decoder ×2: deconv3×3 s2 (the paper) or resize = nearest ×2 + conv3×3,
    # which cannot paint the checkerboard that a stride-2 transposed conv's uneven overlap leaves
    spectral_norm: bool = True  # spectral normalisation on encoder/generator/discriminator convs
    leak: float = 0.1  # LeakyReLU slope (PICNet 0.1)
    decoder_skips: bool = False  # U-Net style: each decoder adds E2's feature at its resolution (1×1 conv)
    mask_input: bool = False  # encoders also read the hole mask as a 4th channel
    prefill: str = "none"  # harmonic | biharmonic: G's final image = a parameter-free smooth fill + residual
    prefill_iters: int = 20  # per pyramid level: Jacobi sweeps (harmonic) or CG steps (biharmonic)
    disc_type: str = "patch"  # patch = PatchGAN, five 4×4 convs; resdis = PICNet's residual critic
    disc_channels: int = 64  # first-layer channels of each discriminator
    disc_max_channels: int = 256  # channel cap of the discriminators
    disc_strides: tuple[int, ...] = (2, 2, 2, 1, 1)  # PatchGAN strides; (2,2,2,1,1) → 70×70 receptive field
    disc_layers: int = 4  # resdis: downsampling blocks
    disc_attention: bool = False  # resdis: self-attention inside the critic (PICNet: on)

    def __post_init__(self) -> None:
        s = "model"
        _check_positive(
            s,
            self,
            "ngf",
            "max_channels",
            "z_channels",
            "n_down",
            "disc_channels",
            "disc_max_channels",
            "disc_layers",
        )
        _check_nonnegative(s, self, "prior_blocks", "posterior_blocks", "leak", "prefill_iters")
        _check(
            self.max_channels >= self.ngf,
            f"model.max_channels={self.max_channels} must be >= model.ngf={self.ngf}",
        )
        _check_choice(s, "family", self.family, FAMILIES)
        _check_choice(s, "skip", self.skip, SKIP_TYPES)
        _check_choice(s, "fusion", self.fusion, FUSIONS)
        _check_choice(s, "norm", self.norm, NORMS)
        _check_choice(s, "prefill", self.prefill, PREFILLS)
        _check_choice(s, "upsample", self.upsample, UPSAMPLES)
        _check_choice(s, "disc_type", self.disc_type, DISC_TYPES)
        n_up = self.n_down + 1
        _check(
            1 <= self.output_scales <= n_up,
            f"model.output_scales={self.output_scales} must be in 1..{n_up} (n_down+1 decoders)",
        )
        _check(
            0 <= self.attention_level < self.n_down,
            f"model.attention_level={self.attention_level} must be in 0..{self.n_down - 1}",
        )
        _check(
            len(self.disc_strides) == 5 and all(st in (1, 2) for st in self.disc_strides),
            f"model.disc_strides={list(self.disc_strides)} must be five strides, each 1 or 2",
        )

    @property
    def stride(self) -> int:
        """Total downsampling factor of the encoder: image sides must be multiples of it."""
        return 2 ** (self.n_down + 1)


@dataclass(frozen=True)
class LossConfig:
    """Loss terms and their weights; the trainer sums them in one expression (train.py)."""

    gan_mode: str = "wgangp"  # wgangp | lsgan | hinge | vanilla (BCE, as CE and GLCIC)
    lambda_gp: float = 10.0  # gradient-penalty coefficient (WGAN-GP)
    lambda_rec: float = 20.0  # L1 appearance terms (both paths, all scales)
    lambda_kl: float = 20.0  # KL terms
    kl_times_scales: bool = True  # PICNet multiplies lambda_kl by output_scales (20×4 = 80)
    lambda_g: float = 1.0  # adversarial term of the generation path
    lambda_rec_adv: float = 1.0  # adversarial / D-feature-matching term of the reconstruction path
    lambda_hole_g: float = 0.0  # L1 of the generation path inside the hole; 0 in PICNet, where G2 is
    # never pushed to reproduce the hole (the key to diversity); > 0 trades diversity for fidelity
    rec_adv: str = "dmatch_l2"  # PICNet: L2 between D1 outputs of fake and real; or a plain GAN loss
    kl_rec_direction: str = "prior_post"  # PICNet: KL(N(0,σ_m) ‖ posterior); paper: post_prior
    prior_sigma: str = "adaptive"  # σ_m from the hole fraction (PICNet) or 1
    d_loss_half: bool = False  # PICNet halves each critic's loss (0.5·[real + fake])
    d2_fake: str = "raw"  # what D2 judges as fake: raw output, composite, or both (the paper)
    rec_norm: str = "l1"  # reconstruction norm of the ce / gl families (both papers use l2)
    hole_norm: str = "l1"  # norm of the generation path's hole term (lambda_hole_g): l1 aims at the
    # median, which for texture is near flat; l2 at the mean
    hole_weighting: str = "area"  # how samples share that term: area = by hole size (a mean over all
    # pixels, so a thin stroke weighs little); per_sample = each sample's hole counts equally (the batch
    # total unchanged: losses.per_sample_hole_weight)
    lambda_psnr: float = 0.0  # per-sample hole log-MSE of the generation path's final image (minus its
    # hole PSNR, losses.hole_log_mse): every sample counts in dB, as in the evaluator's per-image mean
    lambda_texture: float = 0.0  # Gram-matrix texture loss of the generation path inside the hole, on a
    # fixed random-weight conv net's features (layers.RandomFeatures; no pretrained network offline)
    lambda_fm: float = 0.0  # feature matching on D2's hidden layers (pix2pixHD); patch critics only
    lambda_freq: float = 0.0  # focal frequency loss of the generation path's final image inside the
    # hole (losses.focal_frequency_loss): the frequencies with the largest error weigh most
    gen_at_prior_mean: bool = False  # train the generation path at z = prior mean (ε = 0): its hole and
    # adversarial terms then cannot fine the spread of prior samples; the reconstruction path's posterior
    # draws teach the shared G to use z, so --samples differ
    lambda_mrf: float = 0.0  # GMCNN's ID-MRF term on VGG19 features (needs vgg19_weights when > 0)
    vgg19_weights: str = ""  # a local VGG19 state dict (torchvision keys features.N.*); nothing downloads
    discount_gamma: float = 0.99  # GntIpt's spatially discounted L1: weight γ^(distance to the border)

    def __post_init__(self) -> None:
        s = "loss"
        _check_choice(s, "hole_norm", self.hole_norm, REC_NORMS)
        _check_choice(s, "hole_weighting", self.hole_weighting, HOLE_WEIGHTINGS)
        _check_choice(s, "gan_mode", self.gan_mode, GAN_MODES)
        _check_choice(s, "rec_adv", self.rec_adv, REC_ADV)
        _check_choice(s, "kl_rec_direction", self.kl_rec_direction, KL_DIRECTIONS)
        _check_choice(s, "prior_sigma", self.prior_sigma, PRIOR_SIGMAS)
        _check_choice(s, "d2_fake", self.d2_fake, D2_FAKES)
        _check_choice(s, "rec_norm", self.rec_norm, REC_NORMS)
        _check_nonnegative(
            s,
            self,
            "lambda_gp",
            "lambda_rec",
            "lambda_kl",
            "lambda_g",
            "lambda_rec_adv",
            "lambda_hole_g",
            "lambda_psnr",
            "lambda_texture",
            "lambda_fm",
            "lambda_freq",
            "lambda_mrf",
        )
        _check(0 < self.discount_gamma <= 1, f"loss.discount_gamma={self.discount_gamma} must be in (0, 1]")


@dataclass(frozen=True)
class OptimConfig:
    """Adam for E+G and for D1+D2 (PICNet: lr 1e-4, betas (0, 0.999), n_critic 1)."""

    lr_g: float = 1e-4
    lr_d: float = 1e-4
    beta1: float = 0.0
    beta2: float = 0.999
    n_critic: int = 1  # critic steps per generator step
    ema: float = 0.0  # EMA decay of the generator's weights; 0 = off
    grad_clip: float = 0.0  # max gradient norm for E+G and D; 0 = off
    d_warmup: int = 0  # the first steps of a run update the critics only (fine-tuning without critics)

    def __post_init__(self) -> None:
        s = "optim"
        _check_positive(s, self, "lr_g", "lr_d", "n_critic")
        _check_nonnegative(s, self, "d_warmup")
        _check(
            0 <= self.beta1 < 1 and 0 <= self.beta2 < 1,
            f"optim.beta1={self.beta1}, optim.beta2={self.beta2} must be in [0, 1)",
        )
        _check(0 <= self.ema < 1, f"optim.ema={self.ema} must be in [0, 1)")
        _check_nonnegative(s, self, "grad_clip")


@dataclass(frozen=True)
class DataConfig:
    """Image size and augmentation (PICNet: resize 266 → random crop 256, flip)."""

    size: int = 256  # training crop side; a multiple of model.stride
    load_size: int = 266  # resize before the random crop (0 = same as size)
    flip: bool = True
    min_scale: float = 0.0  # > 0: random square crops of s·shorter side, s ~ U[min_scale, 1], resized
    batch_size: int = 8
    num_workers: int = 2

    def __post_init__(self) -> None:
        s = "data"
        _check_positive(s, self, "size", "batch_size")
        _check_nonnegative(s, self, "num_workers", "load_size")
        _check(0 <= self.min_scale <= 1, f"data.min_scale={self.min_scale} must be in [0, 1]")
        _check(
            self.load_size == 0 or self.load_size >= self.size,
            f"data.load_size={self.load_size} must be 0 or >= data.size={self.size}",
        )


@dataclass(frozen=True)
class MaskConfig:
    """Mask mix for training: probabilities per mask kind (see masks.py), 1 = hole."""

    mix: dict[str, float] = field(default_factory=lambda: {"picnet_regular": 0.5, "picnet_irregular": 0.5})
    folder: str = ""  # external mask folder (white = hole), needed when mix has 'folder'

    def __post_init__(self) -> None:
        from .masks import MASK_KINDS

        _check(isinstance(self.mix, dict) and len(self.mix) > 0, f"masks.mix={self.mix!r} must be a mapping")
        for kind, p in self.mix.items():
            _check(kind in MASK_KINDS, f"masks.mix.{kind}: unknown mask kind; valid: {', '.join(MASK_KINDS)}")
            _check(isinstance(p, int | float) and p >= 0, f"masks.mix.{kind}={p!r} must be a number >= 0")
        _check(sum(self.mix.values()) > 0, f"masks.mix={self.mix!r} has no positive probability")
        _check(
            self.mix.get("folder", 0) == 0 or bool(self.folder),
            "masks.mix.folder > 0 needs masks.folder (a folder of mask images)",
        )


@dataclass(frozen=True)
class TrainConfig:
    """Loop cadence, run-time options and seeds."""

    steps: int = 100_000
    seed: int = 0
    log_every: int = 50
    sample_every: int = 1000
    val_every: int = 2000
    ckpt_every: int = 1000
    val_images: int = 16  # validation images used for PSNR/SSIM during training
    samples_k: int = 3  # pluralistic samples shown in the sample grid
    channels_last: bool = False
    bf16: bool = False  # bf16 autocast (CPU with AVX512-BF16 or CUDA)
    compile: bool = False  # torch.compile the generator side's training forward (the critics stay eager)

    def __post_init__(self) -> None:
        s = "train"
        _check_positive(s, self, "steps", "log_every", "sample_every", "val_every", "ckpt_every")
        _check_nonnegative(s, self, "seed", "val_images", "samples_k")


SECTIONS: dict[str, type] = {
    "model": ModelConfig,
    "loss": LossConfig,
    "optim": OptimConfig,
    "data": DataConfig,
    "masks": MaskConfig,
    "train": TrainConfig,
}


@dataclass(frozen=True)
class Config:
    """The whole configuration of a run; stored in every checkpoint and run directory."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    data: DataConfig = field(default_factory=DataConfig)
    masks: MaskConfig = field(default_factory=MaskConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        st = self.model.stride
        _check(
            self.data.size % st == 0,
            f"data.size={self.data.size} must be a multiple of the network stride {st} "
            f"(2**(model.n_down+1) with model.n_down={self.model.n_down})",
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) suitable for YAML/JSON."""
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Config:
        """Build from a nested dict; unknown sections or keys raise ConfigError."""
        if not isinstance(data, dict):
            raise ConfigError(f"a config must be a mapping of sections, got {type(data).__name__}")
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise ConfigError(f"unknown config section(s) {sorted(unknown)}; valid: {list(SECTIONS)}")
        parts = {}
        for name, klass in SECTIONS.items():
            values = data.get(name) or {}
            if not isinstance(values, dict):
                raise ConfigError(f"config section {name!r} must be a mapping, got {values!r}")
            parts[name] = _build_section(name, klass, values)
        return cls(**parts)

    def with_overrides(self, overrides: list[str] | tuple[str, ...]) -> Config:
        """Return a copy with ``section.key=value`` overrides applied (values parsed as YAML)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep:
                raise ConfigError(f"override {item!r} is not of the form section.key=value")
            path = key.strip().split(".")
            if path[0] not in SECTIONS:
                raise ConfigError(
                    f"unknown config section {path[0]!r} in override {item!r}; valid: {list(SECTIONS)}"
                )
            value = yaml.safe_load(raw) if raw.strip() else ""
            if len(path) == 3 and path[0] == "masks" and path[1] == "mix":
                data["masks"]["mix"][path[2]] = value
                continue
            if len(path) != 2:
                raise ConfigError(f"override key {key!r} must be section.key")
            section, name = path
            valid = [f.name for f in fields(SECTIONS[section])]
            if name not in valid:
                raise ConfigError(f"unknown config key {key!r}; valid keys of {section}: {valid}")
            data[section][name] = value
        return Config.from_dict(data)


# a number in scientific notation that YAML 1.1 leaves a string: no dot in the mantissa (3e-5, 1E4)
_YAML11_FLOAT = re.compile(r"[-+]?[0-9]+[eE][-+]?[0-9]+")


def _coerce(section: str, name: str, annotation: Any, value: Any) -> Any:
    """Check ``value`` against a field annotation (given as a string or type); convert safe cases."""
    hint = annotation
    origin = typing.get_origin(hint)
    where = f"{section}.{name}={value!r}"
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer")
        return value
    if hint is float:
        if isinstance(value, str) and _YAML11_FLOAT.fullmatch(value.strip()):
            value = float(value)  # PyYAML (YAML 1.1) reads 3e-5, without a dot, as a string
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list")
        (item,) = {a for a in typing.get_args(hint) if a is not Ellipsis}
        return tuple(_coerce(section, name, item, v) for v in value)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping")
        _, vtype = typing.get_args(hint)
        return {str(k): _coerce(section, f"{name}.{k}", vtype, v) for k, v in value.items()}
    if isinstance(hint, types.UnionType):  # pragma: no cover - no such field yet
        return value
    raise ConfigError(f"{where}: unsupported field type {hint!r}")  # pragma: no cover


def _build_section(section: str, klass: type, values: dict[str, Any]) -> Any:
    hints = typing.get_type_hints(klass)
    valid = {f.name for f in fields(klass)}
    unknown = set(values) - valid
    if unknown:
        raise ConfigError(
            f"unknown config key(s) {sorted(f'{section}.{k}' for k in unknown)}; "
            f"valid keys of {section}: {sorted(valid)}"
        )
    kwargs = {k: _coerce(section, k, hints[k], v) for k, v in values.items()}
    return klass(**kwargs)


def load_config(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Read a YAML config file (or a preset name such as ``tiny``) and apply ``--set`` overrides."""
    path = resolve_config_path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({err.__class__.__name__})") from None
    cfg = Config.from_dict(data or {})
    return cfg.with_overrides(overrides) if overrides else cfg


PRESET_DIR = Path(__file__).parent / "configs"


def resolve_config_path(path: str | Path) -> Path:
    """A path to a YAML file, or the name of a preset shipped with the package (``tiny``, ``paper``…)."""
    p = Path(path)
    if p.is_file():
        return p
    name = p.with_suffix("") if p.suffix in (".yaml", ".yml") else p
    preset = PRESET_DIR / f"{name}.yaml"
    if not p.is_absolute() and ".." not in p.parts and preset.is_file():
        return preset
    names = sorted(str(q.relative_to(PRESET_DIR).with_suffix("")) for q in PRESET_DIR.rglob("*.yaml"))
    raise ConfigError(f"no config file {str(path)!r} (presets: {', '.join(names)})")


def config_to_yaml(cfg: Config) -> str:
    """The config as a flat, complete YAML document."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=None)


def replace(cfg: Any, **changes: Any) -> Any:
    """``dataclasses.replace`` re-exported for frozen configs (validation runs again)."""
    return dataclasses.replace(cfg, **changes)
