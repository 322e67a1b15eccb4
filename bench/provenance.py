"""Where a benchmark's numbers came from: the commit and the machine, stored beside the numbers."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str | None:
    """A git command's output in this checkout; None outside one (an installed copy, no git)."""
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def commit() -> str:
    """The short commit at the time of writing, or "unknown"."""
    return git("rev-parse", "--short", "HEAD") or "unknown"


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), "processor": platform.processor(), "commit": commit()}
