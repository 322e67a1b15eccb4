"""How each strategy compares with random, as a reviewer asks for it: intervals, not just p-values.

Seeds are the unit of replication: a strategy's run with seed k is paired with random's run with
seed k (same prompt split, same test prompts, and — through common random numbers — the same
first batch where the scorer cannot rank). Intervals come from ``scipy.stats`` (Student t and the
bootstrap over seeds), power from ``statsmodels``; nothing here reimplements either.

The same pairing compares two training objectives of the APL loop (``paired_against``): each run of one
is paired with the other's run of the same strategy and seed (same prompt split, same test prompts).

One computation makes every such table (``paired_table``): the per-seed differences of each comparison, their
t and bootstrap intervals, P(improve), the paired tests, and Holm within a declared family;
``significance_vs_random``, ``paired_comparison``, ``paired_against`` and ``ranking`` pair the runs and pick
its columns. Which way is better for a metric is its spec's (``aplkit.metrics``).
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
from scipy import optimize, stats

from aplkit.errors import ConfigError
from aplkit.metrics import METRICS, metric
from aplkit.results.load import start_stratum, strategy_order
from aplkit.results.stats import EFFICIENCY_COLUMNS, NO_PREDICTION_TOL, _check_unique, _efficiency_rows, data_efficiency, holm

CONFIDENCE = 0.95
#: differences spread less than this across seeds count as identical (float noise): there is nothing to test
NO_SPREAD = 1e-12


def no_spread(d: np.ndarray) -> bool:
    """Every seed moved by the same amount (up to float noise): t is 0/0 and a test's p would be noise."""
    return len(d) > 1 and bool(np.ptp(d) < NO_SPREAD)


def paired_by_seed(df: pd.DataFrame, task: str, size: int, strategy: str, baseline: str = "random", metric: str = "win_rate") -> pd.Series:
    """strategy − baseline of one eval.jsonl column per seed that recorded it in both runs, at one size, indexed by seed."""
    g = df[(df["task"] == task) & (df["acquired"] == size)].dropna(subset=[metric])
    a = g[g["strategy"] == strategy].set_index("seed")[metric]
    b = g[g["strategy"] == baseline].set_index("seed")[metric]
    seeds = sorted(set(a.index) & set(b.index))
    return (a.loc[seeds] - b.loc[seeds]).astype(float)


def paired_differences(
    df: pd.DataFrame, task: str, size: int, strategy: str, baseline: str = "random", metric: str = "win_rate"
) -> np.ndarray:
    """``paired_by_seed`` as an array, by seed."""
    return paired_by_seed(df, task, size, strategy, baseline, metric).to_numpy(float)


def t_interval(d: np.ndarray, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Student-t interval of the mean paired difference (n − 1 degrees of freedom)."""
    n = len(d)
    if n < 2:
        return (math.nan, math.nan)
    if no_spread(d):
        return (float(d.mean()), float(d.mean()))
    se = d.std(ddof=1) / math.sqrt(n)
    return tuple(float(x) for x in stats.t.interval(confidence, n - 1, loc=d.mean(), scale=se))


def t_pvalue(d: np.ndarray) -> float:
    """Two-sided one-sample t-test of mean(d) = 0 (the paired t-test); NaN with < 2 seeds or no spread (``no_spread``)."""
    if len(d) < 2 or no_spread(d):
        return math.nan
    return float(stats.ttest_1samp(d, 0.0).pvalue)


def holm_intervals(diffs: list[np.ndarray], confidence: float = CONFIDENCE) -> pd.DataFrame:
    """t intervals for a family of paired differences that exclude 0 exactly when Holm rejects.

    Holm compares the j-th smallest of m p-values with α/(m − j + 1), stepping down; its adjusted p is
    c·p with c = max over i ≤ j of (m − i + 1)·p(i) / p(j), between m − j + 1 and m. The interval here is
    the t interval at level 1 − α/c, so it lies off 0 iff the Holm-adjusted p (``stats.holm``) is < α: at
    worst as wide as Bonferroni's, at best as Holm's own step. Members with no p-value (one seed, or no
    spread) are outside the family: their interval is the plain one (a point when every seed agrees).
    Columns: p, p_holm, level, low, high.
    """
    alpha = 1 - confidence
    p = np.array([t_pvalue(d) for d in diffs], dtype=float)
    ok = np.flatnonzero(~np.isnan(p))
    factor = np.full(len(p), np.nan)
    if len(ok):
        order = ok[np.argsort(p[ok], kind="stable")]
        m = len(order)
        scaled = np.maximum.accumulate(p[order] * (m - np.arange(m)))  # uncapped Holm-adjusted p
        with np.errstate(divide="ignore", invalid="ignore"):
            factor[order] = np.where(p[order] > 0, scaled / p[order], m - np.arange(m))
    rows = []
    for d, c in zip(diffs, factor, strict=True):
        level = confidence if math.isnan(c) else 1 - alpha / c
        lo, hi = t_interval(d, level)
        rows.append({"level": level, "low": lo, "high": hi})
    out = pd.DataFrame(rows, columns=["level", "low", "high"], index=range(len(diffs)))
    out.insert(0, "p_holm", holm(p) if len(p) else np.array([]))
    out.insert(0, "p", p)
    return out


def bootstrap_interval(d: np.ndarray, confidence: float = CONFIDENCE, n_resamples: int = 9999, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap over seeds of the mean paired difference (``scipy.stats.bootstrap``)."""
    if len(d) < 2:
        return (math.nan, math.nan)
    if no_spread(d):
        return (float(d[0]), float(d[0]))
    res = stats.bootstrap(
        (d,), np.mean, confidence_level=confidence, n_resamples=n_resamples, method="percentile", rng=np.random.default_rng(seed)
    )
    return (float(res.confidence_interval.low), float(res.confidence_interval.high))


def probability_of_improvement(d: np.ndarray) -> float:
    """Share of paired seeds on which the strategy beats random (a tie counts ½)."""
    return float(np.mean((d > 0) + 0.5 * (d == 0))) if len(d) else math.nan


def seeds_for_power(sd: float, effect: float = 0.05, alpha: float = 0.05, power: float = 0.8) -> float:
    """Paired seeds a two-sided paired t-test needs to detect ``effect`` with ``power`` at the observed spread ``sd``."""
    from statsmodels.stats.power import TTestPower
    from statsmodels.tools.sm_exceptions import ConvergenceWarning  # first: importing it sets an "always" filter

    if not sd > 0:
        return math.nan
    test, d = TTestPower(), effect / sd
    with warnings.catch_warnings():  # its ConvergenceWarning is the NaN handled below, not news for the reader
        warnings.simplefilter("ignore", ConvergenceWarning)
        n = test.solve_power(effect_size=d, alpha=alpha, power=power, alternative="two-sided")
    if not math.isnan(n):
        return float(math.ceil(n))
    # the root finder gives up at the ends (an effect many times the spread): count up; a power statsmodels
    # cannot compute (NaN, at 2 seeds there) counts as not reached, so the answer may be one seed high
    for k in range(2, 100_001):
        if test.power(effect_size=d, nobs=k, alpha=alpha, alternative="two-sided") >= power:
            return float(k)
    return math.inf


def seeds_for_halfwidth(sd: float, halfwidth: float = 0.03, confidence: float = CONFIDENCE, most: int = 10_000) -> float:
    """Paired seeds whose t interval of the mean difference is no wider than ±``halfwidth`` at the observed spread ``sd``.

    The smallest n ≥ 2 with t(1 − α/2, n − 1) · sd / √n ≤ halfwidth (inf beyond ``most``; NaN without a spread).
    """
    if not sd > 0:
        return math.nan
    q = 0.5 + confidence / 2
    for n in range(2, most + 1):
        if stats.t.ppf(q, n - 1) * sd / math.sqrt(n) <= halfwidth:
            return float(n)
    return math.inf


def precision(cmp: pd.DataFrame, target: float = 0.03, confidence: float = CONFIDENCE, metric: str = "win_rate") -> pd.DataFrame:
    """Is the answer decided? Per task, at its final size, each strategy's t-interval half-width against random
    in ``metric`` (from ``paired_comparison``) beside ``target``, and the seeds ``target`` needs at the observed spread."""
    cols = ["task", "acquired", "strategy", "n", "mean_diff", "half_width", "target", "within", "seeds_for_target"]
    rows = []
    cmp = cmp[cmp["metric"] == metric] if "metric" in cmp else cmp
    for task, g in cmp.groupby("task", sort=True):
        last = g[g["acquired"] == g["acquired"].max()]
        for r in last.itertuples():
            half = (r.t_high - r.t_low) / 2 if not math.isnan(r.t_low) else math.nan
            rows.append(
                {
                    "task": task,
                    "acquired": int(r.acquired),
                    "strategy": r.strategy,
                    "n": int(r.n),
                    "mean_diff": r.mean_diff,
                    "half_width": half,
                    "target": target,
                    "within": bool(half <= target) if not math.isnan(half) else False,
                    "seeds_for_target": seeds_for_halfwidth(r.sd, target, confidence) if r.n > 1 else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def verdict(lo: float, hi: float) -> str:
    """better / worse when the interval excludes 0, else undecided."""
    if math.isnan(lo) or math.isnan(hi):
        return "n/a"
    return "better" if lo > 0 else "worse" if hi < 0 else "undecided"


#: the columns ``interval_cells`` fills: one paired difference over seeds, as every table here reads it
INTERVAL_COLUMNS = ["n", "mean_diff", "sd", "t_low", "t_high", "boot_low", "boot_high", "p_improve", "verdict"]


def interval_cells(d: np.ndarray, confidence: float = CONFIDENCE) -> dict:
    """A paired difference over seeds as a row's cells (``INTERVAL_COLUMNS``): mean, spread, t and bootstrap
    intervals, P(improve) and the t interval's verdict."""
    t_lo, t_hi = t_interval(d, confidence)
    b_lo, b_hi = bootstrap_interval(d, confidence)
    return {
        "n": len(d),
        "mean_diff": float(d.mean()) if len(d) else math.nan,
        "sd": float(d.std(ddof=1)) if len(d) > 1 else math.nan,
        "t_low": t_lo,
        "t_high": t_hi,
        "boot_low": b_lo,
        "boot_high": b_hi,
        "p_improve": probability_of_improvement(d),
        "verdict": verdict(t_lo, t_hi),
    }


#: what ``paired_table`` gives each paired difference, after its key cells
PAIRED_COLUMNS = [
    *INTERVAL_COLUMNS,
    "se",
    "t_p",
    "wilcoxon_p",
    "note",
    "seeds_80",
    "t_p_holm",
    "wilcoxon_p_holm",
    "holm_level",
    "holm_low",
    "holm_high",
    "holm_verdict",
]


def _directed(v: str, field: str) -> str:
    """A verdict on higher-is-better terms, read in ``field``'s good direction: higher / lower for a metric with none
    (KL from θ0)."""
    good = metric(field).higher_is_better
    if good is None:
        return {"better": "higher", "worse": "lower"}.get(v, v)
    return v if good else {"better": "worse", "worse": "better"}.get(v, v)


def paired_table(
    diffs: list[tuple[dict, np.ndarray]], family: tuple[str, ...] = ("task",), confidence: float = CONFIDENCE, effect: float | None = None
) -> pd.DataFrame:
    """The one computation behind every paired comparison: one row per (key cells, per-seed differences) of ``diffs``.

    Per difference (``PAIRED_COLUMNS`` after its key cells): the ``interval_cells`` (mean, spread, t and bootstrap
    intervals, P(improve), the t interval's verdict), the SE, the paired t-test's p, the Wilcoxon signed-rank p
    (n ≥ 6, else NaN), a note where nothing can be tested (one seed, or identical differences: ``no_spread``), and the
    seeds 80 % power needs for ``effect`` (in the metric's units; None: NaN). Then Holm within each family — the
    rows sharing the ``family`` key cells, every row when it is empty: ``t_p_holm`` and ``wilcoxon_p_holm`` (NaN
    p-values are outside the family), and the t interval that excludes 0 exactly when Holm rejects
    (``holm_intervals``: ``holm_level``, ``holm_low``, ``holm_high``). ``verdict`` and ``holm_verdict`` read their
    interval in the metric's good direction (a ``metric`` key cell names it, ``aplkit.metrics``; the win-rate's
    otherwise).
    """
    keys = list(dict.fromkeys(k for cells, _ in diffs for k in cells))
    rows = []
    for cells, d in diffs:
        d = np.asarray(d, dtype=float)
        n, flat = len(d), no_spread(d)
        row = {**cells, **interval_cells(d, confidence)}
        row["verdict"] = _directed(row["verdict"], cells.get("metric", "win_rate"))
        row["se"] = 0.0 if flat else float(d.std(ddof=1) / math.sqrt(n)) if n > 1 else math.nan
        row["t_p"] = t_pvalue(d)
        row["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue) if n >= 6 and not flat and np.any(d != 0) else math.nan
        if n < 2:
            row["note"] = "n/a (one seed)" if n else "n/a (no paired seed)"
        elif flat:
            row["note"] = "n/a (identical differences across seeds)"
        else:
            row["note"] = "" if n >= 6 else "wilcoxon needs n >= 6"
        row["seeds_80"] = seeds_for_power(row["sd"], effect) if n > 1 and effect is not None else math.nan
        rows.append(row)
    out = pd.DataFrame(rows, columns=[*keys, *PAIRED_COLUMNS[: PAIRED_COLUMNS.index("t_p_holm")]])
    for c in ("t_p", "wilcoxon_p", "t_p_holm", "wilcoxon_p_holm", "holm_level", "holm_low", "holm_high"):
        out[c] = out[c].astype(float) if c in out else math.nan
    out["holm_verdict"] = "n/a"
    groups = [g.index for _, g in out.groupby(list(family), sort=False)] if family and len(out) else [out.index]
    for at in groups:
        h = holm_intervals([np.asarray(diffs[i][1], dtype=float) for i in at], confidence)
        out.loc[at, "t_p_holm"] = h["p_holm"].to_numpy(float)
        out.loc[at, ["holm_level", "holm_low", "holm_high"]] = h[["level", "low", "high"]].to_numpy(float)
        out.loc[at, "wilcoxon_p_holm"] = holm(out.loc[at, "wilcoxon_p"])
    fields = out["metric"] if "metric" in out else ["win_rate"] * len(out)
    out["holm_verdict"] = [_directed(verdict(lo, hi), f) for lo, hi, f in zip(out["holm_low"], out["holm_high"], fields, strict=True)]
    return out


def against_baseline(df: pd.DataFrame, metric: str = "win_rate", baseline: str = "random") -> list[tuple[dict, np.ndarray]]:
    """Each strategy against ``baseline`` per task and size (the strategies in the paper's order): its per-seed
    differences in ``metric`` over the seeds both recorded it (``paired_differences``), as ``paired_table`` reads them.
    None where no run recorded the metric."""
    out: list[tuple[dict, np.ndarray]] = []
    if df.empty or metric not in df.columns or df[metric].isna().all():
        return out
    _check_unique(df, ["task", "strategy"])
    for (task, size), g in df.groupby(["task", "acquired"], sort=True):
        if baseline not in set(g["strategy"]):
            continue
        for s in strategy_order(g["strategy"]):
            if s != baseline:
                d = paired_differences(df, task, int(size), s, baseline, metric)
                out.append(({"task": task, "acquired": int(size), "strategy": s, "metric": metric}, d))
    return out


SIGNIFICANCE_COLUMNS = ["task", "acquired", "strategy", "n", "mean_diff", "se", "t_p", "t_p_holm", "wilcoxon_p", "wilcoxon_p_holm", "note"]


def significance_vs_random(df: pd.DataFrame, metric: str = "win_rate") -> pd.DataFrame:
    """Paired comparison of each strategy with random in ``metric`` (an eval-frame column, the win-rate by default),
    per task and size, over seeds that recorded it in both runs (``paired_table``).

    mean_diff and se are over the per-seed differences (strategy − random); t_p is the paired t-test, wilcoxon_p the
    signed-rank test when n ≥ 6 (too few pairs for it otherwise: NaN). With one shared seed (or differences identical
    across seeds) there is nothing to test: p-values are NaN and ``note`` says n/a.

    The table runs many tests (strategies × sizes), so ``t_p_holm`` and ``wilcoxon_p_holm`` hold Holm-adjusted
    p-values (``holm``), each over the family of every test of its kind in the table for the same task (all
    strategies and all sizes of that dataset); NaN p-values are not in the family and stay NaN.
    """
    t = paired_table([x for x in against_baseline(df, metric) if len(x[1])], family=("task",))
    return t[SIGNIFICANCE_COLUMNS] if len(t) else pd.DataFrame(columns=SIGNIFICANCE_COLUMNS)


def paired_comparison(
    df: pd.DataFrame, effect: float | None = 0.05, confidence: float = CONFIDENCE, metric: str = "win_rate"
) -> pd.DataFrame:
    """Per task × size × strategy: paired mean difference from random in ``metric`` (an eval-frame column: the
    win-rate, a lower-variance companion such as soft_win_rate or reward_gap, or a pool-based run's
    heldout_accuracy) with t and bootstrap intervals,
    the probability of improvement, the verdict of the t interval, and the seeds 80 % power would need for a
    difference of ``effect`` (in the metric's units; None: no power column, NaN) — ``paired_table``'s columns.

    Seeds where either run did not record the metric are left out of the pair; a metric no run recorded gives
    no rows."""
    cols = ["task", "acquired", "strategy", *INTERVAL_COLUMNS, "seeds_80", "metric"]
    t = paired_table(against_baseline(df, metric), confidence=confidence, effect=effect)
    return t[cols] if len(t) else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- strata: code version × CPU

#: a stratum needs this many paired seeds to enter the test of whether strata differ (fewer: listed, not tested)
MIN_STRATUM_SEEDS = 3
UNKNOWN_STRATUM = start_stratum({})


class StrataError(ConfigError):
    """Paired seeds from several code versions or CPUs would be pooled without the caller asking for it."""


def pair_stratum(strategy_run: str, baseline_run: str) -> str:
    """The stratum of one paired seed: its runs' (``load.load_strata``) when both ran in the same one; otherwise
    ``mixed: A vs B``, a stratum of its own shared only with seeds whose arms ran in the same two (a run resumed
    across strata, "A + B", is never pooled with a clean one)."""
    if strategy_run == baseline_run and " + " not in strategy_run:
        return strategy_run
    return f"mixed: {strategy_run} vs {baseline_run}"


def seed_strata(df: pd.DataFrame, strata: dict[str, str], task: str, strategy: str, baseline: str = "random") -> dict[int, str]:
    """seed → ``pair_stratum`` of the strategy's and the baseline's run of that seed (``df``: ``load_runs`` rows;
    ``strata``: run → stratum; a run it does not name is of ``UNKNOWN_STRATUM``)."""
    g = df[df["task"] == task]
    a = g[g["strategy"] == strategy].groupby("seed")["run"].first()
    b = g[g["strategy"] == baseline].groupby("seed")["run"].first()
    return {
        int(k): pair_stratum(strata.get(a[k], UNKNOWN_STRATUM), strata.get(b[k], UNKNOWN_STRATUM))
        for k in sorted(set(a.index) & set(b.index))
    }


def strata_present(df: pd.DataFrame, strata: dict[str, str], baseline: str = "random") -> list[str]:
    """Every stratum a paired seed of ``df`` (any task, any strategy against ``baseline``) falls in, sorted."""
    found: set[str] = set()
    for task, g in df.groupby("task", sort=True):
        for s in set(g["strategy"]) - {baseline}:
            found |= set(seed_strata(df, strata, task, s, baseline).values())
    return sorted(found)


def check_strata(df: pd.DataFrame, strata: dict[str, str], pool: bool = False, baseline: str = "random") -> list[str]:
    """The strata of ``df``'s paired seeds; ``StrataError`` (one line naming them) when there are several and
    ``pool`` is False: a paired difference pooled over code versions or CPUs may mix effects that differ."""
    present = strata_present(df, strata, baseline)
    if len(present) > 1 and not pool:
        raise StrataError(
            f"the paired seeds come from {len(present)} strata (code version · CPU): {'; '.join(present)} — "
            "pool them only when asked (--pool-strata, pool_strata=True), which prints each stratum's estimate first"
        )
    return present


def _seed_list(seeds: list[int]) -> str:
    """0, 1, 2, 5 → "0–2, 5"."""
    parts, run = [], [seeds[0]] if seeds else []
    for k in seeds[1:]:
        if k == run[-1] + 1:
            run.append(k)
        else:
            parts.append(run)
            run = [k]
    parts += [run] if run else []
    return ", ".join(f"{r[0]}–{r[-1]}" if len(r) > 2 else ", ".join(map(str, r)) for r in parts)


STRATA_COLUMNS = ["task", "acquired", "strategy", "stratum", "seeds", "n", "mean_diff", "sd", "t_low", "t_high", "tested"]
STRATA_TEST_COLUMNS = ["task", "acquired", "strategy", "strata", "test", "statistic", "df", "p"]


def by_stratum(
    df: pd.DataFrame,
    strata: dict[str, str],
    size: int | None = None,
    confidence: float = CONFIDENCE,
    metric: str = "win_rate",
    baseline: str = "random",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per task × strategy at ``size`` (default: the task's largest): the paired difference from ``baseline`` in
    each stratum (``seed_strata``; strata in order of their first seed) with its t interval, and a test of whether
    the strata differ.

    A stratum with fewer than ``MIN_STRATUM_SEEDS`` seeds is listed (its mean) but has no interval and is not tested.
    The test takes the per-seed differences of the tested strata: Welch's t (``scipy.stats.ttest_ind``, unequal
    variances) for two; for more, Welch's one-way ANOVA (``scipy.stats.f_oneway``, ``equal_var=False``) — one test
    of "do the strata differ?", which is what pooling has to answer, rather than many pairwise tests of a few seeds
    each; for two strata it gives Welch's t's p. NaN when a tested stratum has no spread.
    """
    rows, tests = [], []
    for task, g in df.groupby("task", sort=True):
        at = int(g["acquired"].max()) if size is None else int(size)
        for s in strategy_order(g["strategy"]):
            if s == baseline:
                continue
            d = paired_by_seed(df, task, at, s, baseline, metric)
            if d.empty:
                continue
            where = seed_strata(df, strata, task, s, baseline)
            groups: dict[str, list[int]] = {}
            for k in d.index:
                groups.setdefault(where.get(int(k), UNKNOWN_STRATUM), []).append(int(k))
            tested = []
            for name, seeds in sorted(groups.items(), key=lambda kv: kv[1][0]):
                x = d.loc[seeds].to_numpy(float)
                ok = len(x) >= MIN_STRATUM_SEEDS
                lo, hi = t_interval(x, confidence) if ok else (math.nan, math.nan)
                rows.append(
                    {
                        "task": task,
                        "acquired": at,
                        "strategy": s,
                        "stratum": name,
                        "seeds": _seed_list(seeds),
                        "n": len(x),
                        "mean_diff": float(x.mean()),
                        "sd": float(x.std(ddof=1)) if len(x) > 1 else math.nan,
                        "t_low": lo,
                        "t_high": hi,
                        "tested": ok,
                    }
                )
                tested += [x] if ok else []
            if len(tested) < 2:
                continue
            with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                if len(tested) == 2:
                    r = stats.ttest_ind(*tested, equal_var=False)
                    test, stat, dof = "Welch t", float(r.statistic), float(r.df)
                else:
                    r = stats.f_oneway(*tested, equal_var=False)
                    test, stat, dof = "Welch ANOVA F", float(r.statistic), math.nan
            tests.append(
                {
                    "task": task,
                    "acquired": at,
                    "strategy": s,
                    "strata": len(tested),
                    "test": test,
                    "statistic": stat,
                    "df": dof,
                    "p": float(r.pvalue),
                }
            )
    return pd.DataFrame(rows, columns=STRATA_COLUMNS), pd.DataFrame(tests, columns=STRATA_TEST_COLUMNS)


# --------------------------------------------------------------------------- several looks at one difference


def pocock_constant(looks: list[int] | tuple[int, ...], alpha: float = 1 - CONFIDENCE) -> float:
    """Pocock's constant boundary c for a difference read at ``looks`` seed counts (the last the maximum): under no
    effect, the probability that |Z| crosses c at any look is ``alpha``.

    Z_k is the z statistic of the mean over the first n_k seeds; with independent seeds corr(Z_i, Z_j) =
    √(n_i / n_j) (the information fractions n_k / n_max), so c solves P(|Z_k| < c for every k) = 1 − α under that
    multivariate normal (``scipy.stats.multivariate_normal.cdf``, a fixed random stream, so the answer is the same
    every time). Unequal spacing needs nothing more; for K equally spaced looks this is Pocock's table (2.178 at
    K = 2, 2.289 at K = 3, two-sided α 0.05)."""
    n = np.asarray(sorted(set(int(k) for k in looks)), dtype=float)
    if len(n) == 0 or n[0] < 1:
        raise ValueError(f"looks: expected positive seed counts, got {looks!r}")
    z = float(stats.norm.ppf(1 - alpha / 2))
    if len(n) == 1:
        return z
    cov = np.sqrt(np.minimum.outer(n, n) / np.maximum.outer(n, n))
    zero = np.zeros(len(n))

    def crossing(c: float) -> float:
        inside = stats.multivariate_normal.cdf(c + zero, mean=zero, cov=cov, lower_limit=-c + zero, rng=np.random.default_rng(0))
        return 1 - float(inside) - alpha

    return float(optimize.brentq(crossing, z, z + 3, xtol=1e-6))


LOOKS_COLUMNS = [
    "task",
    "acquired",
    "strategy",
    "look",
    "n",
    "mean_diff",
    "se",
    "t_low",
    "t_high",
    "z",
    "boundary",
    "pocock_low",
    "pocock_high",
    "crossed",
    "t_p",
    "nominal",
    "t_crossed",
]


def looks_table(
    df: pd.DataFrame,
    looks: list[int],
    size: int | None = None,
    confidence: float = CONFIDENCE,
    metric: str = "win_rate",
    baseline: str = "random",
) -> pd.DataFrame:
    """Per task × strategy at ``size`` (default: the task's largest), each declared look the pair has reached: the
    mean over its first n_k paired seeds (seed order, the order a study adds them) with the plain t interval and
    the look-adjusted one, mean ± c·SE with c = ``pocock_constant(looks)`` and SE the t's (sd/√n): a normal
    boundary, so at a few seeds it is a little narrower than a t boundary would be. ``crossed``: |mean/SE| > c.
    The t version of the same boundary: ``t_p``, the look's paired t-test p, against ``nominal`` = 2(1 − Φ(c)),
    the level Pocock's boundary spends at each look (``t_crossed``: t_p < nominal)."""
    c = pocock_constant(looks, 1 - confidence)
    nominal = float(2 * stats.norm.sf(c))
    rows = []
    for task, g in df.groupby("task", sort=True):
        at = int(g["acquired"].max()) if size is None else int(size)
        for s in strategy_order(g["strategy"]):
            if s == baseline:
                continue
            d = paired_by_seed(df, task, at, s, baseline, metric).sort_index().to_numpy(float)
            for look in sorted(set(looks)):
                if look > len(d) or look < 2:
                    continue
                x = d[:look]
                se = float(x.std(ddof=1) / math.sqrt(look))
                lo, hi = t_interval(x, confidence)
                m = float(x.mean())
                z = m / se if se > 0 else math.nan
                rows.append(
                    {
                        "task": task,
                        "acquired": at,
                        "strategy": s,
                        "look": look,
                        "n": look,
                        "mean_diff": m,
                        "se": se,
                        "t_low": lo,
                        "t_high": hi,
                        "z": z,
                        "boundary": c,
                        "pocock_low": m - c * se,
                        "pocock_high": m + c * se,
                        "crossed": bool(abs(z) > c) if not math.isnan(z) else False,
                        "t_p": t_pvalue(x),
                        "nominal": nominal,
                        "t_crossed": bool(t_pvalue(x) < nominal),
                    }
                )
    return pd.DataFrame(rows, columns=LOOKS_COLUMNS)


#: metrics on which the lower value is the better outcome: text the model still predicts well (KL from θ0 is in
#: neither direction: a drift, read as higher / lower)
LOWER_IS_BETTER = frozenset(m.field for m in METRICS if m.higher_is_better is False)
#: what a comparison of two training objectives reads: the win-rate (and a pool-based run's held-out accuracy and
#: margin, where recorded), and what a pointwise objective may trade for it
AGAINST_METRICS = ("win_rate", *(m.field for m in METRICS if m.row == "heldout"), *(m.field for m in METRICS if not m.question))


def paired_against(
    runs: pd.DataFrame,
    baseline: pd.DataFrame,
    metrics: tuple[str, ...] = AGAINST_METRICS,
    confidence: float = CONFIDENCE,
    distinct: bool = False,
) -> pd.DataFrame:
    """Two sets of runs of one plan (``load_runs`` frames: say the APL loop fine-tuned with conditional training, and
    with DPO) paired by task, strategy, seed and acquired-set size: per task × size × strategy × metric, the mean of
    runs − baseline with t and bootstrap intervals (``paired_differences`` per seed both recorded; ``paired_table``).

    A study reads many such differences at once, so ``p_holm`` is the paired t-test's p Holm-adjusted over the
    family of one metric within a task (every strategy and size), and ``holm_low``/``holm_high`` the interval that
    excludes 0 exactly when Holm rejects (``holm_intervals``). The verdict comes from that interval, in the
    metric's good direction: better / worse when it excludes 0 (higher win-rate; lower LM loss, which
    ``LOWER_IS_BETTER`` lists; higher / lower for KL, a drift judged neither way), else undecided; n/a where
    nothing can be tested (one seed, or the same difference on every seed: outside the Holm family). A metric neither set recorded gives no rows. Rows: by task, then metric in
    the order asked, then strategy and size.

    ``distinct``: a per-seed difference identical to another strategy's at the same size (certainty's first step
    takes random's draw, so both strategies' first-budget runs are the same runs) is one hypothesis: it enters the
    Holm family once and its row repeats that strategy's numbers. Off by default: a study declares it before its runs.
    """
    cols = ["task", "acquired", "strategy", "metric", "n", "mean_diff", "sd", "t_low", "t_high", "boot_low", "boot_high"]
    cols += ["p", "p_holm", "holm_level", "holm_low", "holm_high", "verdict"]
    diffs = []
    pairs = set(zip(runs["task"], runs["strategy"], strict=True)) & set(zip(baseline["task"], baseline["strategy"], strict=True))
    order = {s: i for i, s in enumerate(strategy_order([s for _, s in pairs]))}
    for task, s in sorted(pairs, key=lambda p: (p[0], order[p[1]])):
        a = runs[(runs["task"] == task) & (runs["strategy"] == s)].assign(strategy="runs")
        b = baseline[(baseline["task"] == task) & (baseline["strategy"] == s)].assign(strategy="baseline")
        both = pd.concat([a, b], ignore_index=True)
        for size in sorted(set(a["acquired"]) & set(b["acquired"])):
            for m in metrics:
                d = paired_differences(both, task, int(size), "runs", "baseline", metric=m) if m in both else np.array([])
                if len(d):
                    diffs.append(({"task": task, "acquired": int(size), "strategy": s, "metric": m}, d))
    if not diffs:
        return pd.DataFrame(columns=cols)
    order = {(c["task"], c["strategy"], c["acquired"], c["metric"]): i for i, (c, _) in enumerate(diffs)}
    repeats: list[tuple[dict, dict]] = []
    if distinct:
        first: dict[tuple, dict] = {}
        kept = []
        for cells, d in diffs:
            key = (cells["task"], cells["acquired"], cells["metric"], np.asarray(d, dtype=float).tobytes())
            if key in first:
                repeats.append((cells, first[key]))
            else:
                first[key] = cells
                kept.append((cells, d))
        diffs = kept
    out = paired_table(diffs, family=("task", "metric"), confidence=confidence).rename(columns={"t_p": "p", "t_p_holm": "p_holm"})
    for cells, same in repeats:
        hit = (out["task"] == same["task"]) & (out["acquired"] == same["acquired"]) & (out["metric"] == same["metric"])
        out = pd.concat([out, out[hit & (out["strategy"] == same["strategy"])].assign(strategy=cells["strategy"])], ignore_index=True)
    if repeats:  # back in the order asked
        at = [order[k] for k in zip(out["task"], out["strategy"], out["acquired"], out["metric"], strict=True)]
        out = out.iloc[np.argsort(at, kind="stable")].reset_index(drop=True)
    out["verdict"] = ["n/a" if math.isnan(p) else v for p, v in zip(out["p"], out["holm_verdict"], strict=True)]
    rank = {m: i for i, m in enumerate(dict.fromkeys([*metrics, *out["metric"]]))}
    out = out.sort_values(["task", "metric"], key=lambda c: c.map(rank) if c.name == "metric" else c, kind="stable")
    return out[cols].reset_index(drop=True)


EFFICIENCY_INTERVAL_COLUMNS = [*EFFICIENCY_COLUMNS, "ratio_low", "ratio_high"]


def efficiency_intervals(
    df: pd.DataFrame, budget: int, n_resamples: int = 2000, confidence: float = CONFIDENCE, seed: int = 0
) -> pd.DataFrame:
    """``data_efficiency`` with a bootstrap interval: seeds are resampled with replacement (jointly for all
    strategies, keeping the pairing) and the labels-random-needs ratio recomputed on each resample. One seed
    gives no interval (NaN), as ``bootstrap_interval``: every resample would be that seed."""
    point = data_efficiency(df, budget)
    # the ratio is read off random's curve: resample the seeds random has (a study part-way through has more of
    # another strategy's); a strategy a resample does not hold is left out of that resample
    seeds = np.array(sorted(df.loc[df["strategy"] == "random", "seed"].unique()))
    if len(seeds) < 2:
        return point.assign(ratio_low=math.nan, ratio_high=math.nan)
    rng = np.random.default_rng(seed)
    # task → strategy → size → {seed: win-rate}: a resample's mean is taken over its picks in draw order, as the
    # frame of the drawn seeds (a seed drawn twice counts twice) would give it to data_efficiency, bit for bit
    cells: dict[str, dict[str, dict[int, dict[int, float]]]] = {}
    ok = df.dropna(subset=["win_rate"])
    for t, s, a, k, v in zip(ok["task"], ok["strategy"], ok["acquired"], ok["seed"], ok["win_rate"], strict=True):
        cells.setdefault(t, {}).setdefault(s, {}).setdefault(int(a), {})[int(k)] = float(v)
    seeds_of = {t: {s: {k for by_k in by_size.values() for k in by_k} for s, by_size in by_s.items()} for t, by_s in cells.items()}
    draws: dict[tuple[str, str], list[float]] = {}
    for _ in range(n_resamples):
        pick = rng.choice(seeds, size=len(seeds), replace=True).tolist()
        means: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for t, by_strategy in cells.items():
            for s, by_size in by_strategy.items():
                sizes, m = [], []
                for a in sorted(by_size):
                    vals = [by_size[a][k] for k in pick if k in by_size[a]]
                    if vals:
                        sizes.append(a)
                        m.append(float(np.array(vals).mean()))
                if sizes:
                    means.setdefault(t, {})[s] = (np.array(sizes, dtype=float), np.array(m))
        random_for: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
        for t, by_strategy in cells.items():  # random paired with each strategy on the seeds that strategy has
            rnd = by_strategy.get("random", {})
            for s, own in seeds_of.get(t, {}).items():
                if s == "random" or own >= seeds_of[t].get("random", set()):
                    continue
                sizes, m = [], []
                for a in sorted(rnd):
                    vals = [rnd[a][k] for k in pick if k in rnd[a] and k in own]
                    if vals:
                        sizes.append(a)
                        m.append(float(np.array(vals).mean()))
                if sizes:
                    random_for.setdefault(t, {})[s] = (np.array(sizes, dtype=float), np.array(m))
        for r in _efficiency_rows(means, budget, random_for):
            draws.setdefault((r["task"], r["strategy"]), []).append(r["ratio"])
    a = (1 - confidence) / 2
    lo = [quantile_with_inf(draws.get((t, s), []), a) for t, s in zip(point["task"], point["strategy"], strict=True)]
    hi = [quantile_with_inf(draws.get((t, s), []), 1 - a) for t, s in zip(point["task"], point["strategy"], strict=True)]
    return point.assign(ratio_low=lo, ratio_high=hi)


def value_at_kl(kl: list[float], win_rate: list[float], kappa: float) -> float:
    """A run's win-rate where it had drifted ``kappa`` nats from θ0: linear along its curve of (KL, win-rate)
    through θ0's own point (0, 0.5) and its waypoints in order, at the first crossing (KL need not be monotone
    in labels). NaN when the curve never gets that far."""
    xs, ys = [0.0, *map(float, kl)], [0.5, *map(float, win_rate)]
    if kappa == 0.0:
        return 0.5
    for x0, y0, x1, y1 in zip(xs, ys, xs[1:], ys[1:], strict=False):
        if min(x0, x1) <= kappa <= max(x0, x1):
            return y1 if x1 == x0 else y0 + (kappa - x0) / (x1 - x0) * (y1 - y0)
    return math.nan


KL_MATCHED_COLUMNS = ["task", "acquired", "strategy", "kl", *INTERVAL_COLUMNS]


def kl_matched(df: pd.DataFrame, budget: int | None = None, confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Is a strategy's lead a better direction or only a longer step from θ0? Per task, strategy and seed paired
    with random's: κ = the smaller of the two runs' KL from θ0 along their test completions (``kl``) at the final
    budget (``budget``, else the task's largest size), each run's win-rate at κ by ``value_at_kl`` (the run that drifted less is read at its end), and
    the mean of strategy − random over seeds with t and bootstrap intervals (``kl``: the mean κ). Seeds where
    either run lacks a KL at the budget, or one curve never reaches κ (an estimated KL below 0), are left out.
    Exploratory: it interpolates between waypoints after the curves are seen; ``aplkit.results.frontier`` compares
    on a declared grid, over each run's points after every epoch."""
    rows = []
    ok = df.dropna(subset=["win_rate", "kl"]) if "kl" in df.columns else df.iloc[0:0]
    for task, g in ok.groupby("task", sort=True):
        size = budget if budget is not None else int(g["acquired"].max())
        curves: dict[str, dict[int, pd.DataFrame]] = {}
        for (s, k), run in g[g["acquired"] <= size].groupby(["strategy", "seed"]):
            run = run.sort_values("acquired")
            if int(run["acquired"].iloc[-1]) == size:
                curves.setdefault(s, {})[int(k)] = run
        rnd = curves.get("random", {})
        for s in strategy_order(g["strategy"]):
            if s == "random" or s not in curves:
                continue
            diffs, kappas = [], []
            for k in sorted(set(curves[s]) & set(rnd)):
                a, b = curves[s][k], rnd[k]
                kappa = min(float(a["kl"].iloc[-1]), float(b["kl"].iloc[-1]))
                at = [value_at_kl(r["kl"].tolist(), r["win_rate"].tolist(), kappa) for r in (a, b)]
                if not any(math.isnan(x) for x in at):  # a sampled KL below 0 that the other curve never reaches
                    diffs.append(at[0] - at[1])
                    kappas.append(kappa)
            kl = float(np.mean(kappas)) if kappas else math.nan
            rows.append(
                {"task": task, "acquired": size, "strategy": s, "kl": kl, **interval_cells(np.array(diffs, dtype=float), confidence)}
            )
    return pd.DataFrame(rows, columns=KL_MATCHED_COLUMNS)


def quantile_with_inf(values: list[float] | np.ndarray, q: float) -> float:
    """``np.quantile`` (linear) of draws that may be +inf ("random never gets there"), with inf where it belongs.

    numpy interpolates as a + (b − a)·g, which is NaN when b = inf and g = 0 (the answer is a) or a = b = inf
    (the answer is inf). Here inf stands in as a huge finite number; a quantile beyond every finite draw is inf.
    Wherever numpy gives a number, this gives the same one.
    """
    v = np.asarray(values, dtype=float)
    finite = v[np.isfinite(v)]
    if len(finite) == 0:
        return math.inf if len(v) else math.nan
    x = float(np.quantile(np.where(np.isposinf(v), 1e300, v), q))
    return math.inf if x > finite.max() else x


def step_sequence_passes(strategy: str, acquisition: dict, step: int, head_fraction: float = 1.0, sampled_logprobs: bool = True) -> float:
    """Sequence passes (``aplkit.acquisition.Passes``) of one step of ``strategy`` under these acquisition settings;
    step 1 is at θ0; ``sampled_logprobs``: the sampler recorded the policy's log-probs (no policy pass for its pairs).
    NaN for a scorer not registered here or one that declares no cost (a user's)."""
    from aplkit.acquisition import SCORERS, step_passes
    from aplkit.config import AcquisitionConfig

    if strategy not in SCORERS:
        return math.nan
    known = set(AcquisitionConfig.__dataclass_fields__)
    acq = AcquisitionConfig(**{k: v for k, v in (acquisition or {}).items() if k in known})
    p = step_passes(SCORERS[strategy](), acq, at_theta0=step == 1)
    return math.nan if p is None else p.sequence_passes(head_fraction, sampled_logprobs)


def config_sampled_logprobs(config: dict) -> bool:
    """``ScoringContext.sampled_logprobs`` as a run's config implies it, for steps recorded before steps.jsonl kept it.

    fp32 compute (``model.dtype`` float32, or auto anywhere but CUDA: auto on an auto device is read as the
    CPU machines those runs were made on) and no suppressed tokens (``training.objective: conditional``).
    """
    model, training = config.get("model") or {}, config.get("training") or {}
    if training.get("objective") == "conditional":
        return False
    dtype, device = str(model.get("dtype", "auto")), str(model.get("device", "auto"))
    return dtype == "float32" or (dtype == "auto" and not device.startswith("cuda"))


def acquisition_cost(steps: pd.DataFrame, configs: dict[str, dict], head_fraction: float = 1.0) -> pd.DataFrame:
    """Per task × strategy: acquisition seconds per step (steps.jsonl ``acquire_s``, mean over runs and steps) and
    model passes per step, each relative to random's on the same seeds.

    Seconds depend on the machine, and a study's seeds can run on different ones (an AVX2-only CPU made
    random's seeds 14–15 of the CPU study ≈ 4× slower); a strategy × seed and random × seed of one
    study are run side by side, so random's mean is taken over the seeds the strategy has (all of random's
    when they share none).

    The passes come from each scorer's declared ``Passes`` for the run's own settings (tested against the
    forward passes a step makes on the tiny model); FLOPs ∝ passes for one model, so ``flops_ratio`` is the
    passes ratio. Whether the policy's log-probs of the sampled pairs were free (recorded by the sampler) is
    the step's own ``sampled_logprobs``, else ``config_sampled_logprobs``. An output-head-only product counts
    ``head_fraction`` of a pass (1: an upper bound; bald is the only user).
    """
    cols = ["task", "strategy", "runs", "steps", "acquire_s", "seconds_ratio", "passes", "flops_ratio"]
    if steps.empty:
        return pd.DataFrame(columns=cols)
    st = steps.dropna(subset=["acquire_s"]).copy()
    recorded = st["sampled_logprobs"] if "sampled_logprobs" in st else pd.Series(None, index=st.index, dtype=object)
    st["passes"] = [
        step_sequence_passes(
            s,
            (configs.get(r) or {}).get("acquisition") or {},
            int(t),
            head_fraction,
            bool(rec) if isinstance(rec, (bool, np.bool_)) else config_sampled_logprobs(configs.get(r) or {}),
        )
        for s, r, t, rec in zip(st["strategy"], st["run"], st["step"], recorded, strict=True)
    ]
    rows = []
    for task, g in st.groupby("task", sort=True):
        random = g[g["strategy"] == "random"]
        for s in strategy_order(g["strategy"]):
            h = g[g["strategy"] == s]
            paired = random[random["seed"].isin(set(h["seed"]))]
            base = paired if len(paired) else random
            sec0 = float(base["acquire_s"].mean()) if len(base) else math.nan
            pass0 = float(base["passes"].mean()) if len(base) else math.nan
            sec, passes = float(h["acquire_s"].mean()), float(h["passes"].mean())
            rows.append(
                {
                    "task": task,
                    "strategy": s,
                    "runs": int(h["run"].nunique()),
                    "steps": len(h),
                    "acquire_s": sec,
                    "seconds_ratio": sec / sec0 if sec0 > 0 else math.nan,
                    "passes": passes,
                    "flops_ratio": passes / pass0 if pass0 > 0 else math.nan,
                }
            )
    return pd.DataFrame(rows, columns=cols)


def ranking(cmp: pd.DataFrame, df: pd.DataFrame) -> pd.DataFrame:
    """The ranking figure's rows: per task, each strategy's paired difference from random at the largest size
    every compared strategy reached, best first (ties by name).

    The ranked strategies are read together, so they are one Holm family per task: ``p`` (paired t), ``p_holm``,
    ``holm_low``/``holm_high`` (the interval that excludes 0 exactly when Holm rejects, ``holm_intervals``) and
    ``holm_verdict`` come from the per-seed differences in ``df`` (the runs ``cmp`` was made from), in ``cmp``'s
    metric (``paired_table``)."""
    extra = ["p", "p_holm", "holm_low", "holm_high", "holm_verdict"]
    if cmp.empty:
        return cmp.assign(rank=[], **{c: [] for c in extra})
    out = []
    for task, g in cmp.groupby("task", sort=True):
        final = g[g["acquired"] == g.groupby("strategy")["acquired"].max().min()]
        final = final.sort_values(["mean_diff", "strategy"], ascending=[False, True]).assign(rank=range(1, len(final) + 1))
        diffs = []
        for r in final.itertuples():
            m = getattr(r, "metric", "win_rate")
            diffs.append(({"task": task, "metric": m}, paired_differences(df, task, int(r.acquired), r.strategy, metric=m)))
        h = paired_table(diffs, family=("task",)).set_index(final.index)
        out.append(
            final.assign(p=h["t_p"], p_holm=h["t_p_holm"], holm_low=h["holm_low"], holm_high=h["holm_high"], holm_verdict=h["holm_verdict"])
        )
    return pd.concat(out, ignore_index=True)


def confident_errors(acq: pd.DataFrame, threshold: float = 0.6, by: tuple[str, ...] = ("task", "strategy", "step")) -> pd.DataFrame:
    """Fig 3 as a number: per task × strategy × step, the share of acquired, labelled pairs that the implicit
    BT model gets wrong with confidence max(p, 1 − p) > ``threshold`` (pairs at p = 0.5 make no prediction and
    are left out of both the count and the share, as in Fig 3). ``by``: the grouping (add "seed" for one
    share per run, to pair runs by seed)."""
    by = tuple(by)
    cols = [*by, "pairs", "confident_wrong", "share"]
    rows = []
    ok = acq.dropna(subset=["bt_prob", "preferred"])
    for key, g in ok.groupby(list(by), sort=True):
        p = g["bt_prob"].to_numpy(float)
        y = g["preferred"].to_numpy(float)
        pred = np.abs(p - 0.5) > NO_PREDICTION_TOL
        wrong = pred & ((p > 0.5) != (y == 1)) & (np.maximum(p, 1 - p) > threshold)
        n = int(pred.sum())
        rows.append(
            {
                **{k: (int(v) if k in ("step", "seed") else v) for k, v in zip(by, key, strict=True)},
                "pairs": n,
                "confident_wrong": int(wrong.sum()),
                "share": wrong.sum() / n if n else math.nan,
            }
        )
    out = pd.DataFrame(rows, columns=cols)
    if "strategy" not in by:
        return out
    order = {s: i for i, s in enumerate(strategy_order(out["strategy"]))}
    return out.sort_values(list(by), key=lambda c: c.map(order) if c.name == "strategy" else c, kind="stable").reset_index(drop=True)


__all__ = [
    "EFFICIENCY_INTERVAL_COLUMNS",
    "LOOKS_COLUMNS",
    "MIN_STRATUM_SEEDS",
    "STRATA_COLUMNS",
    "STRATA_TEST_COLUMNS",
    "StrataError",
    "UNKNOWN_STRATUM",
    "by_stratum",
    "check_strata",
    "looks_table",
    "pair_stratum",
    "pocock_constant",
    "seed_strata",
    "strata_present",
    "acquisition_cost",
    "bootstrap_interval",
    "config_sampled_logprobs",
    "confident_errors",
    "efficiency_intervals",
    "holm_intervals",
    "interval_cells",
    "INTERVAL_COLUMNS",
    "kl_matched",
    "KL_MATCHED_COLUMNS",
    "value_at_kl",
    "AGAINST_METRICS",
    "LOWER_IS_BETTER",
    "NO_SPREAD",
    "PAIRED_COLUMNS",
    "SIGNIFICANCE_COLUMNS",
    "against_baseline",
    "no_spread",
    "paired_against",
    "paired_by_seed",
    "paired_comparison",
    "paired_differences",
    "paired_table",
    "significance_vs_random",
    "precision",
    "probability_of_improvement",
    "quantile_with_inf",
    "ranking",
    "seeds_for_halfwidth",
    "seeds_for_power",
    "step_sequence_passes",
    "t_interval",
    "t_pvalue",
    "verdict",
]
