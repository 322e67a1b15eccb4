"""The run folder: the one place a run's results live, and all that analysis reads.

Layout (one folder per strategy × seed)::

    config.yaml       resolved ExperimentConfig (never an API key)
    split.json        which source rows went to the train and test pools
    acquired.jsonl    one row per acquired, labelled pair (ACQUIRED_FIELDS)
    eval.jsonl        one row per waypoint (EVAL_FIELDS)
    eval_pairs.jsonl  one row per test prompt per waypoint (policy vs baseline, the verdict)
    baseline.jsonl    θ0's (or the human) test completions, made once per run
    train.jsonl       one row per epoch (TRAIN_FIELDS)
    steps.jsonl       one row per finished acquisition step (the resume marker)
    labels.sqlite     the label ledger: every oracle answer, written the moment it arrives
    summary.json      ledger counts, cost, wall time, ``complete`` flag
    checkpoint/       policy (and optimizer in online mode) after the last finished step

Rows are appended, flushed and fsync'd one at a time, so a kill loses at most the
row being written; a torn last line is ignored on read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

ACQUIRED_FIELDS = (
    "step",  # 1-based acquisition step t
    "index",  # position within the step's batch of M
    "prompt_id",
    "prompt",
    "y0",  # completion text as the oracle read it (special tokens dropped)
    "y1",
    "y0_ids",  # the sampled token ids, EOS included when the model stopped: what DPO trains on
    "y1_ids",
    "score",  # the acquisition score that ranked this pair (random: the uniform draw)
    "entropy",  # predictive entropy of the prompt when computed, else null
    "reward0",  # implicit reward r̂(x, y0) under θ_t at acquisition time
    "reward1",
    "bt_prob",  # σ(r̂1 − r̂0) = p(y1 ≻ y0 | x)
    "shown_order",  # "01": A=y0, B=y1; "10": A=y1, B=y0
    "choice",  # the oracle's answer in display terms: A | B | tie | null (invalid)
    "preferred",  # 1: y1 ≻ y0, 0: y0 ≻ y1, null: tie or invalid (not trained on)
    "oracle_p_y1",  # the oracle's own P(y1 ≻ y0) where it gives one
    "raw",  # the oracle's raw judgement text
    "flipped",  # simulated label noise applied
    "cached",  # the answer came from the ledger (asked before)
)
# acquired: t·M labels paid for; trained: pairs in X_P at that point (ties and invalid answers excluded)
EVAL_FIELDS = ("step", "acquired", "trained", "win_rate", "stderr", "n", "ties", "invalid", "against")
TRAIN_FIELDS = ("step", "epoch", "loss", "reward_acc", "margin", "n_pairs", "seconds")


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def ensure(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ jsonl
    def append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rows(self, name: str) -> list[dict[str, Any]]:
        return list(read_jsonl(self.path / name))

    def write_json(self, name: str, obj: Any) -> None:
        tmp = self.path / (name + ".tmp")
        tmp.write_text(json.dumps(obj, indent=2, ensure_ascii=False))
        os.replace(tmp, self.path / name)

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else default

    def truncate_after_step(self, name: str, step: int) -> None:
        """Drop rows of unfinished steps (> step) so a resumed step is written once."""
        p = self.path / name
        if not p.exists():
            return
        keep = [r for r in read_jsonl(p) if int(r.get("step", 0)) <= step]
        tmp = p.with_suffix(p.suffix + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            for r in keep:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        os.replace(tmp, p)

    @property
    def complete(self) -> bool:
        return bool((self.read_json("summary.json") or {}).get("complete"))


def read_jsonl(path: str | Path) -> Iterator[dict[str, Any]]:
    p = Path(path)
    if not p.exists():
        return
    with open(p, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError:  # torn final line after a kill
                continue


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
