"""The input checked before any model is loaded, and its channels against the model's.

:func:`check_input` opens the input for each number of spatial axes a model could have, so
that the input's own problems (missing, unreadable, a bad ``--axes``, a channel-last
layout, ``--timepoint`` without a time axis...) fail in a fraction of a second instead
of after loading and probing a model. :func:`channels_mismatch` says why an input's
channels do not fit a model, naming a likely Z-as-channel or time-as-channel reading.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..errors import StitchsafeError
from ._array_input import input_name
from ._axes import AxesMismatchError
from ._open import open_volume
from ._physical import PhysicalSettings
from ._selection import InputSelection
from ._volume import Volume

__all__ = ["channels_mismatch", "check_input"]


def check_input(
    input: Any,
    *,
    key: str | None = None,
    physical: PhysicalSettings | None = None,
    selection: InputSelection | None = None,
    dims: Sequence[int] = (3, 2),
) -> Volume | None:
    """The input opened for the first of ``dims`` spatial axes that it fits, before a model.

    A problem that does not depend on the model (the same for every number of spatial
    axes in ``dims``) is raised now; one that does (the axes fit only another model) is
    left for the model's own opening, which says it with the model's part. Returns the
    opened volume (the caller closes it), or ``None`` when it fits none of ``dims``.

    Examples
    --------
    >>> import tempfile, numpy as np, tifffile
    >>> tmp = tempfile.TemporaryDirectory(); d = tmp.name
    >>> check_input(f"{d}/missing.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: ...missing.tif...
    >>> tifffile.imwrite(f"{d}/yxc.tif", np.zeros((64, 64, 2), "uint8"))
    >>> check_input(f"{d}/yxc.tif")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: ...Pass --axes yxc to read it channel-last...
    >>> check_input(f"{d}/yxc.tif", selection=InputSelection(axes="yxc")).shape
    (64, 64)
    >>> tmp.cleanup()
    """
    problems: set[str] = set()
    for n in dims:
        try:
            return open_volume(
                input, key=key, spatial_dims=n, physical=physical, selection=selection
            )
        except AxesMismatchError:
            problems.add("")  # fits another model, maybe: the model's opening says
        except StitchsafeError as e:
            problems.add(str(e))
    if len(problems) == 1 and "" not in problems:
        raise StitchsafeError(problems.pop())
    return None  # depends on the model: said with the model's dimensionality


def channels_mismatch(input: Any, volume: Volume, expected: int) -> str:
    """Why the input's channels do not fit a model that expects ``expected``, and what to do.

    An input read by position (unnamed axes) whose leading axis was taken as many channels
    is likelier a 3-D image under a 2-D model (or a time series under a 3-D one): said so,
    with the ``--axes`` to pass.
    """
    picked = volume.selection.channels is not None
    name = input_name(input)
    if not picked and not volume.named_axes and volume.channels > expected:
        return _likely_space(name, volume, expected)
    read = "channel(s) selected with --channel" if picked else "channel(s)"
    text = f"the input {name!r} has {volume.channels} {read} but the model expects"
    text += f" {expected}."
    if not picked and volume.channels > expected:
        example = ",".join(map(str, range(expected)))
        return f"{text} Choose {expected} of them with --channel (e.g. --channel {example})."
    fix = " or other --channel." if picked else "."
    return f"{text} Pass an input with {expected} channel(s){fix}"


def _likely_space(name: str, volume: Volume, expected: int) -> str:
    """The Z-as-channel (2-D model) or time-as-channel (3-D model) refusal."""
    n, dims = volume.channels, volume.ndim
    shape = " x ".join(map(str, (n, *volume.shape)))
    head = (
        f"the input {name!r} ({shape}) does not name its axes; read by position for this "
        f"{dims}-D model its first axis would be {n} channels, and the model takes {expected}."
    )
    if dims == 2:
        return (
            f"{head} It is likely a 3-D image of {n} planes (axes zyx), which a 2-D model "
            "cannot run: pass --axes zyx with a 3-D --model (without --model the bundled 3-D "
            "model is chosen). If that axis really holds channels, pass --axes cyx and "
            f"choose {expected} of them with --channel."
        )
    return (
        f"{head} It is likely a time series of {n} timepoints (axes tzyx): pass --axes tzyx "
        f"with --timepoint (0 to {n - 1}). If that axis really holds channels, pass --axes "
        f"czyx and choose {expected} of them with --channel."
    )
