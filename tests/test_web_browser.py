"""The page in a real browser: Debian's headless Chromium driven by Playwright against a live uvicorn
with a tiny random model. Open a photo, brush a stroke, inpaint, download; undo/redo; server errors.

Needs ``apt-get install chromium`` and ``pip install playwright`` (never ``playwright install``)."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualinpaint.config import load_config
from dualinpaint.generator import DualPathInpainter
from dualinpaint.inference import Inpainter
from dualinpaint.web.app import create_app, running_server
from dualinpaint.web.screenshot import CHROMIUM, chromium_page, inpaint_in_page

pytestmark = pytest.mark.slow  # starts Chromium and a server: several seconds


@pytest.fixture(autouse=True)
def browser() -> None:
    """Skip (in the slow run; the default run deselects this module) without the browser's pieces."""
    pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'dualinpaint[web]'")
    pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install playwright")
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is not installed (Debian: apt-get install chromium)")


W, H = 320, 240
STROKE = [(120, 120), (200, 120)]  # image pixels


class Recording:
    """Wraps the inpainter to keep the masks the server received."""

    def __init__(self, inner: Inpainter) -> None:
        self.inner, self.masks, self.options = inner, [], []

    def fill(self, image, mask, **kw):
        self.masks.append(mask.copy())
        self.options.append(kw)
        return self.inner.fill(image, mask, **kw)


def structured_photo(path: Path) -> Path:
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([xx * 255 // (W - 1), yy * 255 // (H - 1), ((xx // 20 + yy // 20) % 2) * 180 + 40], -1)
    Image.fromarray(rgb.astype(np.uint8), "RGB").save(path)
    return path


def test_page_brush_inpaint_download(tmp_path: Path):
    torch.manual_seed(0)
    cfg = load_config("tiny")
    model = Recording(Inpainter(DualPathInpainter(cfg.model).eval(), cfg))
    src_path = structured_photo(tmp_path / "photo.png")
    src = np.asarray(Image.open(src_path))
    with running_server(create_app(model, model_name="tiny-random")) as url, chromium_page() as page:
        errors: list[str] = []
        page.on("pageerror", lambda err: errors.append(str(err)))
        out = inpaint_in_page(page, url + "/", src_path, STROKE, brush=20)
        page.screenshot(path=str(tmp_path / "page.png"), full_page=True)

        # the mask went up at the photo's full resolution, white = hole along the stroke
        assert len(model.masks) == 1
        mask = np.asarray(model.masks[0].convert("L")) > 127
        assert mask.shape == (H, W)
        assert mask[120, 125:196].all() and not mask[:90].any() and not mask[150:].any()

        a = np.asarray(out.convert("RGB"))
        assert out.size == (W, H)
        inside = (a[118:123, 130:190] != src[118:123, 130:190]).any(axis=-1)
        assert inside.mean() > 0.5
        far = np.ones((H, W), bool)
        far[80:160, 90:230] = False
        assert np.array_equal(a[far], src[far])

        # undo / redo with the keyboard and the buttons
        state = "window.dualinpaint.state.actions.length"
        page.keyboard.press("Control+z")
        assert page.evaluate(state) == 0 and page.is_disabled("#undo-btn")
        page.keyboard.press("Control+Shift+z")
        assert page.evaluate(state) == 1
        page.click("#undo-btn")
        page.click("#redo-btn")
        assert page.evaluate(state) == 1

        # the Texture box asks for texture; unticked, none was asked for
        assert model.options[0]["texture"] == 0.0
        page.check("#texture")
        page.click("#inpaint-btn")
        page.wait_for_function("!document.getElementById('inpaint-btn').disabled")
        assert len(model.options) == 2 and model.options[1]["texture"] == 1.0

        # a server error is shown as a readable message and the button comes back
        page.route(
            "**/api/inpaint*",
            lambda route: route.fulfill(
                status=413, content_type="application/json", body='{"detail": "image is too big"}'
            ),
        )
        page.click("#inpaint-btn")
        page.wait_for_selector("#message:not([hidden])")
        assert "image is too big" in page.text_content("#message")
        page.wait_for_function("!document.getElementById('inpaint-btn').disabled")

        # use the result as the new input: mask and history start over
        page.unroute("**/api/inpaint*")
        page.click("#use-result-btn")
        page.wait_for_function("window.dualinpaint.state.name.includes('_inpainted')")
        assert page.evaluate(state) == 0
        assert not errors, errors
    assert (tmp_path / "page.png").stat().st_size > 10_000

    # a server started with a texture default ticks the box and asks for that strength
    textured = Recording(model.inner)
    app = create_app(textured, model_name="tiny-random", texture=1.5)
    with running_server(app) as url, chromium_page() as page:
        inpaint_in_page(page, url + "/", src_path, STROKE, brush=20)
        assert page.is_checked("#texture") and textured.options[-1]["texture"] == 1.5
