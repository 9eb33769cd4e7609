"""The plan's text: geometry, tiles and overheads of a plan, one row each."""

from __future__ import annotations

from typing import Any

from ..io import InputSelection, PhysicalScale

__all__ = ["describe_plan"]


def _selection_rows(selection: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The row ``selection  channel 1; timepoint 2`` when --channel/--timepoint/--level
    chose part of the input; none otherwise."""
    chosen = InputSelection.from_dict(selection)
    return [] if chosen.is_default else [("selection", chosen.describe())]


def describe_plan(d: dict[str, Any]) -> str:
    """The plan as aligned rows (``stitchsafe plan``); ``d`` is ``PlanResult.to_dict()``."""

    def fmt(v: Any) -> str:
        return " x ".join(str(x) for x in v) if isinstance(v, list) else str(v)

    rows = [
        (
            "model",
            f"{d['model']['path']} ({d['model']['format']}, geometry from {d['geometry_source']})",
        ),
        ("volume", f"{fmt(d['volume_shape'])}, {d['input']['channels']} channel(s)"),
        *_selection_rows(d["input"].get("selection")),
        *([("voxel size", PhysicalScale(**d["physical"]).describe())] if d.get("physical") else []),
        ("period", fmt(d["period"])),
        ("halo (lo, hi)", ", ".join(f"({lo}, {hi})" for lo, hi in d["halo"])),
        ("remainder r", f"{fmt(d['remainder'])} (cropped, never stitched)"),
        (
            "valid input sizes",
            ", ".join(
                f"{m} + k*{s}" for m, s in zip(d["valid_input"]["min"], d["valid_input"]["step"])
            ),
        ),
        ("tile write box", fmt(d["tile_shape"])),
        ("tile read box", fmt(d["read_shape"])),
        ("raw tile output", fmt(d["raw_output_shape"])),
        ("tiles", f"{d['tiles']} ({fmt(d['grid_shape'])})"),
        ("padded shape", fmt(d["padded_shape"])),
        (
            "border tiles",
            "shifted inside the image (the network's own padding acts there)"
            if d.get("border") == "inside"
            else "read past the border, padded with --pad-mode",
        ),
        ("halo overhead", f"{d['halo_overhead']:.2f} input voxels read per output voxel"),
        (
            "distinguishable",
            f"at most {d['distinguishable_objects']} same-looking objects (prod(period))",
        ),
        (
            "training rule",
            "output window must be larger than " + fmt(d["period"]) + " on every axis",
        ),
    ]
    a = d.get("approximate")
    if a is not None:
        rows.insert(
            0,
            (
                "APPROXIMATE",
                f"deviation {a['measured_deviation']:.1e} of max |output| on the probes, "
                f"--tolerance {a['tolerance']:.0e} (--allow-approximate; {a['reason']})",
            ),
        )
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
