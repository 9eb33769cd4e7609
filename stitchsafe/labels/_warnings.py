"""Warnings when a labelling's result looks wrong: most of the volume labelled, one object
spanning most of it, no objects at all, embeddings that are not numbers.

The labelling passes count a few numbers as they go (:class:`ResultStats`: nothing is read
again for them); :func:`result_warnings` turns those numbers into warnings, each one short
paragraph that says what to try. They are warnings, not errors: the labels are written
and the command succeeds, but a user should look before trusting them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

__all__ = [
    "MOSTLY_LABELLED",
    "ONE_OBJECT",
    "ResultStats",
    "nonfinite_warning",
    "result_warnings",
]

# More of the volume's voxels labelled than this: with a foreground channel, the model sees
# foreground almost everywhere (cells rarely fill a whole microscopy volume).
MOSTLY_LABELLED = 0.9
# One object holding more of the volume's voxels than this: objects have merged.
ONE_OBJECT = 0.5


@dataclass(frozen=True)
class ResultStats:
    """What a labelling found, in a few numbers counted during its passes.

    Attributes
    ----------
    voxels
        Voxels in the volume.
    objects
        Objects labelled.
    labelled
        Voxels that carry a label (all objects together, after growth).
    largest
        Voxels of the largest object (0 without objects).
    linked
        Voxels that passed the foreground cut (the seed tests, when seeded) before the
        size filter: the voxels the objects were made of.
    nonfinite
        Embedding values (all channels) that are NaN or infinite, in the blocks this run
        computed or read.
    foreground
        Whether the model has a foreground (or probability) channel; without one every
        voxel is foreground, and a volume labelled all over is no sign of trouble.
    seeded
        Whether only seed voxels were linked (``--seed-threshold``).

    Examples
    --------
    >>> ResultStats(100, objects=2, labelled=30, largest=20, linked=30).fraction(20)
    0.2
    """

    voxels: int
    objects: int
    labelled: int
    largest: int
    linked: int
    nonfinite: int = 0
    foreground: bool = True
    seeded: bool = False

    def fraction(self, count: int) -> float:
        """``count`` as a fraction of the volume's voxels (0 for an empty volume)."""
        return count / self.voxels if self.voxels else 0.0

    def to_dict(self) -> dict[str, int | bool]:
        """The numbers as JSON values (stored with the labels, read back by ``info``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, record: object) -> ResultStats | None:
        """The numbers :meth:`to_dict` stored, or ``None`` for a record that is not one
        (an output written before they were stored, or edited by hand).

        >>> ResultStats.from_dict(ResultStats(9, 1, 4, 4, 4).to_dict()).labelled
        4
        >>> ResultStats.from_dict({"voxels": "many"}) is None
        True
        """
        if not isinstance(record, dict):
            return None
        known = {f.name for f in fields(cls)}
        if not set(record) <= known or not {"voxels", "objects"} <= set(record):
            return None
        if not all(type(v) in (int, bool) for v in record.values()):
            return None
        try:
            return cls(**record)
        except TypeError:  # a required number missing
            return None


def result_warnings(
    stats: ResultStats, *, command: str = "predict", model: str | None = None
) -> tuple[str, ...]:
    """The warnings ``stats`` call for, each a short paragraph that says what to try.

    Parameters
    ----------
    stats
        What the labelling found.
    command
        ``"predict"`` or ``"segment"``: the command whose options the advice names (the
        input's normalisation and channel are predict's options).
    model
        The stitchsafe checkpoint predict ran, named in the advice to fine-tune it
        (``None``: another format, or unknown).

    Examples
    --------
    >>> result_warnings(ResultStats(100, objects=3, labelled=40, largest=20, linked=40))
    ()
    >>> [w.split(":")[0] for w in result_warnings(ResultStats(100, 1, 95, 95, 95))]
    ['95% of the voxels are labelled', 'one object holds 95% of the voxels']
    """
    found = []
    if stats.nonfinite:
        found.append(_nonfinite(stats, command))
    if stats.voxels and stats.objects == 0:
        found.append(_no_objects(stats, command, model))
    if stats.foreground and stats.fraction(stats.labelled) > MOSTLY_LABELLED:
        found.append(_mostly_labelled(stats, command, model))
    if stats.objects and stats.fraction(stats.largest) > ONE_OBJECT:
        found.append(_one_object(stats, command, model))
    return tuple(found)


def _percent(stats: ResultStats, count: int) -> str:
    """``count`` as a percentage of the volume, never rounded to 100 unless it is all.

    >>> _percent(ResultStats(1000, 1, 999, 999, 999), 999), _percent(ResultStats(4, 1, 4, 4, 4), 4)
    ('99%', '100%')
    """
    value = 100.0 * stats.fraction(count)
    return f"{min(value, 99.0) if count < stats.voxels else 100.0:.0f}%"


def _check_input(command: str) -> str:
    """Where to look when the input may not be what the model expects."""
    if command == "predict":
        return (
            "check that the input looks like the model's training images (its intensity "
            "normalisation: --normalize; the channel it reads: --channel)"
        )
    return (
        "check the input the predict command read (its --normalize and --channel options "
        "say how the intensities were normalised and which channel was read)"
    )


def _fine_tune(model: str | None) -> str:
    """How to make a model fit the user's images."""
    if model is None:
        start = "CHECKPOINT (a stitchsafe checkpoint: a bundled model, or one train wrote)"
    else:
        start = model
    return (
        "if the model was trained on other images, fine-tune it on a few labelled images "
        f"of yours: stitchsafe train --image IMAGE --labels LABELS --init {start}"
    )


def _nonfinite(stats: ResultStats, command: str) -> str:
    return nonfinite_warning(stats.nonfinite, command, labels=True)


def nonfinite_warning(count: int, command: str = "predict", *, labels: bool = False) -> str:
    """The warning for ``count`` NaN or infinite values in a model's outputs.

    ``labels``: whether labels were made from them (their voxels' labels then mean
    nothing); without labels the warning is about the written embeddings alone.

    >>> nonfinite_warning(3).split(":")[0]
    '3 embedding value(s) are NaN or infinite'
    """
    meaning = (
        "so the labels of those voxels mean nothing (they link to no neighbour)"
        if labels
        else "so the embeddings hold no value there, and labels made from them would not either"
    )
    return (
        f"{count} embedding value(s) are NaN or infinite: the model computed no number "
        f"there, {meaning}. The input itself is finite (it is checked), so the model "
        f"overflowed or its weights are broken; {_check_input(command)}, or use another model."
    )


def _no_objects(stats: ResultStats, command: str, model: str | None) -> str:
    if stats.linked:
        return (
            f"no objects: the {stats.linked} {'seed' if stats.seeded else 'foreground'} "
            "voxel(s) formed only objects smaller than --min-size. Try a lower --min-size, or "
            "a higher --threshold (which joins more neighbouring voxels into one object)."
        )
    if stats.seeded:
        why = "no voxel qualified as a seed"
        what = "a higher --seed-threshold or a lower --seed-foreground-threshold"
    else:
        why = "no voxel passed the foreground cut"
        what = "a lower --foreground-threshold"
    return f"no objects: {why}. Try {what}; {_check_input(command)}; {_fine_tune(model)}."


def _mostly_labelled(stats: ResultStats, command: str, model: str | None) -> str:
    return (
        f"{_percent(stats, stats.labelled)} of the voxels are labelled: the model sees "
        "foreground almost everywhere, which is rarely right. Try a higher "
        f"--foreground-threshold; {_check_input(command)}; {_fine_tune(model)}."
    )


def _one_object(stats: ResultStats, command: str, model: str | None) -> str:
    lower = "--seed-threshold or --threshold" if stats.seeded else "--threshold"
    return (
        f"one object holds {_percent(stats, stats.largest)} of the voxels: neighbouring "
        f"objects have probably merged. Try a lower {lower} (the embedding distance below "
        f"which neighbours join); {_check_input(command)}; {_fine_tune(model)}."
    )
