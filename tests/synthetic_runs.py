"""Build run folders with chosen numbers, so analysis tests can check answers computed by hand.

The folders follow ``aplkit.runfolder`` exactly (config.yaml from a real ExperimentConfig,
eval/acquired/train JSONL with the documented fields, summary.json), but nothing is trained.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from aplkit.config import ExperimentConfig
from aplkit.runfolder import ACQUIRED_FIELDS, EVAL_FIELDS, TRAIN_FIELDS, RunFolder


def make_run(
    root: str | Path,
    strategy: str,
    seed: int,
    winrates: dict[int, float],
    *,
    task: str = "imdb",
    mode: str = "reset",
    epochs: int = 4,
    oracle: str = "sentiment",
    name: str = "synthetic",
    n_test: int = 64,
    acquired: Sequence[tuple[int, float | None, int | None]] = (),
    losses: dict[int, Sequence[float]] | None = None,
    complete: bool = True,
    folder: str | None = None,
    trained: dict[int, int] | None = None,
) -> Path:
    """One run folder under ``root``; returns its path.

    winrates: acquired-set size → win-rate written to eval.jsonl (stderr = binomial, n = n_test).
    acquired: (step, bt_prob, preferred) per acquired pair. losses: step → DPO loss per epoch.
    trained: acquired-set size → pairs trained on, written to eval.jsonl's ``trained``; None writes no
    ``trained`` field at all, as run folders from before it existed.
    """
    sizes = sorted(winrates)
    m = sizes[0] if sizes else 16
    cfg = ExperimentConfig(name=name, strategy=strategy, seed=seed)
    cfg.data.task = task
    cfg.training.mode = mode
    cfg.training.epochs = epochs
    cfg.oracle.kind = oracle
    cfg.acquisition.acquire_batch = m
    cfg.acquisition.budget = max(sizes) if sizes else m
    rf = RunFolder(Path(root) / (folder or f"{task}-{mode}-e{epochs}-{oracle}/{strategy}/seed{seed}")).ensure()
    cfg.dump(rf / "config.yaml")
    for step, size in enumerate(sizes, 1):
        p = winrates[size]
        row = {
            "step": step,
            "acquired": size,
            "win_rate": p,
            "stderr": math.sqrt(p * (1 - p) / n_test),
            "n": n_test,
            "ties": 0,
            "invalid": 0,
            "against": "initial",
        }
        if trained is not None:
            row["trained"] = trained[size]
        fields = dict.fromkeys([*EVAL_FIELDS, "trained"])
        rf.append("eval.jsonl", {k: row[k] for k in fields if k in row})  # fields this row lacks: as an older run wrote it
    for i, (step, bt, pref) in enumerate(acquired):
        row = dict.fromkeys(ACQUIRED_FIELDS)
        row |= {
            "step": step,
            "index": i,
            "prompt_id": f"p{i}",
            "prompt": "x",
            "y0": "a",
            "y1": "b",
            "bt_prob": bt,
            "preferred": pref,
            "shown_order": "01",
            "choice": None if pref is None else ("B" if pref == 1 else "A"),
            "flipped": False,
        }
        rf.append("acquired.jsonl", row)
    for step, curve in (losses or {}).items():
        for e, loss in enumerate(curve, 1):
            row = {"step": step, "epoch": e, "loss": loss, "reward_acc": 0.5, "margin": 0.0, "n_pairs": m * step, "seconds": 0.1}
            rf.append("train.jsonl", {k: row[k] for k in TRAIN_FIELDS})
    rf.write_json("summary.json", {"complete": complete})
    return rf.path


def write_consistency(root: str | Path, records: list[dict], name: str = "judge") -> Path:
    """A consistency.json as ``aplkit judge-consistency`` writes it."""
    p = Path(root) / name / "consistency.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(records))
    return p
