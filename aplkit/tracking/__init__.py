"""Experiment trackers: a run's metrics also sent to TensorBoard, Weights & Biases or Trackio.

Each tracker is a callback on the loop's seam (``aplkit.callbacks``), named in the config's top-level
``tracking`` list (``--set tracking=[tensorboard,wandb]``); none is used by default and none is a
required dependency. A tracker whose package is missing is reported by ``ExperimentConfig.problems``
as one line naming the pip extra, before any model loads. The run folder stays the record: what a
tracker shows is computed by ``aplkit.tracking.metrics`` from the same rows.
"""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aplkit.callbacks import Callback

#: tracker name → (the module it imports, the aplkit extra that installs it)
PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def missing_message(name: str) -> str:
    module, extra = PACKAGES[name]
    return f"tracking: {name} needs the '{module}' package, which is not installed; pip install 'aplkit[{extra}]'"


def installed(name: str) -> bool:
    """Whether the tracker's package can be imported, without importing it (a config check stays fast)."""
    module = PACKAGES[name][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[module] set to None
        return False


def tracking_problems(names: list[str]) -> list[str]:
    """The config's ``tracking`` list checked: known names (also checked when parsed), no repeats, packages installed."""
    out = [f"tracking: unknown '{n}' (choose from {', '.join(PACKAGES)})" for n in names if n not in PACKAGES]
    dup = sorted({n for n in names if names.count(n) > 1})
    out += [f"tracking: {', '.join(dup)} named more than once"] if dup else []
    return out + [missing_message(n) for n in dict.fromkeys(names) if n in PACKAGES and not installed(n)]


def require(name: str) -> ModuleType:
    """Import a tracker's package, or raise the one-line ``ConfigError`` naming the extra."""
    from aplkit.errors import ConfigError

    try:
        return importlib.import_module(PACKAGES[name][0])
    except ImportError:
        raise ConfigError(missing_message(name)) from None


def make_trackers(names: list[str]) -> list[Callback]:
    """One callback per name, in the given order; nothing is imported or opened until the run starts."""
    from aplkit.tracking.backends import TRACKERS

    bad = tracking_problems(list(names))
    if bad:
        from aplkit.errors import ConfigError

        raise ConfigError(bad[0])
    return [TRACKERS[n]() for n in names]


__all__ = ["PACKAGES", "installed", "make_trackers", "missing_message", "require", "tracking_problems"]
