"""Experiment trackers: a run's metrics also sent to TensorBoard, Weights & Biases or Trackio.

Each tracker is a callback on the loop's seam (``aplkit.callbacks``), named in the config's top-level
``tracking`` list (``--set tracking=[tensorboard,wandb]``); none is used by default and none is a
required dependency. A tracker whose package is missing is reported by ``aplkit.checks``
as one line naming the pip extra, before any model loads. The run folder stays the record: what a
tracker shows is computed by ``aplkit.tracking.metrics`` from the same rows.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import TYPE_CHECKING

from aplkit.checks import TRACKER_PACKAGES, tracker_missing, tracking_problems

if TYPE_CHECKING:
    from aplkit.callbacks import Callback


def require(name: str) -> ModuleType:
    """Import a tracker's package, or raise the one-line ``ConfigError`` naming the extra."""
    from aplkit.errors import ConfigError

    try:
        return importlib.import_module(TRACKER_PACKAGES[name][0])
    except ImportError:
        raise ConfigError(tracker_missing(name)) from None


def make_trackers(names: list[str]) -> list[Callback]:
    """One callback per name, in the given order; nothing is imported or opened until the run starts."""
    from aplkit.tracking.backends import TRACKERS

    bad = tracking_problems(list(names))
    if bad:
        from aplkit.errors import ConfigError

        raise ConfigError(bad[0])
    return [TRACKERS[n]() for n in names]


__all__ = ["make_trackers", "require"]
