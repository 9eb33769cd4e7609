"""bioimage.io model packages: ``--model pkg.zip`` or ``--model pkg/``.

A package is a folder, or a zip of one, holding ``bioimageio.yaml`` (or ``rdf.yaml``) and
the files it names. It is read offline with ``bioimageio.spec`` (an optional dependency:
``pip install "stitchsafe[bioimageio]"``): the description is validated without I/O
checks, so nothing is downloaded, and weights given as URLs are refused. Descriptions in
older format versions (0.4) are converted to 0.5 by ``bioimageio.spec``.

Two halves: :func:`parse_description` turns a validated description into a
:class:`PackageSpec` (pure: no torch, no files), and :func:`load_package` (here) unpacks,
reads, builds the network and derives stitchsafe metadata (schema of
:mod:`stitchsafe.models`).

What is taken from the package
------------------------------
- **Axes**: ``batch``, ``channel`` and 1-3 ``space`` axes in any order; the network is
  wrapped to take and return stitchsafe's ``(N, C, *spatial)`` (spatial axes ``z, y, x``).
  ``time`` and ``index`` axes, several inputs or outputs, and outputs whose size is not
  the input's minus a fixed amount are refused.
- **Geometry**: valid input sizes ``min + k * step`` and the output size offset (the halo
  the network crops itself; stitchsafe centres it, ``lo = context // 2``). The period is
  measured on the declared sizes with a few forward passes (the package does not state
  it), and :func:`stitchsafe.models.resolve_geometry` cross-checks the whole geometry as
  for any model, so a same-padded package is refused by the usual checks. An output
  ``halo`` (to be cropped from a same-padded output) is recorded, never used to stitch.
  Without a parameterised size on every space axis the valid sizes are probed.
- **Preprocessing**: ``zero_mean_unit_variance`` -> ``zscore`` and ``scale_range`` ->
  ``percentile`` (stitchsafe's whole-volume statistics, :mod:`stitchsafe.engine`; the
  package's ``eps`` is not added); fixed per-voxel steps (``scale_linear``,
  ``fixed_zero_mean_unit_variance``, ``clip`` with fixed bounds, ``sigmoid``,
  ``binarize``, ``softmax`` over channels) run inside the wrapped network, after the
  whole-volume normalisation (so ``--pad-mode constant`` pads with zeros before them);
  ``ensure_dtype`` to a float type is a no-op. Anything else (statistics over only some
  axes, per-channel statistics of several channels, a fixed step before a statistics
  step) is an error naming the step.
- **Postprocessing**: fixed per-voxel steps run inside the wrapped network; steps that
  need output statistics would be computed per tile and are refused.
- **Channel names** are kept under ``metadata["bioimageio"]``; names ``"foreground"`` and
  ``"embedding..."`` become ``channel_roles``.
- **Weights**: ``torchscript`` (preferred: no package code runs) or
  ``pytorch_state_dict`` with ``architecture: {callable, source | import_from, kwargs}``;
  a ``source`` file is imported from the package, ``import_from`` names an importable
  module. Loading a state dict runs the package's architecture code, so it needs
  ``trust=True`` (``--trust-model``); the state dict itself is read with
  ``torch.load(weights_only=True)``, trusted or not.

Files
-----
A zip is not extracted whole: only the files the description names, each checked for
its size first (:mod:`._archive`: limits per file and in all, zip bombs, free space,
member paths). Files outside a package folder are read too, and the loaded model lists
every file that feeds it (``LoadedModel.files``: the package first) so that the run
fingerprint covers them.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

from torch import nn

from ...errors import GeometryMismatchError, StitchsafeError
from ...geometry import ModelGeometry
from .._loaded import LoadedModel
from .._metadata import validate_metadata
from .._probe import measure_period
from .._probe_runner import Lattice, Runner
from ._archive import open_package
from ._errors import UnusablePackage, error_line
from ._export_spec import config_metadata
from ._module import PackageModule
from ._parse import parse_description
from ._read import read_description
from ._spec import PackageSpec
from ._weights import check_weights_dims, load_network

__all__ = ["load_package"]


def load_package(path: str | os.PathLike[str], *, trust: bool = False) -> LoadedModel:
    """Load a bioimage.io model package (folder or zip) as a stitchsafe model on the CPU.

    The network is wrapped (:class:`PackageModule`) to stitchsafe's axis convention with
    the package's fixed pre- and postprocessing inside; the metadata says the rest
    (geometry with the measured period, normalisation, channel roles).

    Parameters
    ----------
    path
        The package folder, or its zip.
    trust
        Let the package run its architecture code (a ``pytorch_state_dict`` package's
        ``source`` file or ``import_from`` callable); ``--trust-model``. TorchScript
        weights need no trust.

    Raises
    ------
    StitchsafeError
        Saying what in the package stitchsafe cannot use, and why; also for architecture
        code without ``trust``, and for a zip too large to extract.
    """
    where = f"model package {os.fspath(path)!r}"
    spec, net, files, config = _read_package(path, where, trust)
    module = PackageModule(net, spec).eval()
    check_weights_dims(net, spec, where)
    model = LoadedModel(
        os.fspath(path), "bioimageio", module, None, spec.dims, spec.channels_in, _notes(spec)
    )
    geometry = _declared_geometry(model, spec, where)
    # A package stitchsafe exported carries its full metadata (label defaults, training).
    model.metadata = config_metadata(validate_metadata(spec.metadata(geometry)), config, where)
    if hasattr(model, "files"):  # every file that feeds the model, for the run fingerprint
        model = dataclasses.replace(model, files=files)
    return model


def _read_package(
    path: str | os.PathLike[str], where: str, trust: bool
) -> tuple[PackageSpec, nn.Module, tuple[str, ...], Any]:
    """``(what the description says, the network, the files that fed it, its config)``."""
    with open_package(path, where) as files:
        descr = read_description(files.yaml, where=where)
        try:
            spec = parse_description(descr)
        except UnusablePackage as e:
            raise StitchsafeError(f"{where} cannot be used: {e}.") from None
        net = load_network(spec.weights, files, trust=trust)
        return spec, net, files.files(), getattr(descr, "config", None)


def _notes(spec: PackageSpec) -> list[str]:
    """The load's notes for stderr: weights, normalisation, steps inside, then the spec's."""
    inside = [op.name for op in (*spec.preprocessing, *spec.postprocessing)]
    return [
        f"bioimage.io package {spec.name!r}: {spec.weights.kind} weights, "
        f"{_describe_norm(spec.normalization)}"
        + (f"; {', '.join(inside)} inside the network" if inside else "")
        + ".",
        *spec.notes,
    ]


def _describe_norm(norm: dict[str, Any]) -> str:
    """The package's normalisation in words.

    >>> _describe_norm({"method": "percentile", "percentiles": [1.0, 99.8]})
    'whole-volume percentile (1, 99.8) normalisation'
    >>> _describe_norm({"method": "none"})
    'no intensity normalisation'
    """
    if norm["method"] == "none":
        return "no intensity normalisation"
    if norm["method"] == "percentile":
        lo, hi = norm["percentiles"]
        return f"whole-volume percentile ({lo:g}, {hi:g}) normalisation"
    return f"whole-volume {norm['method']} normalisation"


def _declared_geometry(model: LoadedModel, spec: PackageSpec, where: str) -> dict[str, Any]:
    """``period``/``halo``/``valid_input`` metadata from the declared sizes; {} without them.

    The package states valid sizes and the output offset but no period: the period is
    measured on the declared sizes (a few forward passes), after checking that the
    network really returns the declared output size. A network whose output is not
    local (same padding...) keeps ``period = step``, and
    :func:`stitchsafe.models.resolve_geometry` refuses it with the reason.
    """
    declared = _declared(spec, where)
    if declared is None:
        return {}
    runner = Runner(model)
    lat = _declared_lattice(runner, declared, spec, where)
    period = declared.step
    d = lat.window(declared.step)
    if isinstance(d, float) and d <= runner.rtol:
        period = measure_period(runner, lat)
    model.probe_log.append(f"period measured on the package's declared sizes: {runner.cost()}.")
    return {
        "period": list(period),
        "halo": [list(h) for h in declared.halo],
        "valid_input": {"min": list(declared.min_input), "step": list(declared.step)},
    }


def _declared(spec: PackageSpec, where: str) -> ModelGeometry | None:
    """The declared geometry with ``period = step`` and the centred halo; None without it."""
    if spec.min_input is None or spec.step is None or spec.context is None:
        return None
    try:
        return ModelGeometry(
            period=spec.step,
            halo=tuple((c // 2, c - c // 2) for c in spec.context),
            min_input=spec.min_input,
            step=spec.step,
            channels_in=spec.channels_in,
            channels_out=spec.channels_out,
        )
    except StitchsafeError as e:
        raise StitchsafeError(f"{where}: its declared sizes make no tiling geometry: {e}") from None


def _declared_lattice(
    runner: Runner, declared: ModelGeometry, spec: PackageSpec, where: str
) -> Lattice:
    """The probe lattice of the declared sizes; refuse a network that disagrees with them."""
    try:
        lat = Lattice(runner, declared)
    except StitchsafeError:
        raise
    except Exception as e:
        shape = tuple(m + 2 * s for m, s in zip(declared.min_input, declared.step))
        raise GeometryMismatchError(
            f"{where}: its description says input size {shape} is valid but the network fails "
            f"on it ({error_line(e)})."
        ) from None
    got = tuple(lat.y.shape[2:])
    if got != lat.expected or lat.y.shape[1] != spec.channels_out:
        raise GeometryMismatchError(
            f"{where}: its description says input {lat.shape} gives output "
            f"{lat.expected} with {spec.channels_out} channel(s), but the network returns "
            f"{got} with {lat.y.shape[1]}. Fix the package's axes (sizes, offsets, channels)."
        )
    return lat
