"""``--help`` reads well and the options agree across commands.

- Every command's ``--help`` shows its options in named sections (where it has many) and
  each value option's default (shown by click, or said in its help text).
- The same option name means the same thing on every command that has it (one help
  text, one default), except the few listed in :data:`PER_COMMAND` whose meaning is the
  command's own; one concept (parameter name) has one option name everywhere.
- ``train``'s help states the defaults the library really uses.
- The old spellings (``info PATH``, ``--image`` of segment and info) still work, with a note.
"""

from __future__ import annotations

import re
import subprocess
from collections import defaultdict
from pathlib import Path

import click
import pytest
from cli_helpers import EXE
from click.testing import CliRunner

from stitchsafe.cli import cli
from stitchsafe.training import DEFAULTS, EMBEDDING_DIMS, LEARNING_RATE

# Options whose meaning is each command's own (what it reads, what it writes), and why.
PER_COMMAND = {
    "--input": "what the command reads: a volume (plan, predict, check) or predict's output",
    "--output": "what the command writes: a zarr group, a checkpoint or the demo's folder",
    "--input-key": "a path inside --input: of an input array, or of predict's output image",
    "--batch-size": "tiles per forward pass (predict), windows per optimiser step (train)",
    "--image": "train's training image; elsewhere only the hidden old name of --input-key",
}
GENERAL = "General options"  # the section of the options no other section names
# Commands with few options: one plain list, no sections.
UNSECTIONED = {"demo", "export"}
# Options in the General section of every command that runs something: nothing else is.
GENERAL_OPTIONS = {"--help", "--quiet", "--verbose", "--no-progress"}


def _params(name: str) -> list[click.Parameter]:
    command = cli.commands[name]
    return command.get_params(click.Context(command, info_name=name))


def _help(name: str) -> str:
    command = cli.commands[name]
    ctx = click.Context(command, info_name=name, parent=click.Context(cli, info_name="x"))
    return command.get_help(ctx)


def _headings(text: str) -> list[str]:
    return [line[:-1] for line in text.splitlines() if re.fullmatch(r"[A-Z][\w ]*:", line)]


def test_predict_help_shows_the_groups_in_order() -> None:
    assert _headings(_help("predict")) == [
        "Input",
        "Model",
        "Tiling",
        "Device and performance",
        "Labels",
        "Output",
        "Cluster",
        GENERAL,
    ]


@pytest.mark.parametrize("name", sorted(set(cli.commands) - UNSECTIONED))
def test_every_option_is_in_a_named_section(name: str) -> None:
    """Only --help, --quiet, --verbose and --no-progress are left to the General section."""
    command = cli.commands[name]
    general = {
        p.opts[0]
        for p in _params(name)
        if isinstance(p, click.Option) and not p.hidden and command.section_of(p.name) == GENERAL
    }
    assert general <= GENERAL_OPTIONS | {"-q", "-v", "-h"}, general
    headings = _headings(_help(name))
    assert headings[-1] == GENERAL and len(headings) >= 2, headings


@pytest.mark.parametrize("name", sorted(cli.commands))
def test_every_value_option_shows_its_default(name: str) -> None:
    command = cli.commands[name]
    ctx = click.Context(command, info_name=name, parent=click.Context(cli, show_default=True))
    missing = []
    for p in command.get_params(ctx):
        if not isinstance(p, click.Option) or p.hidden or p.is_flag or p.count or p.required:
            continue
        if p.name == "input_path":  # info's --input: required, with its old form besides
            continue
        record = p.get_help_record(ctx)
        assert record is not None
        if "[default:" not in record[1] and "default:" not in record[1].lower():
            missing.append(p.opts[0])
    assert not missing, f"{name}: no default shown for {missing}"


def _options_by_name() -> dict[str, list[tuple[str, click.Option]]]:
    found = defaultdict(list)
    for name in cli.commands:
        for p in _params(name):
            if isinstance(p, click.Option) and not p.hidden:
                found[p.opts[0]].append((name, p))
    return found


def test_an_option_name_means_one_thing_on_every_command() -> None:
    wrong = []
    for option, uses in _options_by_name().items():
        if option in PER_COMMAND or len(uses) < 2:
            continue
        first_name, first = uses[0]
        for name, p in uses[1:]:
            same = (p.help, p.default, p.name, p.is_flag) == (
                first.help,
                first.default,
                first.name,
                first.is_flag,
            )
            if not same:
                wrong.append(f"{option}: {first_name} and {name} differ")
    assert not wrong, "\n".join(wrong)


def test_one_concept_has_one_option_name() -> None:
    names = defaultdict(set)
    for uses in _options_by_name().values():
        for _, p in uses:
            names[p.name].add(p.opts[0])
    assert {k: v for k, v in names.items() if len(v) > 1} == {}


def test_per_command_names_are_still_shared() -> None:
    """An entry of PER_COMMAND goes when no two commands share that name any more."""
    uses = _options_by_name()
    shared = {o for o in PER_COMMAND if len({n for n, _ in uses.get(o, [])}) >= 2}
    assert shared == set(PER_COMMAND) - {"--image"}


def test_train_help_states_the_library_defaults() -> None:
    text = " ".join(_help("train").split())
    two, three = DEFAULTS[2], DEFAULTS[3]
    assert f"Default: {two.features} in 2-D, {three.features} in 3-D" in text
    assert f"Default: {two.iterations} in 2-D, {three.iterations} in 3-D" in text
    windows = [",".join(map(str, d.window)) for d in (two, three)]
    assert f"Default: {windows[0]} in 2-D, {windows[1]} in 3-D" in text
    params = {p.name: p for p in _params("train")}
    assert params["embedding_dims"].default == EMBEDDING_DIMS
    assert params["lr"].default == LEARNING_RATE
    assert "[default: labels]" in text and "[default: 0]" in text  # --foreground-target, --seed


def test_the_console_script_prints_groups_and_defaults() -> None:
    proc = subprocess.run(
        [EXE, "predict", "--help"], capture_output=True, text=True, timeout=120, check=True
    )
    assert "\nTiling:\n" in proc.stdout and "\nCluster:\n" in proc.stdout
    assert "[default: reflect]" in " ".join(proc.stdout.split())


# -- old spellings -------------------------------------------------------------------------


def test_info_takes_input_and_its_old_positional_form(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.zarr")
    new = CliRunner().invoke(cli, ["info", "--input", missing])
    old = CliRunner().invoke(cli, ["info", missing])
    assert new.exit_code == old.exit_code == 2
    assert "note:" not in new.stderr and "does not exist" in new.stderr
    assert f"note: give the path as --input {missing}" in old.stderr
    assert "does not exist" in old.stderr
    neither = CliRunner().invoke(cli, ["info"])
    assert neither.exit_code == 2 and "Missing option '--input'" in neither.stderr
    both = CliRunner().invoke(cli, ["info", "--input", missing, "other"])
    assert both.exit_code == 2 and "unexpected extra argument" in both.stderr


@pytest.mark.parametrize("name", ["info", "segment"])
def test_the_old_image_option_is_a_hidden_alias(name: str, tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.zarr")
    old = CliRunner().invoke(cli, [name, "--input", missing, "--image", "embeddings"])
    assert old.exit_code == 2 and "note: --image is now called --input-key" in old.stderr
    both = ["--input", missing, "--image", "a", "--input-key", "b"]
    twice = CliRunner().invoke(cli, [name, *both])
    assert twice.exit_code == 2 and "give only --input-key" in twice.stderr
    assert "--image" not in _help(name)
