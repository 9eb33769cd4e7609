r"""Physical metadata in one place: voxel size, unit and translation per spatial axis.

Every reader gets its input's physical metadata through here: its format's helper in
:mod:`._physical_formats` (OME-Zarr ``multiscales``: the chosen level's
``coordinateTransformations`` composed with the multiscale-wide ones, and the axes'
``unit``; OME-TIFF ``PhysicalSizeX/Y/Z`` and their units; ImageJ ``spacing``, ``unit``,
``xorigin``... and the resolution tags; plain TIFF resolution tags) gives
:class:`AxisValue` entries, and :func:`resolve_physical` turns them, after
``--voxel-size`` and ``--unit`` (:class:`PhysicalSettings`), into the one value a
:class:`~stitchsafe.io.Volume` carries and every output image is written with: a
:class:`PhysicalScale` (bare arrays: the default). A new reader adds its helper there and
calls :func:`resolve_physical` once.

>>> PhysicalScale((2, 0.5, 0.5), ("µm", "um", "micron"), (10, 0, 0)).describe()
'2 x 0.5 x 0.5 micrometer, translation 10 x 0 x 0'
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import StitchsafeError

__all__ = [
    "OME_SPACE_UNITS",
    "PhysicalScale",
    "PhysicalSettings",
    "canonical_unit",
]

# The units of length OME-Zarr 0.5 lists for space axes.
OME_SPACE_UNITS = (
    *("angstrom", "attometer", "centimeter", "decimeter", "exameter", "femtometer", "foot"),
    *("gigameter", "hectometer", "inch", "kilometer", "megameter", "meter", "micrometer"),
    *("mile", "millimeter", "nanometer", "parsec", "petameter", "picometer", "terameter"),
    *("yard", "yoctometer", "yottameter", "zeptometer", "zettameter"),
)
# Symbols other tools write, matched case-sensitively (mm and Mm differ).
_SYMBOLS = {
    **{"Å": "angstrom", "am": "attometer", "fm": "femtometer", "pm": "picometer"},
    **{"nm": "nanometer", "µm": "micrometer", "μm": "micrometer", "um": "micrometer"},
    **{"mm": "millimeter", "cm": "centimeter", "dm": "decimeter", "m": "meter"},
    **{"km": "kilometer", "in": "inch", "ft": "foot", "yd": "yard", "mi": "mile", "pc": "parsec"},
    **{"ym": "yoctometer", "zm": "zeptometer", "hm": "hectometer", "Mm": "megameter"},
    **{"Gm": "gigameter", "Tm": "terameter", "Pm": "petameter", "Em": "exameter"},
    **{"Zm": "zettameter", "Ym": "yottameter"},
}
_WORDS = {"micron": "micrometer", "ångström": "angstrom", "angstroem": "angstrom", "feet": "foot"}
_NO_UNIT = ("", "pixel", "pixels", "px", "none")
# ImageJ writes non-ASCII characters as escapes in its description.
_ESCAPES = {"\\u00B5": "µ", "\\u00b5": "µ", "\\u03BC": "μ", "\\u03bc": "μ", "\\u00C5": "Å"}
_UNIT_HINT = "use e.g. micrometer (um, µm), nanometer (nm) or millimeter (mm), or pixel for none"


def canonical_unit(text: str | None) -> str | None:
    r"""The OME-Zarr name of a unit of length; ``None`` for no unit (pixel).

    Raises ValueError for text that names no unit of length OME-Zarr knows.

    >>> canonical_unit("µm"), canonical_unit("Microns"), canonical_unit("\\u00B5m")
    ('micrometer', 'micrometer', 'micrometer')
    >>> canonical_unit("nanometre"), canonical_unit("pixel"), canonical_unit(None)
    ('nanometer', None, None)
    """
    if text is None:
        return None
    given = str(text).strip()
    for escape, char in _ESCAPES.items():
        given = given.replace(escape, char)
    if given in _SYMBOLS:
        return _SYMBOLS[given]
    low = given.lower().replace("metre", "meter")
    if low in _NO_UNIT:
        return None
    for word in (low, low.removesuffix("s"), low.removesuffix("es")):
        word = _WORDS.get(word, word)
        if word in OME_SPACE_UNITS:
            return word
    raise ValueError(f"{text!r} is not a unit of length")


def no_unit(text: Any) -> bool:
    """Whether ``text`` says there is no unit: missing, empty or ``pixel``."""
    return text is None or str(text).strip().lower() in _NO_UNIT


def _floats(values: Any) -> tuple[float, ...] | None:
    """Numbers from a number, a sequence or text like ``"2,0.5,0.5"``; ``None`` if not."""
    if isinstance(values, str):
        values = [v for v in values.replace("x", ",").split(",") if v.strip()]
    elif not isinstance(values, Sequence):
        values = [values]
    try:
        return tuple(float(v) for v in values if not isinstance(v, bool))
    except (TypeError, ValueError):
        return None


def _x(values: Sequence[float]) -> str:
    return " x ".join(f"{v:g}" for v in values)


@dataclass(frozen=True)
class PhysicalScale:
    """Voxel size, unit and translation per spatial axis: where each voxel lies in space.

    Voxel ``i`` (its centre) lies at ``translation + scale * i`` in ``units``: OME-Zarr's
    ``scale``, then ``translation``. Fields are normalised to tuples (units to their
    OME-Zarr names, ``None`` for none) and checked once.

    Attributes
    ----------
    scale
        Voxel size per spatial axis, positive.
    units
        Unit per spatial axis (:data:`OME_SPACE_UNITS`, or ``None``); default: none.
    translation
        Position of voxel 0 per spatial axis, in ``units``; default: 0.

    Examples
    --------
    >>> p = PhysicalScale((2, 0.5, 0.5), ("um",) * 3, (10, 0, 0))
    >>> p.scale, p.units[0], p.translation
    ((2.0, 0.5, 0.5), 'micrometer', (10.0, 0.0, 0.0))
    >>> PhysicalScale.default(2).to_dict()
    {'scale': [1.0, 1.0], 'units': [None, None], 'translation': [0.0, 0.0]}
    >>> PhysicalScale((1, -1))  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: the voxel size (1.0, -1.0) is not positive...
    """

    scale: Sequence[float]
    units: Sequence[str | None] | None = None
    translation: Sequence[float] | None = None

    def __post_init__(self) -> None:
        scale = tuple(float(s) for s in self.scale)
        n = len(scale)
        units = tuple(self.units) if self.units is not None else (None,) * n
        translation = (
            tuple(float(t) for t in self.translation)
            if self.translation is not None
            else (0.0,) * n
        )
        if n == 0 or len(units) != n or len(translation) != n:
            raise ValueError(f"scale {scale}, units {units} and translation {translation} differ")
        if not all(math.isfinite(s) and s > 0 for s in scale):
            raise StitchsafeError(
                f"the voxel size {scale} is not positive and finite on every axis; give the "
                "voxel size with --voxel-size (e.g. --voxel-size 2,0.5,0.5)."
            )
        if not all(math.isfinite(t) for t in translation):
            raise StitchsafeError(f"the translation {translation} is not finite on every axis.")
        try:
            units = tuple(canonical_unit(u) for u in units)
        except ValueError as e:
            raise StitchsafeError(f"the unit {e.args[0]}; {_UNIT_HINT}.") from None
        for name, value in (("scale", scale), ("units", units), ("translation", translation)):
            object.__setattr__(self, name, value)

    @classmethod
    def default(cls, ndim: int) -> PhysicalScale:
        """What a bare array has: voxel size 1, no unit, no translation."""
        return cls((1.0,) * ndim)

    @property
    def ndim(self) -> int:
        """Number of spatial axes."""
        return len(tuple(self.scale))

    def to_dict(self) -> dict[str, Any]:
        """JSON values: ``{"scale": [...], "units": [...], "translation": [...]}``."""
        return {
            "scale": list(self.scale),
            "units": list(self.units or ()),
            "translation": list(self.translation or ()),
        }

    def describe(self) -> str:
        """In words: ``2 x 0.5 x 0.5 micrometer`` (per axis when units differ), and the
        translation when there is one."""
        scale, units = tuple(self.scale), tuple(self.units or ())
        if len(set(units)) == 1:
            text = f"{_x(scale)} {units[0] or '(no unit)'}"
        else:
            text = " x ".join(f"{s:g} {u or '(no unit)'}" for s, u in zip(scale, units))
        translation = tuple(self.translation or ())
        if any(translation):
            text += f", translation {_x(translation)}"
        return text


@dataclass(frozen=True)
class PhysicalSettings:
    """``--voxel-size`` and ``--unit``: the physical scale the user gives, checked once.

    Attributes
    ----------
    voxel_size
        One size for every spatial axis, or one per axis (``Z,Y,X`` or ``Y,X``; text such
        as ``"2,0.5,0.5"`` is read too); ``None``: the input's own.
    unit
        One unit for every spatial axis (``micrometer``, ``um``, ``µm``, ``nm``...;
        ``pixel``: none); ``None``: the input's own.

    Examples
    --------
    >>> s = PhysicalSettings(voxel_size="2,0.5,0.5", unit="um")
    >>> s.voxel_size, s.unit
    ((2.0, 0.5, 0.5), 'micrometer')
    >>> PhysicalSettings(voxel_size="0,1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --voxel-size '0,1' is not one positive number...
    """

    voxel_size: float | Sequence[float] | str | None = None
    unit: str | None = None

    def __post_init__(self) -> None:
        if self.voxel_size is not None:
            sizes = _floats(self.voxel_size)
            if not sizes or not all(math.isfinite(v) and v > 0 for v in sizes):
                shown = self.voxel_size if isinstance(self.voxel_size, str) else sizes
                raise StitchsafeError(
                    f"--voxel-size {shown!r} is not one positive number or one per spatial "
                    "axis (e.g. 2,0.5,0.5 for Z,Y,X, or 0.5 for every axis)."
                )
            object.__setattr__(self, "voxel_size", sizes)
        if self.unit is not None:
            try:
                unit = canonical_unit(self.unit)
            except ValueError:
                raise StitchsafeError(
                    f"--unit {self.unit!r} is not a unit of length that OME-Zarr knows; "
                    f"{_UNIT_HINT}. Known: {', '.join(OME_SPACE_UNITS)}."
                ) from None
            object.__setattr__(self, "unit", unit if unit is not None else "pixel")

    def sizes(self, axes: Sequence[str], where: str) -> tuple[float, ...] | None:
        """The voxel size of each of ``axes`` (``None`` when not given); StitchsafeError
        when the count fits neither one value nor one per axis."""
        if self.voxel_size is None:
            return None
        sizes = _floats(self.voxel_size) or ()  # a tuple of floats already, once checked
        if len(sizes) == 1:
            return sizes * len(axes)
        if len(sizes) != len(axes):
            raise StitchsafeError(
                f"--voxel-size gives {len(sizes)} values but {where} has {len(axes)} spatial "
                f"axes ({', '.join(axes)}); give one value per axis "
                f"({','.join(a.upper() for a in axes)}) or one for every axis."
            )
        return sizes

    def apply(self, physical: PhysicalScale, axes: Sequence[str], where: str) -> PhysicalScale:
        """``physical`` (of the spatial ``axes`` of ``where``) with these in its place.

        >>> PhysicalSettings(unit="nm").apply(PhysicalScale((2, 1)), ("y", "x"), "g")
        PhysicalScale(scale=(2.0, 1.0), units=('nanometer', 'nanometer'), translation=(0.0, 0.0))
        """
        sizes = self.sizes(axes, where)
        return PhysicalScale(
            sizes if sizes is not None else physical.scale,
            (self.unit,) * len(axes) if self.unit is not None else physical.units,
            physical.translation,
        )


@dataclass(frozen=True)
class AxisValue:
    """One spatial axis's physical metadata as an input gives it, and where it was read.

    ``scale_field`` and ``unit_field`` name the metadata the values came from (for the
    messages); ``unit`` is spelt as the input spells it.
    """

    scale: float = 1.0
    unit: str | None = None
    translation: float = 0.0
    scale_field: str = ""
    unit_field: str = ""


def resolve_physical(
    values: Sequence[AxisValue],
    axes: Sequence[str],
    where: str,
    override: PhysicalSettings | None = None,
) -> PhysicalScale:
    """The :class:`PhysicalScale` of the spatial ``axes`` (one ``values`` entry each), with
    ``--voxel-size``/``--unit`` (``override``) in place of the input's own.

    A size or unit of the input's that is used and wrong is refused naming its field.

    >>> resolve_physical([AxisValue(2, "um"), AxisValue(0.5, "um")], ("y", "x"), "a.tif",
    ...                  PhysicalSettings(voxel_size=3)).scale
    (3.0, 3.0)
    """
    override = override if override is not None else PhysicalSettings()
    sizes = override.sizes(axes, where)
    for v, name in zip(values, axes):
        if sizes is None and not (math.isfinite(v.scale) and v.scale > 0):
            raise StitchsafeError(
                f"the voxel size of the {name} axis of {where} ({v.scale_field}) is {v.scale!r}, "
                "not a positive number. Fix that metadata, or give the voxel size with "
                "--voxel-size (e.g. --voxel-size 2,0.5,0.5)."
            )
        if override.unit is None:
            try:
                canonical_unit(v.unit)
            except ValueError:
                raise StitchsafeError(
                    f"the unit of the {name} axis of {where} ({v.unit_field}) is {v.unit!r}, "
                    "not a unit of length that OME-Zarr knows. Fix that metadata, or give the "
                    "unit with --unit (e.g. --unit micrometer)."
                ) from None
    return PhysicalScale(
        sizes if sizes is not None else [v.scale for v in values],
        [override.unit or v.unit for v in values],
        [v.translation for v in values],
    )
