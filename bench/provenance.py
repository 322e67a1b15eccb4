"""Where a benchmark's numbers came from: the commit and the machine, stored beside the numbers."""

from __future__ import annotations

import platform
import random
import subprocess
import time
from pathlib import Path

from aplkit.provenance import machine as cpu
from aplkit.provenance import run_git

ROOT = Path(__file__).resolve().parent.parent


def git(*args: str) -> str | None:
    """A git command's output in this checkout; None outside one (an installed copy, no git)."""
    r = run_git(ROOT, *args)
    return (r.stdout.strip() or None) if r is not None else None


def commit() -> str:
    """The short commit at the time of writing, or "unknown"."""
    return git("rev-parse", "--short", "HEAD") or "unknown"


def machine() -> dict[str, str]:
    return {"platform": platform.platform(), **cpu(), "commit": commit()}


def commit_file(path: Path, message: str, tries: int = 30, root: Path = ROOT) -> bool:
    """Commit one file alone (``git commit --only``: whatever else is staged stays staged, uncommitted).

    For a study's records as they land, so a machine that goes away loses no finished run. Two shards (or
    a person) committing at once meet git's index lock; the loser waits and tries again.
    """

    def git_(*cmd: str) -> subprocess.CompletedProcess | None:
        r = run_git(root, *cmd, timeout=60)
        if r is None:
            print(f"git {cmd[0]} {path}: git did not run; commit it by hand", flush=True)
        return r

    for _ in range(tries):
        r = git_("add", "--", str(path))
        if r is not None and not r.returncode:
            same = git_("diff", "--cached", "--quiet", "HEAD", "--", str(path))
            if same is not None and same.returncode == 0:  # the same record written again
                return True
            r = git_("commit", "-q", "--only", "-m", message, "--", str(path))
            if r is not None and not r.returncode:
                return True
        if r is None:
            return False
        if "index.lock" not in r.stderr:
            print(f"git {path}: {r.stderr.strip() or r.stdout.strip()}; commit it by hand", flush=True)
            return False
        time.sleep(1 + 2 * random.random())
    print(f"git {path}: the index stayed locked; commit it by hand", flush=True)
    return False
