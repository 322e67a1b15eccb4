"""The pilot that chooses a testbed: how the paired difference and its spread move with S/M, test size and metric.

A study decides "strategy vs random" by the paired difference over seeds, so what it needs from a
preset is a small seed-to-seed spread of that difference, not a large win-rate. The pilot runs each
S/M once per seed with the largest test set, and recomputes every metric on the first n test
prompts (``eval_pairs`` of the compact records keep each prompt's verdict), so 64, 256 and 512
test prompts cost one evaluation. Metrics, each a mean over test prompts of one waypoint:

* ``win_rate``: 1 / ½ / 0 per prompt (the paper's headline);
* ``soft_win_rate``: the oracle's own P(policy ≻ θ0) per prompt;
* ``reward_gap``: s(x, policy) − s(x, θ0) per prompt (pointwise oracles; another scale).

``spread`` then gives, per (group, n, metric): the mean paired difference, its SD over seeds, the
half-width of its 95 % t interval, the signal-to-noise ratio mean/SD, and the seeds a study would
need for a ±0.03 half-width at that SD (win-rate-scale metrics only).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from aplkit import metrics as registry
from aplkit.results.compare import seeds_for_halfwidth

#: the preference metrics (``aplkit.metrics``), each a mean of its per-prompt column; the win-rate's is the verdict
METRICS = tuple(m.field for m in registry.METRICS if m.preference)


def _per_prompt(field: str) -> str:
    return "win" if field == registry.HEADLINE.field else registry.metric(field).per_prompt


def per_prompt_scores(pairs: pd.DataFrame) -> pd.DataFrame:
    """``pairs`` (``EvalPairRow`` columns) with ``win`` = 1 / ½ / 0 per prompt (NaN for an invalid verdict), in file order."""
    out = pairs.copy()
    win = np.where(out["tie"].astype(bool), 0.5, np.nan)
    pref = pd.to_numeric(out["preferred"], errors="coerce")
    win = np.where(pref == 1, 1.0, np.where(pref == 0, 0.0, win))
    out["win"] = win
    for f in METRICS[1:]:
        out[_per_prompt(f)] = pd.to_numeric(out[_per_prompt(f)], errors="coerce").astype(float)
    return out


def metrics_at(pairs: pd.DataFrame, n: int, keys: Sequence[str] = ("group", "strategy", "seed")) -> pd.DataFrame:
    """Each metric on the first ``n`` test prompts of every run × waypoint (the order the run evaluated them)."""
    scored = per_prompt_scores(pairs)
    by = [*keys, "step"]
    first = scored.groupby(by, sort=False, group_keys=False).head(n)
    counts = first.groupby(by, sort=False).size()
    short = counts[counts < n]
    if len(short):
        raise ValueError(f"{len(short)} run waypoint(s) have fewer than {n} test prompts (e.g. {short.index[0]}: {int(short.iloc[0])})")
    g = first.groupby(by, sort=False)
    out = pd.DataFrame({f: g[_per_prompt(f)].mean() for f in METRICS})
    out["test_prompts"] = n
    return out.reset_index()


def spread(
    pairs: pd.DataFrame,
    sizes: Sequence[int],
    treatment: str = "certainty",
    control: str = "random",
    step: int | None = None,
    half_width: float = 0.03,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Per group × test size × metric: the paired treatment − control difference over seeds at one waypoint.

    ``pairs`` holds a ``group`` column (e.g. "S/M=16"); the control may sit in a group of its own
    that every group shares (``group`` == "*"), as random's runs do: its draws do not depend on S.
    ``step`` defaults to the last waypoint.
    """
    rows = []
    for n in sizes:
        m = metrics_at(pairs, n)
        at = m[m["step"] == (m["step"].max() if step is None else step)]
        ctrl = at[at["strategy"] == control]
        for group in sorted(set(at.loc[at["strategy"] == treatment, "group"]), key=_natural):
            treat = at[(at["strategy"] == treatment) & (at["group"] == group)].set_index("seed")
            base = ctrl[ctrl["group"].isin([group, "*"])].set_index("seed")
            seeds = sorted(set(treat.index) & set(base.index))
            for metric in METRICS:
                d = (treat.loc[seeds, metric] - base.loc[seeds, metric]).to_numpy(float)
                d = d[~np.isnan(d)]
                rows.append({"group": group, "test_prompts": n, "metric": metric, **_summary(d, metric, half_width, confidence)})
    return pd.DataFrame(rows)


def _natural(group: str) -> tuple:
    """ "S/M=4" before "S/M=16": numbers compared as numbers."""
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", group))


def study_cost(table: pd.DataFrame, seconds: dict[str, dict[str, float]], evaluated_at: int, waypoints: int) -> pd.DataFrame:
    """Per S/M × test size: the win-rate difference's seeds for ±0.03 times the seconds of one seed's pair of runs.

    ``seconds[cell]`` holds a run's measured ``train``, ``acquire`` and ``evaluate`` seconds (one evaluation
    of ``evaluated_at`` prompts); a study run at n prompts and ``waypoints`` evaluations is costed as
    train + acquire + waypoints · evaluate · n / evaluated_at (evaluation taken as linear in n). The cell
    of a group is "certainty-S<S>", its control "random".
    """
    rows = []
    win = table[table["metric"] == "win_rate"]
    for r in win.itertuples():
        m = int(r.group.split("=")[1])
        cells = [f"certainty-S{m * 16}", "random"]
        if any(c not in seconds for c in cells):
            continue
        run = {
            c: seconds[c]["train"] + seconds[c]["acquire"] + waypoints * seconds[c]["evaluate"] * r.test_prompts / evaluated_at
            for c in cells
        }
        pair = sum(run.values())
        rows.append(
            {
                "group": r.group,
                "test_prompts": r.test_prompts,
                "seeds_for_half_width": r.seeds_for_half_width,
                "treatment_s": run[cells[0]],
                "control_s": run["random"],
                "pair_s": pair,
                "cost_core_h": r.seeds_for_half_width * pair / 3600 if r.seeds_for_half_width == r.seeds_for_half_width else math.nan,
            }
        )
    return pd.DataFrame(rows)


def study_cost_markdown(cost: pd.DataFrame) -> str:
    lines = [
        "| S/M | test prompts | seeds for ±0.03 | certainty run s | random run s | core-hours to ±0.03 (the pair) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in cost.itertuples():
        seeds = "–" if math.isnan(r.seeds_for_half_width) else f"{r.seeds_for_half_width:.0f}"
        hours = "–" if math.isnan(r.cost_core_h) else f"{r.cost_core_h:.1f}"
        lines.append(f"| {r.group} | {r.test_prompts} | {seeds} | {r.treatment_s:.0f} | {r.control_s:.0f} | {hours} |")
    return "\n".join(lines)


def _summary(d: np.ndarray, metric: str, half_width: float, confidence: float) -> dict:
    k = len(d)
    mean = float(d.mean()) if k else math.nan
    sd = float(d.std(ddof=1)) if k > 1 else math.nan
    hw = float(stats.t.ppf(0.5 + confidence / 2, k - 1) * sd / math.sqrt(k)) if k > 1 else math.nan
    return {
        "seeds": k,
        "mean_diff": mean,
        "sd_diff": sd,
        "half_width": hw,
        "snr": mean / sd if sd and sd > 0 else math.nan,
        "seeds_for_half_width": seeds_for_halfwidth(sd, half_width, confidence) if registry.metric(metric).probability else math.nan,
    }


def spread_markdown(table: pd.DataFrame) -> str:
    head = "| S/M | test prompts | metric | seeds | mean diff | SD of diff | 95 % half-width | mean/SD | seeds for ±0.03 |"
    lines = [head, "|" + "---|" * 9]
    for r in table.itertuples():
        need = "–" if math.isnan(r.seeds_for_half_width) else f"{r.seeds_for_half_width:.0f}"
        lines.append(
            f"| {r.group} | {r.test_prompts} | {r.metric} | {r.seeds} | {r.mean_diff:+.3f} | {r.sd_diff:.3f} | ±{r.half_width:.3f} | {r.snr:+.2f} | {need} |"
        )
    return "\n".join(lines)


__all__ = [
    "METRICS",
    "metrics_at",
    "per_prompt_scores",
    "spread",
    "spread_markdown",
    "study_cost",
    "study_cost_markdown",
]
