"""What θ0 gives on the test set, computed once and shared by every run that would compute the same thing.

Every strategy of one seed samples the same θ0 baseline completions (seed ``derive_seed(seed,
"baseline")``) and measures the same θ0 LM loss: a study of 4 strategies made them 4 times (and
every PHF objective of a seed the same step-0 measurement, ``phf.measure``). The
value is stored under the user cache (``paths.cache_dir()/theta0``), keyed by everything it depends
on — model, test prompts, sampling settings and the sampler's version, seed, torch threads and library versions (float
reductions differ with the thread count) — so a hit is exactly what the run would have computed.
Only the embedded model is shared: a hub id or a local folder can change under the same name.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def key(**parts: Any) -> str:
    import torch
    import transformers

    from aplkit.generation import SAMPLER

    full = {
        **parts,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "sampler": SAMPLER,
    }
    return hashlib.sha256(json.dumps(full, sort_keys=True, default=str).encode()).hexdigest()[:32]


def cache_path(k: str) -> Path:
    from aplkit.paths import cache_dir

    return cache_dir() / "theta0" / f"{k}.json"


def shared(spec: str, parts: dict[str, Any], compute: Callable[[], T]) -> T:
    """``compute()``, or its stored value when a run with the same ``parts`` already computed it (embedded model only)."""
    from aplkit.models import EMBEDDED

    if spec != EMBEDDED:
        return compute()
    path = cache_path(key(spec=spec, **parts))
    if path.exists():
        try:
            return json.loads(path.read_text())["value"]
        except (json.JSONDecodeError, KeyError):
            pass  # a torn write from a killed run: compute again
    value = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{id(value)}.tmp")
    tmp.write_text(json.dumps({"value": value}))
    tmp.replace(path)
    return value


__all__ = ["cache_path", "key", "shared"]
