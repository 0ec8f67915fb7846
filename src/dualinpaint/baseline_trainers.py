"""Trainers of the Table I baselines (``model.family`` ce, gl, gntipt, gmcnn): the D and G steps written out.

Each subclasses ``train.Trainer``: the run loop, checkpoints, exact resume, EMA, logging and torchrun all
come from ``Trainer`` / ``train.train``; the networks come from ``baseline_models`` (which knows nothing
of this module or of ``train.py``, so ``generator.build_generator`` never loads the trainer).

- ``ce`` / ``gl``: one discriminator, ``critic_loss`` (+ gradient penalty with WGAN-GP), masked
  reconstruction + adversarial loss (see baseline_models.py for the papers and the deviations).
- ``gntipt`` (DeepFill v1) and ``gmcnn``: WGAN-GP with a global and a local critic (the local one on the
  (H/2)² window around each hole) whose gradient penalty is restricted to the hole, as both released codes
  (``gradients_penalty(..., mask=mask)``); ``optim.n_critic`` = 5 critic steps per generator step there.

  GntIpt's generator loss (inpaint_model.py, v1.0.0): λ_g·(adv_global + adv_local)
  + λ_rec·(1.2·L1_γ(coarse) + L1_γ(refined)) + 1.2·(1.2·L1_known(coarse) + L1_known(refined)), where
  L1_γ is the spatially discounted L1 in the hole (weight γ^l, l the distance to the nearest known pixel;
  γ = 0.99 as the paper; the public code's configs use 0.9) and L1_known the L1 outside the hole. λ_rec = 1.2
  (L1_LOSS_ALPHA), λ_g = 0.001 (GAN_LOSS_ALPHA); 1.2 = COARSE_L1_ALPHA = AE_LOSS_ALPHA.

  GMCNN's generator loss (tensorflow/net/network.py): λ_g·(adv_global + adv_local)
  + λ_rec·(1.2·L1_c + λ_mrf·ID-MRF) + 1.2·(1.2 + 1.2)·L1_known, where L1_c is the confidence-driven L1 in
  the hole (weights from 7 rounds of Gaussian propagation of the known region, 64² kernel, σ = 1/40) and
  ID-MRF compares the VGG19 features of the raw output's and the photo's local windows. λ_rec = 1.4
  (l1_loss_alpha), λ_g = 0.001, λ_mrf = 0.05 (mrf_alpha); the known-region term is counted twice, as the
  released code does outside its pretraining phase.

Deviations: the hole terms are means over each sample's hole pixels (the originals averaged over the
fixed 128² box, or, for free-form masks, over the image); the known-region terms over each sample's known
pixels (the originals: over the batch). Global and local penalties use the same interpolation weight per
sample (drawn from the seed, step and sample position like every random number of the trainer).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .baseline_models import (
    GMCNN,
    ContextEncoder,
    DCGANDiscriminator,
    GLCompletionNet,
    GLDiscriminator,
    GntIpt,
    critic_norm,
    display_name,
    gmcnn_critics,
    gmcnn_mrf_weight,
    gntipt_critics,
)
from .config import Config
from .distributed import DistInfo
from .losses import composite, critic_loss, generator_adv_loss, gradient_penalty
from .train import Trainer, _set_requires_grad
from .vgg import VGG19Features, id_mrf_loss, load_vgg19


class NoCritic(nn.Module):
    """Fills the trainer's second critic slot (D1, the dual-path reconstruction critic) for families with
    one discriminator: no parameters, no state; calling it is an error."""

    def forward(self, *args: object) -> torch.Tensor:
        raise RuntimeError("this model family has a single discriminator (d_gen); d_rec is a placeholder")


@dataclass
class BaselineOutput:
    """One training forward pass of a baseline generator: its raw full-size output N×3×H×W, and for
    two-stage generators (GntIpt) the first stage's raw output."""

    raw: torch.Tensor
    coarse: torch.Tensor | None = None


def masked_reconstruction(
    raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, norm: str
) -> torch.Tensor:
    """Per-sample mean of |raw − image|^p over the hole's pixels and channels (p = 2 for ``l2``, 1 for
    ``l1``), averaged over the batch; a sample without a hole contributes 0."""
    diff = raw - image
    err = diff.pow(2) if norm == "l2" else diff.abs()
    per_sample = (err * hole).sum(dim=(1, 2, 3)) / (hole.sum(dim=(1, 2, 3)) * raw.shape[1]).clamp_min(1.0)
    return per_sample.mean()


class _BaselineTrainer(Trainer):
    """Shared D and G steps of the single-discriminator baselines.

    D step: ``critic_loss`` on real images vs detached composites (+ λ_gp · gradient penalty with
    WGAN-GP). G step: λ_rec · masked reconstruction (``loss.rec_norm``) + λ_g · adversarial loss of the
    composite. ``d_gen`` is the discriminator, ``d_rec`` a parameter-free placeholder.
    """

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """The discriminator's logits for images x (N×3×H×W) with holes ``hole``."""
        raise NotImplementedError

    @property
    def display_name(self) -> str:
        """The model's name for reports (``baseline_models.display_name``)."""
        return display_name(self.cfg)

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, positions: list[int], round_: int
    ) -> BaselineOutput:
        with self.autocast():
            raw = self.net_forward(image, hole)
        return BaselineOutput(raw.float())

    def d_step(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput, positions: list[int], round_: int
    ) -> dict[str, float]:
        """One discriminator update: real images vs detached composites of the generator's output."""
        L = self.cfg.loss
        _set_requires_grad([self.d_gen], True)
        fake = composite(out.raw.detach(), image, hole)
        with self.autocast():
            d_real, d_fake = self.critic(image, hole).float(), self.critic(fake, hole).float()
        loss_adv = critic_loss(L.gan_mode, d_real, d_fake)
        gp = image.new_zeros(())
        if L.gan_mode == "wgangp":
            alpha = self._per_sample(positions, round_, 3, (1, 1, 1))
            with self.autocast():
                gp = gradient_penalty(lambda x: self.critic(x, hole), image, fake, alpha).float()
        half = 0.5 if L.d_loss_half else 1.0
        total = half * loss_adv + L.lambda_gp * gp
        self._check_finite(total, "critic")
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_d, list(self.d_gen.parameters()))
        return {
            "d/adv": loss_adv.item(),
            "d/gp": gp.item(),
            "d/total": total.item(),
            "d/real_minus_fake": (d_real.mean() - d_fake.mean()).item(),
        }

    def g_terms(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput
    ) -> dict[str, torch.Tensor]:
        """The unweighted generator terms: masked reconstruction and adversarial loss of the composite."""
        L = self.cfg.loss
        rec = masked_reconstruction(out.raw, image, hole, L.rec_norm)
        with self.autocast():
            adv = generator_adv_loss(L.gan_mode, self.critic(composite(out.raw, image, hole), hole).float())
        return {"rec": rec, "adv": adv}

    def g_total(self, t: dict[str, torch.Tensor], scales: int = 1) -> torch.Tensor:
        """The generator objective: λ_rec · reconstruction + λ_g · adversarial."""
        L = self.cfg.loss
        return L.lambda_rec * t["rec"] + L.lambda_g * t["adv"]

    def g_step(self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput) -> dict[str, float]:
        """One generator update with the discriminator frozen."""
        _set_requires_grad([self.d_gen], False)
        terms = self.g_terms(image, hole, out)
        total = self.g_total(terms)
        self._check_finite(total, "generator")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_g, list(self.net.parameters()))
        _set_requires_grad([self.d_gen], True)
        if self.ema is not None:
            self._update_ema()
        return {"g/total": total.item(), **{f"g/{k}": v.item() for k, v in terms.items()}}


class CETrainer(_BaselineTrainer):
    """Context Encoders: ContextEncoder + a DCGAN discriminator on the whole composite image."""

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (
            ContextEncoder(cfg.model),
            NoCritic(),
            DCGANDiscriminator(cfg.model, cfg.data.size, critic_norm(cfg)),
        )

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.d_gen(x)


class GLTrainer(_BaselineTrainer):
    """GLCIC: GLCompletionNet + the global-and-local discriminator (one module, as in the paper)."""

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return (
            GLCompletionNet(cfg.model),
            NoCritic(),
            GLDiscriminator(cfg.model, cfg.data.size, critic_norm(cfg)),
        )

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        return self.d_gen(x, hole)


# ---------------------------------------------------------- losses of GntIpt and GMCNN (pure functions)

GNTIPT_DISCOUNT_GAMMA = 0.99  # the paper's γ (the public code's configs use 0.9); loss.discount_gamma
GNTIPT_COARSE_ALPHA = 1.2  # COARSE_L1_ALPHA: weight of the coarse stage in both L1 terms
GNTIPT_AE_ALPHA = 1.2  # AE_LOSS_ALPHA: weight of the known-region (auto-encoder) L1
GMCNN_HOLE_ALPHA = 1.2  # pretrain_l1_alpha: weight of the confidence-driven L1 inside l1_loss
GMCNN_AE_WEIGHT = 1.2 * (1.2 + 1.2)  # ae_loss_alpha · (pretrain_l1_alpha, counted twice) on L1_known
GMCNN_CONF_SIZE, GMCNN_CONF_SIGMA, GMCNN_CONF_ITERS = 64, 1 / 40, 7  # priority_loss_mask's defaults


def spatial_discount(hole: torch.Tensor, gamma: float) -> torch.Tensor:
    """DeepFill's spatially discounted weights: γ^l inside the hole, 0 outside, l = (chessboard distance
    to the nearest known pixel) − 1, so the hole's rim weighs 1; pixels outside the image count as unknown.
    On a rectangular hole this is the released ``spatial_discounting_mask`` over its box,
    max(γ^min(i, H−i), γ^min(j, W−j)), made symmetric (there the bottom and right rims weigh γ, not 1).
    hole N×1×H×W → N×1×H×W, no gradient."""
    inside = (hole.detach() > 0.5).float()
    weight = torch.zeros_like(inside)
    level, power = inside, 1.0
    for _ in range(max(hole.shape[-2:])):
        if not bool(level.any()):
            break
        eroded = -F.max_pool2d(-F.pad(level, (1, 1, 1, 1), value=1.0), 3, 1)  # min over the 3×3 window
        weight = weight + (level - eroded) * power
        level, power = eroded, power * gamma
    return weight + level * power  # a hole without any known pixel: the last level


def _gauss_1d(size: int, sigma: float) -> torch.Tensor:
    """Square root of the released ``gauss_kernel``'s 1-D factor: that kernel is
    sqrt(outer(k, k)) / Σ = outer(√k, √k) / (Σ√k)², so it is separable into this vector twice."""
    interval = (2 * sigma + 1.0) / size
    edges = torch.linspace(-sigma - interval / 2, sigma + interval / 2, size + 1, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(edges / math.sqrt(2)))
    k = (cdf[1:] - cdf[:-1]).sqrt()
    return k / k.sum()


def confidence_weights(
    hole: torch.Tensor,
    size: int = GMCNN_CONF_SIZE,
    sigma: float = GMCNN_CONF_SIGMA,
    iters: int = GMCNN_CONF_ITERS,
) -> torch.Tensor:
    """GMCNN's confidence-driven weights (released ``priority_loss_mask``): starting from the known
    region, ``iters`` times blur with the size×size Gaussian kernel ("SAME" zero padding), keep the result
    inside the hole and reset the known region to 1. High near the hole's rim, falling towards its centre;
    0 outside the hole. hole N×1×H×W (1 = hole) → N×1×H×W, no gradient."""
    hole = hole.detach().float()
    k = _gauss_1d(size, sigma).to(hole.device, torch.float32)
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2  # TF "SAME" for an even kernel
    known = 1 - hole
    conf, current = torch.zeros_like(hole), known
    for _ in range(iters):
        x = F.pad(current, (before, after, before, after))
        x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, size)), k.view(1, 1, size, 1))
        conf = x * hole
        current = conf + known
    return conf


def hole_l1(raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Σ weight·|raw − image| over each sample's hole pixels and channels / (channels · hole pixels),
    averaged over the batch; ``weight`` N×1×H×W (0 outside the hole). A sample without a hole gives 0."""
    per_sample = ((raw - image).abs() * weight * hole).sum(dim=(1, 2, 3))
    return (per_sample / (hole.sum(dim=(1, 2, 3)) * raw.shape[1]).clamp_min(1.0)).mean()


def known_l1(raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
    """Mean |raw − image| over each sample's known pixels and channels, averaged over the batch."""
    known = 1 - hole
    per_sample = ((raw - image).abs() * known).sum(dim=(1, 2, 3))
    return (per_sample / (known.sum(dim=(1, 2, 3)) * raw.shape[1]).clamp_min(1.0)).mean()


def masked_gradient_penalty(
    critic: Callable[[torch.Tensor], torch.Tensor],
    real: torch.Tensor,
    fake: torch.Tensor,
    alpha: torch.Tensor,
    mask: torch.Tensor,
) -> torch.Tensor:
    """The released ``gradients_penalty(x, y, mask)``: mean over samples of (‖m ⊙ ∇_x D(x̂)‖₂ − 1)², the
    gradient's norm taken over the masked pixels only (m = the hole, or its local window), at
    x̂ = α·real + (1 − α)·fake (α N×1×1×1). Not multiplied by λ; the graph is kept for the critic's update."""
    mixed = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    slopes = (grad.pow(2) * mask).flatten(1).sum(dim=1).clamp_min(1e-12).sqrt()
    return (slopes - 1).pow(2).mean()


# ------------------------------------------------------------------ global + local WGAN-GP trainers


class _GlobalLocalTrainer(_BaselineTrainer):
    """D and G steps with two critics (``d_gen`` = ``GlobalLocalCritics``): global on the composite,
    local on its window around the hole; their losses are summed (GLOBAL_WGAN_LOSS_ALPHA = 1)."""

    def critic(self, x: torch.Tensor, hole: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        """(global, local) critic outputs, each N×1."""
        return self.d_gen(x, hole)

    def d_step(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput, positions: list[int], round_: int
    ) -> dict[str, float]:
        """One update of both critics: real photos vs detached composites (+ λ_gp · hole-masked penalties)."""
        L = self.cfg.loss
        _set_requires_grad([self.d_gen], True)
        fake = composite(out.raw.detach(), image, hole)
        with self.autocast():
            (g_real, l_real), (g_fake, l_fake) = self.critic(image, hole), self.critic(fake, hole)
        loss_global = critic_loss(L.gan_mode, g_real.float(), g_fake.float())
        loss_local = critic_loss(L.gan_mode, l_real.float(), l_fake.float())
        gp_global = gp_local = image.new_zeros(())
        if L.gan_mode == "wgangp":
            alpha = self._per_sample(positions, round_, 3, (1, 1, 1))
            crop = self.d_gen.crop
            with self.autocast():
                gp_global = masked_gradient_penalty(
                    self.d_gen.global_critic, image, fake, alpha, hole
                ).float()
                gp_local = masked_gradient_penalty(
                    self.d_gen.local_critic, crop(image, hole), crop(fake, hole), alpha, crop(hole, hole)
                ).float()
        half = 0.5 if L.d_loss_half else 1.0
        total = half * (loss_global + loss_local) + L.lambda_gp * (gp_global + gp_local)
        self._check_finite(total, "critic")
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_d, list(self.d_gen.parameters()))
        return {
            "d/global": loss_global.item(),
            "d/local": loss_local.item(),
            "d/adv": (loss_global + loss_local).item(),
            "d/gp": (gp_global + gp_local).item(),
            "d/total": total.item(),
            "d/real_minus_fake": (g_real.float().mean() - g_fake.float().mean()).item(),
            "d/local_real_minus_fake": (l_real.float().mean() - l_fake.float().mean()).item(),
        }

    def adversarial(self, raw: torch.Tensor, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        """Generator's adversarial loss of the composite: global + local."""
        mode = self.cfg.loss.gan_mode
        with self.autocast():
            g_fake, l_fake = self.critic(composite(raw, image, hole), hole)
        return generator_adv_loss(mode, g_fake.float()) + generator_adv_loss(mode, l_fake.float())


class GntIptTrainer(_GlobalLocalTrainer):
    """GntIpt (DeepFill v1): the two-stage generator, spatially discounted L1 on both stages, WGAN-GP with
    DeepFill's global and local critics (see the module docstring for the loss)."""

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return GntIpt(cfg.model), NoCritic(), gntipt_critics(cfg.model, cfg.data.size)

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, positions: list[int], round_: int
    ) -> BaselineOutput:
        with self.autocast():
            coarse, raw = self.net_forward(image, hole, stages=True)
        return BaselineOutput(raw.float(), coarse.float())

    def g_terms(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms: ``rec`` = 1.2·L1_γ(coarse) + L1_γ(refined), ``ae`` = 1.2·L1_known(coarse) +
        L1_known(refined), ``adv`` = global + local adversarial loss of the refined composite."""
        gamma = self.cfg.loss.discount_gamma
        weight = spatial_discount(hole, gamma)
        a = GNTIPT_COARSE_ALPHA
        rec = a * hole_l1(out.coarse, image, hole, weight) + hole_l1(out.raw, image, hole, weight)
        ae = a * known_l1(out.coarse, image, hole) + known_l1(out.raw, image, hole)
        return {"rec": rec, "ae": ae, "adv": self.adversarial(out.raw, image, hole)}

    def g_total(self, t: dict[str, torch.Tensor], scales: int = 1) -> torch.Tensor:
        """λ_g · adv + λ_rec · rec + AE_LOSS_ALPHA · ae."""
        L = self.cfg.loss
        return L.lambda_g * t["adv"] + L.lambda_rec * t["rec"] + GNTIPT_AE_ALPHA * t["ae"]


class GMCNNTrainer(_GlobalLocalTrainer):
    """GMCNN: the multi-column generator, confidence-driven L1, ID-MRF on VGG19 features of the local
    windows, WGAN-GP with GMCNN's global and local critics (see the module docstring for the loss).

    The ID-MRF loss needs VGG19 weights from a local file: ``vgg_weights`` if given, else the config's
    ``loss.vgg19_weights``. Without one the constructor raises ValueError, unless the ID-MRF weight
    (``loss.lambda_mrf``, 0.05 in table1/gmcnn.yaml) is 0: then it trains "GMCNN without ID-MRF"
    (``display_name``).
    """

    def __init__(
        self,
        cfg: Config,
        device: torch.device | str = "cpu",
        dist: DistInfo | None = None,
        vgg_weights: str | Path | None = None,
    ) -> None:
        self.lambda_mrf = gmcnn_mrf_weight(cfg)
        path = vgg_weights or cfg.loss.vgg19_weights
        vgg: VGG19Features | None = None
        if self.lambda_mrf > 0:
            if not path:
                raise ValueError(
                    "GMCNN's ID-MRF loss needs VGG19 weights: set loss.vgg19_weights to a torchvision-format "
                    "VGG19 state dict (.pth or .safetensors), or loss.lambda_mrf=0 for GMCNN without ID-MRF"
                )
            vgg = load_vgg19(path)  # before the networks are built: a bad file fails fast
        super().__init__(cfg, device, dist)
        self.vgg = vgg.to(self.device) if vgg is not None else None

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        return GMCNN(cfg.model), NoCritic(), gmcnn_critics(cfg.model, cfg.data.size)

    def g_terms(
        self, image: torch.Tensor, hole: torch.Tensor, out: BaselineOutput
    ) -> dict[str, torch.Tensor]:
        """Unweighted terms: ``rec`` = confidence-driven L1 in the hole, ``ae`` = L1 outside it, ``mrf`` =
        ID-MRF of the raw output's local window against the photo's (0 without VGG19), ``adv``."""
        rec = hole_l1(out.raw, image, hole, confidence_weights(hole))
        ae = known_l1(out.raw, image, hole)
        mrf = image.new_zeros(())
        if self.vgg is not None:
            crop = self.d_gen.crop
            with self.autocast():
                mrf = id_mrf_loss(self.vgg, crop(out.raw, hole), crop(image, hole)).float()
        return {"rec": rec, "ae": ae, "mrf": mrf, "adv": self.adversarial(out.raw, image, hole)}

    def g_total(self, t: dict[str, torch.Tensor], scales: int = 1) -> torch.Tensor:
        """λ_g · adv + λ_rec · (1.2 · rec + λ_mrf · mrf) + 2.88 · ae (the released code's weighting)."""
        L = self.cfg.loss
        hole_terms = GMCNN_HOLE_ALPHA * t["rec"] + self.lambda_mrf * t["mrf"]
        return L.lambda_g * t["adv"] + L.lambda_rec * hole_terms + GMCNN_AE_WEIGHT * t["ae"]


BASELINE_TRAINERS: dict[str, type[Trainer]] = {
    "ce": CETrainer,
    "gl": GLTrainer,
    "gntipt": GntIptTrainer,
    "gmcnn": GMCNNTrainer,
}
