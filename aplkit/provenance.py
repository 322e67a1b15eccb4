"""Which code made a run: stored in its folder at every start, so a run resumed across a code change says so.

A study's records outlive the commits that made them; without this a reader cannot tell whether two
records of one table came from the same code, or whether a run was resumed under a different one. The
code is taken when this process imported aplkit (``IMPORTED``): commits made in the checkout while a
long process runs (a study committing its records, a fix) do not change the code it runs. ``tree``,
the git tree of the package at HEAD, is the same across commits that leave ``aplkit/`` alone;
``package_hash`` is the same kind of git tree id computed from the package's files as they are on disk
(``package_hash``), so it equals ``tree`` in a clean checkout and still tells two uncommitted edits apart
(a dirty ``tree`` does not), and it exists for an installed copy too. It is what tells two records' code
apart; ``cpu`` and ``isa`` tell their machines apart (a study's paired differences are compared only
within one code version × CPU, ``aplkit.results.compare``).
"""

from __future__ import annotations

import hashlib
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


def _tree_id(entries: dict[str, Any]) -> str:
    """The git tree id of ``{name: (mode, blob id) or a nested dict}``: git sorts a subtree's name as ``name/``."""
    body = b""
    for name in sorted(entries, key=lambda n: n + "/" if isinstance(entries[n], dict) else n):
        v = entries[name]
        mode, oid = ("40000", bytes.fromhex(_tree_id(v))) if isinstance(v, dict) else v
        body += f"{mode} {name}".encode() + b"\0" + oid
    return hashlib.sha1(b"tree %d\0" % len(body) + body).hexdigest()


def package_hash(root: str | Path = PACKAGE, git_files: bool = True) -> str:
    """A git tree id of the package's files as they are on disk: ``git rev-parse HEAD:aplkit`` in a clean
    checkout, another id as soon as a file differs. ``git_files``: the files git sees there (tracked and
    untracked-but-not-ignored, so a new module counts); otherwise (an installed copy) every file but
    ``__pycache__``."""
    root = Path(root)
    names = None
    if git_files:
        r = run_git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
        names = sorted({n for n in r.stdout.split("\0") if n}) if r is not None and r.returncode == 0 else None
    if names is None:
        names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir() and "__pycache__" not in p.parts)
    tree: dict[str, Any] = {}
    for name in names:
        path = root / name
        if path.is_symlink():
            mode, data = "120000", os.readlink(path).encode()
        elif path.is_file():
            mode, data = ("100755" if os.stat(path).st_mode & 0o100 else "100644"), path.read_bytes()
        else:  # a tracked file deleted on disk is not part of the code
            continue
        *dirs, leaf = name.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = (mode, hashlib.sha1(b"blob %d\0" % len(data) + data).digest())
    return _tree_id(tree)


def code_version() -> dict[str, Any]:
    """aplkit's version, ``package_hash`` and, where it runs from a git checkout, the commit of the whole tree
    (HEAD), the package's tree at it and whether the package's tracked files differ from it (``dirty``); those
    three are None for an installed copy."""
    try:
        version = metadata.version("aplkit")
    except metadata.PackageNotFoundError:
        version = None
    commit = _git("rev-parse", "HEAD")
    tree = _git("rev-parse", "HEAD:./") if commit else None  # None: the package is not tracked there (a venv inside some repo)
    status = _git("status", "--porcelain", "--untracked-files=no", "--", ".") if tree else None
    return {
        "aplkit": version,
        "commit": commit if tree else None,
        "tree": tree,
        "dirty": None if status is None else bool(status),
        "package_hash": package_hash(PACKAGE, git_files=tree is not None),
    }


#: the code this process runs: taken once, when it imported aplkit
IMPORTED = code_version()


#: instruction-set levels, best first: the first a CPU has is its ``isa`` (bf16 matters to bf16 matmuls; records
#: written before ``avx512_bf16`` was on this list say ``avx512f`` on such CPUs)
ISA_LEVELS = ("amx_tile", "avx512_bf16", "avx512f", "avx2", "avx")


def isa_level(flags: set[str]) -> str | None:
    """The best of ``ISA_LEVELS`` among a CPU's ``/proc/cpuinfo`` flags; None when it has none of them."""
    return next((x for x in ISA_LEVELS if x in flags), None)


#: instruction sets with bf16 matrix instructions: a bf16 matmul there runs natively, elsewhere it is emulated
NATIVE_BF16 = ("amx_tile", "avx512_bf16")


def machine() -> dict[str, Any]:
    """The CPU this process runs on: a run's seconds are comparable only on one kind (the CPU study's random
    seeds 14–15 ran on an AVX2 core at ≈ 4× the seconds of the machine that ran seeds 0–13), and its numbers
    may differ in the last bits between instruction sets."""
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
    return {"cpu": model or platform.processor() or platform.machine() or None, "isa": isa_level(flags), "cores": os.cpu_count()}


def started() -> dict[str, Any]:
    """One row for a run folder's ``code.jsonl``: the time of this start, the code this process imported (``commit``,
    ``package_hash``, ...) and its machine (``cpu``, ``isa``, ``cores``), all as top-level fields."""
    return {"started": datetime.now(UTC).isoformat(timespec="seconds"), **IMPORTED, **machine()}


def start_machine(row: dict[str, Any]) -> dict[str, Any]:
    """A ``code.jsonl`` row's machine (cpu, isa, cores): top-level fields, or the ``machine`` block of rows written
    before those; {} for rows that name none."""
    if "cpu" in row or "isa" in row:
        return {k: row.get(k) for k in ("cpu", "isa", "cores")}
    return dict(row.get("machine") or {})


__all__ = ["IMPORTED", "ISA_LEVELS", "code_version", "isa_level", "machine", "package_hash", "run_git", "start_machine", "started"]
