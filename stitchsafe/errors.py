"""Errors and warnings that the command line maps to documented exit codes."""

from __future__ import annotations


class StitchsafeError(Exception):
    """Bad usage or bad input: the CLI prints the message as one paragraph and exits with 2.

    Raise it with a message that says what is wrong *and* what would work.
    """


class UnstitchableModelError(StitchsafeError):
    """The model cannot be tiled and stitched exactly (same padding, spatial normalisation...)."""


class GeometryMismatchError(StitchsafeError):
    """Declared geometry (metadata or flags) disagrees with what probing the model measured."""


class StitchsafeWarning(UserWarning):
    """Warnings raised by stitchsafe itself (tests turn them into errors)."""
