"""How a package that stitchsafe cannot use is reported.

Parsing raises :class:`UnusablePackage` with the reason only; the loader
(:func:`load_package`) completes the message with the package's path.
"""

from __future__ import annotations

from ...errors import StitchsafeError

__all__: list[str] = []


class UnusablePackage(StitchsafeError):
    """A package stitchsafe cannot use (the message is completed by the loader)."""


def error_line(e: BaseException) -> str:
    """An exception as ``"Type: first line"`` (at most 300 characters of message).

    >>> error_line(OSError("no such file\\n(details)"))
    'OSError: no such file'
    """
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}"
