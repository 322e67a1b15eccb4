"""The run folder: the one place a run's results live, and all that analysis reads.

It names every file of a run, writes and reads its rows (the classes of ``aplkit.records``),
holds the checkpoint and does the bookkeeping of resuming. Layout (one folder per strategy × seed)::

    config.yaml       resolved ExperimentConfig (never an API key)
    split.json        which source rows went to the train and test pools
    acquired.jsonl    AcquiredRow: one per acquired, labelled pair
    eval.jsonl        EvalRow: one per waypoint
    eval_pairs.jsonl  EvalPairRow: one per test prompt per waypoint (policy vs baseline, the verdict)
    eval_epochs.jsonl EpochEvalRow: the waypoints of evaluation.epoch_points after each earlier epoch of the step
    eval_epoch_pairs.jsonl  EpochEvalPairRow: their test prompts
    baseline.jsonl    BaselineRow: θ0's test completions, made once per run
    heldout.jsonl     HeldOutRow: held-out preference accuracy per waypoint (pool-based runs, data.task=preferences)
    train.jsonl       TrainRow: one per epoch
    steps.jsonl       StepRow: one per finished acquisition step (the resume marker)
    labels.sqlite     the label ledger (unless oracle.cache names another: ``ledger_path``)
    human_queue.jsonl comparisons waiting for a person (oracle.kind=human)
    summary.json      ledger counts, cost, wall time, ``complete`` flag
    phase.json        what the run is doing now: setup, or a step's acquire/label/train/evaluate, and since when
                      (read by a sweep's progress lines, ``aplkit.progress``)
    code.jsonl        one row per start of the run: time, aplkit version, commit, package tree, dirty, package_hash, cpu, isa, cores (``aplkit.provenance``)
    notebook.ipynb    the executed notebook, when a sweep ran the run
    checkpoint/       policy (and optimizer in online mode) after the last finished step
    .lock             the pid of the process running in the folder; its flock says whether it still runs

A PHF run (``aplkit phf``) keeps config.yaml, split.json, summary.json, code.jsonl and checkpoint/ and, instead of
the APL rows, phf_segments.jsonl (the scored training sentences), phf_train.jsonl (one row per
optimiser step), phf_eval.jsonl (the measurements per checkpoint) and phf_samples.jsonl (the samples scored).

Rows are appended, flushed and fsync'd one at a time, so a kill loses at most the
row being written; a torn last line is ignored on read.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from aplkit.provenance import started
from aplkit.records import (
    AcquiredRow,
    BaselineRow,
    EpochEvalPairRow,
    EpochEvalRow,
    EvalPairRow,
    EvalRow,
    HeldOutRow,
    PHFEvalRow,
    PHFSampleRow,
    PHFSegmentRow,
    PHFTrainRow,
    StepRow,
    TrainRow,
    field_names,
    from_dict,
    to_dict,
)

CONFIG = "config.yaml"
SPLIT = "split.json"
LEDGER = "labels.sqlite"
QUEUE = "human_queue.jsonl"
SUMMARY = "summary.json"
CODE = "code.jsonl"  # one row per start: the time and the code (aplkit.provenance)
LOCK = ".lock"  # held (flock) by the process running in the folder: ``RunFolder.claim``
NOTEBOOK = "notebook.ipynb"
CHECKPOINT = "checkpoint/state.pt"
PHASE = "phase.json"  # what the run is doing now (``RunFolder.note_phase``)
#: each row class and the file it lives in
FILES: dict[type, str] = {
    AcquiredRow: "acquired.jsonl",
    EvalRow: "eval.jsonl",
    EvalPairRow: "eval_pairs.jsonl",
    EpochEvalRow: "eval_epochs.jsonl",
    EpochEvalPairRow: "eval_epoch_pairs.jsonl",
    BaselineRow: "baseline.jsonl",
    HeldOutRow: "heldout.jsonl",
    TrainRow: "train.jsonl",
    StepRow: "steps.jsonl",
    # a PHF run (aplkit.phf): step = optimiser steps taken
    PHFSegmentRow: "phf_segments.jsonl",
    PHFTrainRow: "phf_train.jsonl",
    PHFEvalRow: "phf_eval.jsonl",
    PHFSampleRow: "phf_samples.jsonl",
}
#: the files whose rows belong to an acquisition step (truncated on resume)
STEP_FILES = (AcquiredRow, TrainRow, EvalRow, EvalPairRow, EpochEvalRow, EpochEvalPairRow, HeldOutRow, StepRow)
ACQUIRED_FIELDS = field_names(AcquiredRow)
EVAL_FIELDS = field_names(EvalRow)
TRAIN_FIELDS = field_names(TrainRow)

R = TypeVar("R")
#: run folders this process holds: resolved path → [lock fd, claims]
_HELD: dict[str, list[int]] = {}


class RunFolder:
    def __init__(self, path: str | Path):
        self.path = Path(path)

    def ensure(self) -> RunFolder:
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @classmethod
    def open(
        cls, path: str | Path, config: dict[str, Any], ignore: tuple[str, ...] = ("out",), defaults: dict[str, Any] | None = None
    ) -> RunFolder:
        """The folder of a run with this config: created, or checked to hold the same experiment (``check_config``)."""
        run = cls(path).ensure()
        run.claim()
        with run.given_back_on_error():
            run.check_config(config, ignore=ignore, defaults=defaults)
        return run

    @contextlib.contextmanager
    def given_back_on_error(self) -> Iterator[RunFolder]:
        """Set-up after ``claim``: a failure in it gives the folder back (the process may go on, e.g. a notebook)."""
        try:
            yield self
        except BaseException:
            self.release()
            raise

    def claim(self) -> None:
        """Hold the folder for this process until ``release`` (or its exit, even a kill: the lock is the kernel's).

        Two processes in one folder (two shards with overlapping plans, a job array started twice) would
        append each other's steps and label the same pairs twice; the second one stops here, in one line,
        before any model is loaded. Re-entrant within a process, so a notebook cell can run again.
        """
        import fcntl

        from aplkit.errors import RunFolderBusy

        key = str(self.path.resolve())
        if key in _HELD:
            _HELD[key][1] += 1
            return
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise RunFolderBusy(f"{self.path} is in use by another process{who}; wait for it to finish or use another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        _HELD[key] = [fd, 1]

    def release(self) -> None:
        """Give back one ``claim``; the last one unlocks the folder."""
        key = str(self.path.resolve())
        held = _HELD.get(key)
        if held is None:
            return
        held[1] -= 1
        if held[1] <= 0:
            del _HELD[key]
            os.close(held[0])

    def note_start(self) -> None:
        """Append this start's code to ``code.jsonl``: called once every check has passed and work remains,
        so a refused or already finished run writes nothing."""
        self.append(CODE, started())

    def note_phase(self, phase: str, step: int | None = None, step_since: float | None = None) -> None:
        """Say what the run is doing from now on: ``setup`` (models, data, θ0), or ``phase`` of acquisition step ``step``,
        begun at ``step_since`` (epoch seconds). Only read while the run goes, to show its progress."""
        now = round(time.time(), 3)
        self.write_json(PHASE, {"phase": phase, "step": step, "since": now, "step_since": step_since})

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # ------------------------------------------------------------------ typed rows
    def add(self, row: Any) -> None:
        """Append one row to the file of its class."""
        self.append(FILES[type(row)], to_dict(row))

    def read(self, cls: type[R]) -> list[R]:
        """Every row of a class, parsed; keys the class does not know are ignored, missing ones take defaults."""
        return [from_dict(cls, r) for r in read_jsonl(self.path / FILES[cls])]

    def replace(self, cls: type[R], rows: Iterable[R]) -> None:
        write_jsonl(self.path / FILES[cls], (to_dict(r) for r in rows))

    # ------------------------------------------------------------------ jsonl / json
    def append(self, name: str, row: dict[str, Any]) -> None:
        with open(self.path / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def rows(self, name: str) -> list[dict[str, Any]]:
        return list(read_jsonl(self.path / name))

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write(self.path / name, json.dumps(obj, indent=2, ensure_ascii=False))

    def read_json(self, name: str, default: Any = None) -> Any:
        p = self.path / name
        return json.loads(p.read_text()) if p.exists() else default

    # ------------------------------------------------------------------ resume
    def truncate_after_step(self, cls: type, step: int) -> None:
        """Drop rows of unfinished steps (> step) so a resumed step is written once."""
        p = self.path / FILES[cls]
        if p.exists():
            write_jsonl(p, (r for r in read_jsonl(p) if int(r.get("step", 0)) <= step))

    def resume_at(self, done: int, acquired: int) -> None:
        """Forget every row of the steps after ``done``; a step restored from its checkpoint keeps a marker row."""
        for cls in STEP_FILES:
            self.truncate_after_step(cls, done)
        if done and not any(r.step == done for r in self.read(StepRow)):
            self.add(StepRow(step=done, acquired=acquired))

    def restore(self, split: dict[str, Any], per_step: int) -> tuple[int, dict[str, Any] | None]:
        """The last finished step and its checkpoint (None before the first); rows of later steps are dropped.

        ``per_step`` is the labels one step acquires (M), for the marker row of a step restored from its
        checkpoint; ``split`` must be the pools the run began with (``check_split``).
        """
        state = self.load_checkpoint()
        done = int(state["step"]) if state else 0
        self.resume_at(done, done * per_step)
        self.check_split(split)
        return done, state

    def config_change(self, new: dict[str, Any], ignore: tuple[str, ...] = ("out",), defaults: dict[str, Any] | None = None) -> str | None:
        """The first setting in which ``new`` differs from the config this folder was made with (None: same or new folder).

        ``defaults``: the config class's defaults (keys added since the folder was made are no change at them);
        None: ``ExperimentConfig``'s.
        """
        import yaml

        from aplkit.config import ExperimentConfig, config_diff, migrate

        path = self.path / CONFIG
        if not path.exists():
            return None
        defaults = ExperimentConfig().to_dict() if defaults is None else defaults
        return config_diff(migrate(yaml.safe_load(path.read_text()) or {}), new, ignore, defaults)

    def check_config(self, new: dict[str, Any], ignore: tuple[str, ...] = ("out",), defaults: dict[str, Any] | None = None) -> None:
        """A run folder belongs to one config; resuming with another would mix two experiments."""
        import yaml

        from aplkit.config import NOT_EXPERIMENT, ConfigError

        diff = self.config_change(new, (*ignore, *NOT_EXPERIMENT), defaults)
        if diff:
            raise ConfigError(f"{self.path} was made with a different config ({diff}); use another --out")
        if not (self.path / CONFIG).exists():
            (self.path / CONFIG).write_text(yaml.safe_dump(new, sort_keys=False))

    def check_split(self, split: dict[str, Any]) -> None:
        """The prompt pools must be the ones the run started with (a data upgrade would change them)."""
        from aplkit.config import ConfigError

        old = self.read_json(SPLIT)
        if old is None:
            self.write_json(SPLIT, split)
            return
        for key in ("train_ids", "test_ids", "tokenizer_fingerprint"):
            if old.get(key) != split.get(key):
                raise ConfigError(
                    f"{self.path}: the prompt pools differ from split.json ({key}); the data or tokenizer changed since this run began"
                )

    def ledger_path(self, cache: str | None = None) -> Path:
        """Where this run's oracle answers live: ``oracle.cache`` is run (here), user (shared) or a path.

        With ``cache`` None it is read from the run's own config.yaml, so a labelling panel opened on
        the folder writes where the loop will read.
        """
        if cache is None:
            import yaml

            cfg = yaml.safe_load((self.path / CONFIG).read_text()) if (self.path / CONFIG).exists() else None
            cache = ((cfg or {}).get("oracle") or {}).get("cache") or "run"
        if cache == "run":
            return self.path / LEDGER
        if cache == "user":
            from aplkit.models import cache_dir

            (cache_dir() / "labels").mkdir(parents=True, exist_ok=True)
            return cache_dir() / "labels" / "ledger.sqlite"
        return Path(cache).expanduser()

    # ------------------------------------------------------------------ checkpoint
    def load_checkpoint(self) -> dict[str, Any] | None:
        import torch

        p = self.path / CHECKPOINT
        return torch.load(p, map_location="cpu", weights_only=False) if p.exists() else None

    def save_checkpoint(self, state: dict[str, Any]) -> None:
        import torch

        p = self.path / CHECKPOINT
        p.parent.mkdir(exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        torch.save(state, tmp)
        os.replace(tmp, p)

    @property
    def complete(self) -> bool:
        return bool((self.read_json(SUMMARY) or {}).get("complete"))

    def finished(self, config: dict[str, Any], defaults: dict[str, Any] | None = None) -> bool:
        """Complete and made with this config: running it again would load everything to do nothing."""
        from aplkit.config import NOT_EXPERIMENT

        return self.complete and (self.path / CONFIG).exists() and self.config_change(config, NOT_EXPERIMENT, defaults) is None


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


def atomic_write(path: str | Path, text: str) -> None:
    """Replace a file whole (tmp + fsync + rename), so no reader ever sees half of it."""
    p = Path(path)
    tmp = p.with_name(p.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)


def write_jsonl(path: str | Path, rows: Iterable[dict[str, Any]]) -> None:
    """Replace a JSONL file atomically (the one rewrite of the kit: resume truncation, the human queue)."""
    atomic_write(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))


def project_dir(start: str | Path | None = None) -> Path:
    """Where relative paths in a notebook's parameters point: the project root.

    JupyterLab starts a kernel in the notebook's own folder, papermill and the sweep in the
    caller's; both should read ``runs/…`` and ``params/…`` from the same place. The root is the
    nearest folder at or above ``start`` (default: the working directory) that holds a
    ``pyproject.toml`` or a ``runs/`` folder; failing that, the parent of a ``notebooks`` folder,
    else ``start`` itself.
    """
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "pyproject.toml").is_file() or (d / "runs").is_dir():
            return d
    return here.parent if here.name == "notebooks" else here
