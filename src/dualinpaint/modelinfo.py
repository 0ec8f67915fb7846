"""Parameter counts per network and FLOPs per image, for ``dualinpaint model-info``."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .config import Config
from .discriminator import build_discriminator
from .generator import DualPathInpainter


def count_parameters(module: nn.Module | None) -> int:
    """Trainable parameters (spectral-norm u/v vectors are buffers and are not counted)."""
    return 0 if module is None else sum(p.numel() for p in module.parameters() if p.requires_grad)


def count_flops(fn, *args) -> int:
    """FLOPs (2 × multiply-accumulates of convs and matmuls) of one call, counted by torch."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        fn(*args)
    return counter.get_total_flops()


def describe(cfg: Config, size: int | None = None) -> str:
    """A plain-text table of parameters per network and GFLOPs per image at ``size``² (default data.size)."""
    size = size or cfg.data.size
    if cfg.model.family != "dualpath":
        return _describe_other(cfg, size)
    net = DualPathInpainter(cfg.model).eval()
    d = build_discriminator(cfg.model).eval()
    rows = [
        (
            "E2 trunk (masked image)" if net.enc_c else "E trunk (shared by both paths)",
            count_parameters(net.enc_m),
        ),
        ("E1 trunk (complement image)", count_parameters(net.enc_c)),
        ("prior head (generation path)", count_parameters(net.prior_head)),
        ("posterior head (reconstruction path)", count_parameters(net.posterior_head)),
        ("G2 (generation path)" if net.gen_r else "G (shared by both paths)", count_parameters(net.gen_g)),
        ("G1 (reconstruction path)", count_parameters(net.gen_r)),
        ("D1 (reconstruction critic)", count_parameters(d)),
        ("D2 (generation critic)", count_parameters(d)),
    ]
    rows = [r for r in rows if r[1]]
    gen_side = count_parameters(net)
    image = torch.zeros(1, 3, size, size)
    hole = torch.zeros(1, 1, size, size)
    hole[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    infer = count_flops(net.complete, image, hole)
    prior, feats = net.encode_masked(image, hole)
    extra = count_flops(net.decode, prior.mu, feats, hole, image)
    train_fwd = count_flops(net, image, hole)
    d_fwd = count_flops(d, image)
    lines = [
        f"config: model stride {cfg.model.stride}, image {size}×{size}",
        "",
        f"{'network':<40}{'parameters':>14}",
    ]
    lines += [f"{name:<40}{n:>14,}" for name, n in rows]
    lines += [
        f"{'E + G (generator side, trainable)':<40}{gen_side:>14,}",
        f"{'total with D1 and D2':<40}{gen_side + 2 * count_parameters(d):>14,}",
        "",
        f"{'forward cost per image':<40}{'GFLOPs':>14}",
        f"{'inference, one fill (E2 + G2)':<40}{infer / 1e9:>14.2f}",
        f"{'each extra sample (G2 only)':<40}{extra / 1e9:>14.2f}",
        f"{'training forward, both paths':<40}{train_fwd / 1e9:>14.2f}",
        f"{'one critic pass':<40}{d_fwd / 1e9:>14.2f}",
    ]
    return "\n".join(lines)


def _children_rows(module: nn.Module, indent: str = "  ") -> list[tuple[str, int]]:
    """(name, parameters) of a module's direct children that have parameters, when there are several."""
    rows = [(indent + name, count_parameters(child)) for name, child in module.named_children()]
    rows = [r for r in rows if r[1]]
    return rows if len(rows) > 1 else []


def _describe_other(cfg: Config, size: int) -> str:
    """Parameters and inference GFLOPs of a baseline family: its generator and critics, built from the
    config alone (no trainer: GMCNN's trainer needs VGG19 weights, which counting does not)."""
    from .baseline_models import display_name
    from .baseline_trainers import BASELINE_TRAINERS

    torch.manual_seed(0)
    net, d_rec, d_gen = BASELINE_TRAINERS[cfg.model.family].build_networks(cfg)
    net = net.eval()
    image = torch.zeros(1, 3, size, size)
    hole = torch.zeros(1, 1, size, size)
    hole[..., size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    gen, critics = count_parameters(net), count_parameters(d_rec) + count_parameters(d_gen)
    rows = [("generator", gen), *_children_rows(net)]
    if count_parameters(d_rec):
        rows.append(("critic 1", count_parameters(d_rec)))
    rows += [("critic" if not count_parameters(d_rec) else "critic 2", count_parameters(d_gen))]
    rows += _children_rows(d_gen)
    lines = [
        f"config: family {cfg.model.family} ({display_name(cfg)}), image {size}×{size}",
        "",
        f"{'network':<40}{'parameters':>14}",
        *[f"{name:<40}{n:>14,}" for name, n in rows],
        f"{'total with the critics':<40}{gen + critics:>14,}",
        "",
        f"{'inference, one fill':<40}{count_flops(net.complete, image, hole) / 1e9:>14.2f} GFLOPs",
    ]
    return "\n".join(lines)
