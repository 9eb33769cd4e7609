"""Running a model to measure it: counted forward passes, probe inputs, window comparisons.

Nothing in the probe trusts that a forward pass *succeeded*: exported and TorchScript
U-Nets run on invalid sizes too (pooling floors, skip crops hide it) and return
misaligned output. Comparisons run in float64 on a copy of the module where possible (own
checkpoints, TorchScript), with tolerance ``1e-6 x max|output|``; otherwise float32 with
``1e-4`` (the exactness tolerance of the stitched output). The input is noise plus smooth
ramps, so that window statistics differ.

:class:`Runner` runs the model and counts; :class:`Lattice` is a valid input enlarged by
one step on every side, whose windows must reproduce regions of its output.
"""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch

from ..errors import StitchsafeError
from ..geometry import ModelGeometry
from ._loaded import LoadedModel, quiet_torchscript

__all__ = ["RTOL", "Lattice", "Runner", "structured_input"]

Shape = tuple[int, ...]
WindowDiff = float | Shape | str  # relative difference, wrong output shape, or failure
logger = logging.getLogger(__name__)

RTOL = {torch.float64: 1e-6, torch.float32: 1e-4}
PROBE_HINT = (
    "Give the geometry instead: metadata stored with the model (see stitchsafe.models), or "
    "--pooling-factor/--depth."
)


def structured_input(shape: Sequence[int], channels: int, *, seed: int = 0) -> torch.Tensor:
    """Seeded float64 input ``(1, channels, *shape)``: noise plus ramps and slow waves.

    The ramps make windows at different positions differ in mean and variance, so that
    normalisation over spatial statistics shows in a comparison.

    >>> tuple(structured_input((3, 4), 2).shape)
    (1, 2, 3, 4)
    """
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn((1, channels, *shape), generator=gen, dtype=torch.float64)
    for a, n in enumerate(shape):
        c = torch.arange(n, dtype=torch.float64)
        ramp = 0.05 * c + 0.002 * c**2 + 0.5 * torch.sin(0.37 * c + a)
        x += ramp.reshape((1, 1) + tuple(n if b == a else 1 for b in range(len(shape))))
    return x


@contextmanager
def _no_tf32(device: torch.device) -> Iterator[None]:
    """Full float32 precision on CUDA: TF32 convolutions err by ~1e-3, above the tolerance."""
    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


class Runner:
    """Runs a model for probing and counts forward passes.

    ``run(x, precise=True)`` uses a float64 copy of the module where the format allows
    (own checkpoints, TorchScript), else the model itself in float32.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.dims = model.dims
        self.channels = model.channels_in
        self.device = model.device
        self.forwards = 0
        self.started = time.perf_counter()
        self.last_error: BaseException | None = None
        self._precise: tuple[Callable[[torch.Tensor], Any], torch.dtype] | None = None
        self.bar: Any = None  # a progress bar advanced by each forward pass, if any

    @property
    def precise_dtype(self) -> torch.dtype:
        """The dtype of precise runs: float64 where a copy could be made, else float32."""
        return self._precise_fn()[1]

    @property
    def rtol(self) -> float:
        """The comparison tolerance of precise runs, relative to max |output|."""
        return RTOL[self.precise_dtype]

    def _precise_fn(self) -> tuple[Callable[[torch.Tensor], Any], torch.dtype]:
        if self._precise is None:
            self._precise = (self.model.module, torch.float32)
            try:
                if self.model.format == "stitchsafe":
                    module = copy.deepcopy(self.model.module).double()
                    self._precise = (module, torch.float64)
                elif self.model.format == "torchscript":
                    # a fresh load: deep copies of ScriptModules have non-leaf parameters
                    with quiet_torchscript():
                        module = torch.jit.load(self.model.path, map_location=self.device)
                    self._precise = (module.eval().double(), torch.float64)
            except Exception:  # some scripted modules cannot be cast; float32 will do
                pass
        return self._precise

    def drop_precision(self) -> bool:
        """Fall back to float32 (when the float64 copy fails); False if already float32."""
        if self.precise_dtype == torch.float32:
            return False
        self._precise = (self.model.module, torch.float32)
        return True

    def run(self, x: torch.Tensor, *, precise: bool = False) -> torch.Tensor:
        """One counted forward pass; the output as float64 on the CPU."""
        fn, dtype = self._precise_fn() if precise else (self.model.module, torch.float32)
        self.forwards += 1
        if self.bar is not None:
            self.bar.update(1)
        with torch.inference_mode(), _no_tf32(self.device):
            y = fn(x.to(device=self.device, dtype=dtype))
        if not isinstance(y, torch.Tensor) or y.ndim != x.ndim or y.shape[0] != x.shape[0]:
            got = tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__
            raise StitchsafeError(
                f"the model returned {got} for an input of shape {tuple(x.shape)}; stitchsafe "
                "needs one tensor (N, C_out, *spatial) with the input's number of axes."
            )
        return y.to(device="cpu", dtype=torch.float64)

    def try_run(self, x: torch.Tensor, *, precise: bool = False) -> torch.Tensor | None:
        """:meth:`run`, or None when the model fails (the error kept in ``last_error``)."""
        try:
            return self.run(x, precise=precise)
        except Exception as e:  # invalid sizes fail in many ways; remember why
            self.last_error = e
            return None

    def cost(self) -> str:
        """What running cost so far, in words."""
        return f"{self.forwards} forward passes, {time.perf_counter() - self.started:.1f} s"


class Lattice:
    """A valid input enlarged by one step on every side, and windows of it.

    The window at ``offset`` (a multiple of the period per axis, for an equivariant model)
    must give the output region ``[offset, offset + out)`` of the whole input's output.
    """

    def __init__(self, runner: Runner, geometry: ModelGeometry) -> None:
        self.runner = runner
        self.geometry = geometry
        self.base = geometry.min_input
        self.base_out = minus(self.base, geometry.context)
        self.shape = tuple(m + 2 * s for m, s in zip(self.base, geometry.step, strict=True))
        self.expected = minus(self.shape, geometry.context)
        self.x = structured_input(self.shape, runner.channels, seed=12345)
        self.y = self._run_whole()
        self.scale = float(self.y.abs().max())
        if not math.isfinite(self.scale) or self.scale == 0.0:
            raise StitchsafeError(
                f"{runner.model.path!r}: the model returns "
                f"{'all zeros' if self.scale == 0.0 else 'NaN or infinite values'} for the probe "
                f"input of shape {self.shape}; stitchsafe cannot compare outputs to measure its "
                f"geometry. {PROBE_HINT}"
            )

    def _run_whole(self) -> torch.Tensor:
        """The whole input's output, precise where the model allows."""
        runner = self.runner
        try:
            return runner.run(self.x, precise=True)
        except StitchsafeError:
            raise
        except Exception:
            # a float64 copy that fails where float32 runs: fall back to float32
            if runner.precise_dtype == torch.float32 or runner.try_run(self.x) is None:
                raise
            runner.drop_precision()
            return runner.run(self.x, precise=True)

    def window(self, offset: Sequence[int]) -> WindowDiff:
        """Relative max difference; else the wrong output shape, or why the model failed."""
        try:
            y = self.runner.run(self.x[_box(offset, self.base)], precise=True)
        except StitchsafeError:
            raise
        except Exception as e:
            return error_text(e)
        if tuple(y.shape[2:]) != self.base_out:
            return tuple(y.shape[2:])
        ref = self.y[_box(offset, self.base_out)]
        return float((y - ref).abs().max()) / self.scale

    def shifted(self, axis: int, shift: int) -> WindowDiff:
        """:meth:`window` one step in from every side, moved by ``shift`` along ``axis``."""
        offset = list(self.geometry.step)
        offset[axis] += shift
        return self.window(offset)


def _box(offset: Sequence[int], shape: Sequence[int]) -> tuple[slice, ...]:
    """Index of the spatial box ``[offset, offset + shape)``, all batch items and channels."""
    spatial = (slice(o, o + n) for o, n in zip(offset, shape, strict=True))
    return (slice(None), slice(None), *spatial)


def minus(a: Sequence[int], b: Sequence[int]) -> Shape:
    """Per-axis difference.

    >>> minus((10, 12), (4, 4))
    (6, 8)
    """
    return tuple(x - y for x, y in zip(a, b, strict=True))


def error_text(e: BaseException) -> str:
    """An exception as ``"Type: first line"`` (at most 200 characters of message).

    >>> error_text(RuntimeError("sizes differ\\nat layer 3"))
    'RuntimeError: sizes differ'
    """
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


def differs(d: WindowDiff, tol: float) -> bool:
    """Whether a window comparison failed: an error, a wrong shape, or above ``tol``."""
    return not isinstance(d, float) or d > tol


def format_diff(d: WindowDiff) -> str:
    """A window comparison in words.

    >>> format_diff((3, 4)), format_diff(2e-3)
    ('output shape (3, 4)', 'by 0.002 of max |output|')
    """
    if isinstance(d, tuple):
        return f"output shape {d}"
    if isinstance(d, str):
        return f"an error ({d})"
    return f"by {d:.2g} of max |output|"


def log_probe(model: LoadedModel, message: str) -> None:
    """Record what probing cost (``model.probe_log``; logged at INFO, not a stderr note)."""
    model.probe_log.append(message)
    logger.info("%s: %s", model.path, message)
