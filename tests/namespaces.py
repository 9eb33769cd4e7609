"""Real file-system conditions without root: a user and mount namespace (``unshare``).

Inside it a test may mount a small tmpfs (a disk that fills up) or a read-only bind mount.
Tests that need it are skipped where unprivileged user namespaces are not allowed.
"""

from __future__ import annotations

import subprocess

import pytest

UNSHARE = ["unshare", "--user", "--map-root-user", "--mount"]


def _namespaces_work() -> bool:
    try:
        probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


needs_namespaces = pytest.mark.skipif(
    not _namespaces_work(), reason="no unprivileged user and mount namespaces (unshare)"
)
