"""stitchsafe as one step of a Python pipeline: arrays in, a lazy array out, one model.

The pipeline holds its images as arrays (here: three synthetic nuclei-like images made in
memory; in a lab, what the previous step produced). It loads the network once, gets each
image's embeddings as a lazy dask array (nothing runs until asked), reduces the
foreground channel block by block, and writes one result where it wants it. Every image
is tiled exactly: the stitched result equals one whole-image pass.

Run with ``python examples/pipeline.py [--size 256] [--out DIR]``; the test suite runs it
(``tests/test_examples.py``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time

import numpy as np
import zarr

import stitchsafe
from stitchsafe.models import bundled_model
from stitchsafe.training import synthetic_cells


def images(size: int) -> list[np.ndarray]:
    """Three images as a previous pipeline step might hand them over (float32, 2-D)."""
    return [synthetic_cells((size, size), seed=seed)[0].astype(np.float32) for seed in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=256, help="image side, in pixels")
    parser.add_argument("--out", default=None, help="folder for the written result")
    args = parser.parse_args()
    # The library logs through `logging`; a pipeline shows it as it likes.
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    model = stitchsafe.load_model(bundled_model(2))  # loaded and cross-checked once
    print(model.describe())
    out = args.out or tempfile.mkdtemp(prefix="stitchsafe-pipeline-")
    for i, image in enumerate(images(args.size)):
        tick = time.perf_counter()
        lazy = stitchsafe.predict_lazy(model, image, tile_shape=64, voxel_size="0.65", unit="um")
        foreground = lazy.embeddings[-1]  # the last channel's role is "foreground"
        share = float((foreground > 0).mean().compute())  # computed tile by tile
        print(
            f"image {i}: {image.shape}, {lazy.embeddings.numblocks[1:]} tiles, "
            f"{share:.0%} foreground, {time.perf_counter() - tick:.1f} s"
        )
        if i == 0:  # one result kept: written blockwise, never whole in memory
            lazy.embeddings.to_zarr(f"{out}/image0-embeddings.zarr", overwrite=True)
    kept = zarr.open_array(f"{out}/image0-embeddings.zarr", mode="r")
    print(f"wrote {out}/image0-embeddings.zarr {kept.shape} (roles {lazy.channel_roles})")


if __name__ == "__main__":
    main()
