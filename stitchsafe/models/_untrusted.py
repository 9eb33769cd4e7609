"""Model files are data unless trusted: what is checked before an untrusted file is loaded.

``torch.export.load`` (torch 2.13) unpickles parts of a ``.pt2`` archive with no
restriction: a weight or constant flagged ``use_pickle`` (``torch.load(...,
weights_only=False)``), torchbind and opaque constants (``pickle.loads``), and the sample
inputs, legacy weight files and legacy archives whenever torch's weights-only loader
refuses them (it then falls back to ``weights_only=False``). It loads compiled native code
(``data/aotinductor/``), and it turns strings of the program into Python code
(:mod:`stitchsafe.models._program_check`). :func:`check_export_archive` refuses all of
these before the archive reaches torch, from the same bytes that torch then reads; the
ordinary archives that ``torch.export.save`` writes for networks of tensors pass.

TorchScript runs TorchScript code, compiled by torch's own compiler (no Python, no
imports) from the archive's ``code/`` folder, and its pickles are read by TorchScript's
own unpickler (tensors and TorchScript classes only). The code may call any torch
operator, though: :func:`check_torchscript` refuses the two that touch files,
``torch.save`` and ``torch.from_file``.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from typing import Any

import torch

from ..errors import StitchsafeError
from ._loaded import first_line
from ._program_check import program_problem

__all__ = ["check_export_archive", "check_torchscript", "untrusted_error"]

# Small text records of a ``.pt2`` archive that torch reads as strings, if at all.
_PLAIN_RECORDS = frozenset(
    {
        "archive_format",
        "archive_version",
        "byteorder",
        "version",
        ".data/version",
        ".data/serialization_id",
        ".format_version",
        ".storage_alignment",
    }
)
_CONFIG = re.compile(r"data/(weights|constants)/[^/]+_config\.json")
_TS_FILE_IO = re.compile(r"\b(save|from_file)\b")
_UNSAFE_IN_NAME = re.compile(r"[\"'\\\x00-\x1f\x7f]")


def untrusted_error(path: str, what: str) -> StitchsafeError:
    """The refusal of an untrusted model file that ``what`` would make run code."""
    return StitchsafeError(
        f"model file {path!r} holds {what}; stitchsafe loads model files as data only and "
        "refused it. If the file comes from a source you trust, pass --trust-model "
        "(trust_model=True in Python) to load it anyway."
    )


def check_export_archive(path: str, data: bytes) -> None:
    """Refuse a ``.pt2`` archive (its bytes ``data``) that would run code when loaded.

    Raises
    ------
    StitchsafeError
        Naming the file, the member and what in it would run: pickled objects, compiled
        native code, or program strings that torch evaluates as Python.
    """
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        records = [(_record(name), name) for name in zf.namelist() if not name.endswith("/")]
        raw = _raw_payloads(path, zf, records)
        for record, name in records:
            if record in raw or record in _PLAIN_RECORDS or record.startswith("extra/"):
                continue
            if record.startswith("data/aotinductor/"):
                raise untrusted_error(
                    path, f"compiled native code ({name}) that torch would load and run"
                )
            if record.endswith(".json"):
                _check_json(path, name, zf.read(name))
            else:
                _check_pickle(path, name, zf.read(name))


def _record(name: str) -> str:
    """A member's record name as torch reads it: without the archive's top folder."""
    return name.split("/", 1)[1] if "/" in name else name


def _raw_payloads(path: str, zf: zipfile.ZipFile, records: list[tuple[str, str]]) -> set[str]:
    """The records that the payload configs name as raw tensor bytes (never unpickled).

    Refuses entries that torch would unpickle: ``use_pickle`` weights and constants,
    torchbind (``custom_obj_``) and opaque (``opaque_obj_``) constants.
    """
    raw: set[str] = set()
    for record, name in records:
        if not _CONFIG.fullmatch(record):
            continue
        config = _json(path, name, zf.read(name)).get("config")
        folder = record.rsplit("/", 1)[0]
        for fqn, entry in (config or {}).items():
            if not isinstance(entry, dict) or not isinstance(entry.get("path_name"), str):
                raise untrusted_error(path, f"a payload config ({name}) torch cannot read")
            if _UNSAFE_IN_NAME.search(fqn):
                raise untrusted_error(
                    path, f"a tensor name {fqn!r} ({name}) with quotes, which would become code"
                )
            if entry.get("use_pickle") or not entry["path_name"].startswith(("weight_", "tensor_")):
                raise untrusted_error(
                    path,
                    f"pickled objects that would run code when loaded ({fqn!r} in {name} is "
                    "stored as a pickle, which torch unpickles without restriction)",
                )
            raw.add(f"{folder}/{entry['path_name']}")
    return raw


def _json(path: str, name: str, data: bytes) -> dict[str, Any]:
    """A JSON member as a dict; refuse one that is not (torch may unpickle those)."""
    try:
        doc = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        doc = None
    if not isinstance(doc, dict):
        raise untrusted_error(path, f"a member {name} that is not the JSON its name says")
    return doc


def _check_json(path: str, name: str, data: bytes) -> None:
    """A JSON member: a program (or anything else) with no string that torch runs."""
    problem = program_problem(_json(path, name, data))
    if problem is not None:
        raise untrusted_error(
            path, f"a program that would run code when loaded ({name}: {problem})"
        )


def _check_pickle(path: str, name: str, data: bytes) -> None:
    """A pickled member must load with torch's weights-only unpickler (tensors, containers).

    torch tries that loader first and, when it refuses, unpickles the same bytes again
    without restriction; a member it refuses would run whatever it names.
    """
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any refusal means torch would fall back
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(e))
        detail = (
            f"it unpickles {found.group(1)}, which is not a tensor"
            if found is not None
            else f"torch's weights-only loader refuses it: {first_line(e)}"
        )
        raise untrusted_error(
            path, f"pickled objects that would run code when loaded (member {name}: {detail})"
        ) from None


def check_torchscript(path: str, data: bytes | None = None) -> None:
    """Refuse TorchScript whose code calls ``torch.save`` or ``torch.from_file``.

    ``data``: the file's bytes, when the caller holds them (they are checked, not the file).

    Raises
    ------
    StitchsafeError
        Naming the file and the code file that reads or writes files.
    """
    with zipfile.ZipFile(io.BytesIO(data) if data is not None else path) as zf:
        for name in zf.namelist():
            if "/code/" not in f"/{name}" or not name.endswith(".py"):
                continue
            text = zf.read(name).decode("utf-8", errors="replace")
            found = _TS_FILE_IO.search(text)
            if found is not None:
                line = text[: found.start()].count("\n") + 1
                raise untrusted_error(
                    path,
                    f"TorchScript code that reads or writes files when run ({name}, line "
                    f"{line}: {found.group(1)})",
                )
