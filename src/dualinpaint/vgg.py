"""VGG19 features from a local weights file, and GMCNN's ID-MRF loss on them (Wang et al., NeurIPS 2018).

No pretrained network ships with the package and nothing is downloaded: the VGG19 weights are read from a
file the user names, a torchvision-format state dict (``features.N.weight`` / ``features.N.bias``, as
``torchvision.models.vgg19().state_dict()``; the ``classifier.*`` entries are ignored), either a
``.safetensors`` file or a ``torch.save`` file read with ``weights_only=True`` (no code is unpickled).

The ID-MRF loss (:func:`mrf_loss`, :func:`id_mrf_loss`) is a pure function of feature maps; the only state
here is the frozen feature extractor :class:`VGG19Features`.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's vgg19().features up to relu4_2: conv widths, "M" = 2×2 max pool
VGG19_PLAN = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512)
VGG19_TAPS = {13: "relu3_2", 22: "relu4_2"}  # indices in torchvision's vgg19().features
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# GMCNN's ID-MRF (released code): style on relu3_2 and relu4_2, content on relu4_2, all weights 1
MRF_STYLE_LAYERS = {"relu3_2": 1.0, "relu4_2": 1.0}
MRF_CONTENT_LAYERS = {"relu4_2": 1.0}
MRF_NN_STRETCH_SIGMA = 0.5  # h in the paper; nn_stretch_sigma in the code
MRF_BIAS = 1.0


class VGG19Features(nn.Module):
    """torchvision's ``vgg19().features[:23]`` (conv1_1 … relu4_2), frozen, in eval mode.

    ``forward(x)``: x N×3×H×W in [-1, 1] (the package's range; mapped to [0, 1] and normalised with the
    ImageNet mean and std, as torchvision's weights expect) → {"relu3_2": …, "relu4_2": …}. Gradients flow
    to x; the weights are buffers-in-spirit (``requires_grad`` false) and never trained.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for v in VGG19_PLAN:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(cin, int(v), 3, padding=1), nn.ReLU()]
                cin = int(v)
        self.features = nn.Sequential(*layers)
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGG19Features:
        return super().train(False)  # always eval: no dropout / norm, but keep the call harmless

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        x = ((x + 1) / 2 - self.mean) / self.std
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in VGG19_TAPS:
                out[VGG19_TAPS[i]] = x
        return out


def conv_indices() -> list[int]:
    """Indices of the convs of :class:`VGG19Features` in torchvision's ``vgg19().features``."""
    return [i for i, m in enumerate(VGG19Features().features) if isinstance(m, nn.Conv2d)]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a ``.safetensors`` file, or of a ``torch.save`` file loaded with ``weights_only=True``.

    Raises ValueError (one line, naming the file) when it is missing or unreadable.
    """
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"VGG19 weights {str(p)!r}: no such file")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(p)
        else:
            state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any reader failure is reported as one line
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise ValueError(f"VGG19 weights {str(p)!r}: unreadable ({type(err).__name__}: {first})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"VGG19 weights {str(p)!r}: not a state dict (got {type(state).__name__})")
    return state


def load_vgg19(path: str | Path) -> VGG19Features:
    """A :class:`VGG19Features` with the conv weights of a torchvision-format VGG19 state dict at ``path``.

    Keys ``features.N.weight`` / ``features.N.bias`` (also accepted without the ``features.`` prefix);
    the shapes must match torchvision's VGG19. Raises ValueError (one line) naming the file and the first
    missing or mismatched key.
    """
    state = read_state_dict(path)
    net = VGG19Features()
    own = net.features.state_dict()
    loaded = {}
    for key, want in own.items():
        tensor = state.get(f"features.{key}", state.get(key))
        if tensor is None:
            raise ValueError(
                f"VGG19 weights {str(path)!r}: missing features.{key} (not a torchvision VGG19?)"
            )
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != tuple(want.shape):
            got = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__
            raise ValueError(
                f"VGG19 weights {str(path)!r}: features.{key} has shape {got}, expected {tuple(want.shape)}"
            )
        loaded[key] = tensor.float()
    net.features.load_state_dict(loaded)
    return net


def mrf_loss(
    gen: torch.Tensor, target: torch.Tensor, sigma: float = MRF_NN_STRETCH_SIGMA, bias: float = MRF_BIAS
) -> torch.Tensor:
    """ID-MRF term of one feature layer (GMCNN, Eq. 3–5): −log of the mean, over the target's feature
    vectors s, of max over the generated vectors v of the normalised relative similarity RS̄(v, s).

    gen, target: N×C×h×w (the target is detached). Both are centred on the target's mean feature and
    L2-normalised per position; d(v, s) = (1 − cos(v, s)) / 2; relative distance d / (min over targets of
    d(v, ·) + 1e-5); RS = exp((bias − relative) / sigma), normalised over the targets for each v. The loss
    is averaged over the batch. Returns a scalar; 0 when every generated vector is a target vector.
    """
    target = target.detach()
    mean = target.mean(dim=(0, 2, 3), keepdim=True)
    g = F.normalize((gen - mean).flatten(2), dim=1)  # N×C×V
    t = F.normalize((target - mean).flatten(2), dim=1)  # N×C×S
    dist = (1 - torch.bmm(t.transpose(1, 2), g)) / 2  # N×S×V
    relative = dist / (dist.min(dim=1, keepdim=True).values + 1e-5)
    rs = torch.exp((bias - relative) / sigma)
    rs = rs / rs.sum(dim=1, keepdim=True)
    best = rs.max(dim=2).values  # N×S: each target vector's closest generated one
    return -torch.log(best.mean(dim=1)).mean()


def id_mrf_loss(
    features: VGG19Features,
    gen: torch.Tensor,
    target: torch.Tensor,
    style: dict[str, float] | None = None,
    content: dict[str, float] | None = None,
) -> torch.Tensor:
    """GMCNN's ID-MRF regulariser: Σ style weights · mrf(layer) + Σ content weights · mrf(layer) on the VGG19
    features of gen and target (N×3×H×W in [-1, 1]); by default relu3_2 + relu4_2 (style) + relu4_2
    (content), all weights 1, as the released code. Gradients reach ``gen`` only."""
    style = MRF_STYLE_LAYERS if style is None else style
    content = MRF_CONTENT_LAYERS if content is None else content
    fg = features(gen)
    with torch.no_grad():
        ft = features(target)
    weights: dict[str, float] = {}
    for layers in (style, content):
        for name, w in layers.items():
            weights[name] = weights.get(name, 0.0) + w
    total = gen.new_zeros(())
    for name, w in weights.items():
        if w:
            total = total + w * mrf_loss(fg[name].float(), ft[name].float())
    return total
