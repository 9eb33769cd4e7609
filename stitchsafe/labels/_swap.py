"""New labels beside the old ones: built in a scratch group, swapped in when complete.

:func:`~stitchsafe.labels.write_labels` never writes into the label image it replaces.
The new label image is built at ``.stitchsafe/<image>/new-labels/labels/<name>`` in the
container's bookkeeping folder (:func:`stitchsafe.io.bookkeeping_path`: outside every
OME-Zarr image, so no reader takes it for one; the same depth below the scratch group as
below the image at its final place, so its relative OME-Zarr metadata holds), marked
complete there, and only then moved to ``<home>/labels/<name>``, where ``<home>`` is the
image the labels belong to (:func:`stitchsafe.io.labels_of`: the raw image of an OME-Zarr
input in its own container, else the embeddings image itself, the container's root in a
container stitchsafe made):

1. the old label image (if any) is renamed into the scratch group,
2. the new one is renamed into its place (a rename on one file system: all or nothing),
3. the ``labels`` group lists ``name``, and the scratch group with the old labels is
   removed.

An interruption before step 1 leaves the old labels untouched; between steps 1 and 2 the
old ones are renamed back at once, or (if the process dies right there) by the next run;
after step 2 the new labels are complete. A scratch group left by an interrupted run is
cleared by the next one, which first restores old labels that were set aside (also one
that an earlier version left inside the image, at ``<image>/stitchsafe-new-labels``).

An object store (an output at ``s3://...``) has no rename: there the complete new label
image is copied into its place (a server-side copy of each object), its own metadata
(``<name>/zarr.json``) last, after the old image's metadata and then its objects were
deleted. A label image without its metadata is no image to any reader, so nothing
half-copied is ever presented as complete; a copy that was interrupted leaves the scratch
group behind, and the next run removes the half-copied objects with it (the labels are
then derived again).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Any

import zarr

from ..errors import StitchsafeError
from ..io import (
    OutputSpec,
    bookkeeping_path,
    inner_path,
    is_url,
    labels_of,
    place_copy,
    place_exists,
    place_isfile,
    place_keys,
    place_remove,
    zarr_node,
)

__all__ = ["NEW_LABELS", "LabelPlace"]

NEW_LABELS = "new-labels"
"""The scratch group (in the image's bookkeeping folder) where new labels are built until
they are complete."""
# Where earlier versions built them: inside the image group.
_LEGACY_NEW_LABELS = "stitchsafe-new-labels"

_OLD = "previous-"


@dataclass(frozen=True)
class LabelPlace:
    """Where the label image ``name`` derived from the embeddings image ``image`` (in the
    zarr v3 ``group``) goes, and where it is built until it is complete.

    ``home`` is the image whose ``labels`` group receives it, read once from the
    embeddings' attributes (:func:`stitchsafe.io.labels_of`); the scratch group is in the
    embeddings' bookkeeping.

    Examples
    --------
    >>> place = LabelPlace("out.zarr", "embeddings", "instances")
    >>> place.final, place.scratch
    ('embeddings/labels/instances', '.stitchsafe/embeddings/new-labels')
    >>> place.building
    '.stitchsafe/embeddings/new-labels/labels/instances'
    >>> root = LabelPlace("out.zarr", "", "instances")
    >>> root.final, root.scratch
    ('labels/instances', '.stitchsafe/new-labels')
    >>> LabelPlace("out.zarr", "embeddings", "a/b")
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: invalid label image name 'a/b'; use e.g. 'instances'.
    """

    group: str
    image: str
    name: str
    home: str = field(init=False)

    def __post_init__(self) -> None:
        if "/" in self.name or self.name in ("", ".", "..") or self.name.startswith("__"):
            raise StitchsafeError(f"invalid label image name {self.name!r}; use e.g. 'instances'.")
        object.__setattr__(self, "home", labels_of(self.group, self.image))

    @property
    def labels(self) -> str:
        """The ``labels`` group's path inside ``group``: ``<home>/labels``."""
        return inner_path(self.home, "labels")

    @property
    def final(self) -> str:
        """The label image's path inside ``group``: ``<home>/labels/<name>``."""
        return inner_path(self.labels, self.name)

    @property
    def scratch(self) -> str:
        """The scratch group's path inside ``group``: ``.stitchsafe/<image>/new-labels``."""
        inner = os.path.relpath(bookkeeping_path(self.group, self.image, NEW_LABELS), self.group)
        return inner.replace(os.sep, "/")

    @property
    def building(self) -> str:
        """Where the new label image is built: ``<scratch>/labels/<name>``."""
        return f"{self.scratch}/labels/{self.name}"

    def path(self, inner: str) -> str:
        """The file-system path of ``inner`` (a path inside ``group``)."""
        return os.path.join(self.group, *inner.split("/"))

    def prepare(self, *, overwrite: bool) -> None:
        """Clear what an interrupted run left, check the old labels, make the groups.

        Raises
        ------
        StitchsafeError
            Labels ``name`` exist and ``overwrite`` is false, they were not written by
            stitchsafe, or ``<image>/labels`` is not a zarr v3 group. Nothing is changed
            then (beyond restoring old labels that an interrupted swap set aside).
        """
        self.clear_leftovers()
        labels_dir = self.path(self.labels)
        if place_exists(labels_dir) and (zarr_node(labels_dir) or ())[:2] != ("group", 3):
            raise StitchsafeError(
                f"{self.labels} in {self.group!r} exists but is not a zarr v3 group; "
                "move it away to write labels there."
            )
        self._check_existing(overwrite)
        labels = zarr.open_group(store=labels_dir, mode="a", zarr_format=3)
        if not isinstance(labels.attrs.asdict().get("ome"), dict):
            labels.attrs["ome"] = {"version": "0.5", "labels": []}
        scratch = zarr.open_group(store=self.path(self.scratch), mode="w", zarr_format=3)
        scratch.attrs["stitchsafe"] = {
            "scratch": f"new labels for {self.final} while they are written; removed when "
            "they are complete, or by the next run if this one was interrupted"
        }

    def _check_existing(self, overwrite: bool) -> None:
        """Refuse existing labels without ``overwrite``, and labels stitchsafe did not write."""
        path = self.path(self.final)
        if not place_exists(path):
            return
        if not overwrite:
            raise StitchsafeError(
                f"the output {self.group!r} already holds {self.final!r}. Pass --overwrite to "
                "replace it (the old labels stay until the new ones are complete), or choose "
                "another output path or image name."
            )
        node = zarr_node(path)
        if node is None or "stitchsafe" not in node[2]:
            raise StitchsafeError(
                f"{self.final!r} in {self.group!r} was not written by stitchsafe (it has no "
                "stitchsafe attributes), so --overwrite will not replace it. Move it away or "
                "delete it yourself, or choose another output image name."
            )

    def clear_leftovers(self) -> None:
        """Finish what an interrupted swap left (old labels put back, or the new ones
        listed), then remove the scratch group (and one an earlier version left)."""
        for inner in (inner_path(self.image, _LEGACY_NEW_LABELS), self.scratch):
            self._clear_scratch(self.path(inner))

    def _clear_scratch(self, scratch: str) -> None:
        """:meth:`clear_leftovers` for the scratch group at ``scratch``."""
        if is_url(scratch):
            self._clear_remote_scratch(scratch)
            return
        if not os.path.lexists(scratch):
            return
        old, final = os.path.join(scratch, _OLD + self.name), self.path(self.final)
        if os.path.isdir(old) and not os.path.lexists(final):
            os.rename(old, final)
        if os.path.isdir(final) and zarr_node(os.path.dirname(final)) is not None:
            _list_label(os.path.dirname(final), self.name)
        if os.path.isdir(scratch) and not os.path.islink(scratch):
            shutil.rmtree(scratch)
        else:
            os.remove(scratch)

    def _clear_remote_scratch(self, scratch: str) -> None:
        """:meth:`clear_leftovers` in an object store: a copy into the final place that
        was interrupted (the scratch group is still there) is removed."""
        if not place_exists(scratch):
            return
        final = self.path(self.final)
        if place_isfile(f"{final}/zarr.json"):  # the copy was complete: list the labels
            if zarr_node(os.path.dirname(final)) is not None:
                _list_label(os.path.dirname(final), self.name)
        else:  # a copy (or a deletion of the old labels) stopped half-way
            place_remove(final)
        place_remove(scratch)

    def _copy_in(self) -> None:
        """:meth:`swap_in` in an object store: delete the old labels (their metadata
        first), copy the new ones (their own metadata last)."""
        final, new = self.path(self.final), self.path(self.building)
        if place_exists(final):
            place_remove(f"{final}/zarr.json")
            place_remove(final)
        keys = sorted(place_keys(new), key=lambda key: key == "zarr.json")  # stable
        place_copy(new, final, keys)

    def swap_in(self) -> OutputSpec:
        """Move the complete new label image into its place; the old one is removed.

        Returns
        -------
        OutputSpec
            The label image at ``<home>/labels/<name>``.
        """
        if is_url(self.group):
            self._copy_in()
            _list_label(self.path(self.labels), self.name)
            self.discard()
            return OutputSpec(group=self.group, image=self.final, array=f"{self.final}/0")
        final, new = self.path(self.final), self.path(self.building)
        old = os.path.join(self.path(self.scratch), _OLD + self.name)
        try:
            if os.path.lexists(final):
                os.rename(final, old)
            os.rename(new, final)
        except BaseException:
            # Interrupted (or failed) between the two renames: the old labels go back.
            if not os.path.lexists(final) and os.path.isdir(old):
                os.rename(old, final)
            raise
        _list_label(self.path(self.labels), self.name)
        self.discard()
        return OutputSpec(group=self.group, image=self.final, array=f"{self.final}/0")

    def discard(self) -> None:
        """Remove the scratch group and the new labels in it (before :meth:`swap_in`)."""
        if is_url(self.group):
            place_remove(self.path(self.scratch))
            return
        shutil.rmtree(self.path(self.scratch), ignore_errors=True)

    def interrupted(self) -> str:
        """What an interrupted labelling left, in one sentence."""
        kept = (
            f"the labels at {self.final} were left as they were"
            if place_exists(self.path(self.final))
            else "no labels were written"
        )
        return (
            f"Labelling stopped before it was complete: {kept} (the partial new labels in "
            f"{self.scratch} are cleared by the next run)."
        )


def _list_label(labels_dir: str, name: str) -> None:
    """List ``name`` in the OME-Zarr metadata of the ``labels`` group at ``labels_dir``."""
    labels = zarr.open_group(store=labels_dir, mode="r+")
    previous: Any = labels.attrs.asdict().get("ome")
    ome: dict[str, Any] = dict(previous) if isinstance(previous, dict) else {}
    names = [str(n) for n in ome.get("labels", [])]
    if name not in names:
        labels.attrs["ome"] = {**ome, "version": "0.5", "labels": [*names, name]}
