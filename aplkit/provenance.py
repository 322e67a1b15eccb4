"""Which code made a run: stored in its folder at every start, so a run resumed across a code change says so.

A study's records outlive the commits that made them; without this a reader cannot tell whether two
records of one table came from the same code, or whether a run was resumed under a different one. The
code is taken when this process imported aplkit (``IMPORTED``): commits made in the checkout while a
long process runs (a study committing its records, a fix) do not change the code it runs. ``tree``,
the git tree of the package, is the same across commits that leave ``aplkit/`` alone, so it is what
tells two records' code apart.
"""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent


def run_git(cwd: str | Path, *args: str, timeout: float = 10) -> subprocess.CompletedProcess | None:
    """A git command run in ``cwd``; None when git cannot run there at all (no git, a timeout)."""
    try:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None


def _git(*args: str) -> str | None:
    r = run_git(PACKAGE, *args)
    return r.stdout.strip() if r is not None and r.returncode == 0 else None


def code_version() -> dict[str, Any]:
    """aplkit's version and, where it runs from a git checkout, the commit, the package's tree at it and whether
    the package's tracked files differ from it (``dirty``); None for an installed copy."""
    try:
        version = metadata.version("aplkit")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    tree = _git("rev-parse", "HEAD:./") if commit else None  # None: the package is not tracked there (a venv inside some repo)
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".") if tree else None
    return {"aplkit": version, "commit": commit if tree else None, "tree": tree, "dirty": None if status is None else bool(status)}


#: the code this process runs: taken once, when it imported aplkit
IMPORTED = code_version()


def started() -> dict[str, Any]:
    """One row for a run folder's ``code.jsonl``: the time of this start and the code this process imported."""
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), **IMPORTED}


__all__ = ["IMPORTED", "code_version", "run_git", "started"]
