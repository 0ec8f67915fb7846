"""The inference fast path computes what the plain network computes.

- frozen spectral norm + blocked attention + channels_last + inference_mode: within 2e-5 of the fp32
  network (float rounding only), also when the attention is split into many row blocks;
- bf16 autocast (emulated on CPUs without native bf16, so only tiny sizes here) compared with fp32
  directly: network output within ``BF16_MEAN_ABS`` / ``BF16_MAX_ABS``, 8-bit fills within
  ``BF16_MEAN_LEVELS`` / ``BF16_MAX_LEVELS`` (see there);
- both branches of the bf16 detection on any CPU: ``DUALINPAINT_BF16=0`` (auto → fp32, ``train.bf16``
  falls back to fp32 with a warning) and ``DUALINPAINT_BF16=1`` (auto → bf16, close to fp32 as above);
  the fp32 checks pass ``precision="fp32"`` so that they hold with and without native bf16;
- ONNX Runtime (``runtime="onnx"``): the filled 8-bit images differ from PyTorch's by at most 1 level
  (the float outputs agree to ~1e-5; rounding to 8 bits can flip a value at .5), deterministic and sampled;
- ``fill --runtime onnx`` and the one-line errors.
"""

from __future__ import annotations

import builtins
import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint import fastpath
from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter
from dualinpaint.inference import Inpainter

from .conftest import make_photos, opened_tiny_net

ONNX_LEVELS = 1  # max difference (8-bit levels) between ONNX Runtime and PyTorch fills
# bf16 vs fp32 on the tiny net below (random weights, open attention gates), inside the hole. Measured on
# a CPU with native bf16 (24 inputs, 48–96 px, 6 seeds): network output (units: [-1, 1], 1 grey level =
# 0.0078) mean abs difference 0.006–0.009, max 0.03–0.087; 8-bit fills (8 photos, 48×64 and 70×90) mean
# 0.53–1.01 levels, max 3–6 levels. bf16 keeps 8 significant bits (relative rounding 2^-9 ≈ 0.002 per
# operand), so the tolerances are ~2× the worst measured: a systematic error (fp16 overflow, a wrong
# cast, a dropped scale) or noise of a few grey levels RMS fails them; the old check ("PSNR within 0.1 dB
# of fp32's against the photo") passed 8 grey levels of RMS noise on these random-weight fills.
BF16_MEAN_ABS = 0.02  # ≈ 2.5 grey levels
BF16_MAX_ABS = 0.15  # ≈ 19 grey levels, at a single value
BF16_MEAN_LEVELS = 2.5
BF16_MAX_LEVELS = 16
BF16_RAN = 1e-3  # fp32 rounding differences are ~1e-6: a mean abs difference above this means bf16 ran
# Resize-conv decoders (model.upsample=resize) measured the same way (4 seeds): network output mean
# 0.018–0.028, max 0.108–0.133; fills mean 1.4–2.8 levels, max 10–17. About 2.5× the deconv's: nearest ×2
# repeats each bf16-rounded activation 4 times, so a 3×3 conv sums correlated rounding errors. Same rule.
BF16_TOLERANCES = {  # upsample → (net mean, net max, fill mean levels, fill max levels)
    "deconv": (BF16_MEAN_ABS, BF16_MAX_ABS, BF16_MEAN_LEVELS, BF16_MAX_LEVELS),
    "resize": (0.055, 0.27, 5.5, 32),
}


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module", params=["deconv", "resize"])
def net(request: pytest.FixtureRequest) -> DualPathInpainter:
    """Tiny net with moved spectral-norm vectors and open attention gates (so attention matters), with
    the paper's transposed-conv decoders or resize-conv ones."""
    return opened_tiny_net(request.param)


def _inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    hole = torch.zeros(1, 1, h, w)
    hole[..., h // 4 : 3 * h // 4, w // 3 : 2 * w // 3] = 1
    return image, hole


@pytest.mark.parametrize("block", [fastpath.BLOCK_ELEMENTS, 64])
def test_fast_copy_matches_fp32_network(net: DualPathInpainter, block: int, monkeypatch) -> None:
    monkeypatch.setattr(fastpath, "BLOCK_ELEMENTS", block)  # 64: one attention row block per 16 rows
    fast = fastpath.prepare_for_inference(net, channels_last=True)
    assert any(isinstance(m, fastpath.BlockedAttention) for m in fast.modules())
    assert not any("parametrizations" in k for k in fast.state_dict())
    image, hole = _inputs(64, 96)
    with torch.no_grad():
        ref = net.complete(image, hole)
        noise = torch.randn(2, *ref.shape[:1], *net.latent_shape(64, 96), generator=torch.Generator())
        ref_s = net.complete(image, hole, noise=noise)
    with torch.inference_mode():
        got = fast.complete(image.contiguous(memory_format=torch.channels_last), hole)
        got_s = fast.complete(image.contiguous(memory_format=torch.channels_last), hole, noise=noise)
    assert (ref - image).abs().max() > 0.1  # the fill does change the hole
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-5)
    torch.testing.assert_close(got_s, ref_s, rtol=0, atol=2e-5)
    # the original is untouched and a second preparation is not a second copy
    assert any("parametrizations" in k for k in net.state_dict())
    assert fastpath.prepare_for_inference(fast, channels_last=True) is fast


def test_inpainter_fast_path_matches_plain_network(net: DualPathInpainter) -> None:
    cfg = load_config("tiny")
    fast = Inpainter(net, cfg, precision="fp32")
    plain = Inpainter(net, cfg, channels_last=False, precision="fp32")
    assert fast.channels_last and not plain.channels_last and fast.precision == plain.precision == "fp32"
    image = Image.fromarray(np.random.default_rng(0).integers(0, 256, (70, 90, 3), dtype=np.uint8))
    mask = np.zeros((70, 90), bool)
    mask[20:45, 30:60] = True
    a, b = np.asarray(fast(image, mask), np.int16), np.asarray(plain(image, mask), np.int16)
    assert np.abs(a - b).max() <= 1
    # and the network output itself equals the SN network's
    image_t, hole_t = _inputs(64, 64)
    with torch.no_grad():
        ref = net.complete(image_t, hole_t)
    torch.testing.assert_close(fast.run_net(image_t, hole_t)[0], ref, rtol=0, atol=2e-5)


def assert_bf16_close(
    got: torch.Tensor, ref: torch.Tensor, hole: torch.Tensor, upsample: str = "deconv"
) -> None:
    """bf16 network output ``got`` vs fp32 ``ref`` (N×…×3×H×W, hole N×1×H×W): equal outside the hole
    (pasted from the input), within the bf16 tolerances inside, and different (bf16 really ran)."""
    inside = hole.bool().expand_as(got)
    diff = (got.float() - ref).abs()
    assert float(diff[~inside].max()) == 0.0
    mean, worst = float(diff[inside].mean()), float(diff[inside].max())
    mean_tol, max_tol = BF16_TOLERANCES[upsample][:2]
    assert BF16_RAN < mean < mean_tol and worst < max_tol, (mean, worst)


def test_bf16_output_is_close_to_fp32(net: DualPathInpainter, tmp_path: Path) -> None:
    """Forced bf16 against fp32, directly: the network output and the 8-bit fills."""
    cfg = load_config("tiny")
    fp32 = Inpainter(net, cfg, precision="fp32")
    bf16 = Inpainter(net, cfg, precision="bf16")
    assert fp32.precision == "fp32" and bf16.precision == "bf16"
    upsample = net.cfg.upsample
    for h, w in ((64, 96), (48, 64)):
        image, hole = _inputs(h, w)
        assert_bf16_close(bf16.run_net(image, hole), fp32.run_net(image, hole), hole, upsample)
    mean_levels, max_levels = BF16_TOLERANCES[upsample][2:]
    for path in make_photos(tmp_path, 3, size=(48, 64)):
        image = Image.open(path).convert("RGB")
        hole = np.zeros((48, 64), bool)
        hole[12:36, 16:44] = True
        out32, out16 = np.asarray(fp32(image, hole), np.int16), np.asarray(bf16(image, hole), np.int16)
        diff = np.abs(out32 - out16)
        assert (diff[~hole] == 0).all() and (out32[~hole] == np.asarray(image)[~hole]).all()
        assert 0 < diff[hole].mean() < mean_levels and diff[hole].max() <= max_levels


def test_bf16_env_forces_the_detection(monkeypatch) -> None:
    monkeypatch.delenv(fastpath.BF16_ENV, raising=False)
    try:
        native = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN
        native = False
    assert fastpath.bf16_supported() is native  # unset: detected
    assert fastpath.resolve_precision("auto") == ("bf16" if native else "fp32")
    for value, expected in (("0", False), ("1", True), (" 1 ", True), ("", native)):
        monkeypatch.setenv(fastpath.BF16_ENV, value)
        assert fastpath.bf16_supported() is expected and fastpath.bf16_supported("cpu") is expected
    assert fastpath.resolve_precision("fp32") == "fp32" and fastpath.resolve_precision("bf16") == "bf16"
    monkeypatch.setenv(fastpath.BF16_ENV, "yes")
    with pytest.raises(ValueError, match="DUALINPAINT_BF16='yes' must be 0"):
        fastpath.bf16_supported()


def test_without_bf16_auto_is_fp32_and_training_falls_back(net: DualPathInpainter, monkeypatch) -> None:
    """The branch of a CPU without native bf16, taken on any CPU (``DUALINPAINT_BF16=0``)."""
    from dualinpaint.train import Trainer

    monkeypatch.setenv(fastpath.BF16_ENV, "0")
    assert not fastpath.bf16_supported() and fastpath.resolve_precision("auto") == "fp32"
    cfg = load_config("tiny")
    auto = Inpainter(net, cfg)
    assert auto.precision == "fp32"
    image, hole = _inputs(48, 64)
    torch.testing.assert_close(
        auto.run_net(image, hole), Inpainter(net, cfg, precision="fp32").run_net(image, hole), rtol=0, atol=0
    )
    with pytest.warns(
        RuntimeWarning, match="train.bf16 is on but this cpu has no native bf16; training in fp32"
    ):
        trainer = Trainer(cfg.with_overrides(["train.bf16=true"]))
    assert trainer.use_bf16 is False


def test_with_bf16_auto_is_bf16_and_close_to_fp32(net: DualPathInpainter, monkeypatch, recwarn) -> None:
    """The branch of a CPU with native bf16, taken on any CPU (``DUALINPAINT_BF16=1``; emulated bf16 is
    slow, hence the small input)."""
    from dualinpaint.train import Trainer

    monkeypatch.setenv(fastpath.BF16_ENV, "1")
    assert fastpath.bf16_supported() and fastpath.resolve_precision("auto") == "bf16"
    cfg = load_config("tiny")
    auto = Inpainter(net, cfg)
    assert auto.precision == "bf16"
    image, hole = _inputs(48, 64)
    assert_bf16_close(
        auto.run_net(image, hole),
        Inpainter(net, cfg, precision="fp32").run_net(image, hole),
        hole,
        net.cfg.upsample,
    )
    trainer = Trainer(cfg.with_overrides(["train.bf16=true"]))
    assert trainer.use_bf16 is True and not [w for w in recwarn if "bf16" in str(w.message)]


def test_bad_options_are_one_line_errors(net: DualPathInpainter) -> None:
    cfg = load_config("tiny")
    with pytest.raises(ValueError, match="precision='fp16'; valid: auto, fp32, bf16"):
        Inpainter(net, cfg, precision="fp16")
    with pytest.raises(ValueError, match="runtime='tensorrt'; valid: torch, onnx"):
        Inpainter(net, cfg, runtime="tensorrt")
    with pytest.raises(ValueError, match="torch runtime"):
        Inpainter(net, cfg, runtime="onnx", precision="bf16")


def test_missing_onnxruntime_is_a_clean_error(net: DualPathInpainter, monkeypatch) -> None:
    real_import = builtins.__import__

    def no_ort(name, *args, **kw):
        if name == "onnxruntime":
            raise ImportError("No module named 'onnxruntime'")
        return real_import(name, *args, **kw)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ValueError, match=r"needs onnxruntime: pip install 'dualinpaint\[onnx\]'"):
        Inpainter(net, load_config("tiny"), runtime="onnx")


# ------------------------------------------------------------------------------------------------- ONNX


@pytest.fixture(scope="module")
def onnx_pair(net: DualPathInpainter) -> tuple[Inpainter, Inpainter]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    cfg = load_config("tiny")
    return Inpainter(net, cfg, precision="fp32"), Inpainter(net, cfg, runtime="onnx")


def test_onnx_runtime_matches_torch(onnx_pair: tuple[Inpainter, Inpainter]) -> None:
    torch_inp, onnx_inp = onnx_pair
    image_t, hole_t = _inputs(64, 96)
    ref = torch_inp.run_net(image_t, hole_t)
    got = onnx_inp.run_net(image_t, hole_t)
    assert got.shape == ref.shape == (1, 1, 3, 64, 96)
    assert float((got - ref).abs().max()) < 1e-4

    image = Image.fromarray(np.random.default_rng(2).integers(0, 256, (80, 100, 3), dtype=np.uint8))
    mask = np.zeros((80, 100), bool)
    mask[10:40, 50:90] = True
    a, b = np.asarray(torch_inp(image, mask), np.int16), np.asarray(onnx_inp(image, mask), np.int16)
    assert (a[~mask] == np.asarray(image)[~mask]).all() and (b[~mask] == a[~mask]).all()
    assert np.abs(a - b).max() <= ONNX_LEVELS

    sa = torch_inp.fill(image, mask, samples=2, seed=3)
    sb = onnx_inp.fill(image, mask, samples=2, seed=3)
    assert len(sb) == 2 and (np.asarray(sb[0]) != np.asarray(sb[1])).any()
    for x, y in zip(sa, sb, strict=True):
        assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= ONNX_LEVELS


def test_onnx_runtime_feeds_pytorchs_smooth_fill_to_the_graph() -> None:
    """A model with a smooth fill: ``runtime="onnx"`` solves the fill in PyTorch (on the hole's box) and
    runs the rest in ONNX Runtime, so it agrees with the torch runtime to float rounding."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    cfg = load_config("tiny").with_overrides(
        [
            "model.mask_input=true",
            "model.decoder_skips=true",
            "model.prefill=biharmonic",
            "model.prefill_iters=5",
        ]
    )
    torch.manual_seed(0)
    n = DualPathInpainter(cfg.model).eval()
    torch_inp, onnx_inp = Inpainter(n, cfg, precision="fp32"), Inpainter(n, cfg, runtime="onnx")
    assert onnx_inp._onnx_session(sampling=False).takes_base
    image, hole = _inputs(64, 96)
    ref, got = torch_inp.run_net(image, hole), onnx_inp.run_net(image, hole)
    assert (ref[0] - image).abs().max() > 0.1 and float((got - ref).abs().max()) < 1e-5
    noise = torch.randn(2, 1, *n.latent_shape(64, 96), generator=torch.Generator().manual_seed(4))
    ref_s, got_s = torch_inp.run_net(image, hole, noise), onnx_inp.run_net(image, hole, noise)
    assert got_s.shape == (2, 1, 3, 64, 96) and float((got_s - ref_s).abs().max()) < 1e-5


def test_fill_cli_runtime_onnx(
    net: DualPathInpainter, tmp_path: Path, capsys: pytest.CaptureFixture, onnx_pair
) -> None:
    from dualinpaint.checkpoint import save_weights
    from dualinpaint.cli import main

    cfg = dataclasses.replace(load_config("tiny"), model=net.cfg)
    save_weights(tmp_path / "run", net, cfg, 0)
    photo = make_photos(tmp_path / "in", 1, size=(60, 80))[0]
    hole = np.zeros((60, 80), np.uint8)
    hole[15:40, 20:50] = 255
    Image.fromarray(hole, "L").save(tmp_path / "mask.png")
    args = ["fill", str(photo), "--mask", str(tmp_path / "mask.png"), "--model", str(tmp_path / "run")]
    assert main([*args, "-o", str(tmp_path / "onnx.png"), "--runtime", "onnx", "--quiet"]) == 0
    assert main([*args, "-o", str(tmp_path / "torch.png"), "--precision", "fp32", "--quiet"]) == 0
    a = np.asarray(Image.open(tmp_path / "onnx.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "torch.png"), np.int16)
    assert a.shape == (60, 80, 3) and np.abs(a - b).max() <= ONNX_LEVELS
    assert (a != np.asarray(Image.open(photo), np.int16)).any()
    capsys.readouterr()
    assert main([*args, "-o", str(tmp_path / "x.png"), "--runtime", "onnx", "--compile"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dualinpaint: error:") and "torch runtime" in err and err.count("\n") == 1
