"""Helpers every benchmark script shares: where the data are, and what ran them.

The scripts run as ``python benchmarks/<name>.py``, so this folder is on ``sys.path``
and they import it as ``_common``.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    """``$TWIN_DATA`` or the shared data folder beside the repository."""
    return Path(os.environ.get("TWIN_DATA", REPO.parent / "shared" / "data"))


def machine_info(*modules: str) -> dict:
    """Python, platform and CPU, numpy / pandas and the versions of ``modules`` (None
    where one does not import)."""
    info = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    for mod in modules:
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001
            info[mod] = None
    return info


def git_commit() -> dict:
    """The repository's HEAD commit and whether the working tree differs from it."""

    def git(*cmd: str) -> str:
        return subprocess.run(
            ["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False
        ).stdout.strip()

    return {"commit": git("rev-parse", "HEAD") or None, "dirty": bool(git("status", "--porcelain"))}
