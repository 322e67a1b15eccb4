"""Results, layer 2: every statistic behind the paper's figures and tables, from ``aplkit.results.load`` frames.

The x-axis of Fig 2 / Table 2 is ``acquired`` = t·M, the labels paid for. Ties and invalid oracle
answers are not trained on, so the policy may have seen fewer pairs: ``trained`` is carried along
and shown wherever the two differ.

Error bars are standard errors over seeds, SE = std(ddof=1) / sqrt(n_seeds), as in the paper.
With a single seed there is no spread to measure, so the run's own binomial stderr from
``eval.jsonl`` is used instead and the ``se_kind`` column says ``binomial``.

Everything here returns numbers or pandas objects; formatting is ``tables``, drawing ``plots``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from aplkit.metrics import HEADLINE, METRICS, metric, shown
from aplkit.results.load import select_main, strategy_order

# --------------------------------------------------------------------------- grouping


def _check_unique(df: pd.DataFrame, keys: list[str]) -> None:
    """Refuse to average two runs that claim the same seed of the same curve (mixed settings or a re-run)."""
    dup = df.duplicated([*keys, "seed", "acquired"], keep=False)
    if dup.any():
        r = df[dup].iloc[0]
        same = dup & (df["seed"] == r["seed"]) & (df["acquired"] == r["acquired"])
        for k in keys:
            same &= df[k] == r[k]
        where = " ".join(f"{k}={r[k]}" for k in keys)
        raise ValueError(
            f"{where} seed={r['seed']} acquired={r['acquired']} appears in several runs ({', '.join(sorted(df.loc[same, 'run']))}); "
            "filter to one setting first (e.g. results.select_main)"
        )


def _sort(df: pd.DataFrame, cols: list[str]) -> pd.DataFrame:
    """Sort with strategies in the paper's order."""
    if "strategy" not in cols or df.empty:
        return df.sort_values(cols).reset_index(drop=True) if not df.empty else df
    order = {s: i for i, s in enumerate(strategy_order(df["strategy"]))}
    return df.sort_values(cols, key=lambda c: c.map(order) if c.name == "strategy" else c, kind="stable").reset_index(drop=True)


# --------------------------------------------------------------------------- Fig 2 / Table 2


def _mean_se(values: np.ndarray, own_stderr: np.ndarray | None, own_kind: str = "binomial") -> tuple[float, float, str]:
    n = len(values)
    if n == 1:
        if own_stderr is None:
            return float(values[0]), math.nan, "none"
        return float(values[0]), float(own_stderr[0]), own_kind
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n)), "seeds"


def metric_curves(
    df: pd.DataFrame,
    value: str,
    stderr: str | None = None,
    by: Iterable[str] = ("task", "strategy"),
    own_kind: str = "prompts",
) -> pd.DataFrame:
    """Mean ± SE over seeds of one eval.jsonl column per ``by`` group and acquired-set size.

    Rows without the value (NaN: an older run, an oracle that does not give it) are left out, so
    ``n`` counts the seeds that have it. With one seed the SE is that run's own ``stderr`` column
    (``se_kind`` = ``own_kind``), or NaN (``none``) when there is none. Columns: *by, acquired,
    trained (mean over seeds of the pairs trained on; NaN if any seed did not record it), mean, se,
    n (seeds), se_kind ("seeds" when n > 1).
    """
    by = list(by)
    cols = [*by, "acquired", "trained", "mean", "se", "n", "se_kind"]
    if value not in df.columns:
        return pd.DataFrame(columns=cols)
    df = df.dropna(subset=[value])
    if df.empty:
        return pd.DataFrame(columns=cols)
    _check_unique(df, by)
    rows = []
    for key, g in df.groupby([*by, "acquired"], sort=True):
        own = g[stderr].to_numpy(float) if stderr is not None and stderr in g else None
        m, se, kind = _mean_se(g[value].to_numpy(float), own, own_kind)
        trained = g["trained"].to_numpy(float) if "trained" in g else np.full(len(g), np.nan)
        rows.append(
            {
                **dict(zip([*by, "acquired"], key, strict=True)),
                "trained": float(trained.mean()),  # NaN unless every seed recorded it
                "mean": m,
                "se": se,
                "n": len(g),
                "se_kind": kind,
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    out["acquired"] = out["acquired"].astype(int)
    return _sort(out, [*by, "acquired"])


def registered_curves(df: pd.DataFrame, field: str, by: Iterable[str] = ("task", "strategy")) -> pd.DataFrame:
    """``metric_curves`` of a metric of ``aplkit.metrics``: with one seed its own SE column (over what its spec says).

    A metric with a θ0 column (the LM loss) adds theta0 (mean over seeds of θ0's value), delta and delta_se (mean ±
    SE over seeds of the change from θ0's; NaN where θ0's was not recorded).
    """
    m, by = metric(field), list(by)
    curves = metric_curves(df, m.field, m.se, by, own_kind=m.own_se)
    if m.theta0 is None:
        return curves
    extra = ["theta0", "delta", "delta_se"]
    if curves.empty:
        return pd.DataFrame(columns=[*curves.columns, *extra])
    d = df.dropna(subset=[m.field]).assign(change=lambda x: x[m.field] - x[m.theta0])
    theta0 = d.groupby([*by, "acquired"])[m.theta0].mean().rename("theta0").reset_index()
    delta = metric_curves(d, "change", None, by)[[*by, "acquired", "mean", "se"]]
    delta = delta.rename(columns={"mean": "delta", "se": "delta_se"})
    keys = [*by, "acquired"]
    theta0["acquired"] = theta0["acquired"].astype(int)
    out = curves.merge(theta0, on=keys, how="left").merge(delta, on=keys, how="left")
    return out[[*curves.columns, *extra]]


def winrate_curves(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy")) -> pd.DataFrame:
    """Fig 2: mean win-rate ± SE over seeds per ``by`` group and acquired-set size.

    Columns: *by, acquired, trained (mean over seeds of the pairs trained on; NaN if any seed did
    not record it), mean, se, n (seeds), se_kind ("seeds" or "binomial" when n == 1).
    """
    return registered_curves(df, "win_rate", by)


# --------------------------------------------------------------------------- the win-rate's companions


def soft_winrate_curves(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy")) -> pd.DataFrame:
    """Mean soft win-rate (the oracle's own P(policy ≻ baseline)) ± SE over seeds; columns as ``metric_curves``."""
    return registered_curves(df, "soft_win_rate", by)


def reward_gap_curves(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy")) -> pd.DataFrame:
    """Mean oracle score gap s(policy) − s(baseline) ± SE over seeds (pointwise oracles); columns as ``metric_curves``."""
    return registered_curves(df, "reward_gap", by)


def kl_curves(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy"), field: str = "kl") -> pd.DataFrame:
    """Mean KL of πθ from θ0 ± SE over seeds; columns as ``metric_curves``. ``field``: ``kl``, along the policy's
    T = 0.25 test completions (every run), or ``kl_t1``, the policy's own KL at T = 1 (``evaluation.kl_samples``)."""
    return registered_curves(df, field, by)


def lm_loss_curves(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy")) -> pd.DataFrame:
    """Mean LM loss of πθ on held-out text ± SE over seeds, with θ0's and the change (``registered_curves``; the LM
    loss has no per-run SE: one seed gives se NaN, se_kind none)."""
    return registered_curves(df, "lm_loss", by)


#: the metrics ``companion_metrics`` can report, the win-rate first (``aplkit.metrics``; an opt-in one only where recorded)
COMPANIONS = tuple(m.field for m in METRICS)


def companion_metrics(df: pd.DataFrame) -> pd.DataFrame:
    """Beside every win-rate its companions (``aplkit.metrics``: soft win-rate, reward gap, KL along the test
    completions, the policy's KL at T = 1 where a run measured it, and LM loss, Δ vs θ0), per task, size and strategy.

    One row per (task, acquired, strategy) that has a win-rate, or a held-out accuracy (a pool-based run without a
    judge of its generations); for each metric ``m`` the table shows
    (``metrics.shown``: every one but an opt-in metric no row recorded) the columns m, m_se, m_n (seeds that
    recorded it), m_se_kind, as ``registered_curves`` computes them (NaN where no seed recorded it), then for a
    metric with a θ0 column that column, m_delta and m_delta_se (lm_loss_theta0, lm_loss_delta, lm_loss_delta_se).
    """
    keys = ["task", "acquired", "strategy"]
    ms = shown(df)
    parts = {m.field: registered_curves(df, m.field) for m in ms}
    cols = [*keys, "trained"] + [f"{m.field}{s}" for m in ms for s in ("", "_se", "_n", "_se_kind")]
    cols += [c for m in ms if m.theta0 for c in (m.theta0, f"{m.field}_delta", f"{m.field}_delta_se")]
    out = pd.concat([c[[*keys, "trained"]] for c in parts.values() if not c.empty] or [parts[HEADLINE.field][[*keys, "trained"]]])
    out = out.drop_duplicates(keys).reset_index(drop=True)  # the win-rate's rows first, with its trained
    if out.empty:
        return pd.DataFrame(columns=cols)
    for m, c in parts.items():
        c = c.rename(columns={"mean": m, "se": f"{m}_se", "n": f"{m}_n", "se_kind": f"{m}_se_kind"})
        c = c.rename(columns={"theta0": metric(m).theta0, "delta": f"{m}_delta", "delta_se": f"{m}_delta_se"})
        c = c.drop(columns="trained")
        if not c.empty:
            c["acquired"] = c["acquired"].astype(int)
        out = out.merge(c, on=keys, how="left") if not c.empty else out.assign(**{k: np.nan for k in c.columns if k not in keys})
    for m in ms:
        out[m.field] = out[m.field].astype(float)
        out[f"{m.field}_se"] = out[f"{m.field}_se"].astype(float)
    return _sort(out[cols], ["task", "acquired", "strategy"])


def trained_gaps(curves: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``winrate_curves`` whose (mean) pairs trained on differ from the labels acquired; unknown ``trained`` is left out."""
    if "trained" not in curves or curves.empty:
        return curves.iloc[0:0]
    known = curves.dropna(subset=["trained"])
    return known[(known["trained"] - known["acquired"]).abs() > 1e-9]


def trained_notes(df: pd.DataFrame, by: Iterable[str] = ("task", "strategy")) -> list[str]:
    """Notes for every curve where the policy trained on fewer (or more) pairs than the labels acquired.

    One line per ``by`` group listing acquired → mean trained (over seeds), then one line for runs
    that did not record ``trained`` (older run folders), whose counts are unknown.
    """
    notes = []
    curves = winrate_curves(df, by)
    gaps = trained_gaps(curves)
    for key, g in gaps.groupby(list(by), sort=False):
        where = " ".join(str(k) for k in (key if isinstance(key, tuple) else (key,)))
        pts = ", ".join(f"{int(a)} → {t:g}" for a, t in zip(g["acquired"], g["trained"], strict=True))
        notes.append(
            f"{where}: trained on fewer pairs than acquired (ties/invalid labels are not trained on); "
            f"labels acquired → pairs trained, mean over seeds: {pts}"
        )
    if "trained" in df and len(df):
        unknown = sorted(df.loc[df["trained"].isna(), "run"].unique())
        if unknown:
            notes.append(f"{len(unknown)} run(s) did not record how many pairs they trained on (older eval.jsonl): trained unknown")
    return notes


# --------------------------------------------------------------------------- statistics


def holm(pvalues: Iterable[float]) -> np.ndarray:
    """Holm step-down adjusted p-values (statsmodels ``multipletests(method="holm")``), same order.

    NaN p-values (nothing was tested) are left out of the family and stay NaN.
    """
    from statsmodels.stats.multitest import multipletests

    p = np.asarray(list(pvalues), dtype=float)
    out = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        out[ok] = multipletests(p[ok], method="holm")[1]
    return out


def not_monotone_note(budget: int, target: float) -> str:
    """Why random's own ratio is below 1: its mean curve dips at the budget."""
    return (
        f"random's own mean at {budget} labels ({target:.3f}) is below its best at fewer labels: its curve is "
        "not monotone (noise), so every ratio in this table is unreliable"
    )


def _first_reach(sizes: np.ndarray, values: np.ndarray, target: float) -> tuple[float, str]:
    """Labels at which the running-max curve through (sizes, values) first reaches ``target``."""
    m = np.maximum.accumulate(values)
    hit = np.flatnonzero(m >= target)
    if len(hit) == 0:
        return math.inf, f"random never reaches {target:.3f} within {int(sizes[0])}..{int(sizes[-1])} labels (best {m[-1]:.3f})"
    k = int(hit[0])
    if k == 0:
        if target == m[0]:
            return float(sizes[0]), ""
        return float(sizes[0]), f"random is already above {target:.3f} at its smallest size {int(sizes[0])}: an upper bound"
    s0, s1, m0, m1 = sizes[k - 1], sizes[k], m[k - 1], m[k]
    return float(s0 + (target - m0) / (m1 - m0) * (s1 - s0)), ""


def _winrate_means(df: pd.DataFrame) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """task → strategy → (sizes ascending, mean win-rate over seeds at each): ``winrate_curves``' means, bit for bit.

    Each mean is ``ndarray.mean`` of the group's values in row order, as ``metric_curves`` takes it, so the
    numbers are identical; only the DataFrame machinery is skipped (``data_efficiency`` runs thousands of
    times under ``compare.efficiency_intervals``' bootstrap).
    """
    df = df.dropna(subset=["win_rate"])
    _check_unique(df, ["task", "strategy"])
    keys = ["task", "strategy", "acquired"]
    order = df.sort_values(keys, kind="stable")  # stable: rows of a group stay in their order
    values = order["win_rate"].to_numpy(float)
    cuts = np.flatnonzero(order[keys].ne(order[keys].shift()).any(axis=1).to_numpy())
    tasks, strategies, acquired = (order[k].to_numpy() for k in keys)
    out: dict[str, dict[str, tuple[list, list]]] = {}
    bounds = [*cuts.tolist(), len(values)]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        task, strategy, size = tasks[a], strategies[a], acquired[a]
        sizes, means = out.setdefault(task, {}).setdefault(strategy, ([], []))
        sizes.append(int(size))
        means.append(float(values[a:b].mean()))
    return {t: {s: (np.array(z, dtype=float), np.array(m)) for s, (z, m) in d.items()} for t, d in out.items()}


Curves = dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]


def _efficiency_rows(means: Curves, budget: int, random_for: Curves | None = None) -> list[dict[str, Any]]:
    """``data_efficiency``'s rows from ``_winrate_means``; ``random_for[task][strategy]``: random's curve over that
    strategy's own seeds, where they are not all of random's (default: random's curve over all its seeds)."""
    rows = []
    for task in sorted(means):
        curves = means[task]
        if "random" not in curves:
            raise ValueError(f"data_efficiency: task {task!r} has no random runs to compare with")
        for s in strategy_order(curves):
            rnd_sizes, rnd_means = ((random_for or {}).get(task) or {}).get(s, curves["random"])
            sizes, m = curves[s]
            at = np.flatnonzero(sizes == budget)
            if len(at) == 0:
                raise ValueError(
                    f"data_efficiency: {s} on {task} has no waypoint at budget={budget} (measured: {sizes.astype(int).tolist()})"
                )
            target = float(m[at[0]])
            labels, note = _first_reach(rnd_sizes, rnd_means, target)
            if s == "random" and labels < budget:
                note = not_monotone_note(budget, target)
            rows.append(
                {
                    "task": task,
                    "strategy": s,
                    "budget": int(budget),
                    "win_rate": target,
                    "labels_random": labels,
                    "ratio": labels / budget,
                    "note": note,
                }
            )
    return rows


EFFICIENCY_COLUMNS = ["task", "strategy", "budget", "win_rate", "labels_random", "ratio", "note"]


def data_efficiency(df: pd.DataFrame, budget: int) -> pd.DataFrame:
    """How many labels random needs to match each strategy's mean win-rate at ``budget``.

    Random's mean curve over its measured sizes is made monotone with a running max and
    interpolated linearly; ``ratio = labels_random / budget`` (2.0: the strategy saves half the
    labels). ``inf`` when random never gets there within the measured range (``note`` says so).
    Random's own row is 1.0 unless its curve dips at the budget; then its note flags the table.
    Paired by seed: a strategy run on fewer seeds than random is read against random's curve over
    those seeds, not over all of random's.
    """
    return pd.DataFrame(_efficiency_rows(_winrate_means(df), budget, _random_on_own_seeds(df)), columns=EFFICIENCY_COLUMNS)


def _random_on_own_seeds(df: pd.DataFrame) -> Curves:
    """task → strategy → random's mean curve over the seeds that strategy shares with random, for each strategy
    whose seeds are not all of random's."""
    out: Curves = {}
    if "seed" not in df:
        return out
    df = df.dropna(subset=["win_rate"])
    for task, g in df.groupby("task"):
        rnd = g[g["strategy"] == "random"]
        everyone = set(rnd["seed"])
        for s, gs in g.groupby("strategy"):
            seeds = set(gs["seed"]) & everyone
            if s != "random" and seeds and seeds != everyone:
                out.setdefault(task, {})[s] = _winrate_means(rnd[rnd["seed"].isin(seeds)])[task]["random"]
    return out


def efficiency_by_task(df: pd.DataFrame, budget: int | None = None) -> tuple[pd.DataFrame, list[str]]:
    """``data_efficiency`` for each task at ``budget`` (default: the largest size every strategy reached), with notes."""
    effs, notes = [], []
    for task, g in df.groupby("task"):
        if "random" not in set(g["strategy"]):
            notes.append(f"{task}: no random runs, no data-efficiency table")
            continue
        b = budget
        if b is None:
            common = set.intersection(*(set(x["acquired"].dropna().astype(int)) for _, x in g.groupby("strategy")))
            b = max(common) if common else None
        if b is None:
            notes.append(f"{task}: strategies share no waypoint, no data-efficiency table")
            continue
        effs.append(data_efficiency(g, int(b)))
    if effs:
        return pd.concat(effs, ignore_index=True), notes
    return pd.DataFrame(columns=EFFICIENCY_COLUMNS), notes


# --------------------------------------------------------------------------- Fig 3


NO_PREDICTION_TOL = 1e-12


def bt_histogram(
    bt_probs: Iterable[float], preferred: Iterable[int | None], bins: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """Fig 3 binning: how confidently right or wrong the implicit BT model was about acquired pairs.

    The model predicts y1 wins iff bt_prob > 0.5 and y0 iff bt_prob < 0.5, with confidence
    p = max(bt_prob, 1 − bt_prob). Correct pairs go at p (0.5 → 1), incorrect ones at 1 − p
    (0 → 0.5), so the top bins hold the most confidently right and the bottom ones the most
    confidently wrong. A pair with bt_prob = 0.5 (within ``NO_PREDICTION_TOL``) makes no
    prediction — at θ_t = θ0, i.e. every pair of step 1, all implicit rewards are 0 — so it is
    neither right nor wrong: it is left out of the bins and counted as ``no_prediction``.
    Pairs with a null bt_prob or label (tie/invalid) are dropped before that and not counted.
    Returns edges (2·bins + 1 over [0, 1]), two count arrays of length 2·bins (incorrect counts
    live in the lower half, correct in the upper) and the no-prediction count. Bins are [lo, hi)
    except the last of each half, which is closed (so 0.5 and 1.0 fall inside).
    """
    edges = np.linspace(0.0, 1.0, 2 * bins + 1)
    incorrect = np.zeros(2 * bins, dtype=int)
    correct = np.zeros(2 * bins, dtype=int)
    no_prediction = 0
    for p, y in zip(bt_probs, preferred, strict=True):
        if p is None or y is None or (isinstance(p, float) and math.isnan(p)) or (isinstance(y, float) and math.isnan(y)):
            continue
        if abs(p - 0.5) <= NO_PREDICTION_TOL:
            no_prediction += 1
            continue
        conf = max(p, 1.0 - p)
        right = (p > 0.5) == (int(y) == 1)
        value = conf if right else 1.0 - conf
        k = math.floor(round(value * 2 * bins, 9))  # round: 1 − 0.9 must land in the 0.1 bin
        if right:
            correct[min(max(k, bins), 2 * bins - 1)] += 1
        else:
            incorrect[min(max(k, 0), bins - 1)] += 1
    return edges, incorrect, correct, no_prediction


def bt_histograms(acq: pd.DataFrame, bins: int = 10) -> pd.DataFrame:
    """Fig 3 data: per strategy × acquisition step (over all seeds), the counts from ``bt_histogram``.

    Columns: strategy, step, bin (0..2·bins−1), lo, hi, incorrect, correct, n_used (pairs in the
    bins), n_no_prediction (bt_prob = 0.5: no predicted winner, not drawn) and n_excluded (pairs
    with a tie/invalid label or no bt_prob). n_used + n_no_prediction + n_excluded = pairs acquired.
    """
    cols = ["strategy", "step", "bin", "lo", "hi", "incorrect", "correct", "n_used", "n_no_prediction", "n_excluded"]
    rows = []
    if acq.empty:
        return pd.DataFrame(columns=cols)
    for (s, step), g in acq.groupby(["strategy", "step"], sort=True):
        prefs = [None if pd.isna(y) else int(y) for y in g["preferred"]]
        probs = [None if pd.isna(p) else float(p) for p in g["bt_prob"]]
        edges, inc, cor, no_pred = bt_histogram(probs, prefs, bins)
        used = int(inc.sum() + cor.sum())
        for b in range(2 * bins):
            rows.append(
                {
                    "strategy": s,
                    "step": int(step),
                    "bin": b,
                    "lo": edges[b],
                    "hi": edges[b + 1],
                    "incorrect": int(inc[b]),
                    "correct": int(cor[b]),
                    "n_used": used,
                    "n_no_prediction": no_pred,
                    "n_excluded": len(g) - used - no_pred,
                }
            )
    return _sort(pd.DataFrame(rows, columns=cols), ["strategy", "step", "bin"])


def bt_left_out(hist: pd.DataFrame) -> tuple[int, int]:
    """(no-prediction pairs, tie/invalid or no-bt_prob pairs) over every panel of a ``bt_histograms`` table."""
    panels = hist.drop_duplicates(["strategy", "step"])
    return int(panels["n_no_prediction"].sum()), int(panels["n_excluded"].sum())


def bt_left_out_note(hist: pd.DataFrame) -> str:
    """One line on what Fig 3 does not draw ('' when it draws every acquired pair)."""
    no_pred, excluded = bt_left_out(hist)
    parts = []
    if no_pred:
        parts.append(f"{no_pred} acquired pair(s) with bt_prob = 0.5 make no prediction (θ_t = θ0, e.g. step 1) and are not drawn")
    if excluded:
        parts.append(f"{excluded} acquired pair(s) left out (tie/invalid label or no bt_prob)")
    return "; ".join(parts)


# --------------------------------------------------------------------------- Fig 5 / Fig 6


def online_vs_reset(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 5 data: win-rate curves per task, strategy and training mode, for strategies run online.

    Reset runs are restricted to the main setting (``select_main``) so they match Fig 2.
    Empty when there are no online runs.
    """
    online = df[df["mode"] == "online"]
    if online.empty:
        return pd.DataFrame(columns=["task", "strategy", "mode", "acquired", "mean", "se", "n", "se_kind"])
    main, _ = select_main(df[df["mode"] == "reset"])
    both = pd.concat([online, main[main["strategy"].isin(set(online["strategy"]))]])
    return winrate_curves(both, by=("task", "strategy", "mode"))


def loss_curves(train: pd.DataFrame, epochs: int | None = None) -> pd.DataFrame:
    """Fig 6 (left): mean DPO loss per epoch and acquisition step over reset-mode runs.

    Uses the runs with ``training.epochs == epochs`` (default: the largest, which shows the
    whole convergence) so every point averages the same runs. Columns: step, epoch, loss, se, n.
    """
    t = train[(train["mode"] == "reset")] if (train["mode"] == "reset").any() else train
    if t.empty:
        return pd.DataFrame(columns=["step", "epoch", "loss", "se", "n"])
    t = t[t["epochs"] == (epochs if epochs is not None else t["epochs"].max())]
    g = t.groupby(["step", "epoch"], sort=True)["loss"]
    out = g.agg(loss="mean", n="count", sd=lambda x: x.std(ddof=1)).reset_index()
    out["se"] = out["sd"] / np.sqrt(out["n"])
    return out.drop(columns="sd")[["step", "epoch", "loss", "se", "n"]]


def winrate_vs_epochs(df: pd.DataFrame) -> pd.DataFrame:
    """Fig 6 (right): each reset run's win-rate at its largest waypoint, mean ± SE over seeds per
    task, strategy and training.epochs. Columns: task, strategy, epochs, acquired, mean, se, n, se_kind."""
    t = df[df["mode"] == "reset"].dropna(subset=["win_rate"])
    if t.empty:
        return pd.DataFrame(columns=["task", "strategy", "epochs", "acquired", "mean", "se", "n", "se_kind"])
    last = t.loc[t.groupby("run")["acquired"].idxmax()]
    out = winrate_curves(last, by=("task", "strategy", "epochs"))
    return out[["task", "strategy", "epochs", "acquired", "mean", "se", "n", "se_kind"]]


# --------------------------------------------------------------------------- one run, step by step (the experiment notebook)

STEP_COLUMNS = (
    "step",
    "labels",
    "mean_score",
    "mean_abs_gap",
    "bt_correct",
    "pref_y1",
    "unlabelled",
    "loss",
    "win_rate",
    "stderr",
    "seconds",
)


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    x = float(x)
    return None if math.isnan(x) else x


def _mean(xs: Iterable[float | None]) -> float:
    v = [x for x in xs if x is not None]
    return sum(v) / len(v) if v else math.nan


def batch_stats(rows: list[dict]) -> dict[str, float | int]:
    """Statistics of one acquired batch (acquired.jsonl rows).

    mean_score: the acquisition score; mean_abs_gap: mean |r̂(y1) − r̂(y0)| under θ_t;
    bt_correct: fraction of labelled pairs whose implicit BT model picked the oracle's winner
    (y1 iff bt_prob > 0.5); a pair with bt_prob = 0.5 (every pair at θ = θ0) makes no prediction
    and is counted in no_prediction instead, the rule of ``bt_histogram``; pref_y1: label
    balance, the fraction of labelled pairs won by y1; unlabelled: ties and invalid answers (not trained on).
    """
    labelled = [r for r in rows if r.get("preferred") is not None]
    scored = [r for r in labelled if _num(r.get("bt_prob")) is not None]
    judged = [r for r in scored if abs(r["bt_prob"] - 0.5) > NO_PREDICTION_TOL]
    gaps = [
        abs(_num(r["reward1"]) - _num(r["reward0"]))
        for r in rows
        if _num(r.get("reward0")) is not None and _num(r.get("reward1")) is not None
    ]
    return {
        "n": len(rows),
        "mean_score": _mean(_num(r.get("score")) for r in rows),
        "mean_abs_gap": _mean(gaps),
        "bt_correct": _mean(float((r["bt_prob"] > 0.5) == (int(r["preferred"]) == 1)) for r in judged),
        "no_prediction": len(scored) - len(judged),
        "pref_y1": _mean(float(int(r["preferred"]) == 1) for r in labelled),
        "unlabelled": len(rows) - len(labelled),
    }


def _loss_trace(losses: list[float]) -> str:
    return " → ".join(f"{x:.3f}" for x in losses)


def step_stats(run: dict[str, list[dict]]) -> pd.DataFrame:
    """One row per finished acquisition step (STEP_COLUMNS) of one run's rows (``load.read_run``).

    labels: acquired-set size after the step; the batch columns are ``batch_stats`` of that step's
    acquired pairs; loss: the DPO loss per epoch as "a → b → c"; win_rate/stderr: blank for steps
    that are not evaluation waypoints.
    """
    acquired: dict[int, list[dict]] = {}
    for r in run["acquired"]:
        acquired.setdefault(int(r["step"]), []).append(r)
    losses: dict[int, list[float]] = {}
    for r in sorted(run["train"], key=lambda r: (int(r["step"]), int(r["epoch"]))):
        losses.setdefault(int(r["step"]), []).append(float(r["loss"]))
    evals = {int(r["step"]): r for r in run["eval"]}
    rows = []
    for s in run["steps"]:
        t = int(s["step"])
        b = batch_stats(acquired.get(t, []))
        e = evals.get(t, {})
        rows.append(
            {
                "step": t,
                "labels": s.get("acquired"),
                "mean_score": b["mean_score"],
                "mean_abs_gap": b["mean_abs_gap"],
                "bt_correct": b["bt_correct"],
                "pref_y1": b["pref_y1"],
                "unlabelled": b["unlabelled"],
                "loss": _loss_trace(losses.get(t, [])),
                "win_rate": _num(e.get("win_rate")),
                "stderr": _num(e.get("stderr")),
                "seconds": _num(s.get("seconds")),
            }
        )
    df = pd.DataFrame(rows, columns=list(STEP_COLUMNS))
    return df.drop_duplicates("step", keep="last").reset_index(drop=True)


__all__ = [
    "COMPANIONS",
    "EFFICIENCY_COLUMNS",
    "NO_PREDICTION_TOL",
    "STEP_COLUMNS",
    "batch_stats",
    "bt_histogram",
    "bt_histograms",
    "bt_left_out",
    "bt_left_out_note",
    "companion_metrics",
    "data_efficiency",
    "efficiency_by_task",
    "holm",
    "kl_curves",
    "lm_loss_curves",
    "loss_curves",
    "metric_curves",
    "online_vs_reset",
    "registered_curves",
    "reward_gap_curves",
    "soft_winrate_curves",
    "step_stats",
    "trained_gaps",
    "trained_notes",
    "winrate_curves",
    "winrate_vs_epochs",
]
