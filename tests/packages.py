"""Small bioimage.io model packages written offline, for the package tests (trust, resume).

Each needs the optional extra (``bioimageio.spec``) only when loaded, not when written.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from nets import make_net

from stitchsafe.models import save_torchscript

NET = "2d-d1-f2"  # period 2, halo 8, valid sizes 18 + 2k
ARCH = '''"""An architecture that announces itself: it writes a marker file when imported."""

from pathlib import Path

from evil_helpers import MARKER
from stitchsafe.models import UNet, UNetConfig

Path(MARKER).write_text("the package's architecture code ran")


def build_unet(**config):
    return UNet(UNetConfig(**config))
'''


class Payload:
    """Unpickling this writes a marker file (a hostile object in a state dict)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f"open({str(self.marker)!r}, 'w').write('unpickled')",)


def _axes(offset: int | None, size_min: int = 18) -> list[dict[str, Any]]:
    """Batch, channel, y, x: parameterised input sizes, or output sizes ``offset`` from them."""
    space = []
    for name in ("y", "x"):
        size: Any = {"min": size_min, "step": 2}
        if offset is not None:
            size = {"tensor_id": "raw", "axis_id": name, "offset": offset}
        space.append({"type": "space", "id": name, "size": size})
    names = ["raw"] if offset is None else ["a", "b"]
    return [{"type": "batch"}, {"type": "channel", "channel_names": names}, *space]


def write_package(
    folder: Path,
    weights: dict[str, Any],
    *,
    x: np.ndarray | None = None,
    net: torch.nn.Module | None = None,
    same_padded: bool = False,
) -> Path:
    """rdf.yaml, README and test tensors of a small U-Net package (weights already there).

    The test output is ``net(x)`` (default: the valid-convolution :data:`NET` on a 20x20
    input); ``same_padded`` declares outputs of the input's size (sizes 2 + 2k).
    """
    folder.mkdir(parents=True, exist_ok=True)
    if net is None:
        net, _ = make_net(NET, out_channels=2)
    if x is None:
        x = np.random.default_rng(1).random((1, 1, 20, 20)).astype(np.float32)
    with torch.no_grad():
        np.save(folder / "test_output.npy", net(torch.from_numpy(x)).numpy())
    np.save(folder / "test_input.npy", x)
    size_min, offset = (2, 0) if same_padded else (18, -16)
    (folder / "README.md").write_text("# A test U-Net\n")
    rdf = {
        "format_version": "0.5.4",
        "type": "model",
        "name": "stitchsafe trust test",
        "description": f"a small {'same-padded' if same_padded else 'valid-convolution'} U-Net",
        "authors": [{"name": "stitchsafe tests"}],
        "cite": [{"text": "Rumberger et al. ICCV 2021", "doi": "10.1109/ICCVW54120.2021.00067"}],
        "license": "BSD-3-Clause",
        "documentation": "README.md",
        "inputs": [
            {
                "id": "raw",
                "axes": _axes(None, size_min),
                "test_tensor": {"source": "test_input.npy"},
                "data": {"type": "float32"},
            }
        ],
        "outputs": [
            {
                "id": "out",
                "axes": _axes(offset, size_min),
                "test_tensor": {"source": "test_output.npy"},
            }
        ],
        "weights": weights,
    }
    (folder / "rdf.yaml").write_text(json.dumps(rdf, indent=1))
    return folder


def _version() -> str:
    return torch.__version__.split("+")[0]


def torchscript_package(folder: Path, source: str = "weights.pt") -> Path:
    """A package with TorchScript weights at ``source`` (relative to the folder)."""
    (folder / source).parent.mkdir(parents=True, exist_ok=True)
    net, _ = make_net(NET, out_channels=2)
    save_torchscript(net, folder / source)
    entry = {"source": source, "pytorch_version": _version()}
    return write_package(folder, {"torchscript": entry})


def same_padded_package(folder: Path, x: np.ndarray) -> Path:
    """A package of the same-padded test net (TorchScript), its test output ``net(x)``."""
    folder.mkdir(parents=True, exist_ok=True)
    net, _ = make_net("2d-same", out_channels=2)
    save_torchscript(net, folder / "weights.pt")
    entry = {"source": "weights.pt", "pytorch_version": _version()}
    return write_package(folder, {"torchscript": entry}, x=x, net=net, same_padded=True)


def state_dict_package(folder: Path, marker: Path, state: dict[str, Any] | None = None) -> Path:
    """A package whose architecture is a source file that writes ``marker`` when imported."""
    folder.mkdir(parents=True, exist_ok=True)
    net, cfg = make_net(NET, out_channels=2)
    torch.save(net.state_dict() if state is None else state, folder / "weights.pt")
    (folder / "evil_arch.py").write_text(ARCH)
    (folder / "evil_helpers.py").write_text(f"MARKER = {str(marker)!r}\n")
    arch = {"source": "evil_arch.py", "callable": "build_unet", "kwargs": json.loads(cfg.to_json())}
    entry = {"source": "weights.pt", "architecture": arch, "pytorch_version": _version()}
    return write_package(folder, {"pytorch_state_dict": entry})


def zip_folder(folder: Path, target: Path, **extra: bytes) -> Path:
    """Zip a package folder (deflated); ``extra`` members are added as given."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(folder.iterdir()):
            zf.write(f, f.name)
        for name, data in extra.items():
            zf.writestr(name, data)
    return target
