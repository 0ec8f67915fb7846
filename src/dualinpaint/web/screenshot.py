"""Drive the page in a headless Chromium (Playwright): open a photo, brush a stroke, inpaint, and save a
screenshot. Used by the browser test and to (re)make ``docs/web-screenshot.png``:

    python -m dualinpaint.web.screenshot docs/web-screenshot.png --model runs/photo
    python -m dualinpaint.web.screenshot docs/web-screenshot.png --random-tiny   # untrained, for layout

Needs ``pip install playwright`` and a Chromium binary (Debian: ``apt-get install chromium``); never
``playwright install``, which downloads browsers.
"""

import argparse
import base64
import io
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from PIL import Image

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# A zig-zag over the name badge on the astronaut's chest (skimage.data.astronaut(), 512×512).
ASTRONAUT_STROKE = [(276, 343), (332, 343), (330, 356), (278, 356), (280, 369), (330, 370)]


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1280, 800), executable: str = CHROMIUM) -> Iterator[Any]:
    """A Playwright page in Debian's headless Chromium (sync API)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": viewport[0], "height": viewport[1]})
            yield page
        finally:
            browser.close()


def inpaint_in_page(
    page: Any,
    url: str,
    image: str | os.PathLike,
    stroke: Sequence[tuple[float, float]],
    *,
    brush: int = 14,
    timeout_ms: int = 60_000,
) -> Image.Image:
    """Open ``url``, load ``image``, brush ``stroke`` (image pixels) with the mouse, press Inpaint and
    return the result the page offers for download. Raises ``RuntimeError`` with the page's message
    when the page shows an error instead of a result."""
    page.goto(url)
    page.wait_for_function("document.getElementById('model-info').textContent.startsWith('model')")
    page.set_input_files("#file-input", str(image))
    page.wait_for_selector("#canvas-wrap:not([hidden])")
    page.fill("#brush-size", str(brush))  # range inputs take fill(); fires the input event
    page.dispatch_event("#brush-size", "input")
    width, height = Image.open(image).size
    box = page.locator("#canvas").bounding_box()

    def screen(p: tuple[float, float]) -> tuple[float, float]:
        return box["x"] + p[0] * box["width"] / width, box["y"] + p[1] * box["height"] / height

    page.mouse.move(*screen(stroke[0]))
    page.mouse.down()
    for point in stroke[1:]:
        page.mouse.move(*screen(point), steps=8)
    page.mouse.up()
    page.mouse.move(box["x"] + box["width"] + 40, box["y"] + 10)  # no brush cursor in screenshots
    page.click("#inpaint-btn")
    page.wait_for_function(
        "document.getElementById('busy').hidden && "
        "(!document.getElementById('result-panel').hidden || !document.getElementById('message').hidden)",
        timeout=timeout_ms,
    )
    if page.locator("#result-panel").is_hidden():
        raise RuntimeError(f"the page shows an error: {page.text_content('#message')}")
    page.wait_for_function("document.getElementById('result-img').complete")
    b64 = page.evaluate(
        """async () => {
            const resp = await fetch(document.getElementById('download-link').href);
            const bytes = new Uint8Array(await resp.arrayBuffer());
            let s = '';
            for (let i = 0; i < bytes.length; i += 0x8000) {
                s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
            }
            return btoa(s);
        }"""
    )
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def take_screenshot(
    out_png: str | os.PathLike,
    model: Any = "default",
    *,
    image: str | os.PathLike | None = None,
    stroke: Sequence[tuple[float, float]] | None = None,
    viewport: tuple[int, int] = (1280, 800),
    executable: str = CHROMIUM,
    model_name: str | None = None,
) -> Path:
    """Screenshot of the page after one inpaint, written to ``out_png``.

    ``model``: a packaged model name, run folder or .safetensors file, or an ``Inpainter``. ``image``
    defaults to scikit-image's astronaut (512×512) with ``stroke`` over the name badge. ``model_name``:
    the label the page shows (default: the model argument).
    """
    from ..inference import Inpainter
    from .app import create_app, running_server

    inpainter = model if hasattr(model, "fill") else Inpainter.from_pretrained(model)
    name = model_name or ("custom" if hasattr(model, "fill") else str(model))
    with tempfile.TemporaryDirectory() as tmp:
        if image is None:
            from skimage.data import astronaut

            image = Path(tmp) / "astronaut.png"
            Image.fromarray(astronaut()).save(image)
            stroke = stroke or ASTRONAUT_STROKE
        if not stroke:
            raise ValueError("give the stroke (image pixels) to brush over your own image")
        out = Path(out_png)
        out.parent.mkdir(parents=True, exist_ok=True)
        app = create_app(inpainter, model_name=name)
        with running_server(app) as url, chromium_page(viewport, executable) as page:
            inpaint_in_page(page, url + "/", image, stroke)
            page.screenshot(path=str(out), full_page=True)
    return out


def _random_tiny() -> Any:
    from ..config import load_config
    from ..generator import DualPathInpainter
    from ..inference import Inpainter

    cfg = load_config("tiny")
    return Inpainter(DualPathInpainter(cfg.model).eval(), cfg)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m dualinpaint.web.screenshot", description=__doc__.split("\n")[0]
    )
    p.add_argument("out", help="PNG to write, e.g. docs/web-screenshot.png")
    p.add_argument("--model", default="default", help="packaged model name, run folder or .safetensors file")
    p.add_argument("--random-tiny", action="store_true", help="an untrained tiny model (layout only)")
    p.add_argument("--chromium", default=CHROMIUM, help=f"Chromium binary (default {CHROMIUM})")
    args = p.parse_args(argv)
    model = _random_tiny() if args.random_tiny else args.model
    name = "tiny (untrained)" if args.random_tiny else None
    print(f"wrote {take_screenshot(args.out, model, executable=args.chromium, model_name=name)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
