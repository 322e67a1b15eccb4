"""The loop's one seam for anything that watches a run: progress line, notebook display, experiment trackers.

``Experiment.run(callbacks=[...])`` calls, in list order:

- ``on_run_start(cfg, run_dir, done)`` once, after resuming (``done`` finished steps are already in the folder);
- ``on_step(result)`` after each step is committed to the run folder (so a callback that fails leaves a resumable run);
- ``on_run_end(result)`` once the summary is written;
- ``close()`` always, also when the run fails or is interrupted (trackers flush and finish there).

A callback only watches: the run folder stays the record, and nothing a callback does changes what is trained.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aplkit.config import ExperimentConfig
    from aplkit.loop import RunResult, StepResult


class Callback:
    """Base class: override the hooks you need; every hook defaults to doing nothing."""

    def on_run_start(self, cfg: ExperimentConfig, run_dir: Path, done: int) -> None:
        """The run starts (or resumes after ``done`` finished steps)."""

    def on_step(self, result: StepResult) -> None:
        """Step ``result.step`` is finished and committed."""

    def on_run_end(self, result: RunResult) -> None:
        """Every step is finished and summary.json is written."""

    def close(self) -> None:
        """Release what the callback holds; called after success and failure alike."""


class OnStep(Callback):
    """A plain ``fn(StepResult)`` as a callback: what ``run(on_step=fn)`` has always taken."""

    def __init__(self, fn: Callable[[StepResult], Any]):
        self.fn = fn

    def on_step(self, result: StepResult) -> None:
        self.fn(result)


def as_callbacks(items: Iterable[Callback | Callable[[StepResult], Any]]) -> list[Callback]:
    """Callbacks as given, plain functions wrapped in ``OnStep``."""
    return [c if isinstance(c, Callback) else OnStep(c) for c in items]


class ProgressBar(Callback):
    """The CLI's progress line: one tqdm bar over the steps, with the latest win-rate and the labels so far,
    and for an API judge the calls and dollars this process has spent so far (the ledger's count)."""

    def __init__(self) -> None:
        self.bar: Any = None
        self.m = 0
        self.paid = False
        self.postfix: dict[str, Any] = {}

    def on_run_start(self, cfg: ExperimentConfig, run_dir: Path, done: int) -> None:
        from tqdm.auto import tqdm

        self.m = cfg.acquisition.acquire_batch
        self.paid = cfg.oracle.kind == "llm"
        self.bar = tqdm(desc=f"{cfg.strategy} seed {cfg.seed}", initial=done, total=cfg.steps, unit="step")

    def on_step(self, result: StepResult) -> None:
        if self.bar is None:
            return
        if result.eval:
            self.postfix |= {"win_rate": f"{result.eval.win_rate:.3f}", "labels": result.step * self.m}
        if self.paid and result.oracle:
            self.postfix["judge"] = f"{result.oracle.get('calls', 0)} calls ${result.oracle.get('cost_usd', 0.0):.2f}"
        if self.postfix:
            self.bar.set_postfix(self.postfix, refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


class CallbackList(Callback):
    """Several callbacks called in order; ``close`` reaches every one even when one of them fails."""

    def __init__(self, callbacks: Sequence[Callback]):
        self.callbacks = list(callbacks)

    def on_run_start(self, cfg: ExperimentConfig, run_dir: Path, done: int) -> None:
        for c in self.callbacks:
            c.on_run_start(cfg, run_dir, done)

    def on_step(self, result: StepResult) -> None:
        for c in self.callbacks:
            c.on_step(result)

    def on_run_end(self, result: RunResult) -> None:
        for c in self.callbacks:
            c.on_run_end(result)

    def close(self) -> None:
        errors = []
        for c in self.callbacks:
            try:
                c.close()
            except Exception as e:  # noqa: BLE001 - the others still close; the first error is raised after
                errors.append(e)
        if errors:
            raise errors[0]


__all__ = ["Callback", "CallbackList", "OnStep", "ProgressBar", "as_callbacks"]
