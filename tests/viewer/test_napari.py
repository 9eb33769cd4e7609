"""A real napari (napari + napari-ome-zarr, headless under Xvfb) opens a stitchsafe output.

The output of the console script run on an anisotropic OME-Zarr input written by
ome-zarr-py opens in napari as the raw image, the embeddings' channels as separate layers
named from the model's channel roles (only the foreground visible), and a Labels layer
with the raw image's world extent; screenshots show the labels' colours where the labels
are. napari's builtin zarr reader never reads the done mask (bookkeeping) as image data.
Needs the ``viewer`` extra and a display (``conftest.py`` starts Xvfb where there is none
and it is installed); skipped otherwise, saying which is missing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from cli_helpers import run_cli
from ome_zarr.writer import write_image

from stitchsafe.training import synthetic_cells

napari = pytest.importorskip(
    "napari", reason="napari is not installed (pip install -e '.[viewer]')"
)
pytest.importorskip("napari_ome_zarr", reason="napari-ome-zarr is not installed")


def _qt_problem() -> str | None:
    """Why Qt cannot open a window here, or None. Probed in a subprocess: a missing display
    or xcb library makes Qt abort the whole process, which must not be pytest's."""
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "no display, and no Xvfb to make one (apt-get install xvfb)"
    probe = "from qtpy.QtWidgets import QApplication; QApplication([])"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        return f"Qt cannot start here: {lines[0] if lines else proc.returncode}"
    return None


_PROBLEM = _qt_problem()
if _PROBLEM is not None:
    pytest.skip(_PROBLEM, allow_module_level=True)

# napari on PyQt5 cannot follow the system's light/dark theme; it says so at every start.
pytestmark = pytest.mark.filterwarnings("ignore:System theme detection:UserWarning")

SCALE = (2.0, 0.5, 0.5)
# The bundled 3-D model's channels: six embeddings and the foreground.
NAMES = [f"embedding {i}" for i in range(6)] + ["foreground"]
# Where the screenshots go (docs/figures/napari.png is demo.png); default: the
# test's temporary folder.
SHOTS = (
    Path(os.environ["STITCHSAFE_SCREENSHOTS"]) if "STITCHSAFE_SCREENSHOTS" in os.environ else None
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """An anisotropic OME-Zarr input (ome-zarr-py) and what `stitchsafe predict` made of it
    in its container: the labels under the raw image (the container's root), the
    embeddings beside it (``raw.zarr/embeddings``)."""
    tmp = tmp_path_factory.mktemp("napari")
    # Cells round in voxels (what the bundled model learnt), stored with a coarse z step.
    image, _ = synthetic_cells((16, 64, 64), seed=1)
    root = zarr.open_group(tmp / "raw.zarr", mode="w")
    write_image(
        image, root, axes="zyx", scale_factors=[],
        scale=dict(zip("zyx", SCALE)), axes_units=dict.fromkeys("zyx", "micrometer"),
    )  # fmt: skip
    proc = run_cli(
        "predict", "--input", str(tmp / "raw.zarr"), "--device", "cpu", "--no-progress",
        "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    return {"tmp": tmp, "raw": tmp / "raw.zarr", "result": result, "scale": SCALE}


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What `stitchsafe demo` wrote: the sample (image ``raw``) and its results, isotropic."""
    tmp = tmp_path_factory.mktemp("napari-demo")
    proc = run_cli("demo", "--output", str(tmp / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    raw = Path(result["output"]) / "raw"
    return {"tmp": tmp, "raw": raw, "result": result, "scale": (1.0, 1.0, 1.0)}


@pytest.fixture(scope="module")
def labels_only(demo: dict[str, Any]) -> Path:
    """The labels-only output (``--no-embeddings``) of the same input, in a new container."""
    out = demo["tmp"] / "labels-only.zarr"
    proc = run_cli(
        "predict", "--input", str(demo["raw"]), "--output", str(out), "--no-embeddings",
        "--device", "cpu", "--no-progress", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return Path(json.loads(proc.stdout)["output"])


@pytest.fixture(scope="module")
def created(demo: dict[str, Any]) -> dict[str, Any]:
    """predict's output into a new container (``--output``): the container is the image."""
    out = demo["tmp"] / "created.zarr"
    proc = run_cli(
        "predict", "--input", str(demo["raw"]), "--output", str(out), "--device", "cpu",
        "--no-progress", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def viewer() -> Any:
    # Shown (on the virtual display): a hidden canvas is never drawn, its screenshots black.
    v = napari.Viewer(show=True)
    v.window.resize(900, 700)
    yield v
    v.close()


def _open(viewer: Any, path: Path | str, plugin: str) -> list[Any]:
    layers = viewer.open(str(path), plugin=plugin)
    assert layers, f"{plugin} found nothing in {path}"
    return list(layers)


def _canvas_mask(viewer: Any, layer: Any, shape: tuple[int, int]) -> np.ndarray:
    """Where ``layer``'s nonzero voxels of the shown slice fall on the canvas (H, W)."""
    z = int(round(viewer.dims.point[0] / layer.scale[0] - layer.translate[0] / layer.scale[0]))
    plane = np.asarray(layer.data[z] if not layer.multiscale else layer.data[0][z])
    scene = getattr(viewer, "scene", None)  # napari 0.9; earlier: viewer.camera
    camera = scene.camera if scene is not None else viewer.camera
    zoom = camera.zoom
    cy, cx = camera.center[-2:]
    rows = cy + (np.arange(shape[0]) + 0.5 - shape[0] / 2) / zoom
    cols = cx + (np.arange(shape[1]) + 0.5 - shape[1] / 2) / zoom
    iy = np.floor((rows - layer.translate[-2]) / layer.scale[-2] + 0.5).astype(int)
    ix = np.floor((cols - layer.translate[-1]) / layer.scale[-1] + 0.5).astype(int)
    inside = (iy[:, None] >= 0) & (iy[:, None] < plane.shape[0])
    inside = inside & (ix[None, :] >= 0) & (ix[None, :] < plane.shape[1])
    values = plane[np.clip(iy, 0, plane.shape[0] - 1)][:, np.clip(ix, 0, plane.shape[1] - 1)]
    return inside & (values != 0)


def _shot(viewer: Any, name: str, tmp: Path, *, canvas_only: bool = True) -> np.ndarray:
    """A screenshot, saved under ``name`` in $STITCHSAFE_SCREENSHOTS (or ``tmp``)."""
    path = (SHOTS or tmp) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    return np.asarray(viewer.screenshot(str(path), canvas_only=canvas_only))


@pytest.mark.parametrize("which", ["anisotropic", "demo"])
def test_output_opens_right(which: str, request: pytest.FixtureRequest, viewer: Any) -> None:
    demo = request.getfixturevalue("demo" if which == "anisotropic" else "demo_output")
    result = demo["result"]
    raw_layers = _open(viewer, demo["raw"], "napari-ome-zarr")
    # Opening the raw image shows raw + labels: the labels belong to it.
    labels = [x for x in raw_layers if type(x).__name__ == "Labels"]
    assert len(labels) == 1, [type(x).__name__ for x in raw_layers]
    embeddings = os.path.join(result["output"], *result["embeddings"].split("/")[:-1])
    emb_layers = _open(viewer, embeddings, "napari-ome-zarr")
    kinds = {type(layer).__name__ for layer in viewer.layers}
    raw = next(x for x in raw_layers if type(x).__name__ == "Image")
    labels = [x for x in viewer.layers if type(x).__name__ == "Labels"]
    assert len(labels) == 1, kinds
    label_layer = labels[0]
    # The raw image at its physical scale, and everything else in the same place.
    np.testing.assert_allclose(raw.scale, demo["scale"])
    world = np.asarray(raw.extent.world)
    np.testing.assert_allclose(label_layer.extent.world, world)
    channels = [x for x in emb_layers if type(x).__name__ == "Image"]
    for layer in channels:
        np.testing.assert_allclose(layer.extent.world, world)
    # One layer per channel, named from the roles; only the foreground is visible.
    assert [x.name.split(": ")[-1] for x in channels] == NAMES
    assert [x.name for x in channels if x.visible] == [channels[-1].name]
    for layer in channels:  # the contrast windows come from the data
        low, high = layer.contrast_limits
        assert low < high

    label_layer.visible = True  # napari-ome-zarr opens labels hidden
    full = _shot(viewer, f"{which}-canvas.png", demo["tmp"])
    window = _shot(viewer, f"{which}.png", demo["tmp"], canvas_only=False)
    assert window.shape[0] * window.shape[1] > full.shape[0] * full.shape[1]
    label_layer.opacity = 1.0
    for layer in viewer.layers:
        layer.visible = layer is label_layer
    only_labels = _shot(viewer, f"{which}-labels.png", demo["tmp"])
    coloured = only_labels[..., :3].max(axis=-1) > 0
    expected = _canvas_mask(viewer, label_layer, coloured.shape)
    assert expected.sum() > 1000, "the shown slice holds too few labelled voxels to check"
    overlap = (coloured & expected).sum() / (coloured | expected).sum()
    assert overlap > 0.9, f"the labels' colours cover {overlap:.0%} of where the labels are"
    # The full view shows more than the labels: the raw image and the foreground too.
    assert (full[..., :3].max(axis=-1) > 0).sum() > coloured.sum()


def test_the_output_path_opens_as_embeddings_and_labels(
    demo: dict[str, Any], created: dict[str, Any], viewer: Any
) -> None:
    """The ``output`` path that --json prints, opened alone in napari-ome-zarr: one layer
    per embeddings channel (only the foreground visible) and the labels, all where the raw
    image lies."""
    assert (created["embeddings"], created["labels"]) == ("0", "labels/instances/0")
    layers = _open(viewer, created["output"], "napari-ome-zarr")
    images = [x for x in layers if type(x).__name__ == "Image"]
    labels = [x for x in layers if type(x).__name__ == "Labels"]
    assert [x.name.split(": ")[-1] for x in images] == NAMES
    assert [x.name for x in images if x.visible] == [images[-1].name]
    assert len(labels) == 1 and len(layers) == len(NAMES) + 1
    np.testing.assert_allclose(labels[0].scale, demo["scale"])
    for layer in layers:
        np.testing.assert_allclose(layer.extent.world, labels[0].extent.world)
    written = zarr.open_array(Path(created["output"]) / created["labels"], mode="r")[...]
    shown = labels[0].data[0] if labels[0].multiscale else labels[0].data
    np.testing.assert_array_equal(np.asarray(shown), written)
    labels[0].visible = True  # napari-ome-zarr opens labels hidden
    shot = _shot(viewer, "created.png", demo["tmp"])
    assert (shot[..., :3].max(axis=-1) > 0).sum() > 1000


def test_the_demo_container_opens_whole(demo_output: dict[str, Any], viewer: Any) -> None:
    """The demo's container (``sample.zarr``: raw, embeddings) opened itself: its root lists
    both images, so napari-ome-zarr shows the raw image, its labels and the embeddings."""
    layers = _open(viewer, demo_output["result"]["output"], "napari-ome-zarr")
    kinds = [type(x).__name__ for x in layers]
    assert kinds.count("Labels") == 1 and kinds.count("Image") == 1 + len(NAMES), kinds
    assert [x.name.split(": ")[-1] for x in layers if type(x).__name__ == "Image"][1:] == NAMES
    world = np.asarray(layers[0].extent.world)
    for layer in layers:
        np.testing.assert_allclose(layer.extent.world, world)


@pytest.mark.parametrize("which", ["predict", "labels-only"])
def test_builtin_reader_ignores_bookkeeping(
    which: str, demo: dict[str, Any], request: pytest.FixtureRequest, viewer: Any
) -> None:
    """napari's builtin zarr reader, opening the output container or any image or labels
    group in it, reads only levels that the OME-Zarr metadata lists, never the done mask.

    (It is not OME-Zarr aware: on a group with subgroups it opens the first one, on a group
    without arrays it finds nothing; napari-ome-zarr is the reader for stitchsafe outputs.)
    """
    if which == "predict":
        out = Path(demo["result"]["output"])
    else:
        out = request.getfixturevalue("labels_only")
    groups = [p.parent for p in out.rglob("zarr.json") if _node(p.parent) == "group"]
    listed = {level for g in groups if _is_image(g) for level in _levels(g)}
    done = {_kind(p.parent) for p in out.rglob("zarr.json") if "done" in p.parent.name}
    assert done, "no done mask found in the output"
    assert not done & listed
    opened = [g for g in groups if g == out or _is_image(g) or g.name == "labels"]
    seen = []
    for group in opened:
        try:
            layers = viewer.open(str(group), plugin="napari")
        except ValueError as e:  # a group holding only groups: nothing to show
            assert "No arrays found" in str(e)
            continue
        for layer in layers:
            for data in layer.data if layer.multiscale else [layer.data]:
                seen.append((group, (tuple(data.shape), str(data.dtype))))
        viewer.layers.clear()
    assert seen
    for group, kind in seen:
        assert kind in listed, f"the builtin reader read {kind} from {group}: not image data"


def _node(path: Path) -> str:
    return json.loads((path / "zarr.json").read_text()).get("node_type", "")


def _kind(path: Path) -> tuple[tuple[int, ...], str]:
    array = zarr.open_array(path, mode="r")
    return tuple(array.shape), str(array.dtype)


def _is_image(path: Path) -> bool:
    attrs = json.loads((path / "zarr.json").read_text()).get("attributes", {})
    return "multiscales" in attrs.get("ome", {})


def _levels(image: Path) -> list[tuple[tuple[int, ...], str]]:
    attrs = json.loads((image / "zarr.json").read_text())["attributes"]["ome"]
    return [_kind(image / d["path"]) for d in attrs["multiscales"][0]["datasets"]]
