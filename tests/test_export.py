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


@pytest.fixture(scope="module", params=["tiny", "tiny+harmonic", "tiny+biharmonic", "tiny-resize"])
def net(request: pytest.FixtureRequest) -> DualPathInpainter:
    """The tiny network, plain, with resize-conv decoders, and with the shipped preset's mask input,
    decoder skips and a prefill."""
    torch.manual_seed(0)
    cfg = load_config("tiny")
    if request.param == "tiny-resize":
        cfg = cfg.with_overrides(["model.upsample=resize"])
    elif request.param != "tiny":
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


def test_graph_taking_the_smooth_fill_matches_pytorch(net: DualPathInpainter) -> None:
    """``prefill_input``: the fill is a graph input; fed PyTorch's fill, the graph gives PyTorch's output."""
    from dualinpaint.export import onnx_graph

    image, mask = _inputs(48, 80)
    if net.cfg.prefill == "none":
        with pytest.raises(ValueError, match="no smooth fill"):
            onnx_graph(net, size=None, prefill_input=True)
        return
    data, _, _, _ = onnx_graph(net, size=None, prefill_input=True)
    session = OnnxFill(data, prefill=net.prefill)
    assert session.takes_base and not session.sampling
    with torch.no_grad():
        ref = net.complete(image, mask)
        base = net.prefill(image, mask)
    got = session.run(image, mask)  # the fill computed by OnnxFill's prefill
    assert float((got - ref).abs().max()) < 1e-5  # no loop in the graph: plain float rounding
    torch.testing.assert_close(session.run(image, mask, base=base), got, rtol=0, atol=0)
    import onnx

    assert not any(node.op_type == "Loop" for node in onnx.load_from_string(data).graph.node)
    moved = session.run(image, mask, base=base + 0.3)  # the graph reads base: the hole follows it
    assert float((moved - got)[mask.expand_as(got) > 0].abs().min()) > 0.01
    assert torch.equal(moved * (1 - mask), got * (1 - mask))
    # a batch of two images with different holes: each as PyTorch fills it alone
    image2, mask2 = torch.cat([image, image.flip(-1)]), torch.cat([mask, mask.flip(-2)])
    batch = session.run(image2, mask2)
    for i in range(2):
        with torch.no_grad():
            alone = net.complete(image2[i : i + 1], mask2[i : i + 1])
        assert float((batch[i : i + 1] - alone).abs().max()) < 1e-5
    with pytest.raises(ValueError, match=r"base N×3×H×W; got mask \(1, 1, 48, 80\), base \(1, 3, 48, 64\)"):
        session.run(image, mask, base=base[..., :64])
    with pytest.raises(ValueError, match="pass base= or prefill="):
        OnnxFill(data).run(image, mask)
    with pytest.raises(ValueError, match="takes no noise input"):
        session.run(image, mask, torch.zeros(1))

    sampled, _, _, _ = onnx_graph(net, size=None, sampling=True, prefill_input=True)
    s_session = OnnxFill(sampled, prefill=net.prefill)
    assert s_session.inputs == ["image", "mask", "noise", "base"]
    noise = torch.randn(1, *net.latent_shape(48, 80), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        ref = net.complete(image, mask, noise=noise[None])[0]
    assert float((s_session.run(image, mask, noise) - ref).abs().max()) < 1e-5
    with pytest.raises(ValueError, match="needs a noise input"):
        s_session.run(image, mask)


def test_self_contained_graph_refuses_a_base(net: DualPathInpainter, tmp_path: Path) -> None:
    export_onnx(net, tmp_path / "m.onnx", size=32)
    session = OnnxFill(tmp_path / "m.onnx")
    assert not session.takes_base
    image, mask = _inputs(32, 32)
    with pytest.raises(ValueError, match="takes no 'base' input"):
        session.run(image, mask, base=image)
    with pytest.raises(ValueError, match=r"mask must be N×1×H×W"):
        session.run(image, mask[..., :16])


def test_a_graph_with_other_inputs_is_refused(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("fill", TensorProto.FLOAT, [1])
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["fill"])], "g", [x], [y])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), tmp_path / "other.onnx")
    with pytest.raises(ValueError, match=r"inputs \['x'\] are not a dualinpaint graph's"):
        OnnxFill(tmp_path / "other.onnx")
