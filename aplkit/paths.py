"""Where aplkit keeps its own files: the user cache (the converted model, tokenizers, θ0's values, prompt pools, ...).

On the lowest floor so the data and the models can both find it without importing each other.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path


def cache_dir() -> Path:
    """User-level cache (``$APLKIT_CACHE``, else ``$XDG_CACHE_HOME/aplkit``, else ``~/.cache/aplkit``)."""
    root = os.environ.get("APLKIT_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aplkit"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the flock


def build_dir_once(target: Path, build: Callable[[Path], None], done: Callable[[Path], bool], force: bool = False) -> Path:
    """Make the cache folder ``target`` with ``build(tmp)`` unless ``done(target)``, once across processes.

    The first run on a fresh machine starts several jobs at once (a sweep's two kernels), each finding the cache
    empty: under an flock on ``<target>.lock`` one builds, into a folder of its own renamed into place, and the
    others wait and find it done.
    """
    target = Path(target)
    with _locked(target.with_name(target.name + ".lock")):
        if done(target) and not force:
            return target
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            build(tmp)
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


__all__ = ["build_dir_once", "cache_dir"]
