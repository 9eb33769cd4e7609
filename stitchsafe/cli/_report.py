"""How commands report: notes and warnings on stderr, one JSON object or a text on stdout."""

from __future__ import annotations

import json
from typing import Any

import click

from ..errors import StitchsafeError


class BadInput(click.ClickException):
    """Bad usage or input: printed as ``Error: ...`` and exit code 2."""

    exit_code = 2

    @classmethod
    def from_error(cls, exc: StitchsafeError) -> BadInput:
        """One paragraph from a library error's message."""
        return cls(" ".join(str(exc).split()))


def notes(items: tuple[str, ...] | list[str]) -> None:
    """Each note on its own ``note:`` line on stderr."""
    for note in items:
        click.echo(f"note: {note}", err=True)


def warn(items: tuple[str, ...] | list[str]) -> None:
    """Each warning (a result that looks wrong, exit code still 0) on its own
    ``warning:`` line on stderr."""
    for warning in items:
        click.echo(f"warning: {warning}", err=True)


def emit(result: Any, as_json: bool) -> None:
    """The result's ``to_dict()`` as JSON, or its ``describe()`` text, on stdout."""
    click.echo(json.dumps(result.to_dict()) if as_json else result.describe())
