"""Which code made a run: stored in its folder at every start, so a run resumed across a code change says so.

A study's records outlive the commits that made them; without this a reader cannot tell whether two
records of one table came from the same code, or whether a run was resumed under a different one. The
code is taken when this process imported aplkit (``IMPORTED``): commits made in the checkout while a
long process runs (a study committing its records, a fix) do not change the code it runs. ``tree``,
the git tree of the package, is the same across commits that leave ``aplkit/`` alone, so it is what
tells two records' code apart.
"""

from __future__ import annotations

import os
import platform
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


def machine() -> dict[str, Any]:
    """The CPU this process runs on: a run's seconds are comparable only on one kind (the CPU study's random
    seeds 14–15 ran on an AVX2 core at ≈ 4× the seconds of the machine that ran seeds 0–13)."""
    model, flags = None, set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and model is None:
                    model = value.strip()
                elif key.strip() == "flags":
                    flags = set(value.split())
                    break
    except OSError:
        pass
    isa = next((x for x in ("amx_tile", "avx512f", "avx2", "avx") if x in flags), None)
    return {"cpu": model or platform.processor() or platform.machine() or None, "isa": isa, "cores": os.cpu_count()}


def started() -> dict[str, Any]:
    """One row for a run folder's ``code.jsonl``: the time of this start, the code this process imported and its machine."""
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), **IMPORTED, "machine": machine()}


__all__ = ["IMPORTED", "code_version", "machine", "run_git", "started"]
