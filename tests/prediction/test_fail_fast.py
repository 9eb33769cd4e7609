"""Options, the input and the output's state are refused before the model file is opened.

How "never opened" is checked: the commands run in a fresh Python process that watches
every file it opens through Python's audit hooks (:func:`sys.addaudithook`, event
``open``: ``open()``, ``io.open`` and ``os.open`` raise it), with a real model file that
would load (a stitchsafe checkpoint, read with ``torch.load``). A refusal must exit 2,
name its cause, and leave the model file unopened. The last command is a control: a
valid ``plan`` with the same model must be seen opening it, so the watch itself is proven
to work. One process runs every command (torch is imported once); a run holding the lock
of one output is this test process. Access times would be no proof (many mounts do not
keep them), nor would file permissions (root reads anything); a FIFO as the model is
refused by its size (0) without being opened, so it would prove the order only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import tifffile
from nets import make_net

from stitchsafe.io import ImageLayout, OutputLock, create_output
from stitchsafe.models import save_checkpoint, unet_metadata

WATCHED = "watched-model.pt"

# Runs each command with click's CliRunner and says whether it opened the watched model.
SCRIPT = f"""
import json, os, sys
opened = []

def watch(event, args):
    if event == "open" and isinstance(args[0], (str, bytes)):
        if {WATCHED!r} in os.fsdecode(args[0]):
            opened.append(args[0])

sys.addaudithook(watch)
from click.testing import CliRunner
from stitchsafe.cli import cli

results = []
for args in json.loads(sys.argv[1]):
    opened.clear()
    r = CliRunner().invoke(cli, args)
    results.append({{"code": r.exit_code, "output": r.output, "opened": bool(opened)}})
print(json.dumps(results))
"""


def _files(tmp: Path) -> dict[str, Path]:
    net, cfg = make_net("2d-d1-f2")
    save_checkpoint(net, tmp / WATCHED, metadata=unet_metadata(cfg))
    tifffile.imwrite(tmp / "img.tif", np.zeros((32, 32), np.uint8))
    tifffile.imwrite(tmp / "yxc.tif", np.zeros((64, 64, 2), np.uint8))
    layout = ImageLayout(shape=(32, 32), chunks=(16, 16), axes=("y", "x"), channels=2)
    create_output(tmp / "done.zarr", layout, image="")  # an output a finished run left
    return {"model": tmp / WATCHED, "input": tmp / "img.tif"}


# case -> (arguments over a valid predict's, words the refusal names)
CASES = {
    "bad-threshold": (["--threshold", "-1"], ["--threshold"]),
    "bad-axes": (["--axes", "yxq"], ["--axes"]),
    "missing-input": (["--input", "{tmp}/missing.tif"], ["missing.tif"]),
    "channel-last-input": (["--input", "{tmp}/yxc.tif"], ["--axes yxc"]),
    "existing-output": (["--output", "{tmp}/done.zarr"], ["already holds", "--overwrite"]),
    "output-is-a-file": (["--output", "{tmp}/img.tif"], ["already exists"]),
    "locked-output": (["--output", "{tmp}/locked.zarr"], ["locked.zarr"]),
}


def test_refusals_come_before_the_model_file_is_opened(tmp_path: Path) -> None:
    files = _files(tmp_path)
    base = ["--model", str(files["model"]), "--input", str(files["input"]), "--device", "cpu"]
    commands = [
        ["predict", *base, "--output", str(tmp_path / "new.zarr"), *extra]
        for extra, _ in CASES.values()
    ]
    commands = [[a.format(tmp=tmp_path) for a in args] for args in commands]  # last wins
    missing = ["--input", str(tmp_path / "missing.tif")]
    commands += [["plan", *base, *missing], ["check", *base, *missing], ["plan", *base]]
    with OutputLock(tmp_path / "locked.zarr").hold(command="another stitchsafe predict"):
        proc = subprocess.run(
            [sys.executable, "-c", SCRIPT, json.dumps(commands)],
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout.splitlines()[-1])
    words = [w for _, w in CASES.values()] + [["missing.tif"], ["missing.tif"]]
    for args, result, named in zip(commands, results, words):
        assert result["code"] == 2, (args, result["output"])
        assert "Traceback" not in result["output"]
        for w in named:
            assert w in result["output"], (args, result["output"])
        assert not result["opened"], f"{args} opened the model before refusing"
    control = results[-1]
    assert control["code"] == 0 and control["opened"], control["output"]
