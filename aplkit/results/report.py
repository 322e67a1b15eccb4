"""Results, layer 4: every figure and table from a runs dir in one call, without Jupyter: ``report(runs_dir, out_dir)``.

Figures the data cannot support are skipped (no consistency.json: no Fig 1; no online runs:
no Fig 5; no train.jsonl: no Fig 6; one point per run: no frontier). What was left out and why goes into ``notes.md``.

The blocks the report and the analysis notebooks (``aplkit.notebook``) both need live here once:
``main_runs`` (the Fig 2 / Table 2 selection with its task → 'against' lookup), ``main_acquired``,
``fig3_per_task`` and the ``fig1_figure`` / ``fig5_figure`` / ``fig6_figure`` / ``frontier_figure`` builders, each
returning ``None`` when the runs dir has no data for that figure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

from aplkit.metrics import COMPANION_METRICS
from aplkit.results import compare as C
from aplkit.results import frontier as F
from aplkit.results import load as L
from aplkit.results import plots as P
from aplkit.results import stats as S
from aplkit.results import tables as T


def against_by_task(df: pd.DataFrame) -> dict[str, str]:
    """task → what its win-rates are measured against ('initial' or 'reference'), from eval rows."""
    return df.dropna(subset=["against"]).groupby("task")["against"].first().to_dict()


def main_runs(runs_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict[str, str]]:
    """(all eval rows, the Fig 2 / Table 2 selection, its notes, task → 'against'); all empty when there are no eval rows.

    The eval rows keep ``load_runs``'s attrs (skipped and unfinished runs).
    """
    df = L.load_runs(runs_dir)
    if df.empty:
        return df, df, [], {}
    main, notes = L.select_main(df)
    return df, main, notes, against_by_task(df)


def main_acquired(runs_dir: str | Path, main: pd.DataFrame) -> pd.DataFrame:
    """The acquired pairs of the runs in ``main`` (every acquired pair when ``main`` is empty)."""
    acq = L.load_acquired(runs_dir)
    return acq[acq["run"].isin(set(main["run"]))] if not main.empty else acq


def fig3_per_task(acq: pd.DataFrame) -> Iterator[tuple[str, str, Figure, str]]:
    """Fig 3 for each task of ``acq``: (task, file stem, figure, what it leaves out — '' when nothing).

    The stem is ``fig3_bt_hist`` with one task, ``fig3_bt_hist_<task>`` with several.
    """
    for task, g in acq.groupby("task"):
        hist = S.bt_histograms(g)
        stem = "fig3_bt_hist" if acq["task"].nunique() == 1 else f"fig3_bt_hist_{task}"
        yield task, stem, P.plot_bt_hist(hist), S.bt_left_out_note(hist)


def fig1_figure(runs_dir: str | Path) -> Figure | None:
    """Fig 1 from the consistency.json files under ``runs_dir``; None when there are none."""
    cons = L.load_consistency(runs_dir)
    return P.plot_consistency(cons) if cons else None


def fig5_figure(df: pd.DataFrame, against: dict[str, str] | None = None) -> Figure | None:
    """Fig 5 from eval rows (``load_runs``); None when no run was fine-tuned online."""
    ovr = S.online_vs_reset(df) if not df.empty else pd.DataFrame()
    return P.plot_online_vs_reset(ovr, against) if not ovr.empty else None


def fig6_figure(runs_dir: str | Path, df: pd.DataFrame | None = None) -> Figure | None:
    """Fig 6 from train.jsonl rows and the eval rows ``df`` (read from ``runs_dir`` when not given); None without train rows."""
    train = L.load_train(runs_dir)
    if train.empty:
        return None
    df = L.load_runs(runs_dir) if df is None else df
    wr = S.winrate_vs_epochs(df) if not df.empty else None
    return P.plot_epochs(S.loss_curves(train), wr)


def frontier_figure(runs_dir: str | Path, runs: set[str] | None = None, metric_field: str = "win_rate") -> Figure | None:
    """The frontier figure (``plots.plot_frontier``) of the runs under ``runs_dir`` (``runs``: only those), against the
    policy's KL at T = 1 where they measured it, else the KL along the test completions; None when no run has more
    than one point with a KL (no per-epoch points and a single budget, or no KL recorded)."""
    pts = F.frontier_points(runs_dir, runs)
    if not F.has_frontier(pts, metric_field):
        return None
    kl = F.kl_axis(pts)
    return P.plot_frontier(F.mean_frontiers(pts, metric_field, kl), F.waypoint_means(pts, metric_field, kl), kl, metric_field)


def report(
    runs_dir: str | Path,
    out_dir: str | Path = "figures",
    budget: int | None = None,
    source: str | Path | None = None,
    pool_strata: bool = False,
    endpoint: str = "win_rate",
) -> dict[str, Path]:
    """Write the figures (PNG + PDF) and tables for every run under ``runs_dir``; return {file name: path}.

    ``budget`` is the label count for the data-efficiency table (default: per task, the largest
    size every strategy reached). ``source`` names where the runs came from in ``notes.md`` when
    ``runs_dir`` is a temporary folder (committed records materialised), so a rebuilt report is the
    same bytes. Prints nothing; ``notes.md`` lists skipped and unfinished runs and every caveat.
    Paired seeds from several code versions or CPUs are refused (``compare.StrataError``) unless
    ``pool_strata``; pooled, ``strata.md`` gives each stratum's estimate and the test of their difference.
    ``endpoint``: the metric of the paired tests, the ranking and the strata (a study's primary endpoint, the win-rate
    by default; a pool-based study's may be ``heldout_accuracy``).
    """
    out = Path(out_dir)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name

    def fig(fig_obj: Figure | None, stem: str) -> None:
        if fig_obj is None:
            return
        for p in P.save(fig_obj, out, stem):
            written[p.name] = p

    df, main, sel_notes, against = main_runs(runs_dir)
    if df.empty:
        raise ValueError(f"no run folders with eval.jsonl rows under {runs_dir}")
    strata = L.load_strata(runs_dir)
    present = C.check_strata(main, strata, pool_strata)
    out.mkdir(parents=True, exist_ok=True)
    notes = [f"{len(df['run'].unique())} run(s) with eval rows under {source or runs_dir}."]
    notes += [f"skipped (no eval rows): {r}" for r in df.attrs.get("skipped", [])]
    notes += [f"unfinished (included, flagged): {r}" for r in df.attrs.get("incomplete", [])]
    notes += sel_notes
    notes += L.code_notes(L.load_code(runs_dir))

    # Fig 2 + Table 2
    curves = S.winrate_curves(main)
    if (curves["se_kind"] == "binomial").any():
        notes.append("some strategy/size cells have one seed: their error bars are that run's binomial stderr, not a spread over seeds")
    notes += [f"Fig 2 / Table 2 x-axis is labels acquired (t·M); {n}" for n in S.trained_notes(main)]
    if curves.empty:  # pool-based runs without a judge of their generations (evaluation.oracle) have no win-rate
        notes.append("no run recorded a win-rate (pool-based runs without evaluation.oracle): no Fig 2")
    else:
        fig(P.plot_winrate(curves, against), "fig2_winrate")
    t2 = T.table2(main)
    put("table2.md", T.to_markdown(t2))
    put("table2.tex", T.to_latex(t2))
    written["table2.csv"] = T.to_csv(t2, out / "table2.csv")
    metrics = S.companion_metrics(main)
    put("metrics.md", T.metrics_markdown(metrics))
    written["metrics.csv"] = T.metrics_to_csv(metrics, out / "metrics.csv")
    if metrics[[m.field for m in COMPANION_METRICS if m.field in metrics]].isna().all().all():
        names = ", ".join(m.short for m in COMPANION_METRICS)
        notes.append(f"no run recorded the win-rate's companions ({names}): metrics.md shows the win-rate only")

    # statistics
    sig = C.significance_vs_random(main, endpoint)
    sig.to_csv(out / "significance.csv", index=False)
    written["significance.csv"] = out / "significance.csv"
    put("significance.md", T.significance_markdown(sig, endpoint))
    eff, eff_notes = S.efficiency_by_task(main, budget)
    notes += eff_notes
    eff.to_csv(out / "efficiency.csv", index=False)
    written["efficiency.csv"] = out / "efficiency.csv"
    put("efficiency.md", T.efficiency_markdown(eff))
    notes += [f"efficiency {r.task}/{r.strategy}: {r.note}" for r in eff.itertuples() if r.note]

    # the arena: ranking by the final paired difference from random, and what each acquisition costs per step
    rank = C.ranking(C.paired_comparison(main, metric=endpoint), main)
    rank.to_csv(out / "ranking.csv", index=False)
    written["ranking.csv"] = out / "ranking.csv"
    put("ranking.md", T.ranking_markdown(rank))
    if len(present) > 1:
        notes.append(f"paired seeds from {len(present)} strata (code version · CPU) pooled on request: strata.md gives each one's estimate")
        put("strata.md", T.strata_markdown(*C.by_stratum(main, strata, budget, metric=endpoint)))
    if rank.empty or rank["n"].max() < 2:
        notes.append("no ranking figure: it needs a strategy paired with random on at least 2 seeds")
    else:
        fig(P.plot_ranking(rank), "ranking")
    cost = C.acquisition_cost(L.load_steps(runs_dir).pipe(lambda s: s[s["run"].isin(set(main["run"]))]), L.load_configs(runs_dir))
    cost.to_csv(out / "cost.csv", index=False)
    written["cost.csv"] = out / "cost.csv"
    put("cost.md", T.cost_markdown(cost))
    matched = C.kl_matched(main)
    matched.to_csv(out / "kl_matched.csv", index=False)
    written["kl_matched.csv"] = out / "kl_matched.csv"
    put("kl_matched.md", T.kl_matched_markdown(matched))

    # Fig 3
    acq = main_acquired(runs_dir, main)
    if acq.empty:
        notes.append("no acquired.jsonl rows: no Fig 3")
    for task, stem, fig3, left_out in fig3_per_task(acq):
        if left_out:
            notes.append(f"Fig 3 {task}: {left_out}")
        fig(fig3, stem)

    fig(frontier_figure(runs_dir, set(main["run"])), "frontier")

    fig(fig1_figure(runs_dir), "fig1_consistency")
    fig(fig5_figure(df, against), "fig5_online_vs_reset")
    fig(fig6_figure(runs_dir, df), "fig6_epochs")

    put("notes.md", "# Report notes\n\n" + "".join(f"- {n}\n" for n in notes))
    return written
