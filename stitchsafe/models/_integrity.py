"""Integrity of a model file's zip archive: every member read back and its CRC-32 checked.

Checkpoints, TorchScript files and ``.pt2`` programs are zip archives. torch reads their
members without checking the CRC-32 that the zip stores for each, so a file with flipped
bits (a bad download, copy or disk) loads silently with wrong weights. :func:`verify_zip`
reads every member once, as :mod:`zipfile` checks it, before anything is loaded; it also
refuses what would make two zip readers see different files (two members of one name)
and encrypted members, which torch cannot read.
"""

from __future__ import annotations

import io
import zipfile
from collections import Counter

from ..errors import StitchsafeError

__all__ = ["verify_zip"]

_BLOCK = 1 << 20


def verify_zip(path: str, data: bytes | None = None) -> None:
    """Refuse a model archive whose members do not read back as written.

    Parameters
    ----------
    path
        The model file; named in messages, and read unless ``data`` is given.
    data
        The file's bytes, when the caller holds them already (they are checked, not the
        file on disk, so that what is loaded afterwards is what was checked).

    Raises
    ------
    StitchsafeError
        Naming the file and the member: a CRC-32 that does not match (``damaged: CRC check
        failed in member ...``), a member that cannot be read, a name used twice, an
        encrypted member.
    """
    source: str | io.BytesIO = io.BytesIO(data) if data is not None else path
    try:
        with zipfile.ZipFile(source) as zf:
            infos = zf.infolist()
            _refuse_duplicates(path, [i.filename for i in infos])
            for info in infos:
                _read_member(path, zf, info)
    except (zipfile.BadZipFile, OSError, ValueError) as e:
        raise _damaged(path, f"its zip directory cannot be read ({e})") from None


def _refuse_duplicates(path: str, names: list[str]) -> None:
    """Two members of one name: torch and Python's zipfile may each read another one."""
    twice = sorted(n for n, k in Counter(names).items() if k > 1)
    if twice:
        raise _damaged(path, f"member {twice[0]!r} appears {names.count(twice[0])} times")


def _read_member(path: str, zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    """Read one member to its end: :mod:`zipfile` compares its CRC-32 there."""
    if info.flag_bits & 0x1:
        raise StitchsafeError(
            f"model file {path!r} has an encrypted member {info.filename!r}, which torch "
            "cannot read; save the model again without encryption."
        )
    try:
        with zf.open(info) as member:
            while member.read(_BLOCK):
                pass
    except zipfile.BadZipFile as e:
        if "CRC" in str(e):
            raise _damaged(path, f"CRC check failed in member {info.filename!r}") from None
        raise _damaged(path, f"member {info.filename!r} cannot be read ({e})") from None
    except (NotImplementedError, OSError, EOFError, ValueError) as e:
        raise _damaged(path, f"member {info.filename!r} cannot be read ({e})") from None


def _damaged(path: str, what: str) -> StitchsafeError:
    """The error for an archive that does not read back as written."""
    return StitchsafeError(
        f"model file {path!r} is damaged: {what}. It changed after it was written (an "
        "incomplete download or copy, or a failing disk); copy or download it again, or "
        "save the model again."
    )
