"""Shared fixtures: tiny configs, seeded tensors, temporary image folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.config import Config, load_config

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny
    convolutions run faster on one, and on a busy 2-core machine two threads contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run folder with a tiny random-weight model (seed 0): model.safetensors + model.json. Read-only."""
    from dualinpaint import checkpoint
    from dualinpaint.generator import DualPathInpainter

    torch.manual_seed(0)
    cfg = load_config("tiny")
    out = tmp_path_factory.mktemp("tiny-model")
    checkpoint.save_weights(out, DualPathInpainter(cfg.model).eval(), cfg, 0)
    return out


@pytest.fixture
def tiny_cfg() -> Config:
    """The tiny preset (32×32, few channels, the paper's code paths)."""
    return load_config("tiny")


def opened_tiny_net(upsample: str | None = None):
    """The tiny preset's network (seed 0) with its spectral-norm vectors moved by two training passes and
    its attention gates opened (γ 0.8, α 0.6), so that attention matters; in eval mode. ``upsample``:
    the decoders' kind (``deconv``, ``resize``), the preset's when None."""
    from dualinpaint.generator import DualPathInpainter
    from dualinpaint.layers import ShortLongAttention

    torch.manual_seed(0)
    cfg = load_config("tiny")
    if upsample is not None:
        cfg = cfg.with_overrides([f"model.upsample={upsample}"])
    net = DualPathInpainter(cfg.model)
    net.train()
    for _ in range(2):
        net(torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32))
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, ShortLongAttention):
                m.gamma.fill_(0.8)
                m.alpha.fill_(0.6)
    return net.eval()


def make_photos(folder: Path, count: int, size: tuple[int, int] = (40, 48), seed: int = 0) -> list[Path]:
    """Write ``count`` smooth random RGB PNGs (gradients + blobs, photo-like statistics)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        base = rng.uniform(0, 255, 3)
        gx, gy = rng.uniform(-3, 3, 3), rng.uniform(-3, 3, 3)
        img = base + gx * xx[..., None] + gy * yy[..., None]
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(4, 12)
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r * r))[..., None]
        img = img * (1 - blob) + rng.uniform(0, 255, 3) * blob
        path = folder / f"img_{i:03d}.png"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB").save(path)
        paths.append(path)
    return paths


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of 8 small synthetic photos."""
    make_photos(tmp_path / "photos", 8)
    return tmp_path / "photos"
