"""The web app: POST /api/inpaint end to end with a tiny random model, limits, bad requests, warnings,
concurrency against a live uvicorn, and the static page (no external URLs)."""

import argparse
import base64
import io
import json
import re
import struct
import sys
import threading
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'dualinpaint[web]'")
try:
    import python_multipart  # noqa: F401
except ImportError:
    pytest.importorskip("multipart", reason="python-multipart is missing: pip install 'dualinpaint[web]'")

with warnings.catch_warnings():  # starlette ≥ 1.x nudges TestClient users from httpx to httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient  # noqa: E402

from dualinpaint.config import load_config  # noqa: E402
from dualinpaint.generator import DualPathInpainter  # noqa: E402
from dualinpaint.inference import Inpainter  # noqa: E402
from dualinpaint.web import app as web  # noqa: E402

W, H = 96, 80
HOLE = (slice(20, 50), slice(30, 62))  # rows, cols
HEADER = web.WARNINGS_HEADER
CAP = 256 * 1024  # the client fixture's max_upload_bytes
TOO_LARGE = "upload too large: the limit is 256 KB for image and mask together"


@pytest.fixture(scope="module")
def inpainter() -> Inpainter:
    torch.manual_seed(0)
    cfg = load_config("tiny")
    return Inpainter(DualPathInpainter(cfg.model).eval(), cfg)


@pytest.fixture(scope="module")
def client(inpainter: Inpainter) -> TestClient:
    app = web.create_app(inpainter, max_upload_bytes=CAP, max_pixels=200_000, model_name="tiny-random")
    return TestClient(app)


def photo(mode: str = "RGB", size: tuple[int, int] = (W, H)) -> Image.Image:
    """Gradients and blocks: a photo-like image whose hole content the model cannot reproduce exactly."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w]
    rgb = np.stack([xx * 255 // max(1, w - 1), yy * 255 // max(1, h - 1), (xx // 8 + yy // 8) % 2 * 200], -1)
    im = Image.fromarray(rgb.astype(np.uint8), "RGB")
    if mode == "RGBA":
        im.putalpha(Image.fromarray(((xx + yy) * 3 % 256).astype(np.uint8), "L"))
    elif mode != "RGB":
        im = im.convert(mode)
    return im


def mask_image(size: tuple[int, int] = (W, H), hole=HOLE, invert: bool = False) -> Image.Image:
    arr = np.zeros((size[1], size[0]), np.uint8)
    arr[hole] = 255
    return Image.fromarray(255 - arr if invert else arr, "L")


def png(im: Image.Image, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, "PNG", **params)
    return buf.getvalue()


def post(
    client, image=None, mask=None, data=None, params=None, image_type="image/png", mask_type="image/png"
):
    files = {
        "image": ("photo.png", png(photo()) if image is None else image, image_type),
        "mask": ("mask.png", png(mask_image()) if mask is None else mask, mask_type),
    }
    return client.post("/api/inpaint", files=files, data=data or {}, params=params or {})


def decode(content: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(content))
    im.load()
    return im


def hole_bool(size: tuple[int, int] = (W, H)) -> np.ndarray:
    return np.asarray(mask_image(size)) > 127


# ------------------------------------------------------------------------------------------ good requests


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L"])
def test_inpaint_returns_png_same_size_mode_and_untouched_outside(client, mode):
    src = photo(mode)
    r = post(client, image=png(src))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "image/png"
    assert HEADER not in r.headers
    out = decode(r.content)
    assert out.size == src.size and out.mode == src.mode
    a, b = np.asarray(out), np.asarray(src)
    hole = hole_bool()
    assert np.array_equal(a[~hole], b[~hole])  # bit-identical outside the hole
    changed = (a[hole] != b[hole]).reshape(hole.sum(), -1).any(axis=1)
    assert changed.mean() > 0.5
    if mode == "RGBA":
        assert np.array_equal(a[..., 3], b[..., 3])  # alpha kept everywhere


def test_samples_return_json_with_different_images(client):
    r = post(client, data={"samples": "3", "seed": "7"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    body = r.json()
    assert body["seed"] == 7 and body["warnings"] == [] and (body["width"], body["height"]) == (W, H)
    images = [np.asarray(decode(base64.b64decode(s))) for s in body["images"]]
    assert len(images) == 3
    hole, src = hole_bool(), np.asarray(photo())
    for i, a in enumerate(images):
        assert a.shape == (H, W, 3) and np.array_equal(a[~hole], src[~hole])
        for b in images[i + 1 :]:
            assert not np.array_equal(a[hole], b[hole])
    again = post(client, data={"samples": "3", "seed": "7"}).json()["images"]
    assert again == body["images"]  # a seed reproduces the samples


def test_format_json_for_one_sample_and_format_errors(client):
    r = post(client, params={"format": "json"})
    assert r.status_code == 200 and len(r.json()["images"]) == 1
    assert post(client, data={"samples": "2"}, params={"format": "png"}).status_code == 422
    assert post(client, params={"format": "gif"}).status_code == 422


def test_texture_changes_only_the_hole_and_is_deterministic(client):
    plain = np.asarray(decode(post(client).content))
    r = post(client, data={"texture": "1"})
    assert r.status_code == 200, r.text
    textured = np.asarray(decode(r.content))
    src, hole = np.asarray(photo()), hole_bool()
    assert np.array_equal(textured[~hole], src[~hole])
    assert not np.array_equal(textured[hole], plain[hole])  # the checkerboard's edges come in
    assert post(client, data={"texture": "1"}).content == r.content
    assert post(client, data={"texture": "0"}).content == post(client).content


def test_adapt_field_fills_with_an_adapted_copy(client, inpainter):
    """``adapt=N``: the fill of a copy tuned for N steps on the photo's known pixels, as
    ``Inpainter.fill(adapt_steps=N)`` gives it (seeded: the same twice); the served network is not
    changed by it."""
    before = [p.detach().clone() for p in inpainter.net.parameters()]
    r = post(client, data={"adapt": "2"})
    assert r.status_code == 200, r.text
    expected = inpainter.fill(photo(), mask_image(), adapt_steps=2)[0]
    assert np.array_equal(np.asarray(decode(r.content)), np.asarray(expected))
    assert post(client, data={"adapt": "2"}).content == r.content != post(client).content
    assert all(torch.equal(a, b) for a, b in zip(before, inpainter.net.parameters(), strict=True))


def test_server_texture_default(inpainter):
    """create_app(texture=S): requests without the field get texture S, "0" turns it off; /api/health
    says so (the page ticks its box from it); a bad default is refused before anything is served."""
    textured = TestClient(web.create_app(inpainter, model_name="tiny-random", texture=1.0))
    plain = TestClient(web.create_app(inpainter, model_name="tiny-random"))
    assert textured.get("/api/health").json()["defaults"] == {"texture": 1.0}
    assert plain.get("/api/health").json()["defaults"] == {"texture": 0.0}
    assert post(textured).content == post(plain, data={"texture": "1"}).content != post(plain).content
    assert post(textured, data={"texture": "0"}).content == post(plain).content
    for bad in (-1.0, 3.0, float("nan")):
        with pytest.raises(ValueError, match="texture="):
            web.create_app(inpainter, texture=bad)


def test_invert_and_dilate(client):
    normal = post(client)
    inverted = post(client, mask=png(mask_image(invert=True)), data={"invert": "true"})
    assert inverted.status_code == 200 and inverted.content == normal.content
    grown = np.asarray(decode(post(client, data={"dilate": "3"}).content))
    src, hole = np.asarray(photo()), hole_bool()
    ring = np.zeros_like(hole)
    ring[17:53, 27:65] = True
    ring &= ~hole
    assert (grown[ring] != src[ring]).any()  # the 3-px ring around the hole is filled too
    outer = np.ones_like(hole)
    outer[17:53, 27:65] = False
    assert np.array_equal(grown[outer], src[outer])


# ------------------------------------------------------------------------------------------------ warnings


def test_mask_size_mismatch_is_resized_with_a_warning_header(client):
    r = post(client, mask=png(mask_image().resize((W // 2, H // 2), Image.Resampling.NEAREST)))
    assert r.status_code == 200, r.text
    msgs = json.loads(r.headers[HEADER])
    assert len(msgs) == 1 and "resized" in msgs[0] and "48x40" in msgs[0]
    assert decode(r.content).size == (W, H)


def test_polarity_and_empty_mask_warnings(client):
    mostly = post(client, mask=png(mask_image(invert=True)))
    assert mostly.status_code == 200 and "inverted" in mostly.headers[HEADER]
    empty = post(client, mask=png(Image.new("L", (W, H))))
    assert empty.status_code == 200 and "no hole" in empty.headers[HEADER]
    assert np.array_equal(np.asarray(decode(empty.content)), np.asarray(photo()))


def test_exif_orientation_applied_to_image_and_mask(client):
    stored = photo(size=(60, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display: 60×40 stored, 40×60 shown
    mask = mask_image((60, 40), hole=(slice(10, 25), slice(5, 30)))
    r = post(client, image=png(stored, exif=exif), mask=png(mask, exif=exif))
    assert r.status_code == 200 and HEADER not in r.headers  # mask rotated too: sizes match
    out = decode(r.content)
    assert out.size == (40, 60)
    assert out.getexif().get(0x0112) in (None, 1)  # not rotated a second time by viewers
    shown = np.asarray(ImageOps.exif_transpose(Image.open(io.BytesIO(png(stored, exif=exif)))))
    hole = np.asarray(mask.transpose(Image.Transpose.ROTATE_270)) > 127
    a = np.asarray(out)
    assert np.array_equal(a[~hole], shown[~hole]) and (a[hole] != shown[hole]).any()


# ------------------------------------------------------------------------------------------- bad requests


def png_header(width: int, height: int) -> bytes:
    """A PNG declaring ``width``×``height`` whose pixel data is a few bytes: it opens, but cannot decode."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 16))


def test_upload_too_large_is_413_declared_or_streamed(client):
    big = png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), dtype=np.uint8)))
    assert len(big) > CAP
    r = post(client, image=big)
    assert r.status_code == 413 and r.json()["detail"] == TOO_LARGE

    def chunks():  # no Content-Length: the cap is enforced on the bytes actually read
        for _ in range(40):
            yield b"x" * 10_000

    r = client.post(
        "/api/inpaint", content=chunks(), headers={"content-type": "multipart/form-data; boundary=b"}
    )
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and r.json()["detail"] == TOO_LARGE
    assert post(client).status_code == 200


def body_of_size(total: int, boundary: str = "capcapcap") -> bytes:
    """A valid multipart request body of exactly ``total`` bytes: the image, the mask and a text field
    ``pad`` (ignored by the server) that makes up the size."""
    parts = b""
    for name, data in (("image", png(photo())), ("mask", png(mask_image()))):
        parts += (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
                "Content-Type: image/png\r\n\r\n"
            ).encode()
            + data
            + b"\r\n"
        )
    pad_head = f'--{boundary}\r\nContent-Disposition: form-data; name="pad"\r\n\r\n'.encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    room = total - len(parts) - len(pad_head) - len(tail)
    assert room >= 0
    body = parts + pad_head + b"x" * room + tail
    assert len(body) == total
    return body


@pytest.mark.parametrize("how", ["content-length", "streamed"])
def test_a_body_exactly_at_the_cap_is_accepted_one_byte_more_is_413(client, how):
    """The cap is inclusive, for the declared length (the pre-check) and for the bytes actually read
    (streamed without Content-Length: only the read check applies)."""
    headers = {"content-type": "multipart/form-data; boundary=capcapcap"}

    def send(body: bytes):
        if how == "content-length":
            return client.post("/api/inpaint", content=body, headers=headers)
        chunks = (body[i : i + 50_000] for i in range(0, len(body), 50_000))
        r = client.post("/api/inpaint", content=chunks, headers=headers)
        assert "content-length" not in r.request.headers
        return r

    at_cap = send(body_of_size(CAP))
    assert at_cap.status_code == 200, at_cap.text
    assert np.array_equal(np.asarray(decode(at_cap.content))[~hole_bool()], np.asarray(photo())[~hole_bool()])
    over = send(body_of_size(CAP + 1))
    assert over.status_code == 413 and over.json()["detail"] == TOO_LARGE


def test_declared_content_length_is_checked_before_reading_the_body(client):
    """The Content-Length pre-check on its own: a request declaring one byte over the cap is refused
    without reading a byte of its (short) body; one declaring exactly the cap is read and served."""
    read = []

    def body(data: bytes):
        read.append(len(data))
        yield data

    headers = {"content-type": "multipart/form-data; boundary=capcapcap", "content-length": str(CAP + 1)}
    small = body_of_size(4000)
    r = client.post("/api/inpaint", content=body(small), headers=headers)
    assert r.request.headers["content-length"] == str(CAP + 1)
    assert r.status_code == 413 and r.json()["detail"] == TOO_LARGE
    assert read == []  # refused on the header alone
    # the same short body declared at the cap passes the pre-check (and is read: it is a good request)
    r = client.post("/api/inpaint", content=body(small), headers={**headers, "content-length": str(CAP)})
    assert r.status_code == 200 and read == [len(small)]


def test_too_many_pixels_refused_before_decoding(client):
    # 1000×1000 declared, no pixel data: decoding would fail, the header check must answer first
    r = post(client, image=png_header(1000, 1000))
    assert r.status_code == 413 and "1000×1000" in r.json()["detail"] and "0.2 MP" in r.json()["detail"]
    r = post(client, mask=png_header(1000, 1000))
    assert r.status_code == 413 and r.json()["detail"].startswith("mask")
    bomb = post(client, image=png_header(30_000, 30_000))  # Pillow's own decompression-bomb guard
    assert bomb.status_code == 413


def test_corrupt_file_then_next_request_succeeds(client):
    good = png(photo())
    r = post(client, image=good[: len(good) // 2])
    assert r.status_code == 422 and "truncated" in r.json()["detail"]
    r = post(client, image=b"\x89PNG\r\n\x1a\n" + b"\0" * 50)  # PNG magic, no IHDR: not identifiable
    assert r.status_code == 415 and "not an image this server reads" in r.json()["detail"]
    assert post(client).status_code == 200


@pytest.mark.parametrize(
    "kwargs, status, words",
    [
        ({"image": b"just some text, not a picture"}, 415, "not an image"),
        ({"image_type": "text/plain"}, 415, "content type"),
        ({"mask_type": "application/json"}, 415, "mask"),
        ({"image": b""}, 422, "empty"),
    ],
)
def test_not_an_image_is_a_clear_4xx(client, kwargs, status, words):
    r = post(client, **kwargs)
    assert r.status_code == status and words in r.json()["detail"]


def test_wrong_body_types_and_malformed_multipart(client):
    r = client.post("/api/inpaint", content=b"hello", headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]
    assert client.post("/api/inpaint", json={"image": "x"}).status_code == 415
    r = client.post("/api/inpaint", content=b"hello", headers={"content-type": "multipart/form-data"})
    assert r.status_code == 400 and "multipart" in r.json()["detail"]
    r = client.post(
        "/api/inpaint", content=b"garbage", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert r.status_code == 400 and r.json()["detail"].startswith("malformed multipart body")
    only_image = client.post("/api/inpaint", files={"image": ("a.png", png(photo()), "image/png")})
    assert only_image.status_code == 422 and "'mask'" in only_image.json()["detail"]
    as_text = client.post(
        "/api/inpaint", data={"image": "abc"}, files={"mask": ("m.png", png(mask_image()), "image/png")}
    )
    assert as_text.status_code == 422 and "file upload" in as_text.json()["detail"]
    assert client.get("/api/inpaint").status_code == 405


@pytest.mark.parametrize(
    "field, value",
    [
        ("samples", "0"),
        ("samples", "9"),
        ("samples", "two"),
        ("dilate", "65"),
        ("invert", "maybe"),
        ("texture", "-1"),
        ("texture", "2.5"),
        ("texture", "nan"),
        ("texture", "much"),
        ("adapt", "-1"),
        ("adapt", "101"),
        ("adapt", "3.5"),
    ],
)
def test_bad_option_values_are_422(client, field, value):
    r = post(client, data={field: value})
    assert r.status_code == 422 and field in r.json()["detail"]


def test_sample_budget_and_file_as_option(client):
    big = photo(size=(400, 300))  # 0.12 MP: within 0.2 MP, but 4 samples exceed 2 × 0.2 MP
    r = post(client, image=png(big), mask=png(mask_image((400, 300))), data={"samples": "4"})
    assert r.status_code == 413 and "fewer" in r.json()["detail"]
    files = {
        "image": ("p.png", png(photo()), "image/png"),
        "mask": ("m.png", png(mask_image()), "image/png"),
        "samples": ("s.txt", b"3", "text/plain"),
    }
    r = client.post("/api/inpaint", files=files)
    assert r.status_code == 422 and "samples" in r.json()["detail"]


def test_model_failure_is_a_500_json_and_factory_is_lazy(inpainter):
    class Broken:
        def fill(self, *a, **kw):
            raise RuntimeError("boom")

    c = TestClient(web.create_app(Broken()), raise_server_exceptions=False)
    r = post(c)
    assert r.status_code == 500 and "boom" in r.json()["detail"]

    calls = []
    app = web.create_app(lambda: calls.append(1) or inpainter, model_name="lazy")
    c = TestClient(app)
    assert c.get("/api/health").json()["loaded"] is False and calls == []
    assert post(c).status_code == 200 and post(c).status_code == 200
    assert calls == [1] and c.get("/api/health").json()["loaded"] is True


# ------------------------------------------------------------------------------------- concurrency (live)


def test_parallel_requests_against_live_server(inpainter):
    import httpx

    before = warnings.showwarning
    app = web.create_app(inpainter, workers=2)
    results: dict[int, httpx.Response] = {}
    with web.running_server(app) as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, timeout=60) as http:
            bad = http.post("/api/inpaint", files={"image": ("x.png", b"nope", "image/png")})
            assert bad.status_code == 422

            def one(i: int) -> None:
                mask = mask_image() if i % 2 else mask_image().resize((W // 2, H // 2))
                files = {
                    "image": ("p.png", png(photo()), "image/png"),
                    "mask": ("m.png", png(mask), "image/png"),
                }
                results[i] = http.post("/api/inpaint", files=files)

            threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            assert http.get("/api/health").json()["status"] == "ok"
    assert sorted(results) == list(range(8))
    for i, r in results.items():
        assert r.status_code == 200, r.text
        assert decode(r.content).size == (W, H)
        # each request gets its own warnings, none of another thread's
        assert (HEADER.lower() in r.headers) == (i % 2 == 0), (i, r.headers.get(HEADER))
    assert warnings.showwarning is before


# ----------------------------------------------------------------------------------- page, health, docs


def test_health_models_page_static_and_openapi(client):
    h = client.get("/api/health").json()
    assert h["status"] == "ok" and h["model"] == "tiny-random" and h["version"]
    assert h["limits"]["max_pixels"] == 200_000
    m = client.get("/api/models").json()
    assert m["loaded"] == "tiny-random" and isinstance(m["packaged"], list)
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for element in ("file-input", "canvas", "inpaint-btn", "result-img", "download-link", "busy"):
        assert f'id="{element}"' in page.text
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200
    assert client.get("/static/nope.js").status_code == 404
    spec = client.get("/openapi.json").json()
    body = spec["paths"]["/api/inpaint"]["post"]["requestBody"]["content"]["multipart/form-data"]
    assert {"image", "mask", "samples", "seed", "dilate", "invert"} <= set(body["schema"]["properties"])
    assert client.get("/docs").status_code == 200


def test_docs_page_is_served_offline(client):
    pytest.importorskip("swagger_ui_bundle", reason="swagger-ui-bundle (extra 'web') not installed")
    docs = client.get("/docs")
    assert docs.status_code == 200
    scripts = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert scripts and not [u for u in scripts if re.match(r"https?://|//", u)], scripts
    for url in scripts:
        asset = client.get(url)
        assert asset.status_code == 200 and len(asset.content) > 500, url


def test_static_files_reference_no_external_urls():
    files = sorted(web.STATIC_DIR.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "style.css"}
    for f in files:
        text = f.read_text()
        assert not re.search(r"https?://|//cdn|@import", text, re.I), f"{f.name} loads something external"
        assert not re.search(r"""(src|href)=["']//""", text), f.name


# ---------------------------------------------------------------------------------------------------- CLI


def test_serve_arguments_and_errors(monkeypatch, tmp_path: Path):
    parser = argparse.ArgumentParser()
    web.add_serve_arguments(parser)
    args = parser.parse_args([])
    assert (args.host, args.port, args.model, args.max_upload_mb, args.max_megapixels, args.workers) == (
        "127.0.0.1",
        8080,
        "default",
        20,
        40,
        1,
    )
    with pytest.raises(ValueError, match="no model"):
        web.serve_command(parser.parse_args(["--model", str(tmp_path / "missing"), "--port", "8123"]))
    with pytest.raises(ValueError, match="port"):
        web.serve_command(parser.parse_args(["--port", "70000"]))
    assert args.device == "cpu"
    if not torch.cuda.is_available():  # --device reaches the Inpainter: a one-line error, nothing served
        with pytest.raises(ValueError, match="cuda"):
            web.serve_command(parser.parse_args(["--device", "cuda", "--port", "8124"]))
    assert args.texture == 0.0 and parser.parse_args(["--texture"]).texture == 1.0
    with pytest.raises(ValueError, match="--texture 5"):
        web.serve_command(parser.parse_args(["--texture", "5", "--port", "8125"]))
    monkeypatch.setitem(sys.modules, "fastapi", None)
    with pytest.raises(ValueError, match=re.escape("pip install 'dualinpaint[web]'")):
        web.serve_command(parser.parse_args(["--port", "8081"]))
    assert web._is_loopback("127.0.0.1") and web._is_loopback("::1") and not web._is_loopback("0.0.0.0")
