"""How the command line talks: warnings as one ``dualinpaint: warning: …`` line each."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def one_line_warnings() -> Iterator[None]:
    """Warnings printed while this is active read ``dualinpaint: warning: <message>`` on one line, not
    Python's "file:line: Category: message" plus a source line. DataLoader worker processes started
    inside inherit it. Recording (``catch_warnings(record=True)``, ``pytest.warns``) is unaffected."""
    before = warnings.formatwarning

    def one_line(message: Any, category: Any, filename: str, lineno: int, line: str | None = None) -> str:
        return f"dualinpaint: warning: {' '.join(str(message).split())}\n"

    warnings.formatwarning = one_line
    try:
        yield
    finally:
        warnings.formatwarning = before
