"""ONNX export of the generation path and an ONNX Runtime session with the same call shape.

Two graphs:
- deterministic: ``(image N×3×H×W in [-1,1], mask N×1×H×W, 1 = hole) → fill N×3×H×W`` with z = prior mean;
- sampling: ``(image, mask, noise N×Z×H/s×W/s) → fill`` with z = μ + σ·noise.
Both return the composite (pixels outside the hole copied from the input). Spectral norm is baked into
the weights first (``freeze_for_inference``). ``size`` fixes H = W; ``None`` exports dynamic H and W
(multiples of the model's stride).

A model with a smooth fill (``model.prefill``) solves it inside the graph, as ONNX ``Loop`` nodes over the
whole image. ``prefill_input=True`` instead exports a graph with one more input, ``base`` N×3×H×W (the
smooth fill), for a caller that computes the fill in PyTorch: there the biharmonic fill runs on each
hole's bounding box only (``generator._biharmonic_solve``), which the traced graph cannot do.
``OnnxFill(..., prefill=)`` does that; the package's ``--runtime onnx`` uses it. ``dualinpaint export``
writes the self-contained graph.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .generator import DualPathInpainter, freeze_for_inference
from .images import atomic_write_bytes


class DeterministicFill(nn.Module):
    """(image, mask[, base]) → composite fill with the prior mean; ``base``: the smooth fill, if given."""

    def __init__(self, net: DualPathInpainter) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, base: torch.Tensor | None = None
    ) -> torch.Tensor:
        prior, feats = self.net.encode_masked(image, mask)
        inputs = self.net.decoder_inputs(feats, mask, image, base)
        return self.net.decode(prior.mu, feats, mask, image, inputs) * mask + image * (1 - mask)


class SampledFill(nn.Module):
    """(image, mask, noise[, base]) → composite fill with z = μ + σ·noise."""

    def __init__(self, net: DualPathInpainter) -> None:
        super().__init__()
        self.net = net

    def forward(
        self, image: torch.Tensor, mask: torch.Tensor, noise: torch.Tensor, base: torch.Tensor | None = None
    ) -> torch.Tensor:
        prior, feats = self.net.encode_masked(image, mask)
        inputs = self.net.decoder_inputs(feats, mask, image, base)
        z = prior.rsample(noise)
        return self.net.decode(z, feats, mask, image, inputs) * mask + image * (1 - mask)


def _example(
    net: DualPathInpainter, size: int, sampling: bool, prefill_input: bool
) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, size, size)
    mask[..., size // 4 : size // 2, size // 3 : 2 * size // 3] = 1
    example: tuple[torch.Tensor, ...] = (image, mask)
    if sampling:
        example += (torch.randn((1, *net.latent_shape(size, size)), generator=g),)
    if prefill_input:
        example += (net.prefill(image, mask),)
    return example


def _install_hint() -> str:
    return "pip install 'dualinpaint[onnx]'"


def onnx_graph(
    net: DualPathInpainter,
    *,
    size: int | None = 512,
    sampling: bool = False,
    opset: int = 18,
    prefill_input: bool = False,
) -> tuple[bytes, nn.Module, tuple[torch.Tensor, ...], float]:
    """Export the generation path to ONNX in memory.

    Returns (serialised model, the frozen module that was exported, its example inputs, export seconds).
    ``size`` fixes H = W; ``None`` gives dynamic batch, height and width. ``prefill_input``: the graph
    takes the smooth fill as its last input ``base`` instead of computing it (models with a prefill only).
    """
    try:
        import onnx  # noqa: F401
    except ImportError:
        raise ValueError(f"ONNX export needs the onnx package: {_install_hint()}") from None
    if not isinstance(net, DualPathInpainter):
        raise ValueError(f"ONNX export covers the dual-path model; this model's family is {net.cfg.family!r}")
    if prefill_input and net.cfg.prefill == "none":
        raise ValueError("prefill_input: this model has no smooth fill (model.prefill is none)")
    stride = net.cfg.stride
    if size is not None and (size <= 0 or size % stride):
        raise ValueError(f"--size {size} must be a positive multiple of the model's stride {stride}")
    with torch.inference_mode(False):  # may be called from inside a fill (inference mode)
        frozen = freeze_for_inference(net).to(memory_format=torch.contiguous_format)
        module = SampledFill(frozen) if sampling else DeterministicFill(frozen)
        check_size = size or 2 * stride * max(1, 256 // (2 * stride))
        example = _example(frozen, check_size, sampling, prefill_input)
    names = ["image", "mask"] + ["noise"] * sampling + ["base"] * prefill_input
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
    """An ONNX Runtime session for an exported graph: ``run(image, mask[, noise][, base]) → fill``.

    ``model``: an .onnx file or the serialised model itself (bytes). ``threads``: intra-op threads
    (default: ONNX Runtime's own choice, one per physical core). Full graph optimisation, CPU provider,
    threads not spinning between runs.
    ``prefill``: for a graph with a ``base`` input (``prefill_input``), the PyTorch function
    ``(image, mask) → smooth fill`` that ``run`` calls when no ``base`` is passed (``net.prefill``).
    """

    def __init__(
        self,
        model: str | Path | bytes,
        threads: int | None = None,
        prefill: Callable[[torch.Tensor, torch.Tensor], torch.Tensor | None] | None = None,
    ) -> None:
        ort = require_onnxruntime()
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.inter_op_num_threads = 1
        # no busy-waiting between runs: PyTorch work (the smooth fill, resizing) runs between them, and
        # spinning ORT threads took its cores (256²: 0.19 s → 0.12 s per fill with spinning off)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            opts.intra_op_num_threads = threads
        source = model if isinstance(model, bytes) else str(model)
        name = "the exported model" if isinstance(model, bytes) else str(model)
        try:
            self.session = ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ValueError(f"{name}: not a loadable ONNX model ({err.__class__.__name__})") from None
        self.inputs = [i.name for i in self.session.get_inputs()]
        known = ["image", "mask", "noise", "base"]
        if self.inputs[:2] != known[:2] or not set(self.inputs) <= set(known):
            raise ValueError(
                f"{name}: inputs {self.inputs} are not a dualinpaint graph's (image, mask[, noise][, base])"
            )
        self.prefill = prefill

    @property
    def sampling(self) -> bool:
        return "noise" in self.inputs

    @property
    def takes_base(self) -> bool:
        """Whether the graph reads the smooth fill as an input (exported with ``prefill_input``)."""
        return "base" in self.inputs

    def run(
        self,
        image: torch.Tensor,
        mask: torch.Tensor,
        noise: torch.Tensor | None = None,
        base: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The graph's fill N×3×H×W for image N×3×H×W, mask N×1×H×W (and noise / base where it has them)."""
        if (noise is not None) != self.sampling:
            raise ValueError(
                "this graph needs a noise input" if self.sampling else "this graph takes no noise input"
            )
        if base is not None and not self.takes_base:
            raise ValueError("this graph computes its own smooth fill and takes no 'base' input")
        n, _, h, w = image.shape
        if tuple(mask.shape) != (n, 1, h, w) or (base is not None and tuple(base.shape) != (n, 3, h, w)):
            got = f"mask {tuple(mask.shape)}" + ("" if base is None else f", base {tuple(base.shape)}")
            raise ValueError(
                f"for image {tuple(image.shape)} the mask must be N×1×H×W and base N×3×H×W; got {got}"
            )
        if noise is not None and (noise.dim() != 4 or noise.shape[0] != n):
            raise ValueError(f"noise must be N×Z×h×w with N = {n}, got {tuple(noise.shape)}")
        if self.takes_base and base is None:
            if self.prefill is None:
                raise ValueError("this graph takes the smooth fill as input 'base': pass base= or prefill=")
            with torch.inference_mode():
                base = self.prefill(image, mask)
        tensors = {"image": image, "mask": mask, "noise": noise, "base": base}
        feed = {n: tensors[n].detach().cpu().float().contiguous().numpy() for n in self.inputs}
        return torch.from_numpy(self.session.run(["fill"], feed)[0])


def runtime_session(
    net: DualPathInpainter, *, sampling: bool = False, threads: int | None = None
) -> tuple[OnnxFill, float]:
    """The session ``--runtime onnx`` runs, and its export seconds: a dynamic-size graph of ``net`` that,
    for a model with a smooth fill, takes the fill as input ``base``, computed by ``net.prefill`` (PyTorch,
    on each hole's box)."""
    prefilled = net.cfg.prefill != "none"
    data, _, _, seconds = onnx_graph(net, size=None, sampling=sampling, prefill_input=prefilled)
    return OnnxFill(data, threads=threads, prefill=net.prefill if prefilled else None), seconds
