"""Retrain the models bundled in ``stitchsafe/models`` from synthetic cells.

Writes the synthetic training volumes (seed 0 of :func:`stitchsafe.training.synthetic_cells`)
as TIFF files and runs ``stitchsafe train`` on them with the flags below; each checkpoint
records that exact command in its metadata (``stitchsafe info``-style:
``load_model(path).metadata["training"]["command"]``).

Usage::

    python examples/train_bundled_models.py --workdir /tmp/bundled [--only 2d|3d]

Then copy ``WORKDIR/cells2d.pt`` and ``WORKDIR/cells3d.pt`` into ``stitchsafe/models/``.
Takes about 5 minutes (2-D, 2 CPU cores) and 75 minutes (3-D, one core of a 2-core CPU).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import tifffile

from stitchsafe.training import synthetic_cells

# name -> (training volume shape, extra `stitchsafe train` flags)
MODELS = {
    "2d": ((512, 512), []),
    "3d": (
        (96, 256, 256),
        ["--foreground-target", "separated", "--iterations", "6000", "--no-progress"],
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--only", choices=sorted(MODELS))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    for name, (shape, flags) in MODELS.items():
        if args.only and name != args.only:
            continue
        image, labels = synthetic_cells(shape, seed=0)
        # Relative names, run inside the work folder: the recorded command is portable.
        img, lbl = f"cells{name}.tif", f"cells{name}_labels.tif"
        tifffile.imwrite(args.workdir / img, image)
        tifffile.imwrite(args.workdir / lbl, labels)
        command = [
            "stitchsafe", "train", "--image", img, "--labels", lbl,
            "--output", f"cells{name}.pt", "--overwrite", *flags,
        ]  # fmt: skip
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True, stdout=sys.stdout, cwd=args.workdir)


if __name__ == "__main__":
    main()
