"""The web server: a FastAPI app around one ``Inpainter``, serving the brush page and a REST endpoint.

    GET  /                 the page (static/index.html; plain HTML/JS/CSS, works offline)
    GET  /static/...       its script and style sheet
    GET  /api/health       {"status": "ok", "model": …, "version": …, "limits": {…}}
    GET  /api/models       {"loaded": …, "packaged": […]}
    POST /api/inpaint      multipart: image file, mask file (white = hole), optional samples, seed, dilate,
                           feather, invert, texture, adapt → image/png (one sample) or JSON {"images":
                           [base64 PNG, …]}
    GET  /openapi.json     the schema; GET /docs renders it with Swagger UI, served from the installed
                           swagger-ui-bundle package (offline; without that package FastAPI's CDN page)

Uploads are checked before any pixel is decoded: the request body is capped (Content-Length, then the
bytes actually read), only common raster formats are opened, and the pixel count is read from the
header and capped before ``load()``. Bad requests get a 4xx with ``{"detail": "<one readable line>"}``.
Fills run in worker threads, at most ``workers`` at a time; the model's warnings (mask resized, mask
probably inverted, empty mask) come back in the ``X-Dualinpaint-Warnings`` header as a JSON list.
"""

import argparse
import base64
import ipaddress
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from .uploads import (
    MB,
    ROUTER,
    Upload,
    UploadError,
    bool_field,
    decode_upload,
    encode_png,
    float_field,
    header_value,
    int_field,
    size_text,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..inference import Inpainter


DEFAULT_MAX_UPLOAD_BYTES = 20 * MB
DEFAULT_MAX_PIXELS = 40_000_000
MAX_SAMPLES = 8
MAX_DILATE = 64
MAX_FEATHER = 64
MAX_TEXTURE = 2.0
MAX_ADAPT = 100  # per-photo adaptation steps: seconds per hole on a CPU
WARNINGS_HEADER = "X-Dualinpaint-Warnings"
STATIC_DIR = Path(__file__).parent / "static"
INSTALL_HINT = "the web server needs FastAPI and uvicorn: pip install 'dualinpaint[web]'"


# ----------------------------------------------------------------------------------------------------- app


class _Model:
    """The inpainter (built on first use when given a factory) and the bound on concurrent fills."""

    def __init__(self, source: "Inpainter | Callable[[], Inpainter]", workers: int) -> None:
        if workers < 1:
            raise ValueError(f"workers={workers} must be >= 1")
        self._inpainter = source if hasattr(source, "fill") else None
        self._factory = None if self._inpainter is not None else source
        self._load_lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(workers)

    @property
    def loaded(self) -> bool:
        return self._inpainter is not None

    def get(self) -> "Inpainter":
        if self._inpainter is None:
            with self._load_lock:
                if self._inpainter is None:
                    self._inpainter = self._factory()
        return self._inpainter

    def fill(self, image: Image.Image, mask: Image.Image, **kw: Any) -> tuple[list[Image.Image], list[str]]:
        """Run one fill (blocking; call from a worker thread). Returns (images, warning messages)."""
        with self.slots:
            inpainter = self.get()
            with ROUTER.collect() as caught:
                images = inpainter.fill(image, mask, **kw)
        return images, caught


def _require_fastapi() -> None:
    try:
        import fastapi  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    try:
        import python_multipart  # noqa: F401  (python-multipart >= 0.0.13)
    except ImportError:
        try:
            import multipart  # noqa: F401  (older python-multipart)
        except ImportError:
            raise ImportError(INSTALL_HINT) from None


_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["image", "mask"],
                "properties": {
                    "image": {"type": "string", "format": "binary", "description": "PNG, JPEG, WebP, …"},
                    "mask": {
                        "type": "string",
                        "format": "binary",
                        "description": "white = hole, black = keep; resized (nearest) if its size differs",
                    },
                    "samples": {"type": "integer", "minimum": 1, "maximum": MAX_SAMPLES, "default": 1},
                    "seed": {"type": "integer", "description": "default: deterministic fill (1 sample)"},
                    "dilate": {"type": "integer", "minimum": 0, "maximum": MAX_DILATE, "default": 0},
                    "feather": {"type": "integer", "minimum": 0, "maximum": MAX_FEATHER, "default": 0},
                    "invert": {"type": "boolean", "default": False, "description": "mask is black = hole"},
                    "texture": {
                        "type": "number",
                        "minimum": 0,
                        "maximum": MAX_TEXTURE,
                        "default": 0,
                        "description": "add texture copied from around the hole at this strength (1 = full)",
                    },
                    "adapt": {
                        "type": "integer",
                        "minimum": 0,
                        "maximum": MAX_ADAPT,
                        "default": 0,
                        "description": "fine-tune on the photo's own known pixels for this many steps first "
                        "(per-photo adaptation; seconds per hole)",
                    },
                },
            }
        }
    },
}
_ERROR = {"content": {"application/json": {"example": {"detail": "one readable line"}}}}
_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "image/png (one sample) or JSON {images: [base64 PNG], warnings: […]}",
        "content": {"image/png": {}, "application/json": {}},
        "headers": {WARNINGS_HEADER: {"description": "JSON list of warnings", "schema": {"type": "string"}}},
    },
    400: {"description": "malformed multipart body", **_ERROR},
    413: {"description": "upload too large (bytes or pixels)", **_ERROR},
    415: {"description": "not multipart, or a file that is not a readable image", **_ERROR},
    422: {"description": "missing field, bad value or corrupt image", **_ERROR},
}


def _swagger_assets() -> str | None:
    """Swagger UI's files from the ``swagger-ui-bundle`` package (so /docs works offline), or None."""
    try:
        from swagger_ui_bundle import swagger_ui_path
    except ImportError:
        return None
    path = Path(swagger_ui_path)
    return str(path) if (path / "swagger-ui-bundle.js").is_file() else None


def create_app(
    inpainter: "Inpainter | Callable[[], Inpainter]",
    *,
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int = 1,
    model_name: str | None = None,
    texture: float = 0.0,
) -> "FastAPI":
    """The FastAPI app serving ``inpainter`` (or a zero-argument factory called once, on first use).

    ``max_upload_bytes`` caps the whole request body (image + mask), ``max_pixels`` each image's
    width × height; ``workers`` is how many fills may run at once (further requests wait).
    ``texture``: the texture strength of requests that do not give one (reported by ``/api/health`` as
    ``defaults.texture``; the page's Texture box starts ticked when it is > 0).
    """
    _require_fastapi()
    from fastapi import FastAPI, Request
    from fastapi.responses import FileResponse, JSONResponse, Response
    from fastapi.staticfiles import StaticFiles
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    from .. import __version__

    if not 0 <= texture <= MAX_TEXTURE:
        raise ValueError(f"texture={texture} must be between 0 and {MAX_TEXTURE:g}")
    if max_upload_bytes < 1 or max_pixels < 1:
        raise ValueError(f"max_upload_bytes={max_upload_bytes} and max_pixels={max_pixels} must be >= 1")
    model = _Model(inpainter, workers)
    if model_name is None:
        model_name = "custom" if model.loaded else "default"
    limits = {
        "max_upload_bytes": max_upload_bytes,
        "max_pixels": max_pixels,
        "max_samples": MAX_SAMPLES,
        "max_dilate": MAX_DILATE,
        "max_texture": MAX_TEXTURE,
        "max_adapt": MAX_ADAPT,
        "workers": workers,
    }

    swagger_dir = _swagger_assets()
    app = FastAPI(
        title="dualinpaint",
        version=__version__,
        description="Remove objects from photos: paint a mask (white = hole), get the hole filled. "
        "Pixels outside the hole are returned unchanged.",
        docs_url=None if swagger_dir else "/docs",
    )
    app.state.model = model
    if swagger_dir:
        from fastapi.openapi.docs import get_swagger_ui_html
        from fastapi.responses import HTMLResponse

        app.mount("/docs-assets", StaticFiles(directory=swagger_dir), name="docs-assets")

        @app.get("/docs", include_in_schema=False)
        async def docs() -> HTMLResponse:
            return get_swagger_ui_html(
                openapi_url="/openapi.json",
                title="dualinpaint API",
                swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                swagger_css_url="/docs-assets/swagger-ui.css",
                swagger_favicon_url="/docs-assets/favicon-32x32.png",
            )

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, err: UploadError) -> JSONResponse:
        return JSONResponse({"detail": str(err)}, status_code=err.status)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, err: Exception) -> JSONResponse:
        return JSONResponse({"detail": f"internal error: {type(err).__name__}: {err}"}, status_code=500)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/health")
    async def health() -> dict[str, Any]:
        """Liveness, the model name, the package version and the upload limits."""
        return {
            "status": "ok",
            "model": model_name,
            "loaded": model.loaded,
            "version": __version__,
            "limits": limits,
            "defaults": {"texture": texture},
        }

    @app.get("/api/models")
    async def models() -> dict[str, Any]:
        """The loaded model and the models shipped inside the package."""
        from ..checkpoint import packaged_models

        return {"loaded": model_name, "packaged": packaged_models()}

    async def read_body(request: Request) -> bytes:
        """The request body, refusing more than ``max_upload_bytes`` (declared or actually sent)."""
        too_big = f"upload too large: the limit is {size_text(max_upload_bytes)} for image and mask together"
        declared = request.headers.get("content-length")
        if declared is not None:
            try:
                if int(declared) > max_upload_bytes:
                    raise UploadError(413, too_big)
            except ValueError:
                raise UploadError(400, f"bad Content-Length header {declared[:40]!r}") from None
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_upload_bytes:
                raise UploadError(413, too_big)
        return bytes(body)

    async def read_form(request: Request) -> tuple[dict[str, Any], dict[str, Upload]]:
        """The multipart form: its other fields and the 'image' and 'mask' files (read, then closed)."""
        ctype = request.headers.get("content-type", "")
        if not ctype.lower().startswith("multipart/form-data"):
            raise UploadError(
                415,
                f"send multipart/form-data with an 'image' and a 'mask' file, not {ctype.split(';')[0]!r}",
            )
        body = await read_body(request)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=4, max_fields=16)
        except HTTPException as err:
            raise UploadError(400, f"malformed multipart body: {err.detail}") from None
        except Exception as err:
            raise UploadError(400, f"malformed multipart body: {err}") from None
        try:
            fields = {k: v for k, v in form.items() if k not in ("image", "mask")}
            files = {}
            for name in ("image", "mask"):
                part = form.get(name)
                if part is None:
                    raise UploadError(422, f"missing the '{name}' file (multipart field '{name}')")
                if isinstance(part, str):
                    raise UploadError(422, f"'{name}' must be a file upload, not a text field")
                files[name] = Upload(await part.read(), part.filename, part.content_type)
        finally:
            await form.close()
        return fields, files

    @app.post(
        "/api/inpaint",
        openapi_extra={"requestBody": _REQUEST_BODY},
        responses=_RESPONSES,
        response_class=Response,
    )
    async def inpaint(request: Request, format: str = "auto") -> Response:
        """Fill the white area of ``mask`` in ``image``. The result has the input's size and mode (alpha
        kept); pixels outside the hole are identical to the input."""
        if format not in ("auto", "png", "json"):
            raise UploadError(422, f"format must be auto, png or json, got {format[:20]!r}")
        form, files = await read_form(request)
        samples = int_field(form, "samples", 1, 1, MAX_SAMPLES)
        options = {
            "samples": samples,
            "seed": int_field(form, "seed", None, 0, 2**63 - 1),
            "dilate": int_field(form, "dilate", 0, 0, MAX_DILATE),
            "feather": int_field(form, "feather", 0, 0, MAX_FEATHER),
            "invert": bool_field(form, "invert"),
            "texture": float_field(form, "texture", texture, 0.0, MAX_TEXTURE),
            "adapt_steps": int_field(form, "adapt", 0, 0, MAX_ADAPT),
        }
        if format == "png" and samples > 1:
            raise UploadError(422, "format=png returns one image: ask for samples=1 or format=json")

        def work() -> tuple[list[bytes], list[str], tuple[int, int]]:
            with ROUTER.collect() as notes:  # decoding warns too (an animation's first frame)
                image, mask = (
                    decode_upload(
                        files[name].data,
                        field=name,
                        filename=files[name].filename,
                        content_type=files[name].content_type,
                        max_pixels=max_pixels,
                    )
                    for name in ("image", "mask")
                )
            if samples > 1 and samples * image.width * image.height > 2 * max_pixels:
                raise UploadError(
                    413,
                    f"{samples} samples of a {image.width}×{image.height} image are too many for this "
                    f"server (samples × pixels ≤ {2 * max_pixels / 1e6:g} MP): ask for fewer",
                )
            try:
                images, caught = model.fill(image, mask, **options)
            except ValueError as err:
                raise UploadError(422, str(err)) from None
            return [encode_png(im) for im in images], notes + caught, image.size

        pngs, caught, (width, height) = await run_in_threadpool(work)
        headers = {WARNINGS_HEADER: header_value(caught)} if caught else {}
        if format == "png" or (format == "auto" and len(pngs) == 1):
            return Response(pngs[0], media_type="image/png", headers=headers)
        payload = {
            "images": [base64.b64encode(p).decode("ascii") for p in pngs],
            "width": width,
            "height": height,
            "seed": options["seed"],
            "warnings": caught,
        }
        return JSONResponse(payload, headers=headers)

    return app


# ------------------------------------------------------------------------------------------------- serving


def serve(
    host: str = "127.0.0.1",
    port: int = 8080,
    model: str = "default",
    *,
    max_upload_mb: float = DEFAULT_MAX_UPLOAD_BYTES / MB,
    max_megapixels: float = DEFAULT_MAX_PIXELS / 1e6,
    workers: int = 1,
    working_size: int | None = None,
    log_level: str = "info",
    runtime: str = "torch",
    device: str = "cpu",
    texture: float = 0.0,
) -> None:
    """Load ``model`` (packaged name, run folder or .safetensors file) and serve the app with uvicorn.

    ``runtime``: ``"torch"`` or ``"onnx"`` (ONNX Runtime); ``device``: where the network runs (``cpu``,
    ``cuda``, ``cuda:N``); see ``Inpainter``. ``texture``: see ``create_app``."""
    _require_fastapi()
    try:
        import uvicorn
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    from ..inference import Inpainter

    inpainter = Inpainter.from_pretrained(model, working_size=working_size, runtime=runtime, device=device)
    app = create_app(
        inpainter,
        max_upload_bytes=int(max_upload_mb * MB),
        max_pixels=int(max_megapixels * 1e6),
        workers=workers,
        model_name=str(model),
        texture=texture,
    )
    if not _is_loopback(host):
        print(
            f"dualinpaint: warning: listening on {host}: anyone who can reach this port can use the "
            "model (there is no authentication)",
            file=sys.stderr,
        )
    shown = f"[{host}]" if ":" in host else host
    print(f"dualinpaint: serving {model} on http://{shown}:{port}/ (Ctrl+C stops)", file=sys.stderr)
    uvicorn.run(app, host=host, port=port, log_level=log_level)


@contextmanager
def running_server(app: "FastAPI", host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread; yields its base URL (``port=0``: a free port).

    For tests, screenshots and notebooks; the server stops when the block ends.
    """
    import socket

    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    config = uvicorn.Config(app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        for _ in range(2000):
            if server.started or not thread.is_alive():
                break
            time.sleep(0.005)
        if not server.started:
            raise RuntimeError(f"the test server on {host} did not start")
        bound = sock.getsockname()[1]
        yield f"http://{f'[{host}]' if ':' in host else host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def add_serve_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``dualinpaint serve``."""
    p = parser
    p.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)"
    )
    p.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    p.add_argument("--model", default="default", help="packaged model name, run folder or .safetensors file")
    p.add_argument(
        "--max-upload-mb",
        type=float,
        default=DEFAULT_MAX_UPLOAD_BYTES / MB,
        metavar="MB",
        help="largest request body, image + mask (default 20)",
    )
    p.add_argument(
        "--max-megapixels",
        type=float,
        default=DEFAULT_MAX_PIXELS / 1e6,
        metavar="MP",
        help="largest image, width × height in millions of pixels (default 40)",
    )
    p.add_argument("--workers", type=int, default=1, help="fills run at the same time (default 1)")
    p.add_argument(
        "--working-size",
        type=int,
        default=None,
        metavar="PX",
        help="largest side the network runs at (default 2 × training size)",
    )
    from ..inference import add_speed_arguments, add_texture_argument

    add_speed_arguments(p, runtime_only=True)
    p.add_argument(
        "--device",
        default="cpu",
        metavar="DEV",
        help="run the network on cpu (default), cuda or cuda:N (--runtime torch only)",
    )
    add_texture_argument(
        p,
        help="add texture to the fills of requests that do not set it (the page's Texture box starts ticked)",
    )


def serve_command(args: argparse.Namespace) -> int:
    """``dualinpaint serve``: see ``serve``. A missing optional dependency is a one-line error."""
    if not 0 < args.port < 65536:
        raise ValueError(f"--port {args.port} must be between 1 and 65535")
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0 or args.workers < 1:
        raise ValueError("--max-upload-mb and --max-megapixels must be > 0 and --workers >= 1")
    if not 0 <= args.texture <= MAX_TEXTURE:
        raise ValueError(f"--texture {args.texture} must be between 0 and {MAX_TEXTURE:g}")
    try:
        serve(
            args.host,
            args.port,
            args.model,
            max_upload_mb=args.max_upload_mb,
            max_megapixels=args.max_megapixels,
            workers=args.workers,
            working_size=args.working_size,
            runtime=args.runtime,
            device=args.device,
            texture=args.texture,
        )
    except ImportError as err:
        if str(err) != INSTALL_HINT:
            raise
        raise ValueError(INSTALL_HINT) from None
    return 0
