"""Which code made a run: stored in its folder at every start, so a run resumed across a code change says so.

A study's records outlive the commits that made them; without this a reader cannot tell whether two
records of one table came from the same code, or whether a run was resumed under a different one.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent


def _git(*args: str) -> str | None:
    try:
        r = subprocess.run(["git", *args], cwd=PACKAGE, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() if r.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """aplkit's version, and where it runs from a git checkout, the commit and whether the package's tracked
    files differ from it (``dirty``); both None for an installed copy."""
    try:
        version = metadata.version("aplkit")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".") if commit else None
    return {"aplkit": version, "commit": commit, "dirty": None if status is None else bool(status)}


def started() -> dict[str, Any]:
    """One row for a run folder's ``code.jsonl``: the time and the code of this start."""
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), **code_version()}


__all__ = ["code_version", "started"]
