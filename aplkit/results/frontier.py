"""The frontier: the best win-rate a run reaches at each distance from θ0 with a given number of labels, and each
strategy's frontier against random's on a common KL grid.

With β fixed, better labels also move the policy further from θ0, so a lead at a fixed budget mixes a better
direction with a longer step. The frontier separates them, as the DPO paper compared methods (reward against KL
over runs of many β) and as Gao et al. (2022) found a KL penalty to act (like early stopping, it moves a policy
along the frontier, not across it): a run's points at a budget are its evaluations after each epoch of that
budget's training (``evaluation.epoch_points``; the last epoch's is the waypoint's own row), θ0's (0, ½) among
them. Its frontier is the best value reachable up to each KL — the running maximum over the KL-sorted points —
interpolated linearly between them, and not beyond its largest KL (``reach``).

Per seed, a strategy's frontier minus random's is read at each point of a declared grid of KL values and as
their mean over the grid: the area between the two frontiers over the grid, divided by its width, computed
exactly (both are piecewise linear). That mean is the difference of each run's own ``height`` (its frontier's
area over the grid ÷ the width), so the comparison is ``compare.paired_table`` on a per-run column, paired by
seed with t and bootstrap intervals and Holm within a declared family; a seed either of whose frontiers stops
before the grid's end is left out and counted (``left_out``). The x-axis is the policy's own KL at T = 1
(``kl_t1``) where the runs measured it, else the KL along the test completions (``kl``), named as such.

The label saving at equal KL: the labels random needs for its frontier at the grid's middle to reach the
strategy's there (``_first_reach``: random's mean heights over its measured budgets, made monotone with a running
max, interpolated), with a seed-bootstrap interval; infinite ("> the largest budget") where random does not get
there within the budgets measured. Nothing is extrapolated.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aplkit.metrics import KL_FIELDS, METRICS, metric
from aplkit.results import load as L
from aplkit.results.compare import CONFIDENCE, PAIRED_COLUMNS, paired_table, quantile_with_inf
from aplkit.results.load import strategy_order
from aplkit.results.stats import _first_reach, _mean_se

#: what a frontier can measure: the preference metrics (the win-rate first), each from θ0's own value
FRONTIER_METRICS = tuple(m.field for m in METRICS if m.preference)
KEYS = ["task", "strategy", "seed", "run", "acquired"]


# --------------------------------------------------------------------------- one run's frontier


def monotone(kl: Sequence[float], values: Sequence[float], at_theta0: float) -> tuple[np.ndarray, np.ndarray]:
    """A run's frontier from its points: θ0's (0, ``at_theta0``) added, the points sorted by KL, each value replaced by
    the best up to its KL (running max); of points at one KL the best is kept. Returns (KL ascending, value)."""
    x = np.concatenate([[0.0], np.asarray(kl, dtype=float)])
    v = np.concatenate([[float(at_theta0)], np.asarray(values, dtype=float)])
    ok = ~(np.isnan(x) | np.isnan(v))
    x, v = x[ok], v[ok]
    order = np.lexsort((v, x))
    x, v = x[order], np.maximum.accumulate(v[order])
    last = np.append(x[1:] != x[:-1], True)  # at one KL the running max ends on the best
    return x[last], v[last]


def frontier_at(x: np.ndarray, v: np.ndarray, kappa: Sequence[float] | float) -> np.ndarray:
    """The frontier (``monotone``'s arrays) at ``kappa``, linear between its points; NaN beyond its last (no extrapolation)."""
    k = np.asarray(kappa, dtype=float)
    return np.where(k > x[-1], math.nan, np.interp(k, x, v))


def mean_height(x: np.ndarray, v: np.ndarray, low: float, high: float) -> float:
    """∫ frontier dκ over [low, high] ÷ (high − low), exact for the piecewise-linear frontier (the trapezoid rule on
    its own points and the ends); NaN when it stops before ``high``. ``low == high``: its value there."""
    if high > x[-1]:
        return math.nan
    if high == low:
        return float(frontier_at(x, v, low))
    knots = np.unique(np.concatenate([[low, high], x[(x > low) & (x < high)]]))
    f = frontier_at(x, v, knots)
    return float(np.sum((f[1:] + f[:-1]) / 2 * np.diff(knots)) / (high - low))


# --------------------------------------------------------------------------- points of every run


def kl_axis(points: pd.DataFrame) -> str:
    """The KL the frontier is drawn against: the policy's own at T = 1 (``kl_t1``) where any point recorded it, else
    the along-path one (``kl``) of every run."""
    for f in KL_FIELDS:
        if f in points.columns and points[f].notna().any():
            return f
    return KL_FIELDS[-1]


def frontier_points(runs_dir: str | Path, runs: set[str] | None = None) -> pd.DataFrame:
    """Every evaluation of the runs under ``runs_dir`` (``runs``: only those) as a frontier point: the waypoints'
    own rows (``epoch`` <NA>: after the step's last epoch) and the earlier epochs' (``load_epoch_runs``)."""
    df = L.load_runs(runs_dir)
    ep = L.load_epoch_runs(runs_dir)
    parts = [x for x in (df.assign(epoch=pd.array([pd.NA] * len(df), dtype="Int64")), ep) if len(x)]
    out = pd.concat(parts, ignore_index=True) if parts else df.assign(epoch=pd.array([], dtype="Int64"))
    return out[out["run"].isin(runs)].reset_index(drop=True) if runs is not None else out


def has_frontier(points: pd.DataFrame, metric_field: str = "win_rate") -> bool:
    """Whether some run has more than one point with a KL and the metric: per-epoch points, or several budgets."""
    kl = kl_axis(points)
    if kl not in points.columns or metric_field not in points.columns:
        return False
    ok = points.dropna(subset=[kl, metric_field])
    return bool(ok["epoch"].notna().any() or (ok.groupby("run")["acquired"].nunique() > 1).any()) if len(ok) else False


def run_frontiers(points: pd.DataFrame, grid: Sequence[float], metric_field: str = "win_rate", kl: str | None = None) -> pd.DataFrame:
    """Per run × budget (``KEYS``): its frontier at that budget — the budget's points and θ0's — read on ``grid``.

    Columns: ``reach`` (its largest KL), ``height`` (``mean_height`` over the grid: NaN when it stops before the
    grid's end), ``points`` (evaluations at the budget), and ``f@κ`` per grid point (NaN beyond its reach).
    ``kl``: the x-axis (default ``kl_axis``); points without it or without the metric are left out.
    """
    kl = kl or kl_axis(points)
    grid = np.asarray(sorted(grid), dtype=float)
    at_theta0 = metric(metric_field).at_theta0
    cols = [*KEYS, "reach", "height", "points", *(f"f@{k:g}" for k in grid)]
    if at_theta0 is None:
        raise ValueError(f"{metric_field}: the metric registry gives no value at θ0 to start a frontier from")
    ok = points.dropna(subset=[kl, metric_field]) if {kl, metric_field} <= set(points.columns) else points.iloc[0:0]
    rows = []
    for key, g in ok.groupby(KEYS, sort=True):
        x, v = monotone(g[kl].to_numpy(float), g[metric_field].to_numpy(float), at_theta0)
        f = frontier_at(x, v, grid)
        rows.append([*key, float(x[-1]), mean_height(x, v, grid[0], grid[-1]), len(g), *f.tolist()])
    out = pd.DataFrame(rows, columns=cols)
    out["acquired"] = out["acquired"].astype(int)
    out["seed"] = out["seed"].astype(int)
    return out


AGAINST_FRONTIER_COLUMNS = [*KEYS, "epoch", "kl", "value", "frontier", "difference", "reading"]


def against_frontier(
    points: pd.DataFrame, reference: pd.DataFrame, metric_field: str = "win_rate", kl: str | None = None, band: float = 0.03
) -> pd.DataFrame:
    """Each of ``points`` against one reference frontier (``reference``'s points and θ0's, ``monotone``): the
    reference's value at the point's KL, the difference, and the reading — ``on`` it (within ± ``band``),
    ``above``, ``below``, or ``beyond`` its reach (not read: nothing is extrapolated). How a run made with another
    setting (a β) is read as moving the policy along a frontier or off it (Gao et al.)."""
    kl = kl or kl_axis(pd.concat([points, reference], ignore_index=True))
    at_theta0 = metric(metric_field).at_theta0
    ref = reference.dropna(subset=[kl, metric_field])
    x, v = monotone(ref[kl].to_numpy(float), ref[metric_field].to_numpy(float), at_theta0)
    pts = points.dropna(subset=[kl, metric_field]).sort_values([*KEYS, kl]).reset_index(drop=True)
    f = frontier_at(x, v, pts[kl].to_numpy(float))
    d = pts[metric_field].to_numpy(float) - f
    reading = np.where(np.isnan(f), "beyond", np.where(d > band, "above", np.where(d < -band, "below", "on")))
    out = pts[[*KEYS, "epoch"]].assign(kl=pts[kl].to_numpy(float), value=pts[metric_field].to_numpy(float))
    return out.assign(frontier=f, difference=d, reading=reading)[AGAINST_FRONTIER_COLUMNS]


# --------------------------------------------------------------------------- the running max under a shared frontier


def shared_curve(kl: Sequence[float], values: Sequence[float], n: Sequence[float], at_theta0: float) -> Callable[[Any], np.ndarray]:
    """The one frontier two strategies' points would share under the null: the n-weighted isotonic (non-decreasing)
    fit of the values on KL, θ0's (0, ``at_theta0``) held with the weight of every point together; a function of κ,
    linear between the fitted points and flat beyond the last."""
    from scipy.optimize import isotonic_regression

    x = np.concatenate([[0.0], np.asarray(kl, dtype=float)])
    y = np.concatenate([[float(at_theta0)], np.asarray(values, dtype=float)])
    w = np.concatenate([[float(np.sum(n))], np.asarray(n, dtype=float)])
    order = np.argsort(x, kind="stable")
    fit = isotonic_regression(y[order], weights=w[order], increasing=True).x
    xs = x[order]
    return lambda k: np.interp(np.asarray(k, dtype=float), xs, fit)


def null_bias(
    points: pd.DataFrame,
    grid: Sequence[float],
    budget: int,
    strategy: str,
    baseline: str = "random",
    metric_field: str = "win_rate",
    kl: str | None = None,
    curve: Callable[[Any], np.ndarray] | None = None,
    sims: int = 4000,
    seed: int = 0,
) -> tuple[float, float]:
    """What the running max alone adds to strategy − baseline (the mean over seeds of the mean frontier height over
    ``grid`` at ``budget``) when both strategies share one frontier: every point is redrawn as Binomial(n, g(κ)) / n
    at its own KL and n (``curve`` g, default ``shared_curve`` of the budget's points of both), the frontiers rebuilt
    and compared as the study does. A run whose points crowd low KL has more draws under each grid point, so its
    running max rises further. Returns (bias, its simulation SE). Draws are independent; a run's successive epochs
    share their test prompts, so their errors correlate and the true lift is smaller: this bounds its size."""
    kl = kl or kl_axis(points)
    at_theta0 = metric(metric_field).at_theta0
    pts = points[(points["acquired"] == budget) & points["strategy"].isin([strategy, baseline])]
    pts = pts.dropna(subset=[kl, metric_field, "n"])
    if curve is None:
        curve = shared_curve(pts[kl], pts[metric_field], pts["n"], at_theta0)
    lo, hi = float(min(grid)), float(max(grid))
    runs = {
        (s, int(k)): (g[kl].to_numpy(float), g["n"].to_numpy(int))
        for (s, k), g in pts.groupby(["strategy", "seed"])
        if g[kl].max() >= hi  # as the comparison: a run that stops before the grid's end is left out
    }
    seeds = sorted({k for s, k in runs if s == strategy} & {k for s, k in runs if s == baseline})
    if not seeds:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    p = {key: np.clip(curve(x), 0.0, 1.0) for key, (x, _) in runs.items()}
    diffs = np.empty(sims)
    for i in range(sims):
        h = {key: mean_height(*monotone(x, rng.binomial(n, p[key]) / n, at_theta0), lo, hi) for key, (x, n) in runs.items()}
        diffs[i] = np.mean([h[(strategy, k)] - h[(baseline, k)] for k in seeds])
    return float(diffs.mean()), float(diffs.std(ddof=1) / math.sqrt(sims))


# --------------------------------------------------------------------------- each strategy against random

#: the columns of ``frontier_comparison``: the key cells, the grid, the seeds left out, then ``paired_table``'s
FRONTIER_COLUMNS = ["task", "acquired", "strategy", "metric", "kl", "kl_low", "kl_high", "left_out", *PAIRED_COLUMNS]


def _paired(fr: pd.DataFrame, task: str, size: int, strategy: str, column: str, baseline: str = "random") -> tuple[np.ndarray, int]:
    """strategy − baseline of a run column per seed that has both runs at ``size`` and a value in both; and how many
    seeds with both runs were left out for a missing value (a frontier that does not cover the grid)."""
    g = fr[(fr["task"] == task) & (fr["acquired"] == size)]
    a = g[g["strategy"] == strategy].set_index("seed")[column]
    b = g[g["strategy"] == baseline].set_index("seed")[column]
    both = sorted(set(a.index) & set(b.index))
    d = (a.loc[both] - b.loc[both]).dropna()
    return d.sort_index().to_numpy(float), len(both) - len(d)


def frontier_comparison(
    points: pd.DataFrame,
    grid: Sequence[float],
    metrics: Sequence[str] = FRONTIER_METRICS,
    family: tuple[str, ...] = ("task", "acquired", "metric"),
    budgets: Sequence[int] | None = None,
    per_point: bool = False,
    kl: str | None = None,
    confidence: float = CONFIDENCE,
    baseline: str = "random",
    groups: Mapping[str, str] | None = None,
) -> pd.DataFrame:
    """Per task × budget × strategy × metric: the mean over the grid of the strategy's frontier minus random's
    (``height`` per run, so the area between the frontiers ÷ the grid's width), paired by seed, through
    ``compare.paired_table`` (t and bootstrap intervals, P(improve), the verdict in the metric's good direction, Holm
    within ``family``: rows sharing those key cells). ``per_point``: one row per grid point instead (``kl`` its
    value; Holm within ``family`` and the grid point). ``groups``: strategy → the family it is read in, so Holm
    runs within each declared group of strategies too (a primary comparison alone, a secondary family of several);
    None: every strategy in one. ``left_out``: seeds with both runs at the budget whose frontiers do not both cover
    the grid (or the point). A metric no point recorded gives no rows.
    """
    kl = kl or kl_axis(points)
    grid = np.asarray(sorted(grid), dtype=float)
    diffs, extra = [], []
    for m in metrics:
        if m not in points.columns or points[m].isna().all():
            continue
        fr = run_frontiers(points, grid, m, kl)
        for task, g in fr.groupby("task", sort=True):
            if baseline not in set(g["strategy"]):
                continue
            sizes = sorted(set(g["acquired"])) if budgets is None else [b for b in budgets if b in set(g["acquired"])]
            for size in sizes:
                for s in strategy_order(g.loc[g["acquired"] == size, "strategy"]):
                    if s == baseline:
                        continue
                    cols = (
                        [(f"f@{k:g}", float(k), float(k), float(k)) for k in grid] if per_point else [("height", math.nan, *grid[[0, -1]])]
                    )
                    for col, at, lo, hi in cols:
                        d, out = _paired(fr, task, size, s, col, baseline)
                        group = (groups or {}).get(s, "all")
                        diffs.append(({"task": task, "acquired": int(size), "strategy": s, "metric": m, "kl": at, "group": group}, d))
                        extra.append({"kl_low": float(lo), "kl_high": float(hi), "left_out": out})
    if not diffs:
        return pd.DataFrame(columns=FRONTIER_COLUMNS)
    fam = (*family, "group", *(("kl",) if per_point else ()))
    out = paired_table(diffs, family=fam, confidence=confidence)
    out = pd.concat([out, pd.DataFrame(extra, index=out.index)], axis=1)
    out.attrs["kl_axis"] = kl
    return out[FRONTIER_COLUMNS]


LABEL_SAVING_COLUMNS = [
    "task",
    "strategy",
    "budget",
    "metric",
    "kl",
    "seeds",
    "height",
    "labels_random",
    "labels_low",
    "labels_high",
    "ratio",
    "ratio_low",
    "ratio_high",
    "largest",
    "note",
]


def _mean(values: list[float]) -> float:
    """The mean of the values that are not NaN (NaN when none is)."""
    ok = [x for x in values if not math.isnan(x)]
    return float(np.mean(ok)) if ok else math.nan


def _saving(at: pd.Series, sizes: list[int], strategy: str, budget: int, seeds: list[int], baseline: str) -> tuple[float, float, str]:
    """(the strategy's mean height, the labels random needs to reach it, a note) over ``seeds`` (a repeat counts
    twice); ``at``: (strategy, budget, seed) → a run's frontier at κ; ``sizes``: random's budgets."""
    target = _mean([at.get((strategy, budget, k), math.nan) for k in seeds])
    reached = [(b, _mean([at.get((baseline, b, k), math.nan) for k in seeds])) for b in sizes]
    reached = [(b, h) for b, h in reached if not math.isnan(h)]  # a budget at which no seed's frontier reaches κ says nothing
    if math.isnan(target) or not reached:
        return target, math.nan, "no paired seed's frontier reaches the grid's middle"
    labels, note = _first_reach(np.array([b for b, _ in reached], dtype=float), np.array([h for _, h in reached]), target)
    return target, labels, note


def label_saving(
    points: pd.DataFrame,
    grid: Sequence[float],
    budget: int,
    metric_field: str = "win_rate",
    kl: str | None = None,
    n_resamples: int = 2000,
    confidence: float = CONFIDENCE,
    seed: int = 0,
    baseline: str = "random",
) -> pd.DataFrame:
    """Per task × strategy: the labels random needs for its frontier at the grid's middle κ to reach the strategy's
    at ``budget`` (mean heights over the paired seeds whose frontier reaches κ there; random's heights over its
    measured budgets made monotone and interpolated, ``stats._first_reach``), ``ratio`` = that ÷ ``budget``, and a
    percentile bootstrap over seeds of both (``labels_low``… ``ratio_high``). inf: random's frontier does not get
    there within the budgets measured (> ``largest``, the largest); nothing is extrapolated."""
    kl = kl or kl_axis(points)
    grid = np.asarray(sorted(grid), dtype=float)
    mid = float((grid[0] + grid[-1]) / 2)
    fr = run_frontiers(points, [mid], metric_field, kl)
    col = f"f@{mid:g}"
    rows = []
    rng = np.random.default_rng(seed)
    a = (1 - confidence) / 2
    for task, g in fr.groupby("task", sort=True):
        rnd = set(g.loc[g["strategy"] == baseline, "seed"])
        at = g.set_index(["strategy", "acquired", "seed"])[col]
        sizes = sorted(set(g.loc[g["strategy"] == baseline, "acquired"]))
        for s in strategy_order(g["strategy"]):
            own = set(g.loc[(g["strategy"] == s) & (g["acquired"] == budget), "seed"])
            seeds = sorted(own & rnd)
            if not seeds:
                continue
            height, labels, note = _saving(at, sizes, s, budget, seeds, baseline)
            draws = []
            for _ in range(n_resamples if len(seeds) > 1 else 0):
                pick = rng.choice(seeds, size=len(seeds), replace=True).tolist()
                draws.append(_saving(at, sizes, s, budget, pick, baseline)[1])
            draws = [x for x in draws if not math.isnan(x)]
            lo, hi = (quantile_with_inf(draws, a), quantile_with_inf(draws, 1 - a)) if draws else (math.nan, math.nan)
            rows.append(
                {
                    "task": task,
                    "strategy": s,
                    "budget": int(budget),
                    "metric": metric_field,
                    "kl": mid,
                    "seeds": len(seeds),
                    "height": height,
                    "labels_random": labels,
                    "labels_low": lo,
                    "labels_high": hi,
                    "ratio": labels / budget,
                    "ratio_low": lo / budget,
                    "ratio_high": hi / budget,
                    "largest": int(max(sizes)) if sizes else budget,
                    "note": note,
                }
            )
    out = pd.DataFrame(rows, columns=LABEL_SAVING_COLUMNS)
    out.attrs["kl_axis"] = kl
    return out


# --------------------------------------------------------------------------- the picture's numbers

MEAN_FRONTIER_COLUMNS = ["task", "strategy", "acquired", "kl", "mean", "se", "n"]


def mean_frontiers(points: pd.DataFrame, metric_field: str = "win_rate", kl: str | None = None, n: int = 41) -> pd.DataFrame:
    """Per task × strategy × budget with per-epoch points: the seeds' mean frontier ± SE over seeds on ``n`` KL values
    from 0 to the smallest ``reach`` of its seeds (so every value is a mean over all of them)."""
    kl = kl or kl_axis(points)
    with_epochs = points.loc[points["epoch"].notna(), ["run", "acquired"]].drop_duplicates()
    rows = []
    if with_epochs.empty:
        return pd.DataFrame(rows, columns=MEAN_FRONTIER_COLUMNS)
    pts = points.merge(with_epochs, on=["run", "acquired"])
    reach = run_frontiers(pts, [0.0], metric_field, kl)
    for (task, s, size), g in reach.groupby(["task", "strategy", "acquired"], sort=True):
        top = float(g["reach"].min())
        grid = np.linspace(0.0, top, n) if top > 0 else np.array([0.0])
        f = run_frontiers(pts[(pts["task"] == task) & (pts["strategy"] == s) & (pts["acquired"] == size)], grid, metric_field, kl)
        vals = f[[f"f@{k:g}" for k in grid]].to_numpy(float)
        rows += [[task, s, int(size), float(k), *_mean_se(vals[:, j], None)[:2], len(vals)] for j, k in enumerate(grid)]
    return pd.DataFrame(rows, columns=MEAN_FRONTIER_COLUMNS)


WAYPOINT_COLUMNS = ["task", "strategy", "acquired", "kl", "kl_se", "mean", "se", "n"]


def waypoint_means(points: pd.DataFrame, metric_field: str = "win_rate", kl: str | None = None) -> pd.DataFrame:
    """Per task × strategy × budget: the mean (KL, value) of the waypoints' own evaluations (after the last epoch)
    with SEs over seeds: where each budget's training ended, the markers of the frontier figure."""
    kl = kl or kl_axis(points)
    last = points[points["epoch"].isna()].dropna(subset=[kl, metric_field])
    rows = []
    for (task, s, size), g in last.groupby(["task", "strategy", "acquired"], sort=True):
        x, y = (_mean_se(g[c].to_numpy(float), None)[:2] for c in (kl, metric_field))
        rows.append([task, s, int(size), *x, *y, len(g)])
    return pd.DataFrame(rows, columns=WAYPOINT_COLUMNS)


__all__ = [
    "AGAINST_FRONTIER_COLUMNS",
    "FRONTIER_COLUMNS",
    "FRONTIER_METRICS",
    "LABEL_SAVING_COLUMNS",
    "MEAN_FRONTIER_COLUMNS",
    "WAYPOINT_COLUMNS",
    "against_frontier",
    "frontier_at",
    "frontier_comparison",
    "frontier_points",
    "has_frontier",
    "kl_axis",
    "label_saving",
    "mean_frontiers",
    "mean_height",
    "monotone",
    "null_bias",
    "run_frontiers",
    "shared_curve",
    "waypoint_means",
]
