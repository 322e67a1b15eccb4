"""Build run folders with chosen numbers, so analysis tests can check answers computed by hand.

The folders follow ``aplkit.runfolder`` exactly (config.yaml from a real ExperimentConfig,
eval/acquired/train JSONL with the documented fields, summary.json), but nothing is trained.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from aplkit.config import ExperimentConfig
from aplkit.records import AcquiredRow, EpochEvalRow, EvalRow, HeldOutRow, StepRow, TrainRow, to_dict
from aplkit.runfolder import RunFolder


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
    metrics: Mapping[int, Mapping[str, float | None]] | None = None,
    cfg: ExperimentConfig | None = None,
    acquire_s: float | None = None,
    epoch_points: Mapping[int, Sequence[Mapping[str, float]]] | None = None,
    heldout: Mapping[int, tuple[float, float]] | None = None,
) -> Path:
    """One run folder under ``root``; returns its path.

    winrates: acquired-set size → win-rate written to eval.jsonl (stderr = binomial, n = n_test).
    acquired: (step, bt_prob, preferred) per acquired pair. losses: step → DPO loss per epoch.
    trained: acquired-set size → pairs trained on, written to eval.jsonl's ``trained``; None writes no
    ``trained`` field at all, as run folders from before it existed. metrics: acquired-set size → values of
    the win-rate's companion fields of ``EvalRow`` (soft_win_rate, soft_stderr, reward_gap, kl, lm_loss, ...).
    cfg: the config to write (a real
    preset's, say); by default one is built from the keyword arguments. acquire_s: write a steps.jsonl row per
    waypoint step with these acquisition seconds. epoch_points: acquired-set size → the fields (win_rate, kl_t1, ...)
    of its evaluations after epochs 1, 2, ... before the last (eval_epochs.jsonl). heldout: acquired-set size →
    (held-out accuracy, margin) of a pool-based run (heldout.jsonl: n = n_test pairs, binomial stderr, margin
    stderr 0.1, trained = the size); with no ``winrates`` the run has no judge of its generations (no eval.jsonl).
    """
    sizes = sorted(winrates or heldout or {})
    m = sizes[0] if sizes else 16
    if cfg is None:
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
        if size in (heldout or {}):
            acc, margin = heldout[size]
            rf.add(HeldOutRow(step, size, acc, math.sqrt(acc * (1 - acc) / n_test), n_test, margin, 0.1, size))
        if size not in winrates:
            continue
        p = winrates[size]
        row = EvalRow(step, size, p, math.sqrt(p * (1 - p) / n_test), n_test, 0, 0, "initial", None if trained is None else trained[size])
        row = replace(row, **dict((metrics or {}).get(size, {})))
        if trained is None:  # as a run folder from before ``trained`` existed wrote it: no such field at all
            d = to_dict(row)
            d.pop("trained")
            rf.append("eval.jsonl", d)
        else:
            rf.add(row)
    for size, rows in (epoch_points or {}).items():
        step = sizes.index(size) + 1
        for e, values in enumerate(rows, 1):
            base = {"step": step, "acquired": size, "win_rate": 0.5, "stderr": 0.0, "n": n_test, "ties": 0, "invalid": 0}
            rf.add(EpochEvalRow(**{**base, "against": "initial", "epoch": e, **values}))
    for i, (step, bt, pref) in enumerate(acquired):
        choice = None if pref is None else ("B" if pref == 1 else "A")
        rf.add(AcquiredRow(step, i, f"p{i}", "x", "a", "b", bt_prob=bt, preferred=pref, shown_order="01", choice=choice))
    for step, curve in (losses or {}).items():
        for e, loss in enumerate(curve, 1):
            rf.add(TrainRow(e, loss, 0.5, 0.0, m * step, 0.1, step=step))
    if acquire_s is not None:
        for step, size in enumerate(sizes, 1):
            rf.add(StepRow(step=step, acquired=size, labels=m, seconds=acquire_s + 1.0, acquire_s=acquire_s))
    rf.write_json("summary.json", {"complete": complete})
    return rf.path


def write_consistency(root: str | Path, records: list[dict], name: str = "judge") -> Path:
    """A consistency.json as ``aplkit judge-consistency`` writes it."""
    p = Path(root) / name / "consistency.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(records))
    return p
