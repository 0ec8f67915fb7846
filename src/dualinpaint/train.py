"""Training: the critic (D) step and the generator (G) step written out, exact resume, torchrun DDP.

Run it with::

    dualinpaint train --config tiny --data DIR --out runs/tiny --steps 200
    dualinpaint train --out runs/tiny --resume --steps 400           # continue a run exactly
    torchrun --nproc_per_node=2 -m dualinpaint train --config paper --data DIR --out runs/paper

Every random choice (crop, flip, mask, latent noise, gradient-penalty mixing) is a pure function of the
seed, the step and the sample's position in the global batch. That is what makes a resumed run and an
uninterrupted one produce identical weights, and a 2-process run equal to a 1-process run with the
doubled batch. One "step" is one generator update, preceded by ``optim.n_critic`` critic updates, each
on its own batch.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from . import checkpoint as ckpt
from .config import Config, config_to_yaml
from .data import ImageDataset
from .discriminator import build_discriminator
from .distributed import (
    DistInfo,
    all_reduce_mean,
    any_rank,
    average_gradients,
    barrier,
    broadcast_module,
)
from .fastpath import bf16_supported
from .generator import DualPathInpainter, TrainOutput, adaptive_prior_sigma
from .images import save_image_atomic, tensor_to_pil
from .layers import RandomFeatures
from .losses import (
    composite,
    critic_loss,
    feature_match_l2,
    feature_matching,
    focal_frequency_loss,
    generator_adv_loss,
    gradient_penalty,
    hole_log_mse,
    kl_normal,
    multiscale_l1,
    per_sample_hole_weight,
    texture_loss,
)
from .masks import MaskSampler
from .messages import one_line_warnings


class TrainingDiverged(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left untouched."""


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of the integer ``parts`` (numpy SeedSequence)."""
    return int(np.random.SeedSequence([int(p) for p in parts]).generate_state(2, np.uint64)[0] >> 1)


# --------------------------------------------------------------------------------------------------- data


class InpaintingData(Dataset):
    """Images with their training masks: key (epoch e, item i) → (image 3×S×S, hole 1×S×S, index).

    Crop, flip and mask of item i in epoch e are drawn from seeds derived from (seed, e, i), so they are
    the same in a worker process, after a resume and on any rank. Keys carry their epoch, so one
    DataLoader (and its worker processes) serves every epoch.
    """

    def __init__(self, images: ImageDataset, masks: MaskSampler, seed: int) -> None:
        self.images, self.masks, self.seed = images, masks, seed

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        self.images.set_epoch(epoch)
        item = self.images[index]
        rng = np.random.default_rng(derive_seed(self.seed, epoch, index, 1))
        return {"image": item["image"], "hole": self.masks(rng), "index": index}


def epoch_batches(n_items: int, global_batch: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a seeded permutation cut into full batches (the rest dropped)."""
    g = torch.Generator().manual_seed(derive_seed(seed, epoch, 2))
    perm = torch.randperm(n_items, generator=g).tolist()
    return [perm[i : i + global_batch] for i in range(0, n_items - global_batch + 1, global_batch)]


class _RankBatches:
    """Endless batch sampler: this rank's slices of the global batches, epoch after epoch, from a position."""

    def __init__(self, n: int, batch_size: int, seed: int, dist: DistInfo, epoch: int, batch: int) -> None:
        self.n, self.batch_size, self.seed, self.dist = n, batch_size, seed, dist
        self.epoch, self.batch = epoch, batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        r, b, epoch, first = self.dist.rank, self.batch_size, self.epoch, self.batch
        while True:
            for gb in epoch_batches(self.n, b * self.dist.world_size, self.seed, epoch)[first:]:
                yield [(epoch, i) for i in gb[r * b : (r + 1) * b]]
            epoch, first = epoch + 1, 0


def _quiet_worker(_: int) -> None:
    """DataLoader workers ignore Ctrl-C / SIGTERM: the main process decides when to stop and saves first."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


class BatchStream:
    """Endless stream of this rank's batches with a resumable position (epoch, batch within epoch).

    Rank r of W takes the contiguous slice [r·B, (r+1)·B) of every global batch of B·W items. One
    DataLoader serves all epochs (its workers are not restarted at each epoch).
    """

    def __init__(
        self,
        data: InpaintingData,
        batch_size: int,
        seed: int,
        dist: DistInfo,
        num_workers: int,
        epoch: int = 0,
        batch: int = 0,
    ) -> None:
        self.data, self.batch_size, self.seed, self.dist = data, batch_size, seed, dist
        self.epoch, self.batch = epoch, batch
        self.global_batch = batch_size * dist.world_size
        if len(data) < self.global_batch:
            raise ValueError(
                f"the training data has {len(data)} images, fewer than one global batch "
                f"({batch_size} × {dist.world_size} processes)"
            )
        self.per_epoch = len(data) // self.global_batch
        sampler = _RankBatches(len(data), batch_size, seed, dist, epoch, batch)
        loader = DataLoader(
            data,
            batch_sampler=sampler,
            num_workers=num_workers,
            worker_init_fn=_quiet_worker,
            pin_memory=torch.cuda.is_available(),
        )
        self._iter = iter(loader)

    def next(self) -> tuple[dict[str, Any], list[int]]:
        """The next batch and the global positions (within this step's global batch) of its samples."""
        batch = next(self._iter)
        self.batch += 1
        if self.batch == self.per_epoch:
            self.epoch, self.batch = self.epoch + 1, 0
        start = self.dist.rank * self.batch_size
        return batch, list(range(start, start + batch["image"].shape[0]))

    @property
    def position(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batch": self.batch}


# ------------------------------------------------------------------------------------------------ trainer


@dataclass
class StepResult:
    """Scalars of one training step (critic and generator terms), already averaged across ranks."""

    values: dict[str, float]


def _set_requires_grad(modules: list[nn.Module], flag: bool) -> None:
    for m in modules:
        for p in m.parameters():
            p.requires_grad_(flag)


class Trainer:
    """Owns the networks, critics, optimisers and EMA; ``train_step`` runs the D steps then the G step."""

    def __init__(self, cfg: Config, device: torch.device | str = "cpu", dist: DistInfo | None = None) -> None:
        self.cfg, self.device, self.dist = cfg, torch.device(device), dist or DistInfo()
        torch.manual_seed(cfg.train.seed)
        net, d_rec, d_gen = self.build_networks(cfg)
        self.net, self.d_rec, self.d_gen = net.to(self.device), d_rec.to(self.device), d_gen.to(self.device)
        if cfg.train.channels_last:
            for m in (self.net, self.d_rec, self.d_gen):
                m.to(memory_format=torch.channels_last)
        for m in (self.net, self.d_rec, self.d_gen):
            broadcast_module(m)
        o = cfg.optim
        self.opt_g = torch.optim.Adam(self.net.parameters(), lr=o.lr_g, betas=(o.beta1, o.beta2))
        self.opt_d = torch.optim.Adam(
            list(self.d_rec.parameters()) + list(self.d_gen.parameters()), lr=o.lr_d, betas=(o.beta1, o.beta2)
        )
        self.ema = copy.deepcopy(self.net).requires_grad_(False) if o.ema > 0 else None
        self.step = 0
        self.last_values: dict[str, float] = {}
        self.use_bf16 = cfg.train.bf16 and bf16_supported(self.device)
        if cfg.train.bf16 and not self.use_bf16 and self.dist.is_main:
            msg = f"train.bf16 is on but this {self.device.type} has no native bf16; training in fp32"
            warnings.warn(msg, RuntimeWarning, stacklevel=2)
        self.net_forward = self._compiled_net() if cfg.train.compile else self.net
        L = cfg.loss
        self.texture_net = RandomFeatures().to(self.device) if L.lambda_texture > 0 else None
        if cfg.model.family != "dualpath":
            other = {
                "hole_norm": "l1",
                "lambda_texture": 0.0,
                "lambda_fm": 0.0,
                "lambda_freq": 0.0,
                "gen_at_prior_mean": False,
            }
            used = [k for k, v in other.items() if getattr(L, k) != v]
            if used:
                family = cfg.model.family
                raise ValueError(f"loss.{used[0]} is a dual-path option; family {family!r} does not use it")
        elif L.lambda_fm > 0 and not hasattr(self.d_gen, "features"):
            raise ValueError(f"loss.lambda_fm needs patch critics, not disc_type={cfg.model.disc_type!r}")

    def _compiled_net(self) -> Callable[..., Any]:
        """``torch.compile`` of the generator side (compiled on the first step; parameters shared).

        The critics stay eager: each is called on real and fake images before one backward, and their
        compiled spectral-norm power iteration then fails autograd's in-place check; the WGAN-GP
        penalty also needs double backward, which compiled graphs do not support.
        """
        if self.device.type == "cpu":
            # inductor builds its CPU kernels with $CXX, else g++ (clang++ on macOS)
            cxx = os.environ.get("CXX") or ("clang++" if sys.platform == "darwin" else "g++")
            if not shutil.which(cxx):
                raise ValueError(
                    f"train.compile on CPU needs the C++ compiler {cxx!r}: install it or set CXX"
                )
        return torch.compile(self.net)

    @staticmethod
    def build_networks(cfg: Config) -> tuple[nn.Module, nn.Module, nn.Module]:
        """The generator side and the two critics: D1 (reconstruction path) and D2 (generation path)."""
        return DualPathInpainter(cfg.model), build_discriminator(cfg.model), build_discriminator(cfg.model)

    # ---- randomness as a function of (seed, step, critic round, sample position)

    def _per_sample(
        self, positions: list[int], round_: int, tag: int, shape: tuple[int, ...]
    ) -> torch.Tensor:
        out = []
        for pos in positions:
            g = torch.Generator().manual_seed(derive_seed(self.cfg.train.seed, self.step, round_, pos, tag))
            out.append(torch.randn(shape, generator=g) if tag != 3 else torch.rand(shape, generator=g))
        return torch.stack(out).to(self.device)

    def latent_noise(
        self, positions: list[int], round_: int, size: tuple[int, int]
    ) -> tuple[torch.Tensor, ...]:
        """(ε_posterior, ε_prior) for the batch, each N×Z×h×w; ε_prior = 0 with loss.gen_at_prior_mean."""
        shape = self.net.latent_shape(*size)
        eps_post, eps_prior = (self._per_sample(positions, round_, tag, shape) for tag in (4, 5))
        return eps_post, torch.zeros_like(eps_prior) if self.cfg.loss.gen_at_prior_mean else eps_prior

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def _prepare(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        fmt = torch.channels_last if self.cfg.train.channels_last else torch.contiguous_format
        image = batch["image"].to(self.device).contiguous(memory_format=fmt)
        hole = batch["hole"].to(self.device).contiguous(memory_format=fmt)
        return image, hole

    def forward(
        self, image: torch.Tensor, hole: torch.Tensor, positions: list[int], round_: int
    ) -> TrainOutput:
        noise = self.latent_noise(positions, round_, tuple(image.shape[-2:]))
        with self.autocast():
            out = self.net_forward(image, hole, noise)
        return TrainOutput(
            [o.float() for o in out.rec], [o.float() for o in out.gen], out.posterior, out.prior
        )

    def _d2_fakes(self, gen: torch.Tensor, image: torch.Tensor, hole: torch.Tensor) -> torch.Tensor:
        mode = self.cfg.loss.d2_fake
        if mode == "raw":
            return gen
        comp = composite(gen, image, hole)
        return comp if mode == "composite" else torch.cat([gen, comp], dim=0)

    def d_step(
        self, image: torch.Tensor, hole: torch.Tensor, out: TrainOutput, positions: list[int], round_: int
    ) -> dict[str, float]:
        """One critic update of D1 (real vs reconstruction) and D2 (real vs generation) on detached fakes."""
        L = self.cfg.loss
        _set_requires_grad([self.d_rec, self.d_gen], True)
        fake_r = out.rec[-1].detach()
        fake_g = self._d2_fakes(out.gen[-1].detach(), image, hole)
        pairs = fake_g.shape[0] // image.shape[0]  # 2 when D2 sees both the raw and the fused fakes
        real_g = image if pairs == 1 else torch.cat([image, image], dim=0)
        with self.autocast():
            d1_real, d1_fake = self.d_rec(image).float(), self.d_rec(fake_r).float()
            # D2 scores each real image once, and the scores are repeated to pair with both fakes: the
            # critics have no cross-sample layers, so that equals scoring the duplicated batch
            d2_real, d2_fake = torch.cat([self.d_gen(image).float()] * pairs), self.d_gen(fake_g).float()
        loss_d1 = critic_loss(L.gan_mode, d1_real, d1_fake)
        loss_d2 = critic_loss(L.gan_mode, d2_real, d2_fake)
        gp1 = gp2 = image.new_zeros(())
        if L.gan_mode == "wgangp":
            alpha = self._per_sample(positions, round_, 3, (1, 1, 1))
            alpha2 = alpha if fake_g.shape[0] == alpha.shape[0] else torch.cat([alpha, alpha], dim=0)
            with self.autocast():
                gp1 = gradient_penalty(self.d_rec, image, fake_r, alpha).float()
                gp2 = gradient_penalty(self.d_gen, real_g, fake_g, alpha2).float()
        half = 0.5 if L.d_loss_half else 1.0
        total = half * (loss_d1 + loss_d2) + L.lambda_gp * (gp1 + gp2)
        self._check_finite(total, "critic")
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_d, list(self.d_rec.parameters()) + list(self.d_gen.parameters()))
        return {
            "d/d1": loss_d1.item(),
            "d/d2": loss_d2.item(),
            "d/gp1": gp1.item(),
            "d/gp2": gp2.item(),
            "d/total": total.item(),
            "d/d1_real_minus_fake": (d1_real.mean() - d1_fake.mean()).item(),
            "d/d2_real_minus_fake": (d2_real.mean() - d2_fake.mean()).item(),
        }

    def g_terms(self, image: torch.Tensor, hole: torch.Tensor, out: TrainOutput) -> dict[str, torch.Tensor]:
        """The unweighted generator-side loss terms (KL, L1 appearance, adversarial) as scalar tensors."""
        L = self.cfg.loss
        post, prior = out.posterior, out.prior
        sigma_m = (
            adaptive_prior_sigma(hole)
            if L.prior_sigma == "adaptive"
            else torch.ones_like(hole[:, :1, :1, :1])
        )
        zero = torch.zeros_like(post.mu)
        if L.kl_rec_direction == "prior_post":
            kl_rec = kl_normal(zero, sigma_m.expand_as(post.mu), post.mu.float(), post.sigma.float())
        else:
            kl_rec = kl_normal(post.mu.float(), post.sigma.float(), zero, sigma_m.expand_as(post.mu))
        kl_g = kl_normal(
            post.mu.detach().float(), post.sigma.detach().float(), prior.mu.float(), prior.sigma.float()
        )
        app_rec = multiscale_l1(out.rec, image)
        app_g = multiscale_l1(out.gen, image, weight=1 - hole)
        zero_loss = app_g.new_zeros(())
        hole_w = per_sample_hole_weight(hole) if L.hole_weighting == "per_sample" else hole
        hole_g = (
            multiscale_l1(out.gen, image, weight=hole_w, norm=L.hole_norm)
            if L.lambda_hole_g > 0
            else zero_loss
        )
        psnr_g = hole_log_mse(out.gen[-1], image, hole) if L.lambda_psnr > 0 else zero_loss
        freq = focal_frequency_loss(out.gen[-1], image, hole) if L.lambda_freq > 0 else zero_loss
        fill = composite(out.gen[-1], image, hole)
        texture = fm = zero_loss
        if self.texture_net is not None:
            texture = texture_loss(*self._paired_features(self.texture_net, fill, image), hole)
        if L.lambda_fm > 0:
            fm = feature_matching(*self._paired_features(self.d_gen.features, fill, image))
        with self.autocast():
            ad_g = generator_adv_loss(
                L.gan_mode, self.d_gen(self._d2_fakes(out.gen[-1], image, hole)).float()
            )
            d1_fake = self.d_rec(out.rec[-1]).float()
            if L.rec_adv == "dmatch_l2":
                ad_rec = feature_match_l2(d1_fake, self.d_rec(image).float())
            else:
                ad_rec = generator_adv_loss(L.gan_mode, d1_fake)
        return {
            "kl_rec": kl_rec,
            "kl_g": kl_g,
            "app_rec": app_rec,
            "app_g": app_g,
            "hole_g": hole_g,
            "psnr_g": psnr_g,
            "ad_g": ad_g,
            "ad_rec": ad_rec,
            "texture": texture,
            "fm": fm,
            "freq": freq,
        }

    def _paired_features(
        self, extract: Callable[[torch.Tensor], list[torch.Tensor]], fill: torch.Tensor, image: torch.Tensor
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """``extract``'s feature maps of the fill (with gradients) and of the photo (without), float32."""
        with self.autocast():
            fake = extract(fill)
            with torch.no_grad():
                real = extract(image)
        return [f.float() for f in fake], [f.float() for f in real]

    def g_total(self, t: dict[str, torch.Tensor], scales: int) -> torch.Tensor:
        """The generator objective: every term and its weight in one expression."""
        L = self.cfg.loss
        kl_w = L.lambda_kl * (scales if L.kl_times_scales else 1)
        return (
            kl_w * (t["kl_rec"] + t["kl_g"])
            + L.lambda_rec * (t["app_rec"] + t["app_g"])
            + L.lambda_hole_g * t["hole_g"]
            + L.lambda_psnr * t["psnr_g"]
            + L.lambda_g * t["ad_g"]
            + L.lambda_rec_adv * t["ad_rec"]
            + L.lambda_texture * t["texture"]
            + L.lambda_fm * t["fm"]
            + L.lambda_freq * t["freq"]
        )

    def g_step(self, image: torch.Tensor, hole: torch.Tensor, out: TrainOutput) -> dict[str, float]:
        """One update of E1/E2, the latent heads and G1/G2 with the critics frozen."""
        _set_requires_grad([self.d_rec, self.d_gen], False)
        terms = self.g_terms(image, hole, out)
        total = self.g_total(terms, len(out.gen))
        self._check_finite(total, "generator")
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self._apply(self.opt_g, list(self.net.parameters()))
        _set_requires_grad([self.d_rec, self.d_gen], True)
        if self.ema is not None:
            self._update_ema()
        return {"g/total": total.item(), **{f"g/{k}": v.item() for k, v in terms.items()}}

    def _apply(self, opt: torch.optim.Optimizer, params: list[nn.Parameter]) -> None:
        average_gradients(params)
        if self.cfg.optim.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.cfg.optim.grad_clip)
        opt.step()

    @torch.no_grad()
    def _update_ema(self) -> None:
        """EMA of the generator side with warm-up: decay_t = min(decay, (1 + t) / (10 + t)).

        Without the warm-up a 0.999 EMA is still 0.999^t random initialisation after t steps (60 % at 500).
        """
        decay = min(self.cfg.optim.ema, (1 + self.step) / (10 + self.step))
        for e, p in zip(self.ema.parameters(), self.net.parameters(), strict=True):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.ema.buffers(), self.net.buffers(), strict=True):
            e.copy_(b)

    def _check_finite(self, loss: torch.Tensor, what: str) -> None:
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"the {what} loss became {loss.item()} at step {self.step + 1}; "
                "training stopped and the last good checkpoint was kept"
            )

    def train_step(self, stream: BatchStream) -> StepResult:
        """n_critic critic updates (each on a fresh batch) then one generator update on the last batch.

        During the first ``optim.d_warmup`` steps of a run only the critics learn: the generator side and
        its EMA keep their weights (critics that start fresh under a fine-tuned generator first learn what
        its fills look like)."""
        values: dict[str, float] = {}
        n_critic = self.cfg.optim.n_critic
        warmup = self.step < self.cfg.optim.d_warmup
        for round_ in range(n_critic):
            batch, positions = stream.next()
            image, hole = self._prepare(batch)
            last = round_ == n_critic - 1 and not warmup
            with contextlib.nullcontext() if last else torch.no_grad():
                out = self.forward(image, hole, positions, round_)
            values.update(self.d_step(image, hole, out, positions, round_))
        if not warmup:
            values.update(self.g_step(image, hole, out))
        self.step += 1
        return StepResult(all_reduce_mean(values))

    @property
    def inference_net(self) -> DualPathInpainter:
        """The network inference should use: the EMA copy when enabled, else the trained one."""
        return self.ema if self.ema is not None else self.net

    # ---- state

    def state_dict(self, position: dict[str, int]) -> dict[str, Any]:
        return {
            "config": self.cfg.to_dict(),
            "step": self.step,
            "position": dict(position),
            "net": ckpt.clean_state_dict(self.net),
            "d_rec": ckpt.clean_state_dict(self.d_rec),
            "d_gen": ckpt.clean_state_dict(self.d_gen),
            "ema": ckpt.clean_state_dict(self.ema) if self.ema is not None else None,
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "rng": {"torch": torch.get_rng_state(), "numpy": _numpy_state()},
        }

    def _apply_optim_config(self) -> None:
        """Set both optimisers' learning rates and betas from this trainer's config (Adam's saved state
        carries the values of the run that wrote it; a no-op when they are the same)."""
        o = self.cfg.optim
        for opt, lr in ((self.opt_g, o.lr_g), (self.opt_d, o.lr_d)):
            for group in opt.param_groups:
                group["lr"], group["betas"] = lr, (o.beta1, o.beta2)

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, int]:
        """Restore from ``state_dict``; returns the data position to continue from."""
        self.net.load_state_dict(state["net"])
        self.d_rec.load_state_dict(state["d_rec"])
        self.d_gen.load_state_dict(state["d_gen"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.opt_g.load_state_dict(state["opt_g"])
        self.opt_d.load_state_dict(state["opt_d"])
        self._apply_optim_config()  # a resumed run's --set optim.* must reach the optimisers
        torch.set_rng_state(state["rng"]["torch"])
        self.step = int(state["step"])
        return {k: int(v) for k, v in state["position"].items()}

    def init_from(self, source: str | Path) -> str:
        """Start from another model's weights (fine-tuning): step 0, fresh optimisers, this run's config.

        ``source``: a run folder with a training state (generator side, EMA and both critics are loaded)
        or anything ``--model`` accepts (packaged name, run folder, ``.safetensors``; generator side and
        EMA from its weights, fresh critics). The parameter shapes must match this config's networks;
        options without parameters (``prefill``, losses, data) may differ. Returns what was loaded. The
        EMA's warm-up restarts with the step, so the loaded EMA weighs little after the first updates.
        """
        folder = Path(source)
        if folder.is_dir() and (folder / ckpt.STATE_NAME).is_file():
            state = ckpt.load_state(folder)
            pairs = [(self.net, state["net"]), (self.d_rec, state["d_rec"]), (self.d_gen, state["d_gen"])]
            if self.ema is not None:
                pairs.append((self.ema, state.get("ema") or state["net"]))
            loaded = "generator, EMA and critics"
        else:
            tensors, _, _ = ckpt.read_weights(ckpt.resolve_model(source))
            pairs = [(self.net, tensors)] + ([(self.ema, tensors)] if self.ema is not None else [])
            loaded = "generator and EMA (critics start fresh)"
        for module, tensors in pairs:
            try:
                ckpt.load_into(module, tensors, source)
            except ckpt.CheckpointError as err:  # the networks come from this run's config, not the source's
                msg = str(err).replace("the network built from its config", "this run's config")
                raise ckpt.CheckpointError(f"--init: {msg}") from None
        for m in (self.net, self.d_rec, self.d_gen):
            broadcast_module(m)
        return loaded


def _numpy_state() -> list[int]:
    return [int(x) for x in np.random.get_state()[1][:4]]  # recorded only; training uses derived seeds


# ---------------------------------------------------------------------------------------------- run loop


@dataclass
class RunSummary:
    """What a ``train`` call did."""

    step: int
    out_dir: Path
    seconds: float
    samples_per_second: float
    last: dict[str, float]
    interrupted: bool = False  # stopped early by Ctrl-C / SIGTERM (after saving a checkpoint)
    timed_out: bool = False  # stopped by the time limit (after saving a checkpoint)


class _StopRequest:
    """SIGINT / SIGTERM set a flag; the loop finishes its step, saves and returns. A second Ctrl-C aborts."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


class _Logger:
    """Rank-0 scalar log: TensorBoard event files plus a JSON-lines copy (``log.jsonl``)."""

    def __init__(self, out_dir: Path, enabled: bool) -> None:
        self.enabled, self.path, self.tb = enabled, out_dir / "log.jsonl", None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tb"))
            except ImportError:  # pragma: no cover - tensorboard is a dependency
                self.tb = None

    def scalars(self, step: int, values: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps({"step": step, **values}) + "\n")
        if self.tb is not None:
            for k, v in values.items():
                self.tb.add_scalar(k, v, step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def _validation_set(
    cfg: Config, source: str | Path, count: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed validation images (no augmentation) and fixed masks (seeded), N×3×S×S and N×1×S×S.

    N = ``count`` or else ``train.val_images``; with fewer photos than that, the photos repeat, each time
    with another mask.
    """
    ds = ImageDataset(source, cfg.data.size, train=False, seed=cfg.train.seed)
    n = (count or cfg.train.val_images) if len(ds) else 0
    photos = [ds[i]["image"] for i in range(min(n, len(ds)))]
    images = torch.stack([photos[i % len(photos)] for i in range(n)])
    sampler = MaskSampler(cfg.masks.mix, cfg.data.size, cfg.data.size, folder=cfg.masks.folder or None)
    holes = torch.stack(
        [sampler(np.random.default_rng(derive_seed(cfg.train.seed, 99, i))) for i in range(n)]
    )
    return images, holes


@torch.no_grad()
def validate(
    net: DualPathInpainter, images: torch.Tensor, holes: torch.Tensor, batch_size: int = 8, seed: int = 0
) -> dict[str, float]:
    """Quality of the deterministic fill on fixed validation data, and what the network adds.

    ``val/psnr``, ``val/ssim``, ``val/psnr_hole``: the fill against the photo (whole image; hole only).
    ``val/detail``: the hole's detail ratio (metrics.detail_ratio, pooled over the set). With a smooth
    fill (``model.prefill``): ``val/gain_hole_db`` = hole PSNR of the fill minus that of the model's own
    smooth fill (what the network contributes), and ``val/detail_fill`` the smooth fill's detail.
    Dual-path networks: ``val/sample_diff``, the mean |difference| in the hole between two prior draws,
    in grey levels (0–255): 0 when the latent is ignored.
    """
    from .metrics import gradient_energy, psnr, ssim

    was_training = net.training
    net.eval()
    rows: dict[str, list[torch.Tensor]] = {"val/psnr": [], "val/ssim": [], "val/psnr_hole": []}
    energy = {"fill": [], "base": [], "real": []}
    device = next(net.parameters()).device
    dual = isinstance(net, DualPathInpainter)
    g = torch.Generator().manual_seed(seed)
    for i in range(0, images.shape[0], batch_size):
        img, hole = images[i : i + batch_size].to(device), holes[i : i + batch_size].to(device)
        base = net.prefill(img, hole) if dual else None  # the smooth fill once for all three uses
        given = {"base": base} if dual else {}  # other families' complete takes no smooth fill
        pred = net.complete(img, hole, **given).float().clamp(-1, 1)
        rows["val/psnr"].append(psnr(pred, img))
        rows["val/ssim"].append(ssim(pred, img))
        rows["val/psnr_hole"].append(psnr(pred, img, hole))
        energy["fill"].append(gradient_energy(pred, hole)[0])
        energy["real"].append(gradient_energy(img, hole)[0])
        if base is not None:
            fill = composite(base.float().clamp(-1, 1), img, hole)
            rows.setdefault("val/gain_hole_db", []).append(psnr(pred, img, hole) - psnr(fill, img, hole))
            energy["base"].append(gradient_energy(fill, hole)[0])
        if dual:
            two = net.complete(img, hole, samples=2, generator=g, **given).float().clamp(-1, 1)
            diff = ((two[0] - two[1]).abs() * hole).sum((1, 2, 3)) / (3 * hole.sum((1, 2, 3))).clamp_min(1)
            rows.setdefault("val/sample_diff", []).append(diff * 127.5)
    net.train(was_training)
    out = {k: float(torch.cat(v).float().nanmean()) for k, v in rows.items()}
    real = float(torch.cat(energy["real"]).sum())
    if real > 0:
        out["val/detail"] = float(torch.cat(energy["fill"]).sum()) / real
        if energy["base"]:
            out["val/detail_fill"] = float(torch.cat(energy["base"]).sum()) / real
    return out


@torch.no_grad()
def sample_grid(
    net: DualPathInpainter, images: torch.Tensor, holes: torch.Tensor, k: int, seed: int
) -> torch.Tensor:
    """Rows of: masked input | reconstruction path | generation path | k samples | real. 3×(rH)×(cW).

    Networks of other families (no reconstruction path) give: masked input | fill | real.
    """
    was_training = net.training
    net.eval()
    device = next(net.parameters()).device
    img, hole = images.to(device), holes.to(device)
    masked = img * (1 - hole) + hole  # hole shown white
    if not isinstance(net, DualPathInpainter):
        cols = [masked, net.complete(img, hole).clamp(-1, 1), img]
        net.train(was_training)
        return torch.cat([torch.cat([c[i] for c in cols], dim=2) for i in range(img.shape[0])], dim=1).cpu()
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn((img.shape[0], *net.latent_shape(*img.shape[-2:])), generator=g).to(device)
    out = net(img, hole, (torch.zeros_like(noise), noise))
    samples = net.complete(img, hole, samples=k, generator=g) if k > 0 else img.new_zeros((0, *img.shape))
    cols = [
        masked,
        out.rec[-1].clamp(-1, 1),
        composite(out.gen[-1].clamp(-1, 1), img, hole),
        *samples.clamp(-1, 1),
        img,
    ]
    net.train(was_training)
    rows = [torch.cat([c[i] for c in cols], dim=2) for i in range(img.shape[0])]
    return torch.cat(rows, dim=1).cpu()


def make_trainer(cfg: Config, device: torch.device | str = "cpu", dist: DistInfo | None = None) -> Trainer:
    """The trainer of ``cfg.model.family``: the dual-path Trainer, or a baseline's subclass of it."""
    if cfg.model.family == "dualpath":
        return Trainer(cfg, device, dist)
    from .baseline_trainers import BASELINE_TRAINERS

    return BASELINE_TRAINERS[cfg.model.family](cfg, device, dist)


def train(
    cfg: Config | None,
    data: str | Path | None,
    out_dir: str | Path,
    *,
    val: str | Path | None = None,
    steps: int | None = None,
    resume: bool = False,
    init: str | Path | None = None,
    device: str | None = None,
    dist: DistInfo | None = None,
    progress: bool = True,
    time_limit: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunSummary:
    """Train (or resume) a run in ``out_dir``; returns a summary. Rank 0 alone writes files.

    With ``resume`` the run's stored config and data source are used (``cfg``/``data`` may be None);
    ``steps`` may raise the step budget. A ``cfg`` given with ``resume``, or ``overrides``
    (``SECTION.KEY=VALUE``, applied to the stored config or to ``cfg``), may change anything but the
    network (``model.*``); each changed value is printed, since the run is then no longer an exact
    continuation. ``init`` starts a new run from another model's weights
    (:meth:`Trainer.init_from`). ``time_limit`` (seconds): stop after the step that crosses it, save,
    and return (``RunSummary.timed_out``); ``--resume`` continues. Raises TrainingDiverged on a
    non-finite loss. Warnings (an unreadable image skipped, …) are printed one line each.
    """
    with one_line_warnings():
        return _train(
            cfg,
            data,
            out_dir,
            val=val,
            steps=steps,
            resume=resume,
            init=init,
            device=device,
            dist=dist,
            progress=progress,
            time_limit=time_limit,
            overrides=overrides,
        )


def _check_resumed_config(stored: Config, cfg: Config, out_dir: Path, dist: DistInfo) -> None:
    """A resumed run keeps its network (ValueError otherwise); every other changed value is printed
    (rank 0), ``section.key old → new``, since the run is then no longer an exact continuation."""
    if cfg.model != stored.model:
        raise ValueError(
            f"--resume: the model config differs from the run's in {out_dir}; "
            "the network cannot change on resume: drop the model.* changes or start a new run (--init)"
        )
    a, b = stored.to_dict(), cfg.to_dict()
    changed = [
        f"{section}.{key} {a[section][key]!r} → {b[section][key]!r}"
        for section in a
        for key in a[section]
        if a[section][key] != b[section][key]
    ]
    if changed and dist.is_main:
        print(f"--resume with a changed config (no longer an exact continuation): {', '.join(changed)}")


def _train(
    cfg: Config | None,
    data: str | Path | None,
    out_dir: str | Path,
    *,
    val: str | Path | None,
    steps: int | None,
    resume: bool,
    init: str | Path | None,
    device: str | None,
    dist: DistInfo | None,
    progress: bool,
    time_limit: float | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> RunSummary:
    from tqdm import tqdm

    if time_limit is not None and not time_limit > 0:
        raise ValueError(f"--time-limit must be a positive number of seconds, got {time_limit}")

    dist = dist or DistInfo()
    out_dir = Path(out_dir)
    state, init_record = None, {}
    if resume and init is not None:
        raise ValueError("--init starts a new run from other weights and --resume continues one: use one")
    if resume:
        state = ckpt.load_state(out_dir)
        if dist.is_main:
            ckpt.remove_stale_temporaries(out_dir)  # left by a process killed while writing
        stored = Config.from_dict(state["config"])
        cfg = (cfg or stored).with_overrides(overrides)
        _check_resumed_config(stored, cfg, out_dir, dist)
        run_info = json.loads((out_dir / "run.json").read_text()) if (out_dir / "run.json").exists() else {}
        data = data or run_info.get("data")
        val = val or run_info.get("val")
        steps = steps or run_info.get("steps")  # a run started with --steps N still stops at N
        init_record = {k: run_info[k] for k in ("init", "init_loaded") if k in run_info}
    if cfg is None or data is None:
        raise ValueError("train needs a config and a data source (or --resume on an existing run)")
    if not resume:
        cfg = cfg.with_overrides(overrides)
    total_steps = steps or cfg.train.steps
    dev = torch.device(device) if device else torch.device("cpu")
    trainer = make_trainer(cfg, dev, dist)
    position = {"epoch": 0, "batch": 0}
    if state is not None:
        position = trainer.load_state_dict(state)
    if init is not None:
        init_record = {"init": str(init), "init_loaded": trainer.init_from(init)}
    images = ImageDataset(
        data,
        cfg.data.size,
        load_size=cfg.data.load_size or cfg.data.size,
        train=True,
        flip=cfg.data.flip,
        seed=cfg.train.seed,
        min_scale=cfg.data.min_scale,
    )
    masks = MaskSampler(cfg.masks.mix, cfg.data.size, cfg.data.size, folder=cfg.masks.folder or None)
    # before the DataLoader's workers are forked, so they know which unreadable files were reported
    val_set = _validation_set(cfg, val) if (val and cfg.train.val_images > 0) else None
    grid_src = val_set if val_set is not None else _validation_set(cfg, data, count=4)
    stream = BatchStream(
        InpaintingData(images, masks, cfg.train.seed),
        cfg.data.batch_size,
        cfg.train.seed,
        dist,
        cfg.data.num_workers,
        **position,
    )
    main = dist.is_main
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        ckpt.write_file(out_dir / "config.yaml", config_to_yaml(cfg).encode())
        ckpt.write_file(
            out_dir / "run.json",
            json.dumps(
                {
                    "data": str(data),
                    "val": str(val) if val else None,
                    "world_size": dist.world_size,
                    "steps": total_steps,
                    **init_record,
                }
            ).encode(),
        )
    log = _Logger(out_dir, main)
    t0, start_step = time.time(), trainer.step
    bar = tqdm(
        total=total_steps,
        initial=trainer.step,
        disable=not (main and progress),
        unit="step",
        dynamic_ncols=True,
    )

    def save() -> None:
        if main:
            ckpt.save_state(out_dir, trainer.state_dict(stream.position))
            ckpt.save_weights(out_dir, trainer.inference_net, cfg, trainer.step)
        barrier()

    stop = _StopRequest()
    deadline = None if time_limit is None else t0 + time_limit
    try:
        with stop:
            timed_out = _loop(
                trainer,
                stream,
                cfg,
                total_steps,
                dist,
                log,
                bar,
                save,
                out_dir,
                val_set,
                grid_src,
                stop,
                deadline,
            )
    finally:
        bar.close()
        log.close()
    elapsed = max(time.time() - t0, 1e-9)
    done = trainer.step - start_step
    rate = done * cfg.data.batch_size * dist.world_size * cfg.optim.n_critic / elapsed
    return RunSummary(
        trainer.step,
        out_dir,
        elapsed,
        rate,
        trainer.last_values,
        interrupted=stop.requested,
        timed_out=timed_out,
    )


def _loop(
    trainer: Trainer,
    stream: BatchStream,
    cfg: Config,
    total_steps: int,
    dist: DistInfo,
    log: _Logger,
    bar: Any,
    save: Any,
    out_dir: Path,
    val_set: Any,
    grid_src: Any,
    stop: _StopRequest,
    deadline: float | None = None,
) -> bool:
    """The step loop: train, log, sample, validate, checkpoint; stops (after saving) when asked to, or
    after the step that crosses ``deadline`` (a ``time.time()`` value; then returns True)."""
    main, t0, start_step = dist.is_main, time.time(), trainer.step
    try:
        while trainer.step < total_steps:
            result = trainer.train_step(stream)
            last = trainer.last_values = result.values
            s = trainer.step
            bar.update(1)
            if s % cfg.train.log_every == 0 or s == total_steps:
                elapsed = time.time() - t0
                rate = (s - start_step) * cfg.data.batch_size * dist.world_size * cfg.optim.n_critic / elapsed
                log.scalars(s, {**last, "perf/samples_per_s": rate})
                bar.set_postfix(
                    g=f"{last.get('g/total', math.nan):.3f}", d=f"{last['d/total']:.3f}", refresh=False
                )
            if main and s % cfg.train.sample_every == 0:
                k = min(4, grid_src[0].shape[0])
                grid = sample_grid(
                    trainer.inference_net,
                    grid_src[0][:k],
                    grid_src[1][:k],
                    cfg.train.samples_k,
                    cfg.train.seed,
                )
                save_image_atomic(tensor_to_pil(grid), out_dir / "samples" / f"step_{s:07d}.png")
            if main and val_set is not None and s % cfg.train.val_every == 0:
                log.scalars(s, validate(trainer.inference_net, *val_set))
            late = deadline is not None and any_rank(time.time() >= deadline)
            if s % cfg.train.ckpt_every == 0 or s == total_steps:
                save()
            elif any_rank(stop.requested):
                stop.requested = True
                save()
            elif late:
                save()
            if stop.requested:
                return False
            if late and s < total_steps:
                return True
    except KeyboardInterrupt:  # a second Ctrl-C: save what the last complete step left, then abort
        save()
        raise
    return False


def total_parameters(module: nn.Module) -> int:
    """Trainable parameter count (spectral-norm u/v buffers excluded)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def finite(values: dict[str, float]) -> bool:
    """True when every value is a finite number."""
    return all(math.isfinite(v) for v in values.values())
