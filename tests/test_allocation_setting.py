"""The package turns on huge pages for torch's CPU tensors before torch starts, and keeps
a value the user set (``benchmarks/allocation.py`` measures what it is worth)."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = (
    "import os, sys; import stitchsafe; assert 'torch' not in sys.modules; "
    "print(os.environ['THP_MEM_ALLOC_ENABLE'])"
)


def _setting(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", CODE], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_set_before_torch_and_a_users_value_kept() -> None:
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    assert _setting(env) == "1"
    assert _setting({**env, "THP_MEM_ALLOC_ENABLE": "0"}) == "0"
