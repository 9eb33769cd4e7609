"""A package's files: its folder, or only the members of its zip that loading needs.

A zip package is never extracted whole. Its member names are checked when it is opened
(none may be absolute or climb out with ``..``), and each file the description names is
extracted on demand, into a temporary folder removed afterwards, after checking its
declared size: at most :data:`MAX_MEMBER_BYTES` per file and :data:`MAX_TOTAL_BYTES` in
all, no file that expands more than :data:`MAX_RATIO` times (a zip bomb), and never more
than the temporary folder's free space. ``zipfile`` stops every member at its declared
size and checks its CRC, so a member that lies about its size or is corrupt is refused.
Larger packages can be unzipped by hand and passed as a folder, which is read in place.

A folder package may name files outside its folder (``../weights.pt``, an absolute path,
a link): they are read, and recorded (:meth:`PackageFiles.files`) so that the run
fingerprint covers every file that feeds the model.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from ...errors import StitchsafeError
from ._errors import error_line

__all__ = [
    "MAX_MEMBER_BYTES",
    "MAX_RATIO",
    "MAX_TOTAL_BYTES",
    "YAML_NAMES",
    "PackageFiles",
    "find_yaml",
    "open_package",
]

YAML_NAMES = ("bioimageio.yaml", "rdf.yaml")

MAX_MEMBER_BYTES = 4 << 30  # one file extracted from a zip package
MAX_TOTAL_BYTES = 8 << 30  # all files extracted from one zip package
MAX_RATIO = 100  # expanded / compressed size of one member, beyond _RATIO_FLOOR
_RATIO_FLOOR = 16 << 20  # smaller members may compress as well as they like
_FREE_MARGIN = 256 << 20  # left free in the temporary folder
_UNZIP = "unzip the package yourself (where there is room) and pass its folder as --model"


def find_yaml(names: Iterable[str]) -> str | None:
    """The package description among top-level file ``names``, or None.

    Examples
    --------
    >>> find_yaml(["weights.pt", "rdf.yaml", "README.md"])
    'rdf.yaml'
    >>> find_yaml(["unet.bioimageio.yaml"]), find_yaml(["sub/rdf.yaml"])
    ('unet.bioimageio.yaml', None)
    """
    top = sorted(n for n in names if "/" not in n.rstrip("/"))
    for wanted in YAML_NAMES:
        for name in top:
            if name == wanted or name.endswith("." + wanted):
                return name
    return None


def _unsafe_member(name: str) -> bool:
    """Whether a zip member name is absolute or climbs out of the zip's folder.

    >>> [_unsafe_member(n) for n in ("rdf.yaml", "a/../b.pt", "../x", "/etc/x", "C:/x", "..a")]
    [False, False, True, True, True, False]
    """
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return True
    return posixpath.normpath(name).split("/")[0] == ".."


class PackageFiles:
    """The files of one package, as local paths: in place for a folder, extracted for a zip.

    Parameters
    ----------
    path
        The package as given (``--model``).
    root
        The package folder, or the temporary folder a zip's members are extracted to.
    yaml_name
        The description's file name (top level).
    where
        The package in messages (``model package '...'``).
    archive
        The open zip, or None for a folder.
    """

    def __init__(
        self, path: Path, root: Path, yaml_name: str, where: str, archive: zipfile.ZipFile | None
    ) -> None:
        self.path, self.root, self.yaml_name, self.where = path, root, yaml_name, where
        self.archive = archive
        self.outside: list[str] = []
        self.extracted = 0
        self.yaml = self.file(yaml_name, "description")

    def files(self) -> tuple[str, ...]:
        """Every file that feeds the model: the package, then files read from outside it."""
        return (os.fspath(self.path), *dict.fromkeys(self.outside))

    def record_outside(self, path: str | os.PathLike[str]) -> None:
        """Record a file outside the package that feeds the model (e.g. a module's source)."""
        self.outside.append(os.fspath(Path(path).resolve()))

    def file(self, source: str, what: str) -> Path:
        """The package file ``source`` as a local path; refuse URLs and missing files."""
        if "://" in source:
            raise StitchsafeError(
                f"{self.where}: its {what} is at {source}; stitchsafe reads packages offline. "
                "Download the package with its files (a bioimage.io zip) and pass that."
            )
        if self.archive is None:
            return self._folder_file(source, what)
        return self._extract(source, what)

    def python_sources(self) -> None:
        """Extract every ``.py`` member of a zip, for an architecture importing its siblings."""
        if self.archive is not None:
            for info in self.archive.infolist():
                if info.filename.endswith(".py") and not info.is_dir():
                    self._extract(info.filename, "Python source")

    def _missing(self, source: str, what: str) -> StitchsafeError:
        return StitchsafeError(
            f"{self.where}: its {what} {source!r} is missing from the package; the package is "
            "incomplete (repack it with all the files its rdf.yaml names)."
        )

    def _folder_file(self, source: str, what: str) -> Path:
        p = self.root / source
        if not p.is_file():
            raise self._missing(source, what)
        if not p.resolve().is_relative_to(self.root.resolve()):
            self.record_outside(p)
        return p

    def _extract(self, source: str, what: str) -> Path:
        """Extract member ``source`` (once) after checking its sizes; its local path."""
        assert self.archive is not None
        name = posixpath.normpath(source.replace("\\", "/"))
        if _unsafe_member(name):
            raise StitchsafeError(
                f"{self.where}: its {what} {source!r} lies outside the zip; a zip package must "
                "hold every file its rdf.yaml names (repack it with that file inside)."
            )
        target = self.root.joinpath(*name.split("/"))
        if target.is_file():
            return target
        try:
            info = self.archive.getinfo(name)
        except KeyError:
            raise self._missing(source, what) from None
        self._check_size(info, what)
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self.archive.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, 1 << 20)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError) as e:
            target.unlink(missing_ok=True)
            raise StitchsafeError(
                f"{self.where}: its {what} {source!r} could not be extracted from the zip "
                f"({error_line(e)}); the zip is truncated, corrupt (a CRC mismatch means the "
                "file changed after it was packed) or encrypted, or the temporary folder "
                f"{str(self.root.parent)!r} is full. Download the package again."
            ) from None
        self.extracted += info.file_size
        return target

    def _check_size(self, info: zipfile.ZipInfo, what: str) -> None:
        """Refuse a member too large, too compressible or too big for the free space."""
        size, packed = info.file_size, max(info.compress_size, 1)
        name = f"{self.where}: its {what} {info.filename!r}"
        if size > _RATIO_FLOOR and size > MAX_RATIO * packed:
            raise StitchsafeError(
                f"{name} would expand from {_size(packed)} to {_size(size)} ({size // packed}x, "
                f"more than {MAX_RATIO}x): the zip looks like a zip bomb, and stitchsafe "
                "refuses to extract it. Use a package from a source you trust."
            )
        if size > MAX_MEMBER_BYTES or self.extracted + size > MAX_TOTAL_BYTES:
            raise StitchsafeError(
                f"{name} is {_size(size)}; stitchsafe extracts at most "
                f"{_size(MAX_MEMBER_BYTES)} per file and {_size(MAX_TOTAL_BYTES)} in all from "
                f"a zip package. If the package is genuine, {_UNZIP}."
            )
        free = shutil.disk_usage(self.root).free
        if size + _FREE_MARGIN > free:
            raise StitchsafeError(
                f"{name} is {_size(size)} but the temporary folder {str(self.root.parent)!r} "
                f"has only {_size(free)} free; point TMPDIR at a folder with room, or {_UNZIP}."
            )


def _size(n: int) -> str:
    """A byte count in words.

    >>> _size(3 << 30), _size(5 << 20), _size(900)
    ('3.0 GiB', '5.0 MiB', '900 bytes')
    """
    for unit, shift in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << shift:
            return f"{n / (1 << shift):.1f} {unit}"
    return f"{n} bytes"


@contextlib.contextmanager
def open_package(path: str | os.PathLike[str], where: str) -> Iterator[PackageFiles]:
    """The files of a package folder or zip; a zip's extracted members are removed on exit."""
    p = Path(path)
    if p.is_dir():
        name = find_yaml([c.name for c in p.iterdir() if c.is_file()])
        if name is None:
            raise StitchsafeError(f"{str(p)!r} holds no bioimageio.yaml or rdf.yaml.")
        yield PackageFiles(p, p, name, where, None)
        return
    try:
        archive = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError) as e:
        raise StitchsafeError(
            f"{where} is not a readable zip ({error_line(e)}); it is truncated or corrupt. "
            "Download the package again."
        ) from None
    with archive, tempfile.TemporaryDirectory(prefix="stitchsafe-bioimageio-") as tmp:
        names = archive.namelist()
        counts = Counter(names)
        bad = [n for n in names if _unsafe_member(n) or counts[n] > 1]
        if bad:
            raise StitchsafeError(
                f"{where} holds {len(bad)} member(s) outside its folder or named twice (e.g. "
                f"{bad[0]!r}: an absolute path, '..', or a name two zip readers may each read "
                "differently); such a zip is broken or hostile, and stitchsafe refuses it. "
                "Repack the package with each file once, at a relative path inside it."
            )
        name = find_yaml(names)
        if name is None:
            raise StitchsafeError(f"{str(p)!r} is a zip without a top-level rdf.yaml.")
        yield PackageFiles(p, Path(tmp), name, where, archive)
