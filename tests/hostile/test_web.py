"""The web app (``create_app``) under hostile requests: oversized, mistyped, malformed, corrupt, many at once
and abandoned half-way. Each bad request gets a 4xx whose ``detail`` is one readable line; the server stays
up and fills the next good request correctly."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import warnings

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("fastapi", reason="the web extra is not installed: pip install 'dualinpaint[web]'")
pytest.importorskip("httpx", reason="httpx is needed to talk to the test server")

with warnings.catch_warnings():  # starlette nudges TestClient users from httpx to httpx2
    warnings.filterwarnings("ignore", message=".*httpx2")
    from fastapi.testclient import TestClient

import httpx  # noqa: E402

from dualinpaint.web import app as web  # noqa: E402

from .conftest import (  # noqa: E402
    assert_outside_identical,
    encoded,
    grey_edge_mask,
    hole_array,
    mask_image,
    photo,
)
from .test_images import UNREADABLE, png_header_only  # noqa: E402

CAP_BYTES = 200 * 1024
CAP_PIXELS = 100_000


@pytest.fixture(scope="module")
def app(inpainter):
    return web.create_app(inpainter, max_upload_bytes=CAP_BYTES, max_pixels=CAP_PIXELS, workers=2)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app, raise_server_exceptions=False)


def files_of(
    image: bytes | None = None, mask: bytes | None = None, image_type="image/png", mask_type="image/png"
):
    return {
        "image": ("photo.png", encoded(photo()) if image is None else image, image_type),
        "mask": ("mask.png", encoded(mask_image()) if mask is None else mask, mask_type),
    }


def assert_good_fill(response) -> None:
    """200, a PNG of the input's size, outside the hole identical, the hole filled (all of it)."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    out = np.asarray(Image.open(io.BytesIO(response.content)).convert("RGB"))
    assert_outside_identical(np.asarray(photo()), out, hole_array())


def assert_clean_4xx(response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail, detail
    for w in words:
        assert w in detail, (w, detail)


def big_noise_png() -> bytes:
    data = encoded(Image.fromarray(np.random.default_rng(0).integers(0, 256, (300, 300, 3), np.uint8)))
    assert len(data) > CAP_BYTES
    return data


def chunked(total: int):
    for _ in range(total // 10_000):
        yield b"-" * 10_000


# (request maker, status, words in the one-line detail); each is followed by a good request
BAD_REQUESTS = {
    "oversized-declared": (
        lambda c: c.post("/api/inpaint", files=files_of(image=big_noise_png())),
        413,
        ["too large"],
    ),
    "oversized-streamed": (
        lambda c: c.post(
            "/api/inpaint",
            content=chunked(400_000),
            headers={"content-type": "multipart/form-data; boundary=zz"},
        ),
        413,
        ["too large"],
    ),
    "too-many-pixels": (
        lambda c: c.post("/api/inpaint", files=files_of(image=png_header_only(1000, 1000, colour=2))),
        413,
        ["1000×1000", "0.1 MP"],
    ),
    "pillow-bomb": (
        lambda c: c.post("/api/inpaint", files=files_of(mask=png_header_only(40_000, 40_000))),
        413,
        ["mask", "too large"],
    ),
    "json-body": (lambda c: c.post("/api/inpaint", json={"image": "aGk="}), 415, ["multipart/form-data"]),
    "text-body": (
        lambda c: c.post("/api/inpaint", content=b"hi", headers={"content-type": "text/plain"}),
        415,
        ["multipart/form-data", "text/plain"],
    ),
    "image-part-typed-text": (
        lambda c: c.post("/api/inpaint", files=files_of(image_type="text/plain")),
        415,
        ["image", "content type 'text/plain'"],
    ),
    "mask-part-typed-json": (
        lambda c: c.post("/api/inpaint", files=files_of(mask_type="application/json")),
        415,
        ["mask"],
    ),
    "multipart-without-boundary": (
        lambda c: c.post("/api/inpaint", content=b"x", headers={"content-type": "multipart/form-data"}),
        400,
        ["malformed multipart"],
    ),
    "multipart-garbage": (
        lambda c: c.post(
            "/api/inpaint",
            content=b"--b\r\nthis is not a part header\r\n\r\n\x00\x01",
            headers={"content-type": "multipart/form-data; boundary=b"},
        ),
        400,
        ["malformed multipart"],
    ),
    "multipart-without-parts": (
        lambda c: c.post(
            "/api/inpaint", content=b"--b--\r\n", headers={"content-type": "multipart/form-data; boundary=b"}
        ),
        422,
        ["missing the 'image' file"],
    ),
    "bad-content-length": (
        lambda c: c.post(
            "/api/inpaint",
            content=b"abc",
            headers={"content-type": "multipart/form-data; boundary=b", "content-length": "lots"},
        ),
        400,
        ["Content-Length"],
    ),
    "image-as-text-field": (
        lambda c: c.post(
            "/api/inpaint",
            data={"image": "abc"},
            files={"mask": ("m.png", encoded(mask_image()), "image/png")},
        ),
        422,
        ["file upload"],
    ),
    "too-many-files": (
        lambda c: c.post(
            "/api/inpaint",
            files=[("image", ("a.png", b"1", "image/png")) for _ in range(6)]
            + [("mask", ("m.png", b"1", "image/png"))],
        ),
        400,
        ["malformed multipart"],
    ),
    **{
        f"image-{kind}": (
            lambda c, make=make: c.post("/api/inpaint", files=files_of(image=make())),
            415 if kind in ("text-named-png",) else 422,
            ["image"],
        )
        for kind, (_, make, _) in UNREADABLE.items()
        if kind != "png-magic-then-garbage"
    },
    "mask-truncated-png": (
        lambda c: c.post("/api/inpaint", files=files_of(mask=encoded(mask_image())[:60])),
        422,
        ["mask", "truncated"],
    ),
}


@pytest.mark.parametrize("kind", list(BAD_REQUESTS))
def test_bad_request_is_a_one_line_4xx_and_the_next_request_works(client, kind):
    """Outcome: clean one-line error (4xx JSON); then a correct result for a good request."""
    make, status, words = BAD_REQUESTS[kind]
    assert_clean_4xx(make(client), status, *words)
    assert_good_fill(client.post("/api/inpaint", files=files_of()))


def test_grey_mask_upload_is_thresholded_at_127(client):
    """Outcome: correct result; in an uploaded mask 128 is a hole and 127 is not."""
    mask = Image.fromarray(grey_edge_mask(), "L")
    assert_good_fill(client.post("/api/inpaint", files=files_of(mask=encoded(mask))))


def test_animated_gif_upload_uses_the_first_frame_and_says_so(client):
    """Outcome: warning (response header) + result from the first frame."""
    frames = [photo(), photo(seed=5)]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    r = client.post("/api/inpaint", files=files_of(image=buf.getvalue(), image_type="image/gif"))
    assert r.status_code == 200
    notes = json.loads(r.headers[web.WARNINGS_HEADER])
    assert any("has 2 frames; using the first" in n for n in notes), notes
    first = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
    out = np.asarray(Image.open(io.BytesIO(r.content)).convert("RGB"))
    assert np.array_equal(out[~hole_array()], first[~hole_array()])


# ------------------------------------------------------------------------------------------- live server


def multipart_body(boundary: str = "hostile") -> bytes:
    parts = []
    for name, data in (("image", encoded(photo())), ("mask", encoded(mask_image()))):
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}.png"\r\n'
            "Content-Type: image/png\r\n\r\n".encode()
            + data
            + b"\r\n"
        )
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


def raw_request(url: str, body: bytes, send: int, declared: int | None = None, wait: float = 0.0) -> None:
    """Open a socket, send the headers and ``send`` bytes of ``body``, optionally wait, then hang up."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        head = (
            "POST /api/inpaint HTTP/1.1\r\nHost: test\r\n"
            "Content-Type: multipart/form-data; boundary=hostile\r\n"
            f"Content-Length: {len(body) if declared is None else declared}\r\n\r\n"
        )
        s.sendall(head.encode() + body[:send])
        time.sleep(wait)
        s.shutdown(socket.SHUT_RDWR)


@pytest.fixture(scope="module")
def live(app):
    with web.running_server(app) as url:
        yield url


def test_32_concurrent_requests(live):
    """Outcome: correct results for the 24 good requests, clean 4xx for the 8 bad ones, all answered."""
    results: dict[int, httpx.Response] = {}
    errors: list[BaseException] = []

    def one(i: int) -> None:
        try:
            with httpx.Client(base_url=live, timeout=120) as http:
                files = files_of() if i % 4 else files_of(image=b"not a picture")
                results[i] = http.post("/api/inpaint", files=files)
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=180)
    assert not errors, errors
    assert sorted(results) == list(range(32))
    for i, r in results.items():
        if i % 4:
            assert_good_fill(r)
        else:
            assert_clean_4xx(r, 415, "not an image")
    with httpx.Client(base_url=live, timeout=60) as http:
        assert http.get("/api/health").json()["status"] == "ok"


@pytest.mark.parametrize(
    "moment",
    ["headers-only", "half-the-body", "whole-body-then-gone", "lying-content-length"],
)
def test_client_that_disconnects_mid_request(app, live, moment):
    """Outcome: the server shrugs it off: it stays up, frees its fill slots and fills the next request."""
    body = multipart_body()
    send, declared, wait = {
        "headers-only": (0, None, 0.0),
        "half-the-body": (len(body) // 2, None, 0.1),
        "whole-body-then-gone": (len(body), None, 0.0),  # the fill is running when the client leaves
        "lying-content-length": (len(body), len(body) * 3, 0.1),
    }[moment]
    for _ in range(3):  # more abandoned requests than fill slots (workers=2)
        raw_request(live, body, send, declared, wait)
    with httpx.Client(base_url=live, timeout=60) as http:
        assert http.get("/api/health").json()["status"] == "ok"
        assert_good_fill(http.post("/api/inpaint", files=files_of()))
    # every fill slot came back: both (workers=2) can be taken, once the abandoned fills have finished
    slots, taken = app.state.model.slots, []
    try:
        for _ in range(2):
            taken.append(slots.acquire(timeout=30))
    finally:
        for ok in taken:
            if ok:
                slots.release()
    assert taken == [True, True], "an abandoned request kept a fill slot"
