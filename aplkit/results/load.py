"""Results, layer 1: finding run folders and reading them into pandas objects.

A run is any folder under RUNS_DIR holding a ``config.yaml``; its identity (strategy, seed,
training mode, epochs, oracle, task) comes from that file, its results from the JSONL files
described in ``aplkit.runfolder``. Nothing here computes a statistic (``aplkit.results.stats``),
formats a table (``tables``) or plots (``plots``), so notebooks, the CLI and the tests share one
implementation of each.

``trained`` (eval.jsonl, when the run recorded it; NaN for older run folders) is read along with the
labels ``acquired``: ties and invalid oracle answers are not trained on, so the two may differ.

A pool-based run's held-out preference accuracy (``heldout.jsonl``) is joined into its eval rows by waypoint,
under ``aplkit.metrics.HELDOUT_COLUMNS``' names; a pool run without a judge of its generations has no eval rows,
so its waypoints come from the held-out rows alone, with the win-rate NaN.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from aplkit.metrics import COMPANION_FIELDS, HELDOUT_COLUMNS
from aplkit.provenance import start_machine
from aplkit.records import AcquiredRow, EpochEvalRow, EvalRow, HeldOutRow, StepRow, TrainRow, field_names, to_dict
from aplkit.runfolder import CODE, RunFolder

PAPER_ORDER = ("random", "entropy", "certainty", "entropy+certainty")
DISPLAY = {"random": "Random", "entropy": "Entropy", "certainty": "Pref certainty", "entropy+certainty": "Pref + Ent"}
IDENTITY = ("run", "name", "task", "strategy", "seed", "mode", "epochs", "oracle", "complete")

# --------------------------------------------------------------------------- loading


def find_runs(runs_dir: str | Path) -> list[Path]:
    """Every folder under ``runs_dir`` (itself included) that holds a config.yaml, sorted."""
    root = Path(runs_dir)
    if not root.exists():
        raise FileNotFoundError(f"runs dir not found: {root}")
    return sorted(p.parent for p in root.rglob("config.yaml"))


def run_identity(folder: str | Path, runs_dir: str | Path | None = None) -> dict[str, Any]:
    """What makes a run distinct, from its config.yaml (read as plain YAML so old configs still load)."""
    folder = Path(folder)
    cfg = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    training = cfg.get("training") or {}
    summary_path = folder / "summary.json"
    try:
        complete = bool(json.loads(summary_path.read_text()).get("complete")) if summary_path.exists() else False
    except json.JSONDecodeError:
        complete = False
    rel = folder.relative_to(runs_dir).as_posix() if runs_dir is not None else folder.as_posix()
    rel = folder.resolve().name if rel == "." else rel  # runs_dir is itself the run
    return {
        "run": rel,
        "name": cfg.get("name", ""),
        "task": (cfg.get("data") or {}).get("task", ""),
        "strategy": cfg.get("strategy", ""),
        "seed": int(cfg.get("seed", 0)),
        "mode": training.get("mode", "reset"),
        "epochs": int(training.get("epochs", 0)),
        "oracle": (cfg.get("oracle") or {}).get("kind", ""),
        "complete": complete,
    }


def _rows(run: RunFolder, cls: type) -> pd.DataFrame:
    return pd.DataFrame([to_dict(r) for r in run.read(cls)], columns=list(field_names(cls)))


def _load(
    runs_dir: str | Path, cls: type, join: Callable[[RunFolder, pd.DataFrame], pd.DataFrame] | None = None, columns: tuple[str, ...] = ()
) -> pd.DataFrame:
    """Every row of one kind (a class of ``aplkit.records``) from every run folder, with the run's identity;
    ``join`` adds to a run's rows what its folder holds beside them, as ``columns`` (default ``cls``' fields)."""
    fields = list(columns or field_names(cls))
    frames, skipped = [], []
    for folder in find_runs(runs_dir):
        ident = run_identity(folder, runs_dir)
        run = RunFolder(folder)
        part = _rows(run, cls) if join is None else join(run, _rows(run, cls))
        if part.empty:
            skipped.append(ident["run"])
            continue
        for k in reversed(IDENTITY):
            part.insert(0, k, ident[k])
        frames.append(part)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=[*IDENTITY, *fields])
    df.attrs["skipped"] = skipped  # folders with a config.yaml but no rows in `filename`
    df.attrs["incomplete"] = sorted(df.loc[~df["complete"].astype(bool), "run"].unique().tolist()) if len(df) else []
    return df


def load_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run × waypoint: eval.jsonl joined with run identity, and a pool-based run's heldout.jsonl.

    ``trained`` is the number of preference pairs the policy was trained on at that waypoint (float;
    NaN where the run did not record it); so are the win-rate's companions (``COMPANION_FIELDS``) and the
    held-out preference accuracy and margin with their SEs and pair count (``HELDOUT_COLUMNS``: NaN on-policy).
    A waypoint with held-out rows but no eval row (a pool run without a judge of its generations) has NaN
    win-rate and companions.

    Runs without eval or held-out rows are left out and listed in ``df.attrs["skipped"]``; unfinished runs
    are kept (``complete`` is False) and listed in ``df.attrs["incomplete"]``.
    """
    return _eval_columns(_load(runs_dir, EvalRow, _with_heldout, EVAL_COLUMNS))  # older rows have no "trained": NaN


#: ``load_runs``' columns after the identity: eval.jsonl's, then the held-out rows'
EVAL_COLUMNS = (*field_names(EvalRow), *HELDOUT_COLUMNS.values())


def _with_heldout(run: RunFolder, ev: pd.DataFrame) -> pd.DataFrame:
    """One run's eval rows with its held-out rows joined on (step, acquired) (``HELDOUT_COLUMNS``; NaN where none):
    a waypoint either has is kept, in order of its step; ``trained`` is the eval row's, else the held-out row's."""
    held = _rows(run, HeldOutRow)
    if held.empty:  # on-policy: the eval rows as they are
        return ev.assign(**{c: math.nan for c in HELDOUT_COLUMNS.values()})
    keys = ["step", "acquired"]
    held = held.rename(columns={**HELDOUT_COLUMNS, "trained": "heldout_trained"})
    both = ev.astype(dict.fromkeys(keys, "int64")).merge(held, on=keys, how="outer").sort_values(keys, kind="stable")
    trained = pd.to_numeric(both["trained"], errors="coerce")
    both["trained"] = trained.combine_first(pd.to_numeric(both["heldout_trained"], errors="coerce"))
    return both[list(EVAL_COLUMNS)].reset_index(drop=True)


def _eval_columns(df: pd.DataFrame) -> pd.DataFrame:
    """eval rows' columns as numbers: counts as nullable integers, every metric as float (NaN: not recorded)."""
    held = [c for c in HELDOUT_COLUMNS.values() if c in df]  # not in an epoch frame
    for col in ("acquired", "n", "ties", "invalid", "step", *(c for c in held if c == "heldout_n")):
        df[col] = pd.to_numeric(df[col]).astype("Int64") if len(df) else df[col]
    floats = ("win_rate", "stderr", "trained", *COMPANION_FIELDS, *(c for c in held if c != "heldout_n"))
    for col in floats:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load_epoch_runs(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run × waypoint × earlier epoch (eval_epochs.jsonl, ``evaluation.epoch_points``) with run identity:
    ``load_runs``' columns but the held-out ones (measured only at a waypoint, after its last epoch) and ``epoch``.
    Empty (with those columns) when no run evaluated after its epochs."""
    df = _eval_columns(_load(runs_dir, EpochEvalRow))
    df["epoch"] = pd.to_numeric(df["epoch"]).astype("Int64") if len(df) else df["epoch"]
    return df


def _code_key(c: dict[str, Any]) -> str:
    """A start's code: its ``package_hash`` (a git tree id of the package's files on disk, the same across commits
    that leave aplkit/ alone); for rows written before that, the package's git tree at HEAD (the same id when clean;
    the commit for rows written before trees were kept), ``+dirty`` where the package differed from it."""
    if c.get("package_hash"):
        return c["package_hash"]
    return f"{c.get('tree') or c.get('commit') or 'unknown'}{'+dirty' if c.get('dirty') else ''}"


def _short(key: str) -> str:
    return key.removesuffix("+dirty")[:12] + ("+dirty" if key.endswith("+dirty") else "")


def start_stratum(c: dict[str, Any]) -> str:
    """A ``code.jsonl`` row's stratum, ``<code version> · <CPU (ISA)>``: paired differences are compared within one
    (numbers may move with the code, and in their last bits with the instruction set). What a row does not
    record reads "unknown"."""
    m = start_machine(c)
    cpu = f"{m.get('cpu') or 'unknown CPU'} ({m.get('isa') or 'unknown ISA'})" if m else "unknown CPU"
    code = _code_key(c)
    return f"{'unknown code' if code == 'unknown' else _short(code)} · {cpu}"


def load_strata(runs_dir: str | Path) -> dict[str, str]:
    """run (as ``load_runs`` names it) → its stratum (``start_stratum``): a run resumed under several joins them
    with " + "; a run without ``code.jsonl`` is "unknown code · unknown CPU"."""
    return {run_identity(folder, runs_dir)["run"]: folder_stratum(folder) for folder in find_runs(runs_dir)}


def folder_stratum(folder: str | Path) -> str:
    """One run folder's stratum from every start in its ``code.jsonl`` (``load_strata``)."""
    rf = RunFolder(Path(folder))
    starts = rf.rows(CODE) if (rf / CODE).exists() else []
    return " + ".join(dict.fromkeys(start_stratum(c) for c in starts)) or start_stratum({})


def load_code(runs_dir: str | Path) -> dict[str, Any]:
    """Which code made the runs under ``runs_dir`` (``code.jsonl``: every start of every run).

    ``code``: the package's tree (``+dirty`` where it differed from its commit) → the runs that ran under
    it; ``commits``: the same key → the commits it was seen at; ``resumed_across``: runs whose starts ran
    different code; ``without``: runs made before ``code.jsonl`` was kept. A table whose runs span a code
    change should say so. ``machines``: the CPU of each start (``cpu (isa, N cores)``) → the runs that ran on it, for
    the rows that record one; seconds (step times, acquisition cost) compare only within a machine.
    """
    code: dict[str, list[str]] = {}
    machines: dict[str, list[str]] = {}
    commits: dict[str, list[str]] = {}
    across, without = [], []
    for folder in find_runs(runs_dir):
        run = run_identity(folder, runs_dir)["run"]
        rf = RunFolder(folder)
        starts = rf.rows(CODE) if (rf / CODE).exists() else []
        if not starts:
            without.append(run)
        seen = sorted({_code_key(c) for c in starts})
        across += [run] if len(seen) > 1 else []
        for key in seen:
            code.setdefault(key, []).append(run)
        for key in sorted({_machine_key(m) for c in starts if (m := start_machine(c))}):
            machines.setdefault(key, []).append(run)
        for c in starts:
            at = commits.setdefault(_code_key(c), [])
            if c.get("commit") and c["commit"] not in at:
                at.append(c["commit"])
    return {"code": code, "commits": commits, "resumed_across": across, "without": without, "machines": machines}


def _machine_key(m: dict[str, Any]) -> str:
    return f"{m.get('cpu') or 'unknown CPU'} ({m.get('isa') or 'unknown ISA'}, {m.get('cores')} cores)"


def code_notes(code: dict[str, Any]) -> list[str]:
    """``load_code``'s answer as report notes: one line per version of the code, and the runs resumed across versions."""

    notes = [
        f"code {_short(k)} (at commit {', '.join(c[:12] for c in code['commits'].get(k, [])) or 'unknown'}): {len(runs)} run(s)"
        for k, runs in sorted(code["code"].items())
    ]
    notes += [f"resumed under different code: {r}" for r in code["resumed_across"]]
    if code["without"]:
        notes.append(f"{len(code['without'])} run(s) made before code.jsonl was kept: their code is not recorded")
    machines = code.get("machines") or {}
    if len(machines) > 1:  # one machine needs no note; several make seconds incomparable across runs
        notes += [f"ran on {k}: {len(runs)} run(s)" for k, runs in sorted(machines.items())]
    return notes


def load_acquired(runs_dir: str | Path) -> pd.DataFrame:
    """One row per acquired pair (acquired.jsonl) with run identity."""
    df = _load(runs_dir, AcquiredRow)
    for col in ("bt_prob", "score", "reward0", "reward1"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load_train(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run × acquisition step × epoch (train.jsonl) with run identity."""
    df = _load(runs_dir, TrainRow)
    for col in ("loss", "reward_acc", "margin"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load_steps(runs_dir: str | Path) -> pd.DataFrame:
    """One row per run × finished acquisition step (steps.jsonl: seconds per phase) with run identity."""
    df = _load(runs_dir, StepRow)
    for col in ("seconds", "acquire_s", "label_s", "train_s", "evaluate_s", "checkpoint_s"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    return df


def load_configs(runs_dir: str | Path) -> dict[str, dict[str, Any]]:
    """run → its config.yaml as a plain dict (what the cost model reads: strategy and acquisition settings)."""
    return {run_identity(f, runs_dir)["run"]: yaml.safe_load((f / "config.yaml").read_text()) or {} for f in find_runs(runs_dir)}


def load_consistency(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every record in consistency.json files under ``runs_dir`` (each file: one dict or a list)."""
    out: list[dict[str, Any]] = []
    for p in sorted(Path(runs_dir).rglob("consistency.json")):
        data = json.loads(p.read_text())
        out.extend(data if isinstance(data, list) else [data])
    return out


# --------------------------------------------------------------------------- selection


def strategy_order(strategies: Iterable[str]) -> list[str]:
    """The paper's order (random, entropy, certainty, entropy+certainty), then any others sorted."""
    present = set(strategies)
    return [s for s in PAPER_ORDER if s in present] + sorted(present - set(PAPER_ORDER))


def _mode_value(values: pd.Series) -> Any:
    counts = values.value_counts()
    top = counts[counts == counts.max()].index
    return max(top)  # ties: the larger value (more epochs), deterministic


def select_main(df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    """The runs that belong in Fig 2 / Table 2: per task, reset mode (if any), the commonest oracle and epoch count.

    A runs dir often also holds the online (Fig 5) and epoch-sweep (Fig 6) runs; averaging those
    into the main curves would be wrong, so they are dropped here and the notes say so.
    """
    if df.empty:
        return df, []
    keep, notes = [], []
    for task, g in df.groupby("task", sort=True):
        runs = g.drop_duplicates("run")
        sel = runs[runs["mode"] == "reset"] if (runs["mode"] == "reset").any() else runs
        sel = sel[sel["oracle"] == _mode_value(sel["oracle"])]
        sel = sel[sel["epochs"] == _mode_value(sel["epochs"])]
        dropped = len(runs) - len(sel)
        if dropped:
            s0 = sel.iloc[0]
            notes.append(
                f"{task}: main setting mode={s0['mode']} oracle={s0['oracle']} epochs={s0['epochs']}; {dropped} other run(s) left out of Fig 2 / Table 2"
            )
        keep.extend(sel["run"].tolist())
    return df[df["run"].isin(keep)], notes


# --------------------------------------------------------------------------- one run, as it goes

RUN_FILES = {"acquired": AcquiredRow, "train": TrainRow, "eval": EvalRow, "steps": StepRow}


def read_run(run_dir: str | Path) -> dict[str, list[dict[str, Any]]]:
    """The rows of one run folder's acquired/train/eval/steps.jsonl, keyed by that stem ([] for a missing file).

    Read afresh on every call, so a run that is still going (or was resumed) shows every step so far.
    """
    run = RunFolder(run_dir)
    return {name: [to_dict(r) for r in run.read(cls)] for name, cls in RUN_FILES.items()}


__all__ = [
    "COMPANION_FIELDS",
    "DISPLAY",
    "IDENTITY",
    "PAPER_ORDER",
    "RUN_FILES",
    "code_notes",
    "find_runs",
    "load_acquired",
    "load_code",
    "load_configs",
    "load_consistency",
    "load_epoch_runs",
    "load_runs",
    "load_steps",
    "load_strata",
    "load_train",
    "read_run",
    "run_identity",
    "select_main",
    "start_stratum",
    "strategy_order",
]
