from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter, freeze_for_inference

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from dualinpaint.export import OnnxFill, export_onnx  # noqa: E402


@pytest.fixture(scope="module", params=["tiny", "tiny+harmonic", "tiny+biharmonic"])
def net(request: pytest.FixtureRequest) -> DualPathInpainter:
    """The tiny network, plain and with the shipped preset's mask input, decoder skips and a prefill."""
    torch.manual_seed(0)
    cfg = load_config("tiny")
    if request.param != "tiny":
        cfg = cfg.with_overrides(
            [
                "model.mask_input=true",
                "model.decoder_skips=true",
                f"model.prefill={request.param.split('+')[1]}",
                "model.prefill_iters=3",
            ]
        )
    n = DualPathInpainter(cfg.model)
    n.train()
    for _ in range(2):  # move the spectral-norm u/v away from their initial values
        n(torch.rand(2, 3, 32, 32) * 2 - 1, torch.zeros(2, 1, 32, 32))
    return n.eval()


def _inputs(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, h, w, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, h, w)
    mask[..., h // 4 : h // 2, w // 4 : 3 * w // 4] = 1
    return image, mask


def test_frozen_copy_computes_the_same_function(net: DualPathInpainter) -> None:
    frozen = freeze_for_inference(net)
    assert not any("parametrizations" in k for k in frozen.state_dict())
    image, mask = _inputs(48, 64)
    with torch.no_grad():
        torch.testing.assert_close(frozen.complete(image, mask), net.complete(image, mask), rtol=0, atol=1e-6)


def test_static_export_matches_pytorch(net: DualPathInpainter, tmp_path: Path) -> None:
    report = export_onnx(net, tmp_path / "m.onnx", size=32)
    assert report["max_abs_diff"] is not None and report["max_abs_diff"] < 1e-4
    image, mask = _inputs(32, 32)
    with torch.no_grad():
        ref = net.complete(image, mask)
    torch.testing.assert_close(OnnxFill(tmp_path / "m.onnx").run(image, mask), ref, rtol=0, atol=1e-4)


def test_dynamic_export_runs_at_other_sizes_and_sampling_takes_noise(
    net: DualPathInpainter, tmp_path: Path
) -> None:
    export_onnx(net, tmp_path / "dyn.onnx", size=None)
    image, mask = _inputs(48, 80)
    with torch.no_grad():
        ref = net.complete(image, mask)
    torch.testing.assert_close(OnnxFill(tmp_path / "dyn.onnx").run(image, mask), ref, rtol=0, atol=1e-4)

    export_onnx(net, tmp_path / "s.onnx", size=None, sampling=True)
    session = OnnxFill(tmp_path / "s.onnx")
    assert session.sampling
    noise = torch.randn(1, *net.latent_shape(48, 80), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = net.complete(image, mask, noise=noise[None])[0]
    torch.testing.assert_close(session.run(image, mask, noise), ref, rtol=0, atol=1e-4)


def test_bad_size_and_bad_file(net: DualPathInpainter, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multiple of the model's stride 16"):
        export_onnx(net, tmp_path / "x.onnx", size=40)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="not a loadable ONNX model"):
        OnnxFill(tmp_path / "junk.onnx")


def test_export_command(net: DualPathInpainter, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from dualinpaint.checkpoint import save_weights
    from dualinpaint.cli import main

    cfg = load_config("tiny")
    save_weights(tmp_path / "run", net, dataclasses.replace(cfg, model=net.cfg), 0)
    assert (
        main(
            [
                "export",
                "--onnx",
                str(tmp_path / "m.onnx"),
                "--model",
                str(tmp_path / "run"),
                "--size",
                "dynamic",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "max abs difference vs PyTorch" in out and (tmp_path / "m.onnx").stat().st_size > 1000
