"""aplkit: Active Preference Learning and the objectives of "Pretraining LMs with Human Preferences".

``from aplkit import load_config, run_experiment`` are the two entry points of a script or notebook;
both are imported on first use, so ``import aplkit`` stays light (no torch).
"""

from typing import Any

_LAZY = {"load_config": "aplkit.checks", "run_experiment": "aplkit.loop", "Experiment": "aplkit.loop"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'aplkit' has no attribute {name!r}")


__all__ = ["Experiment", "load_config", "run_experiment"]
