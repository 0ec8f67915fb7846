import pytest
import torch

from dualinpaint.baselines import BASELINES, available_baselines, get_baseline
from dualinpaint.images import pil_to_tensor, tensor_to_pil
from dualinpaint.metrics import psnr

AVAILABLE = available_baselines()


def gradient_image(h: int = 64, w: int = 64) -> torch.Tensor:
    """A smooth colour gradient, 1×3×H×W in [-1, 1], not centred on 0 (so zero-filling is clearly wrong)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    return torch.stack([0.9 * xx - 0.2, 0.9 * yy, 0.4 * (xx + yy) + 0.2])[None]


def hole_mask(h: int = 64, w: int = 64) -> torch.Tensor:
    mask = torch.zeros(1, 1, h, w)
    mask[..., 20:36, 28:44] = 1
    return mask


def quantised(image: torch.Tensor) -> torch.Tensor:
    return pil_to_tensor(tensor_to_pil(image))


def test_registry_and_unknown_name():
    assert set(BASELINES) == {"telea", "ns", "biharmonic", "harmonic", "mlbiharmonic", "patchmatch"}
    assert set(AVAILABLE) <= set(BASELINES)
    # opencv and scikit-image are dev dependencies; the smooth fills need nothing
    assert {"telea", "ns", "biharmonic", "harmonic", "mlbiharmonic"} <= set(AVAILABLE)
    assert get_baseline("telea") is BASELINES["telea"]
    with pytest.raises(ValueError, match="valid: telea, ns, biharmonic, harmonic, mlbiharmonic, patchmatch"):
        get_baseline("lama")


@pytest.mark.parametrize("name", AVAILABLE)
def test_baseline_fills_only_the_hole(name):
    torch.manual_seed(0)
    image = (gradient_image() + 0.05 * torch.randn(1, 3, 64, 64)).clamp(-1, 1)  # off-grid values
    mask = hole_mask()
    out = get_baseline(name)(image, mask)
    assert out.shape == image.shape and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1
    keep = (mask == 0).expand_as(image)
    assert torch.equal(out[keep], quantised(image)[keep])
    assert torch.equal(out * 127.5 + 127.5, (out * 127.5 + 127.5).round())  # on the uint8 grid


@pytest.mark.parametrize("name", AVAILABLE)
def test_baseline_fills_a_smooth_gradient(name):
    image, mask = gradient_image(), hole_mask()
    out = get_baseline(name)(image, mask)
    zero_filled = quantised(image) * (1 - mask)
    score = psnr(out, image, mask).item()
    assert score > 25.0
    assert score > psnr(zero_filled, image, mask).item() + 10


@pytest.mark.parametrize("name", AVAILABLE)
def test_baseline_edge_cases(name):
    image = gradient_image(32, 32)
    fn = get_baseline(name)
    assert torch.equal(fn(image, torch.zeros(1, 1, 32, 32)), quantised(image))
    with pytest.raises(ValueError, match="whole image"):
        fn(image, torch.ones(1, 1, 32, 32))
    with pytest.raises(ValueError, match="mask"):
        fn(image, torch.zeros(1, 1, 16, 16))


def test_patchmatch_where_installed():
    """The present path: patchmatch-cython (a dev and eval dependency) fills the hole deterministically
    for a seed (the generic tests above also run it: it is in AVAILABLE)."""
    pytest.importorskip("patchmatch_cython", reason="patchmatch-cython is not installed")
    assert "patchmatch" in AVAILABLE
    a = get_baseline("patchmatch")(gradient_image(), hole_mask())
    b = get_baseline("patchmatch")(gradient_image(), hole_mask())
    assert torch.equal(a, b)
    assert not torch.equal(a, quantised(gradient_image()) * (1 - hole_mask()))  # the hole was filled


def test_patchmatch_missing_package_is_an_install_hint(monkeypatch):
    """The missing path, tested everywhere by simulating the package's absence (``import
    patchmatch_cython`` raises ImportError): the baseline is left out of the available ones and calling
    it raises ImportError naming the package to install; the other baselines are unaffected."""
    import sys

    monkeypatch.setitem(sys.modules, "patchmatch_cython", None)  # makes the import fail
    with pytest.raises(ImportError):
        import patchmatch_cython  # noqa: F401
    assert available_baselines() == [n for n in AVAILABLE if n != "patchmatch"]
    with pytest.raises(
        ImportError, match=r"^patchmatch-cython is not installed: pip install patchmatch-cython$"
    ):
        get_baseline("patchmatch")(gradient_image(), hole_mask())
    assert get_baseline("telea")(gradient_image(), hole_mask()).shape == (1, 3, 64, 64)
