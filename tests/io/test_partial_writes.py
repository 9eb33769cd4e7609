"""An output folder left holding only zarr's partial writes (a full disk) is not a refusal."""

from __future__ import annotations

from pathlib import Path

import pytest

from stitchsafe.errors import StitchsafeError
from stitchsafe.io import check_output_group


def test_a_folder_of_partial_writes_counts_as_empty(tmp_path: Path) -> None:
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "zarr.json.a1b2c3.partial").write_bytes(b"{")
    check_output_group(str(out))  # no refusal
    assert list(out.iterdir()) == []  # nobody's data, removed


@pytest.mark.parametrize("other", ["notes.txt", "zarr.json.partial.d"])
def test_anything_else_beside_them_is_still_refused(tmp_path: Path, other: str) -> None:
    out = tmp_path / "out.zarr"
    out.mkdir()
    (out / "zarr.json.a1b2c3.partial").write_bytes(b"{")
    target = out / other
    target.mkdir() if other.endswith(".d") else target.write_text("mine")
    with pytest.raises(StitchsafeError, match="not a zarr group"):
        check_output_group(str(out))
    assert (out / "zarr.json.a1b2c3.partial").exists() and target.exists()
