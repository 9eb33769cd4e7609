"""Channel roles: what each output channel of a model is, declared or assumed, and said so.

Roles
-----
``embedding``
    The channel is one coordinate of an instance embedding; neighbours with close
    embeddings join one object (:mod:`stitchsafe.labels`).
``foreground``
    Foreground *logits*: a voxel is foreground when ``logit > log(p / (1 - p))`` for
    ``--foreground-threshold p``.
``probability``
    Foreground *probabilities* in ``[0, 1]``: a voxel is foreground when ``value > p``.
``ignore``
    Neither: the channel is written but not used for the labels.

At most one channel is ``foreground`` or ``probability``. A model with a foreground
channel and no embedding channels gets the connected components of its foreground (face
connectivity, scipy's default: 4 in 2-D, 6 in 3-D), blockwise and exact: the labels equal
``scipy.ndimage.label(output > cut)`` on the whole-volume output. Roles that name neither
embeddings nor a foreground make no labels (said in a note).

The ``--channel-roles`` syntax
------------------------------
A comma-separated list, one entry per output channel in order; an entry is a role name
(or its first letter) with an optional ``:N`` that repeats it ``N`` times:
``embedding,embedding,foreground`` = ``embedding:2,foreground`` = ``e:2,f``.

Where the roles come from: ``--channel-roles`` over the model's metadata
(``channel_roles``, or the roles stored with written embeddings) over the assumption
that every channel is an embedding and every voxel foreground (:func:`choose_roles`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import StitchsafeError
from ._params import EMBEDDING, FOREGROUND, PROBABILITY

__all__ = ["IGNORE", "ROLE_NAMES", "RoleChoice", "choose_roles", "parse_channel_roles"]

IGNORE = "ignore"
ROLE_NAMES = (EMBEDDING, FOREGROUND, PROBABILITY, IGNORE)
_BY_LETTER = {name[0]: name for name in ROLE_NAMES}
_SYNTAX = (
    "Give one role per output channel, comma-separated, each embedding, foreground "
    "(logits), probability (values in [0, 1]) or ignore, optionally with ':N' to repeat "
    "it N times, e.g. --channel-roles embedding:2,foreground or --channel-roles probability."
)
# Repeat counts beyond this are a typo, not a model.
_MAX_REPEAT = 1 << 16


def parse_channel_roles(text: str | Sequence[str]) -> tuple[str, ...]:
    """Roles from the ``--channel-roles`` syntax (or a list of role names), checked.

    Examples
    --------
    >>> parse_channel_roles("e:2,f")
    ('embedding', 'embedding', 'foreground')
    >>> parse_channel_roles(["probability"])
    ('probability',)
    >>> parse_channel_roles("embeding")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    stitchsafe.errors.StitchsafeError: --channel-roles 'embeding': 'embeding' is not a role. ...
    """
    entries = text.split(",") if isinstance(text, str) else list(text)
    shown = text if isinstance(text, str) else ",".join(map(str, text))
    roles: list[str] = []
    for entry in entries:
        if not isinstance(entry, str):
            raise StitchsafeError(f"--channel-roles {shown!r}: {entry!r} is not a role. {_SYNTAX}")
        roles.extend(_parse_entry(entry.strip(), shown))
    if not roles:
        raise StitchsafeError(f"--channel-roles {shown!r} names no channel. {_SYNTAX}")
    fg = [r for r in roles if r in (FOREGROUND, PROBABILITY)]
    if len(fg) > 1:
        raise StitchsafeError(
            f"--channel-roles {shown!r} names {len(fg)} foreground/probability channels; "
            "stitchsafe uses at most one (mark the others ignore)."
        )
    return tuple(roles)


def _parse_entry(entry: str, shown: str) -> list[str]:
    """One ``role[:N]`` entry, expanded."""
    name, _, count = entry.partition(":")
    name = name.strip().lower()
    role = _BY_LETTER.get(name, name)
    if role not in ROLE_NAMES:
        raise StitchsafeError(f"--channel-roles {shown!r}: {name!r} is not a role. {_SYNTAX}")
    if not count:
        return [role]
    if not count.strip().isdigit() or not 1 <= int(count) <= _MAX_REPEAT:
        raise StitchsafeError(
            f"--channel-roles {shown!r}: the repeat count in {entry!r} must be a whole "
            f"number from 1 to {_MAX_REPEAT}. {_SYNTAX}"
        )
    return [role] * int(count)


@dataclass(frozen=True)
class RoleChoice:
    """The roles a labelling uses, and what the user should be told about them.

    Attributes
    ----------
    roles
        One role per channel, or ``None``: every channel an embedding (the assumption).
    source
        ``"--channel-roles"``, ``"metadata"`` or ``"assumed"``.
    notes
        Lines for stderr: the flag replacing the metadata, the assumption, no labels.
    """

    roles: tuple[str, ...] | None
    source: str
    notes: tuple[str, ...] = ()

    @property
    def labelled(self) -> bool:
        """Whether these roles make labels (an embedding or a foreground channel)."""
        if self.roles is None:
            return True
        return any(r in (EMBEDDING, FOREGROUND, PROBABILITY) for r in self.roles)

    def refuse_unlabelled(self, what: str) -> None:
        """Raise StitchsafeError when these roles make no labels, which ``what`` needs.

        >>> RoleChoice(("ignore",), "--channel-roles").refuse_unlabelled("segment")
        ... # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        stitchsafe.errors.StitchsafeError: segment needs labels, but the channel roles ...
        """
        if not self.labelled:
            raise StitchsafeError(
                f"{what} needs labels, but the channel roles ({','.join(self.roles or ())}) "
                "name neither embedding nor foreground/probability channels; declare them "
                "with --channel-roles."
            )


def choose_roles(
    flag: tuple[str, ...] | None,
    stored: Sequence[str] | None,
    *,
    channels: int,
    where: str = "the model",
) -> RoleChoice:
    """``--channel-roles`` over the ``stored`` roles over the assumption, for ``channels``.

    ``where`` says where ``stored`` comes from, in the notes. A flag with another channel
    count than ``channels`` is a StitchsafeError that names the count.

    Examples
    --------
    >>> choose_roles(("probability",), None, channels=1).roles
    ('probability',)
    >>> print(choose_roles(None, None, channels=2).notes[0])  # doctest: +ELLIPSIS
    the model names no channel roles, so the 2 output channels are taken as embeddings ...
    >>> choose_roles(("ignore",), None, channels=1).labelled
    False
    """
    stored_roles = None if stored is None else tuple(str(r) for r in stored)
    if flag is None:
        if stored_roles is not None:
            return _checked(RoleChoice(stored_roles, "metadata"))
        return RoleChoice(None, "assumed", (_assumed_note(channels, where),))
    if len(flag) != channels:
        raise StitchsafeError(
            f"--channel-roles names {_channels(len(flag))} ({','.join(flag)}) but the model "
            f"has {_channels(channels, 'output channel')}; give one role per output channel "
            "(':N' repeats a role N times)."
        )
    notes: tuple[str, ...] = ()
    if stored_roles is not None and stored_roles != flag:
        notes = (
            f"--channel-roles {','.join(flag)} replaces the channel roles of {where} "
            f"({','.join(stored_roles)}).",
        )
    return _checked(RoleChoice(flag, "--channel-roles", notes))


def _checked(choice: RoleChoice) -> RoleChoice:
    """``choice`` with a note when its roles make no labels."""
    if choice.labelled:
        return choice
    note = (
        f"no labels: the channel roles ({','.join(choice.roles or ())}) name neither "
        "embedding nor foreground/probability channels; the outputs are written without "
        "labels (declare a channel's role with --channel-roles to label it)."
    )
    return RoleChoice(choice.roles, choice.source, (*choice.notes, note))


def _assumed_note(channels: int, where: str) -> str:
    """What is assumed of a model that declares no roles, and how to say otherwise."""
    if channels == 1:
        taken = "the 1 output channel is taken as an embedding"
        example = "--channel-roles probability (values in [0, 1]) or foreground (logits)"
    else:
        taken = f"the {channels} output channels are taken as embeddings"
        example = f"e.g. --channel-roles embedding:{channels - 1},foreground"
    return (
        f"{where} names no channel roles, so {taken} and every voxel as foreground: "
        "the labels join neighbours with "
        "close outputs. If the outputs are foreground probabilities or logits, declare "
        f"them: {example}."
    )


def _channels(n: int, what: str = "channel") -> str:
    """``n`` channels, in the right number.

    >>> _channels(1), _channels(3, "output channel")
    ('1 channel', '3 output channels')
    """
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
