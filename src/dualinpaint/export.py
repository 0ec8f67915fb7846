"""ONNX export of the generation path and an ONNX Runtime session with the same call shape.

Two graphs:
- deterministic: ``(image N×3×H×W in [-1,1], mask N×1×H×W, 1 = hole) → fill N×3×H×W`` with z = prior mean;
- sampling: ``(image, mask, noise N×Z×H/s×W/s) → fill`` with z = μ + σ·noise.
Both return the composite (pixels outside the hole copied from the input). Spectral norm is baked into
the weights first (``freeze_for_inference``). ``size`` fixes H = W; ``None`` exports dynamic H and W
(multiples of the model's stride).
"""

from __future__ import annotations

import io
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .generator import DualPathInpainter, freeze_for_inference
from .images import atomic_write_bytes


class DeterministicFill(nn.Module):
    """(image, mask) → composite fill with the prior mean."""

    def __init__(self, net: DualPathInpainter) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        prior, feats = self.net.encode_masked(image, mask)
        return self.net.decode(prior.mu, feats, mask, image) * mask + image * (1 - mask)


class SampledFill(nn.Module):
    """(image, mask, noise) → composite fill with z = μ + σ·noise."""

    def __init__(self, net: DualPathInpainter) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        prior, feats = self.net.encode_masked(image, mask)
        return self.net.decode(prior.rsample(noise), feats, mask, image) * mask + image * (1 - mask)


def _example(net: DualPathInpainter, size: int, sampling: bool) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : size // 2, size // 3 : 2 * size // 3] = 1
    if not sampling:
        return image, mask
    return image, mask, torch.randn((1, *net.latent_shape(size, size)), generator=g)


def _install_hint() -> str:
    return "pip install 'dualinpaint[onnx]'"


def onnx_graph(
    net: DualPathInpainter, *, size: int | None = 512, sampling: bool = False, opset: int = 18
) -> tuple[bytes, nn.Module, tuple[torch.Tensor, ...], float]:
    """Export the generation path to ONNX in memory.

    Returns (serialised model, the frozen module that was exported, its example inputs, export seconds).
    ``size`` fixes H = W; ``None`` gives dynamic batch, height and width.
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError(f"ONNX export needs the onnx package: {_install_hint()}") from None
    if not isinstance(net, DualPathInpainter):
        raise ValueError(f"ONNX export covers the dual-path model; this model's family is {net.cfg.family!r}")
    stride = net.cfg.stride
    if size is not None and (size <= 0 or size % stride):
        raise ValueError(f"--size {size} must be a positive multiple of the model's stride {stride}")
    with torch.inference_mode(False):  # may be called from inside a fill (inference mode)
        frozen = freeze_for_inference(net).to(memory_format=torch.contiguous_format)
        module = SampledFill(frozen) if sampling else DeterministicFill(frozen)
        check_size = size or 2 * stride * max(1, 256 // (2 * stride))
        example = _example(frozen, check_size, sampling)
    names = ["image", "mask", "noise"][: len(example)]
    dynamic = None
    if size is None:
        dynamic = {n: {0: "batch", 2: "height", 3: "width"} for n in names}
        dynamic["fill"] = {0: "batch", 2: "height", 3: "width"}
        if sampling:
            dynamic["noise"] = {0: "batch", 2: "latent_height", 3: "latent_width"}
    t0 = time.perf_counter()
    buf = io.BytesIO()
    with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes on constant folding and Python control flow
        torch.onnx.export(
            module,
            example,
            buf,
            input_names=names,
            output_names=["fill"],
            opset_version=opset,
            dynamic_axes=dynamic,
            dynamo=False,
        )
    return buf.getvalue(), module, example, time.perf_counter() - t0


def export_onnx(
    net: DualPathInpainter,
    out: str | Path,
    *,
    size: int | None = 512,
    sampling: bool = False,
    opset: int = 18,
) -> dict[str, Any]:
    """Write an ONNX graph of the generation path to ``out`` and check it against PyTorch.

    Returns a report: path, inputs, size, export seconds, and the max abs difference between ONNX
    Runtime and PyTorch on a test input (None when onnxruntime is not installed).
    """
    data, module, example, seconds = onnx_graph(net, size=size, sampling=sampling, opset=opset)
    atomic_write_bytes(out, data)
    report: dict[str, Any] = {
        "path": str(out),
        "inputs": ["image", "mask", "noise"][: len(example)],
        "size": size or "dynamic",
        "export_seconds": round(seconds, 2),
        "max_abs_diff": None,
    }
    try:
        session = OnnxFill(out)
    except ValueError:
        return report
    with torch.inference_mode():
        ref = module(*example)
    got = session.run(*example)
    report["max_abs_diff"] = float((ref - got).abs().max())
    return report


def require_onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line ValueError saying how to install it."""
    try:
        import onnxruntime
    except ImportError:
        raise ValueError(f"the ONNX runtime needs onnxruntime: {_install_hint()}") from None
    return onnxruntime


class OnnxFill:
    """An ONNX Runtime session for an exported graph: ``run(image, mask[, noise]) → fill`` on tensors.

    ``model``: an .onnx file or the serialised model itself (bytes). ``threads``: intra-op threads
    (default: ONNX Runtime's own choice, one per physical core). Full graph optimisation, CPU provider.
    """

    def __init__(self, model: str | Path | bytes, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.inter_op_num_threads = 1
        if threads:
            opts.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        name = "the exported model" if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{name}: not a loadable ONNX model ({err.__class__.__name__})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]

    @property
    def sampling(self) -> bool:
        return "noise" in self.inputs

    def run(self, *tensors: torch.Tensor) -> torch.Tensor:
        feed = {
            n: t.detach().cpu().float().contiguous().numpy()
            for n, t in zip(self.inputs, tensors, strict=True)
        }
        return torch.from_numpy(self.session.run(["fill"], feed)[0])
