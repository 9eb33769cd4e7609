"""A virtual X display for the viewer tests when there is none: Xvfb, if it is installed.

So the README's plain test command runs the real napari tests on a machine
without a screen (CI installs Xvfb); without Xvfb they skip, saying why.
"""

from __future__ import annotations

import atexit
import os
import shutil
import subprocess


def _start_xvfb() -> None:
    """Start Xvfb on a free display number (``-displayfd``) and point DISPLAY at it."""
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        return
    read, write = os.pipe()
    proc = subprocess.Popen(
        [xvfb, "-displayfd", str(write), "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        pass_fds=(write,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write)
    with os.fdopen(read) as pipe:
        number = pipe.readline().strip()
    if not number:
        proc.kill()
        return
    os.environ["DISPLAY"] = f":{number}"
    atexit.register(proc.terminate)


_start_xvfb()
