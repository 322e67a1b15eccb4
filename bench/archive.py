"""Compact records of finished runs: what every table and figure needs, small enough to commit.

A run folder holds checkpoints, the ledger and every text; a study that must continue on a fresh
clone needs none of that, only the rows the report reads. ``export_run`` keeps the config, the
summary, the code of every start (``code.jsonl``), the eval/train/step rows, the evaluations after earlier
epochs (``eval_epochs``: a frontier's points; their per-prompt rows stay behind) and a pool-based run's held-out
preference accuracy per waypoint (``heldout``: its endpoint, no per-pair rows to leave behind), per acquired pair its
ranking and label, and per test prompt its verdict (no texts or token ids); ``materialise`` writes such
records back out as run folders, so the whole results layer (``load``, ``stats``, ``tables``, ``plots``,
``report``) works on them unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from aplkit.metrics import PER_PROMPT_FIELDS
from aplkit.records import AcquiredRow, EpochEvalRow, EvalPairRow, EvalRow, HeldOutRow, StepRow, TrainRow, from_dict, to_dict
from aplkit.runfolder import CODE, CONFIG, SUMMARY, RunFolder, write_jsonl

FORMAT = 1
#: the fields of an acquired pair the analysis reads (Fig 3, batch statistics); the texts and ids stay behind
ACQUIRED_KEEP = (
    "step",
    "index",
    "prompt_id",
    "score",
    "entropy",
    "reward0",
    "reward1",
    "bt_prob",
    "choice",
    "preferred",
    "oracle_p_y1",
    "oracle_score0",
    "oracle_score1",
    "flipped",
)
#: per test prompt per waypoint, the verdict and every metric's per-prompt value (``aplkit.metrics``; texts stay
#: behind): a study can recompute every metric on the first n test prompts (pilot: how the difference's spread falls with n)
EVAL_PAIR_KEEP = ("step", "prompt_id", "preferred", "tie", *PER_PROMPT_FIELDS)
ROWS = {"eval": EvalRow, "train": TrainRow, "steps": StepRow, "eval_epochs": EpochEvalRow, "heldout": HeldOutRow}
LISTS = ("eval", "train", "steps", "acquired", "eval_pairs", "eval_epochs", "heldout")
#: lists written only where the run has rows (pool-based runs): an on-policy record stays what it was without them
OPTIONAL = ("heldout",)


def export_run(run_dir: str | Path) -> dict[str, Any]:
    """The compact record of one run folder (complete or not; ``summary.complete`` says which)."""
    run = RunFolder(run_dir)
    rec: dict[str, Any] = {
        "format": FORMAT,
        "config": yaml.safe_load((run / CONFIG).read_text()),
        "summary": run.read_json(SUMMARY, {}) or {},
        "code": run.rows(CODE) if (run / CODE).exists() else [],  # every start's commit: a resume across a change shows
    }
    for key, cls in ROWS.items():
        rec[key] = [to_dict(r) for r in run.read(cls)]
    rec["acquired"] = [{k: to_dict(r)[k] for k in ACQUIRED_KEEP} for r in run.read(AcquiredRow)]
    rec["eval_pairs"] = [{k: to_dict(r)[k] for k in EVAL_PAIR_KEEP} for r in run.read(EvalPairRow)]
    return rec


def write_record(run_dir: str | Path, path: str | Path) -> Path:
    """Export a run folder to ``path`` (JSON, one line per row, so a diff of two records reads well)."""
    rec = export_run(run_dir)
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in rec.items() if k not in LISTS}
    lines = ["{", f'"head": {json.dumps(head, sort_keys=True)},']
    keys = [k for k in LISTS if rec[k] or k not in OPTIONAL]
    for i, key in enumerate(keys):
        rows = ",\n".join("  " + json.dumps(r, sort_keys=True) for r in rec[key])
        lines.append(f'"{key}": [\n{rows}\n]' + ("," if i < len(keys) - 1 else ""))
    lines.append("}")
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(p)
    return p


def read_record(path: str | Path) -> dict[str, Any]:
    raw = json.loads(Path(path).read_text())
    # a list the record does not hold (written before eval_pairs or eval_epochs was kept; heldout on-policy) is empty
    return {**raw["head"], **{k: raw.get(k, []) for k in LISTS}}


def materialise(records: Iterable[str | Path], root: str | Path) -> Path:
    """Write each record back as a run folder ``root/<name>/<strategy>/seed<k>``; returns ``root``."""
    root = Path(root)
    for path in records:
        rec = read_record(path)
        cfg = rec["config"]
        run = RunFolder(root / str(cfg.get("name", "run")) / str(cfg["strategy"]).replace("+", "_") / f"seed{cfg['seed']}").ensure()
        (run / CONFIG).write_text(yaml.safe_dump(cfg, sort_keys=False))
        for key, cls in ROWS.items():
            if rec[key] or key not in OPTIONAL:
                run.replace(cls, [from_dict(cls, r) for r in rec[key]])
        run.replace(AcquiredRow, [from_dict(AcquiredRow, r) for r in rec["acquired"]])
        run.replace(EvalPairRow, [from_dict(EvalPairRow, r) for r in rec["eval_pairs"]])
        run.write_json(SUMMARY, rec["summary"])
        write_jsonl(run / CODE, rec.get("code", []))  # records written before code.jsonl was kept have none
    return root


__all__ = ["ACQUIRED_KEEP", "EVAL_PAIR_KEEP", "export_run", "materialise", "read_record", "write_record"]
