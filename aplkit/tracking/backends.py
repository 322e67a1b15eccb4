"""The trackers themselves: TensorBoard event files, a W&B run and a Trackio run, fed by one ``Tracker`` base.

``Tracker`` turns the loop's callbacks into calls of four small methods (``start``, ``scalars``,
``images``, ``finish``), so a backend is only its library's calls. Per step it logs
``metrics.step_scalars`` against the acquired labels and ``metrics.epoch_scalars`` against the running
epoch; at the end Fig 2 and Fig 3 of the run as images. Where each one writes:

- TensorBoard: ``RUN/tensorboard/`` (``tensorboard --logdir runs/``); a resumed run appends to it.
- W&B: ``RUN/wandb/``, offline unless ``WANDB_MODE`` says otherwise (``wandb sync RUN/wandb/offline-run-*``
  uploads later); a resumed run continues the same W&B run id.
- Trackio: its own local database (``TRACKIO_DIR``, default under the Hugging Face cache; ``trackio show``).
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aplkit.callbacks import Callback
from aplkit.tracking import metrics, require

if TYPE_CHECKING:
    from aplkit.config import ExperimentConfig
    from aplkit.loop import RunResult, StepResult


def run_name(cfg: ExperimentConfig) -> str:
    return f"{cfg.strategy.replace('+', '_')}-seed{cfg.seed}"


class Tracker(Callback):
    """A callback that sends the run's metrics somewhere; subclasses implement the four methods below."""

    name = ""

    def __init__(self) -> None:
        self.started = False
        self.m = 0
        self.run_dir = Path(".")
        self.last = 0  # labels at the end of the run: where the final figures go

    # the backend's own calls
    def start(self, cfg: ExperimentConfig, run_dir: Path, hparams: dict[str, Any]) -> None:
        raise NotImplementedError

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        """Log ``values`` at ``step`` of ``axis`` ('labels' or 'epoch')."""
        raise NotImplementedError

    def images(self, images: dict[str, Any], step: int) -> None:
        """Log H×W×3 uint8 arrays by name at ``step`` (labels)."""
        raise NotImplementedError

    def finish(self) -> None:
        raise NotImplementedError

    # the loop's callbacks
    def on_run_start(self, cfg: ExperimentConfig, run_dir: Path, done: int) -> None:
        self.m, self.run_dir, self.last = cfg.acquisition.acquire_batch, Path(run_dir), cfg.steps * cfg.acquisition.acquire_batch
        self.start(cfg, self.run_dir, metrics.hparams(cfg))
        self.started = True

    def on_step(self, result: StepResult) -> None:
        for epoch, values in metrics.epoch_scalars(result):
            self.scalars(values, "epoch", epoch)
        self.scalars(metrics.step_scalars(result, self.m), "labels", result.step * self.m)

    def on_run_end(self, result: RunResult) -> None:
        figs = metrics.final_figures(self.run_dir)
        if figs:
            self.images({k: metrics.figure_rgb(f) for k, f in figs.items()}, self.last)

    def close(self) -> None:
        if self.started:
            self.started = False
            self.finish()


class TensorBoardTracker(Tracker):
    """Event files via ``torch.utils.tensorboard`` (the ``tensorboard`` package does the writing)."""

    name = "tensorboard"

    def start(self, cfg: ExperimentConfig, run_dir: Path, hparams: dict[str, Any]) -> None:
        require("tensorboard")
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        # the HPARAMS tab in the same event file as the scalars (add_hparams would open a second run)
        for summary in hparams_summary(hparams, {"eval/win_rate": float("nan")}):
            self.writer.file_writer.add_summary(summary)
        import yaml

        self.writer.add_text("config", "```\n" + yaml.safe_dump(hparams, sort_keys=False) + "```", 0)

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        for k, v in values.items():
            if k not in metrics.AXES:  # the step of every event already says it
                self.writer.add_scalar(k, v, step)

    def images(self, images: dict[str, Any], step: int) -> None:
        for k, v in images.items():
            self.writer.add_image(f"figures/{k}", v, step, dataformats="HWC")

    def finish(self) -> None:
        self.writer.close()


class WandbTracker(Tracker):
    """A W&B run whose files live in the run folder; offline by default, so nothing leaves the machine unasked."""

    name = "wandb"
    ID_FILE = "aplkit-run-id"

    def start(self, cfg: ExperimentConfig, run_dir: Path, hparams: dict[str, Any]) -> None:
        wandb = require("wandb")
        folder = run_dir / "wandb"
        folder.mkdir(parents=True, exist_ok=True)
        id_file = folder / self.ID_FILE
        if not id_file.exists():
            id_file.write_text(uuid.uuid4().hex[:8])  # W&B run ids are short lowercase strings
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or cfg.name,
            name=run_name(cfg),
            group=cfg.name,
            id=id_file.read_text().strip(),
            resume="allow",
            dir=str(run_dir),
            config=hparams,
            mode=os.environ.get("WANDB_MODE") or "offline",
            settings=wandb.Settings(console="off", silent=True),
        )
        self.wandb = wandb
        self.run.define_metric("labels")
        self.run.define_metric("train/epoch")
        for prefix in ("acquire", "seconds", "oracle", "eval", "figures"):
            self.run.define_metric(f"{prefix}/*", step_metric="labels")
        self.run.define_metric("train/final_loss", step_metric="labels")
        for k in metrics.EPOCH_FIELDS:
            self.run.define_metric(f"train/{k}", step_metric="train/epoch")

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        self.run.log(values)  # the axis is inside: labels or train/epoch

    def images(self, images: dict[str, Any], step: int) -> None:
        self.run.log({"labels": step, **{f"figures/{k}": self.wandb.Image(v) for k, v in images.items()}})

    def finish(self) -> None:
        self.run.finish()


class TrackioTracker(Tracker):
    """A local Trackio run (project = the experiment name); ``trackio show`` opens its dashboard."""

    name = "trackio"

    def start(self, cfg: ExperimentConfig, run_dir: Path, hparams: dict[str, Any]) -> None:
        trackio = require("trackio")
        self.trackio = trackio
        with contextlib.redirect_stdout(io.StringIO()):  # its banner talks of dashboards and uploads; ours is one line
            trackio.init(
                project=cfg.name, name=run_name(cfg), config=hparams, resume="allow", embed=False, auto_log_cpu=False, auto_log_gpu=False
            )
        print(f"trackio: project {cfg.name}, run {run_name(cfg)} (trackio show --project {cfg.name})", file=sys.stderr)

    def scalars(self, values: dict[str, float], axis: str, step: int) -> None:
        self.trackio.log(values)

    def images(self, images: dict[str, Any], step: int) -> None:
        self.trackio.log({"labels": step, **{f"figures/{k}": self.trackio.Image(v) for k, v in images.items()}})

    def finish(self) -> None:
        with contextlib.redirect_stdout(io.StringIO()):
            self.trackio.finish()


TRACKERS: dict[str, type[Tracker]] = {t.name: t for t in (TensorBoardTracker, WandbTracker, TrackioTracker)}

__all__ = ["TRACKERS", "TensorBoardTracker", "Tracker", "TrackioTracker", "WandbTracker", "run_name"]
