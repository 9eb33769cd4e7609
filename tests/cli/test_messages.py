"""Messages name only options that exist, on the command the user ran.

Every ``--option`` in the package's string literals (messages, help, docstrings; the
constant parts of f-strings too) is collected with :mod:`ast`, and the options every
command of ``stitchsafe.cli.cli`` really has are read from the click group. Then:

- every option named anywhere is an option of some command (or, in :data:`NOT_OURS`,
  another program's);
- a command's help, and the help of each of its options, name only its own options;
- the messages of modules that only some commands reach (:data:`SCOPES`) name only options
  of each of those commands, unless the message says which command the option belongs to
  ("rerun the predict command with --resume" is right when ``segment`` prints it);
- the per-command advice tables of the CLI name only the command's own options;
- the messages shared by commands that read their inputs through other options (``train``:
  ``--image``/``--image-key``; ``segment``: ``--resume`` is predict's) say the right one,
  through the console script.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
import numpy as np
import pytest
import tifffile
import torch
import zarr
from cli_helpers import assert_bad_input, run_cli

import stitchsafe
from stitchsafe.cli import cli, interruption, storage_advice
from stitchsafe.io import ImageLayout, create_output
from stitchsafe.models import save_torchscript

PACKAGE = Path(stitchsafe.__file__).parent
OPTION = re.compile(r"--[a-z][a-z0-9-]+")

# Options named in the package that are other programs' options, and why they are named.
NOT_OURS = {
    "--gres": "SLURM's sbatch directive in a job script (#SBATCH --gres=gpu:N)",
    "--resources": "the dask worker command's option (--resources GPU=1) in a job script",
    "--plugin": "napari's option (napari --plugin napari-ome-zarr PATH) in the demo's summary",
}

# Modules whose messages only some commands' users see (checked, docstrings aside, by
# test_messages_name_options_of_the_commands_that_reach_them). The other modules are
# shared by commands with different options (settings, inputs, models), where each message
# names the option that set the value; those are covered by the tests that run them.
_PREDICT_SEGMENT = {"predict", "segment"}
SCOPES: dict[str, set[str]] = {
    # cli/_main.py speaks for every command: its per-command tables are checked on their own.
    **{f"cli/_{name}.py": {name} for name in cli.commands},
    "demo.py": {"demo"},
    "training/": {"train"},
    "reports/_check.py": {"check"},
    "reports/_crop.py": {"check"},
    "reports/_result.py": {"check"},
    "reports/_runs.py": {"check"},
    "reports/_info.py": {"info"},
    "reports/_output_info.py": {"info"},
    "prediction/": {"predict"},
    "io/_resume.py": {"predict"},
    "io/_lock.py": _PREDICT_SEGMENT,
    "engine/_slurm.py": {"predict"},
    "engine/_tile_tasks.py": {"predict"},
    "engine/_drive.py": _PREDICT_SEGMENT,
    "engine/_executors.py": _PREDICT_SEGMENT,
    "labels/_segment.py": {"segment"},
    "labels/_labelling.py": _PREDICT_SEGMENT,
    "labels/_swap.py": _PREDICT_SEGMENT,
    "labels/_blocks.py": _PREDICT_SEGMENT,
    "labels/_merge.py": _PREDICT_SEGMENT,
    "labels/_labels_only.py": {"predict"},
    "labels/_tile_labels.py": {"predict"},
}


@dataclass(frozen=True)
class Message:
    """A string literal of the package (an f-string's constant parts joined)."""

    where: str  # "path/inside/package.py:line"
    text: str
    docstring: bool

    @property
    def options(self) -> list[str]:
        """The options it names (none in a regular expression, which is no message)."""
        return [] if "\\b" in self.text else OPTION.findall(self.text)


def _docstring_nodes(tree: ast.AST) -> set[int]:
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, kinds) and node.body and isinstance(node.body[0], ast.Expr):
            value = node.body[0].value
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.add(id(value))
    return found


def _messages_of(path: Path) -> Iterator[Message]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    docs = _docstring_nodes(tree)
    parts = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    rel = path.relative_to(PACKAGE).as_posix()
    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            strings = [v.value for v in node.values if isinstance(v, ast.Constant)]
            text = "".join(s for s in strings if isinstance(s, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) in parts:
                continue
            text = node.value
        else:
            continue
        yield Message(f"{rel}:{node.lineno}", text, id(node) in docs)


def messages() -> list[Message]:
    return [m for path in sorted(PACKAGE.rglob("*.py")) for m in _messages_of(path)]


def command_options() -> dict[str, set[str]]:
    """Each command's long options, as click parses them (``--help`` and the group's too)."""
    group = {o for p in cli.params for o in (*p.opts, *p.secondary_opts)}
    found = {}
    for name, command in cli.commands.items():
        params = command.get_params(click.Context(command, info_name=name))
        found[name] = group | {o for p in params for o in (*p.opts, *p.secondary_opts)}
    return {name: {o for o in opts if o.startswith("--")} for name, opts in found.items()}


OPTIONS = command_options()
ALL_OPTIONS = set().union(*OPTIONS.values())


def _scope(where: str) -> set[str] | None:
    path = where.rsplit(":", 1)[0]
    return next((cmds for key, cmds in SCOPES.items() if path.startswith(key)), None)


def _right_for(command: str, text: str, option: str) -> bool:
    """``option`` is ``command``'s, another program's, or the text says whose it is (it names,
    as a word, a command that has it: "rerun the predict command with --resume")."""
    if option in OPTIONS[command] or option in NOT_OURS:
        return True
    words = set(re.findall(r"[a-z]+", text.replace(option, " ")))
    return any(option in OPTIONS[name] for name in words & set(OPTIONS))


# -- every option named exists -----------------------------------------------------------


def test_the_collector_sees_messages_and_options() -> None:
    """Guards the test itself: f-string parts and plain literals are both read."""
    found = messages()
    assert len(found) > 1000
    assert any(m.where.startswith("io/_resume.py") and "--overwrite" in m.options for m in found)
    assert {"--resume", "--overwrite", "--image-key", "--help"} <= ALL_OPTIONS
    assert "--resume" in OPTIONS["predict"] and "--resume" not in OPTIONS["segment"]


def test_every_option_named_exists() -> None:
    unknown = [
        f"{m.where}: {option}  ({m.text[:80]!r})"
        for m in messages()
        for option in m.options
        if option not in ALL_OPTIONS and option not in NOT_OURS
    ]
    assert not unknown, "options that no command has:\n" + "\n".join(unknown)


def test_not_ours_lists_only_options_that_are_named_and_not_ours() -> None:
    named = {option for m in messages() for option in m.options}
    assert set(NOT_OURS) <= named  # an entry no longer needed is removed
    assert not set(NOT_OURS) & ALL_OPTIONS


# -- on the command the user ran ---------------------------------------------------------


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_help_names_only_the_commands_own_options(name: str) -> None:
    command = cli.commands[name]
    texts = [("help", command.help or "")]
    params = command.get_params(click.Context(command, info_name=name))
    texts += [(p.name or "", getattr(p, "help", None) or "") for p in params]
    wrong = [
        f"{name} {where}: {option}"
        for where, text in texts
        for option in OPTION.findall(text)
        if not _right_for(name, text, option)
    ]
    assert not wrong, wrong


def test_messages_name_options_of_the_commands_that_reach_them() -> None:
    wrong = []
    for m in messages():
        scope = _scope(m.where)
        if m.docstring or scope is None:
            continue
        for option in m.options:
            lacking = sorted(c for c in scope if not _right_for(c, m.text, option))
            if lacking:
                wrong.append(f"{m.where}: {option} (not on {', '.join(lacking)}): {m.text[:90]!r}")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_the_clis_advice_names_the_commands_own_options(name: str) -> None:
    """What an interrupted command, or one stopped by a full disk, says to do next."""
    for text in (interruption(name, KeyboardInterrupt()), storage_advice(name)):
        assert set(OPTION.findall(text)) <= OPTIONS[name], (name, text)


# -- through the console script: the shared messages, for the command that was run -------


class SavesToDisk(torch.nn.Module):
    """A network whose TorchScript writes a file: loaded only with --trust-model."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 1, 3)
        self.where = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        torch.save(x, self.where)
        return self.conv(x)


@pytest.fixture(scope="module")
def training_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("messages")
    labels = np.zeros((24, 24), np.uint16)
    labels[4:10, 4:10], labels[12:20, 12:20] = 1, 2
    tifffile.imwrite(tmp / "labels.tif", labels)
    zarr.create_array(tmp / "image.zarr" / "raw", data=labels.astype(np.float32) * 100)
    zarr.open_group(tmp / "image.zarr", mode="a")  # a group: the array is "raw" inside
    tifffile.imwrite(tmp / "image.tif", labels.astype(np.float32) * 100)
    net = SavesToDisk()
    net.where = str(tmp / "written-by-model")
    save_torchscript(net, tmp / "saver.ts.pt")
    return {"tmp": tmp, "labels": tmp / "labels.tif", "group": tmp / "image.zarr"}


def _train(files: dict[str, Path], *args: str) -> list[str]:
    return [
        "train", "--labels", str(files["labels"]), "--output", str(files["tmp"] / "m.pt"),
        "--iterations", "1", "--no-progress", "--device", "cpu", *args,
    ]  # fmt: skip


def test_train_names_its_own_key_option(training_files: dict[str, Path]) -> None:
    proc = run_cli(*_train(training_files, "--image", str(training_files["group"])))
    assert_bad_input(proc, "--image-key", "raw")
    assert "--input" not in proc.stderr


def test_train_refuses_a_foreign_init_without_naming_trust_model(
    training_files: dict[str, Path],
) -> None:
    image = training_files["tmp"] / "image.tif"
    init = training_files["tmp"] / "saver.ts.pt"
    proc = run_cli(*_train(training_files, "--image", str(image), "--init", str(init)))
    assert_bad_input(proc, "--init", "not a stitchsafe checkpoint")
    assert "--trust-model" not in proc.stderr  # train has none: it reads checkpoints only
    assert not (training_files["tmp"] / "written-by-model").exists()


def test_segment_sends_incomplete_embeddings_to_predict_resume(tmp_path: Path) -> None:
    """``segment`` has no --resume: its message says it is the predict command's."""
    layout = ImageLayout(
        shape=(8, 8), chunks=(4, 4), axes=("y", "x"), channels=3,
        attributes={"complete": False},
    )  # fmt: skip
    create_output(tmp_path / "out.zarr", layout)
    proc = run_cli("segment", "--input", str(tmp_path / "out.zarr"), "--no-progress")
    assert_bad_input(proc, "incomplete", "predict command", "--resume")
    assert "--overwrite" not in proc.stderr
