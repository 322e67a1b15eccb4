"""Where aplkit keeps its own files: the user cache (the converted model, tokenizers, θ0's values, prompt pools, ...).

On the lowest floor so the data and the models can both find it without importing each other.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """User-level cache (``$APLKIT_CACHE``, else ``$XDG_CACHE_HOME/aplkit``, else ``~/.cache/aplkit``)."""
    root = os.environ.get("APLKIT_CACHE")
    if root:
        return Path(root)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "aplkit"


__all__ = ["cache_dir"]
