"""CUDA checks, run on a GPU machine (``scripts/device_run.sh``); every test is skipped without CUDA.

- every preset's networks (channels shrunk) compute on CUDA what they compute on the CPU, in fp32 with
  TF32 off (a training forward of both paths with explicit noise, the deterministic fill, a critic);
- one trainer step of each GAN loss on CUDA under bf16 autocast with channels_last: finite losses, the
  WGAN-GP penalty's double backward, every network's weights moved;
- the inference fast path and the ``Inpainter`` on CUDA (the ``Inpainter`` has no device argument: its
  network is moved by hand here, see ``test_a_cuda_network_stays_on_cuda``);
- the nccl process group with one process (in a subprocess): all_reduce, a trainer step under it and
  the trainer's collective helpers.

Run: ``python -m pytest -m gpu tests/test_gpu.py``.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.config import Config, load_config
from dualinpaint.discriminator import build_discriminator
from dualinpaint.fastpath import prepare_for_inference
from dualinpaint.generator import DualPathInpainter
from dualinpaint.inference import Inpainter
from dualinpaint.layers import ShortLongAttention
from dualinpaint.train import Trainer

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

SRC = Path(__file__).resolve().parents[1] / "src"
SMALL = [  # tests/test_generator.py's small(): each preset's structure with few channels
    "model.ngf=8",
    "model.max_channels=16",
    "model.z_channels=8",
    "model.disc_channels=8",
    "model.disc_max_channels=16",
]
# fp32 CPU vs CUDA, TF32 off. The networks differ from a float64 run by ~4e-6 (measured on the CPU), so
# 1e-4 is tight. The photo preset's biharmonic smooth fill runs 50 conjugate-gradient steps per level,
# which amplify rounding (float32 vs float64: 1.3e-3 on these inputs), hence its own tolerance.
ATOL = 1e-4
ATOL_CG = 5e-3
ATOL_CRITIC = 1e-5


@pytest.fixture(autouse=True)
def no_tf32():
    """Plain fp32 matrix products and convolutions on CUDA (TF32 would round to 10 mantissa bits)."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def small(preset: str, *extra: str) -> Config:
    return load_config(preset).with_overrides([*SMALL, *extra])


def _inputs(n: int, h: int, w: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(n, 3, h, w, generator=g) * 2 - 1
    hole = torch.zeros(n, 1, h, w)
    hole[..., h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 1
    return image, hole


def _perturbed(cfg: Config, seed: int = 0) -> DualPathInpainter:
    """A network whose every weight matters: zero-initialised parts (attention gates, the photo preset's
    residual output conv) are moved off zero."""
    torch.manual_seed(seed)
    net = DualPathInpainter(cfg.model)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return net


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.detach().float().cpu() - b.detach().float().cpu()).abs().max())


# ----------------------------------------------------------------------------- CPU vs CUDA, fp32


@pytest.mark.parametrize(
    ("preset", "extra", "atol"),
    [
        ("tiny", [], ATOL),
        ("picnet", [], ATOL),
        ("paper", [], ATOL),
        ("photo", [], ATOL_CG),
        ("photo", ["model.prefill=none"], ATOL),  # the rest of the photo structure, tightly
    ],
    ids=["tiny", "picnet", "paper", "photo", "photo-no-prefill"],
)
def test_cpu_and_cuda_compute_the_same_fp32(preset: str, extra: list[str], atol: float) -> None:
    cfg = small(preset, *extra)
    cpu = _perturbed(cfg)
    gpu = copy.deepcopy(cpu).cuda()
    image, hole = _inputs(2, 64, 96)
    g = torch.Generator().manual_seed(2)
    shape = cpu.latent_shape(64, 96)
    noise = (torch.randn(2, *shape, generator=g), torch.randn(2, *shape, generator=g))
    # training forward (train mode: spectral norm's power iteration runs on both)
    ref = cpu(image, hole, noise)
    got = gpu(image.cuda(), hole.cuda(), tuple(t.cuda() for t in noise))
    assert got.rec[-1].is_cuda
    for name, a, b in [
        *((f"rec[{i}]", a, b) for i, (a, b) in enumerate(zip(ref.rec, got.rec, strict=True))),
        *((f"gen[{i}]", a, b) for i, (a, b) in enumerate(zip(ref.gen, got.gen, strict=True))),
        ("prior.mu", ref.prior.mu, got.prior.mu),
        ("posterior.sigma", ref.posterior.sigma, got.posterior.sigma),
    ]:
        diff = _max_diff(a, b)
        assert diff <= atol, f"{preset} {name}: max |cpu - cuda| = {diff:.2e} > {atol:.0e}"
    # the deterministic fill (eval mode)
    cpu.eval()
    gpu.eval()
    with torch.no_grad():
        ref_fill = cpu.complete(image, hole)
        got_fill = gpu.complete(image.cuda(), hole.cuda())
    diff = _max_diff(ref_fill, got_fill)
    assert diff <= atol, f"{preset} fill: max |cpu - cuda| = {diff:.2e}"
    assert _max_diff(ref_fill, image) > 0.05  # the fill changes the hole
    # a critic (128² so that every preset's critic has room)
    torch.manual_seed(0)
    d_cpu = build_discriminator(cfg.model).eval()
    d_gpu = copy.deepcopy(d_cpu).cuda()
    crit_in, _ = _inputs(2, 128, 128, seed=3)
    with torch.no_grad():
        diff = _max_diff(d_cpu(crit_in), d_gpu(crit_in.cuda()))
    assert diff <= ATOL_CRITIC, f"{preset} critic: max |cpu - cuda| = {diff:.2e}"


# ------------------------------------------------------------------ training steps, bf16 + channels_last


class FixedStream:
    """The trainer's stream interface: the same batch every time (CPU tensors, as the DataLoader gives)."""

    def __init__(self, batch: int, size: int) -> None:
        self.batch = dict(zip(("image", "hole"), _inputs(batch, size, size, seed=4), strict=True))

    def next(self) -> tuple[dict[str, torch.Tensor], list[int]]:
        return self.batch, list(range(self.batch["image"].shape[0]))


TRAIN_CASES = {
    "wgangp": ("tiny", ["loss.gan_mode=wgangp"]),
    "hinge": ("tiny", ["loss.gan_mode=hinge"]),
    "lsgan": ("tiny", ["loss.gan_mode=lsgan"]),
    "vanilla": ("tiny", ["loss.gan_mode=vanilla"]),
    # the shipped preset's structure (hinge, smooth fill, skips, mask input, EMA) with texture and
    # feature-matching terms, and PICNet's (LSGAN, residual critics with attention, D-match L2)
    "photo-hinge-texture": (
        "photo",
        [*SMALL, "loss.hole_norm=l2", "loss.lambda_texture=5", "loss.lambda_fm=2"],
    ),
    "picnet-lsgan": ("picnet", [*SMALL, "model.disc_layers=3"]),
}


def _snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


@pytest.mark.parametrize("case", list(TRAIN_CASES))
def test_one_bf16_channels_last_training_step(case: str) -> None:
    preset, extra = TRAIN_CASES[case]
    cfg = load_config(preset).with_overrides(
        [
            *extra,
            "data.size=64",
            "data.load_size=0",
            "data.batch_size=4",
            "train.bf16=true",
            "train.channels_last=true",
        ]
    )
    trainer = Trainer(cfg, "cuda")
    assert trainer.use_bf16, "train.bf16 fell back to fp32 on this GPU"
    before = {name: _snapshot(m) for name, m in (("net", trainer.net), ("d_rec", trainer.d_rec))}
    before["d_gen"] = _snapshot(trainer.d_gen)
    ema_before = _snapshot(trainer.ema) if trainer.ema is not None else None
    stream = FixedStream(4, 64)
    values = {}
    for _ in range(2):  # the second step runs with the attention gates already moved off zero
        values = trainer.train_step(stream).values
    bad = {k: v for k, v in values.items() if not np.isfinite(v)}
    assert not bad, f"non-finite losses: {bad}"
    if cfg.loss.gan_mode == "wgangp":  # the gradient penalty's double backward ran under autocast
        assert values["d/gp1"] > 0 and values["d/gp2"] > 0, values
    for name, module in (("net", trainer.net), ("d_rec", trainer.d_rec), ("d_gen", trainer.d_gen)):
        params = dict(module.named_parameters())
        assert all(p.is_cuda and torch.isfinite(p).all() for p in params.values()), name
        moved = [k for k, old in before[name].items() if not torch.equal(old, params[k])]
        assert len(moved) >= 0.9 * len(params), f"{name}: only {len(moved)} of {len(params)} tensors moved"
        convs = [p for p in params.values() if p.dim() == 4 and p.shape[-1] > 1]
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in convs), name
    if ema_before is not None:
        now = dict(trainer.ema.named_parameters())
        assert any(not torch.equal(v, now[k]) for k, v in ema_before.items()), "the EMA did not move"


# -------------------------------------------------------------------------- fast path and Inpainter


@pytest.fixture(scope="module")
def tiny_net() -> DualPathInpainter:
    """The tiny preset with moved spectral-norm vectors and open attention gates (as test_fast_path)."""
    torch.manual_seed(0)
    net = DualPathInpainter(load_config("tiny").model)
    net.train()
    for _ in range(2):
        net(torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ShortLongAttention):
                m.gamma.fill_(0.8)
                m.alpha.fill_(0.6)
    return net.eval()


def test_fast_path_on_cuda_matches_the_plain_network(tiny_net: DualPathInpainter) -> None:
    plain = copy.deepcopy(tiny_net).cuda()
    fast = prepare_for_inference(tiny_net, channels_last=True).cuda()
    image, hole = _inputs(2, 64, 96)
    image, hole = image.cuda(), hole.cuda()
    with torch.no_grad():
        ref = plain.complete(image, hole)
    image_cl = image.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = fast.complete(image_cl, hole)
        with torch.autocast("cuda", torch.bfloat16):
            got_bf16 = fast.complete(image_cl, hole).float()
    assert got.is_cuda
    diff = _max_diff(got, ref)
    assert diff <= ATOL, f"fast path fp32 vs plain network on CUDA: {diff:.2e}"
    # bf16: measured with emulated bf16 on the CPU, mean 0.011 / max 0.083 in the hole on this input
    d = (got_bf16 - ref).abs() * hole
    mean_hole = float(d.sum() / (3 * hole.sum()))
    assert 0 < mean_hole < 0.03 and float(d.max()) < 0.3, (mean_hole, float(d.max()))


def _fills(inpainter: Inpainter, image: Image.Image, mask: np.ndarray) -> list[np.ndarray]:
    det = inpainter(image, mask)
    sampled = inpainter.fill(image, mask, samples=2, seed=7)
    return [np.asarray(x, np.int16) for x in (det, *sampled)]


def test_inpainter_with_its_network_moved_to_cuda_fills_like_on_the_cpu(tiny_net: DualPathInpainter) -> None:
    """What exists today: ``Inpainter`` runs on whatever device its (fast-copy) network is on."""
    cfg = load_config("tiny")
    cpu = Inpainter(tiny_net, cfg, precision="fp32")
    gpu = Inpainter(tiny_net, cfg, precision="fp32")
    gpu.net = gpu.net.cuda()
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 256, (70, 150, 3), dtype=np.uint8))
    mask = np.zeros((70, 150), bool)
    mask[20:45, 30:60] = True
    mask[10:30, 110:140] = True  # two windows
    for a, b in zip(_fills(cpu, image, mask), _fills(gpu, image, mask), strict=True):
        assert np.abs(a - b).max() <= 1  # 8-bit levels: a float difference can flip a .5
        assert (a[~mask] == np.asarray(image, np.int16)[~mask]).all()


@pytest.mark.xfail(
    reason="gap: Inpainter has no device argument (its bf16 autocast is hard-wired to 'cpu'); "
    "freeze_for_inference now keeps the copy on the network's device",
    strict=False,
)
def test_a_cuda_network_stays_on_cuda(tiny_net: DualPathInpainter) -> None:
    net = copy.deepcopy(tiny_net).cuda()
    assert next(prepare_for_inference(net).parameters()).is_cuda
    assert next(Inpainter(net, load_config("tiny")).net.parameters()).is_cuda


# ------------------------------------------------------------------------------------------- nccl

NCCL_CHILD = r"""
import json, sys
import torch
import torch.distributed as dist
from dualinpaint import distributed as D
from dualinpaint.config import load_config
from dualinpaint.train import Trainer

store, out_path = sys.argv[1], sys.argv[2]
out = {}
torch.cuda.set_device(0)
dist.init_process_group(
    "nccl", init_method="file://" + store, rank=0, world_size=1, device_id=torch.device("cuda", 0)
)
out["backend"] = dist.get_backend()
t = torch.arange(4.0, device="cuda")
dist.all_reduce(t)
out["all_reduce"] = t.tolist()

# a trainer under the process group: broadcast_module on CUDA parameters, one bf16 step
cfg = load_config("tiny").with_overrides(
    ["data.size=32", "data.batch_size=2", "train.bf16=true", "train.channels_last=true"]
)
trainer = Trainer(cfg, "cuda", D.DistInfo(0, 0, 1))
g = torch.Generator().manual_seed(0)
batch = {"image": torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, "hole": torch.zeros(2, 1, 32, 32)}
batch["hole"][..., 8:24, 8:24] = 1


class Stream:
    def next(self):
        return batch, [0, 1]


out["step_values"] = trainer.train_step(Stream()).values
D.barrier()


class Pretend:
    # torch.distributed as seen by dualinpaint.distributed, but reporting two processes: with one real
    # rank the collectives are identities, so the helpers' results are exactly predictable
    def __getattr__(self, name):
        return getattr(dist, name)

    def get_world_size(self, group=None):
        return 2


D.dist = Pretend()
p = torch.nn.Parameter(torch.ones(3, device="cuda"))
q = torch.nn.Parameter(torch.ones(2, 2, device="cuda"))
p.grad = torch.full((3,), 4.0, device="cuda")
q.grad = torch.full((2, 2), 6.0, device="cuda")
D.average_gradients([p, q])
out["average_gradients"] = [p.grad.tolist(), q.grad.flatten().tolist()]
for name, call in (("all_reduce_mean", lambda: D.all_reduce_mean({"a": 1.0, "b": 3.0})),
                   ("any_rank", lambda: D.any_rank(True))):
    try:
        out[name] = call()
    except Exception as err:  # reported, not raised: the parent test names the failing helper
        out[name + "_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
D.dist = dist
dist.destroy_process_group()
with open(out_path, "w") as f:
    json.dump(out, f)
"""


@pytest.fixture(scope="module")
def nccl_result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run NCCL_CHILD in a fresh process (a process group of one; a file store, no ports)."""
    tmp = tmp_path_factory.mktemp("nccl")
    out = tmp / "out.json"
    path = os.pathsep.join(filter(None, [str(SRC), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    proc = subprocess.run(
        [sys.executable, "-c", NCCL_CHILD, str(tmp / "store"), str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0 and out.exists(), f"nccl child failed:\n{proc.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_nccl_world_size_one_all_reduce_and_trainer_step(nccl_result: dict) -> None:
    assert nccl_result["backend"] == "nccl"
    assert nccl_result["all_reduce"] == [0.0, 1.0, 2.0, 3.0]
    values = nccl_result["step_values"]
    assert values and all(np.isfinite(v) for v in values.values()), values


def test_nccl_average_gradients_all_reduces_cuda_gradients(nccl_result: dict) -> None:
    p, q = nccl_result["average_gradients"]
    assert p == [2.0] * 3 and q == [3.0] * 4  # summed over the one rank, divided by the two "processes"


def test_nccl_logging_helpers(nccl_result: dict) -> None:
    """``all_reduce_mean`` and ``any_rank`` (called every step under torchrun) must work on nccl too."""
    errors = {k: v for k, v in nccl_result.items() if k.endswith("_error")}
    assert not errors, errors
    assert nccl_result["all_reduce_mean"] == {"a": 0.5, "b": 1.5}
    assert nccl_result["any_rank"] is True
