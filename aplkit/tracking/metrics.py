"""What every tracker logs, as plain numbers: one implementation so TensorBoard, W&B and Trackio agree.

Two x-axes, as in the paper: ``labels`` (t·M acquired, Fig 2's axis) for the per-step and waypoint
scalars, and the running fine-tuning epoch for the DPO loss and, at the waypoints of ``evaluation.epoch_points``,
each epoch's frontier point (``frontier/``: its win-rate and companions, both KLs and the labels). Values that were not measured (None,
NaN: e.g. ``bt_correct`` at θ0, the companions of an oracle without probabilities) are left out
rather than logged as gaps. The config goes in as hyper-parameters with anything secret-looking
removed: keys are read from the environment, and their values must never reach a tracker.
"""

from __future__ import annotations

import math
import os
import re
from typing import TYPE_CHECKING, Any

from aplkit.metrics import COMPANION_FIELDS, HEADLINE, KL_FIELDS, METRICS
from aplkit.records import to_dict

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from aplkit.config import ExperimentConfig
    from aplkit.loop import StepResult

EVAL_FIELDS = (HEADLINE.field, HEADLINE.se, "n", "ties", "invalid", "trained", *COMPANION_FIELDS)
ORACLE_FIELDS = ("calls", "cache_hits", "invalid", "tokens_in", "tokens_out", "cost_usd")
EPOCH_FIELDS = ("loss", "reward_acc", "margin", "n_pairs", "seconds")
#: what a frontier point logs: where it is (both KLs) and what it reached (the preference metrics), at how many labels
FRONTIER_FIELDS = ("acquired", *KL_FIELDS, *(m.field for m in METRICS if m.preference))
AXES = ("labels", "train/epoch")  # the x-axes, logged beside the values for trackers with one step counter
REDACTED = "<redacted>"
_SECRET_NAME = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd|credentials?)($|_)", re.IGNORECASE)


def _clean(values: dict[str, Any]) -> dict[str, float]:
    out = {}
    for k, v in values.items():
        if v is None or isinstance(v, bool) or not isinstance(v, (int, float)):
            continue
        if not math.isnan(float(v)):
            out[k] = float(v)
    return out


def step_scalars(res: StepResult, acquire_batch: int) -> dict[str, float]:
    """One acquisition step on the ``labels`` axis: batch statistics, seconds per phase, oracle use, and the
    win-rate with its SE and companions when the step is a waypoint."""
    from aplkit.results.stats import batch_stats

    rows = [to_dict(r) for r in res.acquired]
    scores = [float(r["score"]) for r in rows if r.get("score") is not None]
    entropies = [float(r["entropy"]) for r in rows if r.get("entropy") is not None]
    out: dict[str, Any] = {"acquisition_step": res.step, "labels": res.step * acquire_batch, "acquire/new_pairs": len(res.newest)}
    out.update({f"acquire/{k}": v for k, v in batch_stats(rows).items() if k != "n"})
    if scores:
        out.update({"acquire/min_score": min(scores), "acquire/max_score": max(scores)})
    if entropies:
        out["acquire/mean_entropy"] = sum(entropies) / len(entropies)
    out.update({f"seconds/{k.removesuffix('_s')}": v for k, v in res.seconds.items()})
    out.update({f"oracle/{k}": res.oracle.get(k) for k in ORACLE_FIELDS})
    if res.train:
        out["train/final_loss"] = res.train[-1].loss
    if res.eval is not None:
        out.update({f"eval/{k}": getattr(res.eval, k) for k in EVAL_FIELDS})
    return _clean(out)


def epoch_scalars(res: StepResult) -> list[tuple[int, dict[str, float]]]:
    """(running epoch, DPO statistics) for each fine-tuning epoch of the step; the running epoch counts
    epochs over the whole run, so every step's loss curve follows the previous one's. A step evaluated after
    each epoch (``StepResult.epoch_evals``) adds each epoch's frontier point, the last epoch's being the waypoint's."""
    per_step, out = len(res.train), []
    points = {r.epoch: r for r in res.epoch_evals}
    if points and res.eval is not None and res.train:
        points[res.train[-1].epoch] = res.eval
    for i, st in enumerate(res.train):
        e = (res.step - 1) * per_step + i + 1
        values = {"train/epoch": e, "train/step": res.step, **{f"train/{k}": getattr(st, k) for k in EPOCH_FIELDS}}
        if st.epoch in points:
            values |= {f"frontier/{k}": getattr(points[st.epoch], k) for k in FRONTIER_FIELDS}
        out.append((e, _clean(values)))
    return out


def _secret_values() -> list[str]:
    """Values of environment variables that look like credentials (the oracle's api_key_env among them)."""
    return [v for k, v in os.environ.items() if _SECRET_NAME.search(k) and len(v) >= 6]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def hparams(cfg: ExperimentConfig) -> dict[str, str | int | float | bool]:
    """The resolved config as flat ``section.key`` hyper-parameters (lists and None as text).

    A key named like a credential is dropped unless it only names an environment variable
    (``api_key_env``); any value holding the value of a credential-like environment variable is
    replaced by ``<redacted>``.
    """
    secrets = _secret_values()
    out: dict[str, str | int | float | bool] = {}
    for k, v in _flatten(cfg.to_dict()).items():
        leaf = k.rsplit(".", 1)[-1]
        if _SECRET_NAME.search(leaf) and not leaf.endswith("_env"):
            continue
        if not isinstance(v, (int, float, bool, str)):
            v = str(v)
        if isinstance(v, str) and any(s in v for s in secrets):
            v = REDACTED
        out[k] = v
    return out


def final_figures(run_dir: Any) -> dict[str, Figure]:
    """Fig 2 (win-rate at the waypoints), the frontier (where the run evaluated after each epoch) and Fig 3
    (BT-probability histograms) of this one run, by name."""
    from aplkit.results import load as L
    from aplkit.results import plots as P
    from aplkit.results import stats as S
    from aplkit.results.report import against_by_task, fig3_per_task, frontier_figure

    figs: dict[str, Figure] = {}
    df = L.load_runs(run_dir)
    curves = S.winrate_curves(df)  # none for a pool-based run without a judge of its generations
    if not curves.empty:
        figs["fig2_winrate"] = P.plot_winrate(curves, against_by_task(df))
        if not L.load_epoch_runs(run_dir).empty:
            figs["frontier"] = frontier_figure(run_dir)
    acq = L.load_acquired(run_dir)
    for _, stem, fig, _ in fig3_per_task(acq) if not acq.empty else ():
        figs[stem] = fig
    return figs


def figure_rgb(fig: Figure, dpi: int = 100) -> Any:
    """A figure as an H×W×3 uint8 array (what every tracker's image API takes), then closed."""
    import matplotlib.pyplot as plt
    import numpy as np

    fig.set_dpi(dpi)
    fig.canvas.draw()
    rgb = np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()
    plt.close(fig)
    return rgb


__all__ = ["AXES", "FRONTIER_FIELDS", "REDACTED", "epoch_scalars", "figure_rgb", "final_figures", "hparams", "step_scalars"]
