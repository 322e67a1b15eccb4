"""What the notebooks show, as plain functions: the cells stay one-liners and only display.

Every number, table and figure comes from ``aplkit.results`` (the blocks shared with ``aplkit report``
from ``aplkit.results.report``); this module shows them inline and saves the figures.

``StepDisplay`` is the experiment notebook's callback (``aplkit.callbacks``): after each acquisition step it
re-reads the run folder (so a resumed run shows its earlier steps too) and updates one table and
one figure in place. The ``fig*`` functions are the analysis notebooks' cells; each returns the
files it wrote, or ``[]`` with a printed note when the runs dir has no data for that figure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from aplkit.callbacks import Callback
from aplkit.results import (
    efficiency_by_task,
    efficiency_markdown,
    read_run,
    significance_markdown,
    significance_vs_random,
    step_stats,
    table2,
    to_markdown,
    winrate_curves,
)
from aplkit.runfolder import project_dir  # re-exported: the notebooks start with os.chdir(project_dir())


def step_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished acquisition step of a run folder: ``aplkit.results.stats.step_stats`` (STEP_COLUMNS)."""
    return step_stats(read_run(run_dir))


def progress_figure(run_dir: str | Path):
    """``aplkit.results.plots.plot_progress`` of a run folder: loss per epoch and win-rate so far."""
    from aplkit.results.plots import plot_progress

    return plot_progress(read_run(run_dir))


def _display(obj: Any, handle: Any = None) -> Any:
    """IPython's display (updated in place under Jupyter and papermill), print() elsewhere."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:  # pragma: no cover - IPython ships with ipykernel
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(obj.to_string() if isinstance(obj, pd.DataFrame) else obj)
        return None
    if handle is None:
        return display(obj, display_id=True)
    handle.update(obj)
    return handle


class StepDisplay(Callback):
    """A callback on the loop's seam: a per-step table and a loss / win-rate figure, updated in place.

    Also callable as a plain ``on_step`` function, as notebooks written before the seam use it.
    """

    def __init__(self, run_dir: str | Path, plot: bool = True):
        self.run_dir = Path(run_dir)
        self.plot = plot
        self._table = None
        self._fig = None

    def show(self) -> pd.DataFrame:
        """Draw (or redraw) from the run folder; returns the step table."""
        run = read_run(self.run_dir)
        table = step_stats(run)
        self._table = _display(table.set_index("step") if len(table) else "no finished steps yet", self._table)
        if self.plot and len(table):
            import matplotlib.pyplot as plt

            from aplkit.results.plots import plot_progress

            fig = plot_progress(run)
            self._fig = _display(fig, self._fig)
            plt.close(fig)
        return table

    def on_step(self, result: Any) -> None:
        self.show()

    def __call__(self, result: Any) -> None:
        self.show()


def summary_line(summary: dict) -> str:
    """A run's summary.json in one line: labels, final win-rate, oracle calls and cost, wall time."""
    o = summary.get("oracle") or {}
    wr = summary.get("final_win_rate")
    return (
        f"{'complete' if summary.get('complete') else 'incomplete'}: {summary.get('labels', 0)} labels, "
        f"final win-rate {'n/a' if wr is None else f'{wr:.3f}'}, oracle {o.get('calls', 0)} calls / {o.get('cache_hits', 0)} cache hits, "
        f"${o.get('cost_usd', 0.0):.4f}, {summary.get('wall_seconds', 0.0):.0f}s"
    )


def heldout_accuracy(run_dir: str | Path) -> pd.DataFrame:
    """A pool-based run's held-out preference accuracy, one row per waypoint (``heldout.jsonl``; empty on-policy)."""
    from aplkit.records import HeldOutRow, field_names, to_dict
    from aplkit.runfolder import RunFolder

    return pd.DataFrame([to_dict(r) for r in RunFolder(run_dir).read(HeldOutRow)], columns=list(field_names(HeldOutRow)))


def export_preferences(runs: str | Path, out: str | Path | None = None, fmt: str = "parquet") -> Path:
    """``aplkit export`` in a cell: the labelled pairs of a run or a sweep folder as a preference data set; prints what it
    wrote and returns the file (``datasets.load_dataset("parquet", data_files=...)`` reads it)."""
    from aplkit.export import export_preferences as export

    e = export(runs, out, fmt)  # type: ignore[arg-type]
    print(e.line())
    return e.path


def judge_bias_summary(
    config: str | Path,
    overrides: list[str] | None = None,
    pairs: str | Path | None = None,
    n: int = 200,
    out: str | Path = "runs/bias/bias.json",
) -> dict[str, Any]:
    """``aplkit judge-bias`` in a cell: the position and length bias of the config's oracle, printed in one line and returned."""
    from aplkit.checks import load_config
    from aplkit.oracles.consistency import bias_line, measure_bias

    result = measure_bias(load_config(config, overrides), pairs, n, out)
    print(bias_line(result))
    return result


# --------------------------------------------------------------------------- analysis notebooks


def show_and_save(fig: Any, figures_dir: str | Path, stem: str) -> list[Path]:
    """Show a figure inline, then write stem.png and stem.pdf (aplkit.results.plots.save closes it)."""
    from aplkit.results.plots import save

    _display(fig)
    return save(fig, figures_dir, stem)


def _no_data(what: str, why: str) -> list[Path]:
    print(f"no data for {what}: {why}")
    return []


def _show_or_no_data(fig: Any, figures_dir: str | Path, stem: str, what: str, why: str) -> list[Path]:
    """``show_and_save`` the figure, or say why there is none (``fig`` is None)."""
    return _no_data(what, why) if fig is None else show_and_save(fig, figures_dir, stem)


def _markdown(text: str) -> None:
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:  # pragma: no cover
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)


def load_main(runs_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, str]]:
    """(all eval rows, the Fig 2 / Table 2 selection, task → 'against'): ``aplkit.results.report.main_runs``;
    prints the selection notes and the unfinished runs."""
    from aplkit.results.report import main_runs

    df, main, notes, against = main_runs(runs_dir)
    for n in notes + [f"unfinished run (included): {r}" for r in df.attrs.get("incomplete", [])]:
        print(n)
    return df, main, against


def fig2_table2(runs_dir: str | Path, figures_dir: str | Path, budget: int | None = None) -> dict[str, Any]:
    """Fig 2 (saved), Table 2, significance vs random and data efficiency (shown as Markdown).

    Returns {"files": [...], "table2": DataFrame, "significance": DataFrame, "efficiency": DataFrame};
    empty files when there are no eval rows.
    """
    from aplkit.results.plots import plot_winrate

    _, main, against = load_main(runs_dir)
    if main.empty or main["win_rate"].isna().all():  # a pool-based run without evaluation.oracle has held-out rows only
        _no_data("Fig 2 / Table 2", f"no run folders with eval.jsonl rows under {runs_dir}")
        return {"files": []}
    files = show_and_save(plot_winrate(winrate_curves(main), against), figures_dir, "fig2_winrate")
    t2 = table2(main)
    _markdown("**Table 2** — win-rate, mean ± SE over seeds\n\n" + to_markdown(t2))
    sig = significance_vs_random(main)
    _markdown("**Significance vs random**\n\n" + significance_markdown(sig))
    eff, notes = efficiency_by_task(main, budget)
    for note in notes:
        print(note)
    if not eff.empty:
        _markdown("**Data efficiency**\n\n" + efficiency_markdown(eff))
    return {"files": files, "table2": t2, "significance": sig, "efficiency": eff}


def fig_frontier(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """The frontier figure of the Fig 2 runs (saved): the win-rate against the KL from θ0, each strategy's best win-rate
    reachable up to each KL after each epoch (``evaluation.epoch_points``) and where each budget's training ended
    (``aplkit.results.report.frontier_figure``); the x-axis is the policy's KL at T = 1 where the runs measured it
    (``evaluation.kl_samples``), else the KL along the test completions, and says which."""
    from aplkit.results.report import frontier_figure

    _, main, _ = load_main(runs_dir)
    fig = frontier_figure(runs_dir, set(main["run"])) if not main.empty else None
    why = f"no run under {runs_dir} has more than one point with a KL from θ0 (a single budget and no evaluation.epoch_points)"
    return _show_or_no_data(fig, figures_dir, "frontier", "the frontier", why)


def arena_comparison(runs_dir: str | Path, figures_dir: str | Path) -> dict[str, Any]:
    """The arena's reading: the ranking figure (saved), each strategy against random with intervals at every size,
    labels random needs, the acquisition cost per step and the difference at matched KL. Returns the frames and the files.

    Pool-based runs (``imdb-cpu-pool``: a preference data set's stored pairs) add their held-out preference accuracy
    against random; without a judge of their generations (no ``evaluation.oracle``) it is what they are ranked and
    compared on, and the readings of the win-rate alone (labels random needs, matched KL) are left out."""
    from aplkit.metrics import metric
    from aplkit.results import (
        acquisition_cost,
        comparison_markdown,
        cost_markdown,
        efficiency_interval_markdown,
        efficiency_intervals,
        kl_matched,
        kl_matched_markdown,
        load_configs,
        load_steps,
        paired_comparison,
        ranking,
        ranking_markdown,
    )
    from aplkit.results.plots import plot_ranking

    _, main, _ = load_main(runs_dir)
    judged = not main.empty and bool(main["win_rate"].notna().any())
    pool = "heldout_accuracy" in main and bool(main["heldout_accuracy"].notna().any())
    if not (judged or pool):
        _no_data("the arena", f"no run folders with eval.jsonl or heldout.jsonl rows under {runs_dir}")
        return {"files": []}
    endpoint = "win_rate" if judged else "heldout_accuracy"
    of = "" if judged else f" in {metric(endpoint).label}"
    if not judged:
        print("no judge of the generations (evaluation.oracle): the pool-based runs are compared on their held-out accuracy")
    cmp = paired_comparison(main, metric=endpoint)
    rank = ranking(cmp, main)
    files = show_and_save(plot_ranking(rank), figures_dir, "ranking") if len(rank) and rank["n"].max() >= 2 else []
    if not files:
        print("no ranking figure: it needs a strategy paired with random on at least 2 seeds")
    _markdown(f"**The strategies at the final size, ranked{of}, one Holm family**\n\n" + ranking_markdown(rank))
    _markdown(f"**Each strategy against random, paired by seed{of}**\n\n" + comparison_markdown(cmp))
    out: dict[str, Any] = {"files": files, "comparison": cmp, "ranking": rank}
    if judged and pool:
        held = paired_comparison(main, metric="heldout_accuracy")
        _markdown(
            "**Held-out preference accuracy (the pool setting's own metric): each strategy against random**\n\n" + comparison_markdown(held)
        )
        out["heldout"] = held
    if judged:
        out["efficiency"] = efficiency_intervals(main, int(main["acquired"].max()))
        _markdown("**Labels random needs to match each strategy**\n\n" + efficiency_interval_markdown(out["efficiency"]))
    steps = load_steps(runs_dir)
    out["cost"] = acquisition_cost(steps[steps["run"].isin(set(main["run"]))], load_configs(runs_dir))
    _markdown("**Acquisition cost per step**\n\n" + cost_markdown(out["cost"]))
    if judged:
        out["kl_matched"] = kl_matched(main)
        _markdown("**Win-rate at matched KL from θ0 (exploratory)**\n\n" + kl_matched_markdown(out["kl_matched"]))
    else:
        print("labels random needs and the matched-KL difference read the win-rate: name evaluation.oracle to measure it")
    return out


def phf_tradeoff(runs_dir: str | Path, figures_dir: str | Path, pool_strata: bool = False) -> dict[str, Any]:
    """PHF's headline (Korbak et al. 2023): the trade-off figure (saved), the table at the last checkpoint,
    each objective − MLE paired by seed with Holm-adjusted intervals and the paper's findings read by their rules
    (``aplkit.results.phf.paper_claims``), from PHF run folders or their committed rows.
    Paired seeds of several code versions or CPUs are refused unless ``pool_strata`` (``aplkit phf-report``)."""
    from aplkit.results.phf import (
        claims_markdown,
        control_token_gap,
        curves,
        load_phf,
        paper_claims,
        phf_strata,
        plot_tradeoff,
        table,
        vs_mle,
        vs_mle_markdown,
    )
    from aplkit.results.phf import to_markdown as phf_markdown

    df = load_phf(runs_dir)
    if df.empty:
        _no_data("the PHF trade-off", f"no PHF run folders (phf_eval.jsonl) under {runs_dir}")
        return {"files": []}
    present, by_stratum = phf_strata(df, pool_strata)
    if by_stratum is not None:
        _markdown("**Each stratum's misalignment − MLE, before pooling**\n\n" + by_stratum)
    c = curves(df)
    files = show_and_save(plot_tradeoff(c), figures_dir, "phf_tradeoff")
    t = table(c)
    _markdown("**Last checkpoint, mean ± SE over seeds**\n\n" + phf_markdown(t))
    v = vs_mle(df)
    _markdown(
        "**Each objective − MLE, paired by seed**\n\n"
        + (vs_mle_markdown(v, present, control_token_gap(df)) if len(v) else "no MLE runs to compare with")
    )
    claims = paper_claims(df) if len(v) else None
    if len(v):
        _markdown("**The paper's findings, each read by its rule**\n\n" + claims_markdown(claims))
    return {"files": files, "curves": c, "table": t, "vs_mle": v, "claims": claims}


def fig3_bt_histograms(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 3 per task from the acquired pairs of the Fig 2 runs (``aplkit.results.report.fig3_per_task``)."""
    from aplkit.results.report import fig3_per_task, main_acquired

    _, main, _ = load_main(runs_dir)
    acq = main_acquired(runs_dir, main)
    if acq.empty:
        return _no_data("Fig 3", f"no acquired.jsonl rows under {runs_dir}")
    files = []
    for task, stem, fig, left_out in fig3_per_task(acq):
        if left_out:
            print(f"{task}: {left_out}")
        files += show_and_save(fig, figures_dir, stem)
    return files


def fig1_consistency(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 1 from consistency.json files (written by ``aplkit judge-consistency``)."""
    from aplkit.results.report import fig1_figure

    why = f"no consistency.json under {runs_dir} (make one with `aplkit judge-consistency`)"
    return _show_or_no_data(fig1_figure(runs_dir), figures_dir, "fig1_consistency", "Fig 1", why)


def fig5_online_vs_reset(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 5: strategies run with training.mode=online against their reset runs."""
    from aplkit.results.report import fig5_figure

    df, _, against = load_main(runs_dir)
    why = f"no training.mode=online runs under {runs_dir}"
    return _show_or_no_data(fig5_figure(df, against), figures_dir, "fig5_online_vs_reset", "Fig 5", why)


def fig6_epochs(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 6: DPO loss per epoch and, when runs differ in training.epochs, win-rate vs epochs."""
    from aplkit.results.report import fig6_figure

    return _show_or_no_data(fig6_figure(runs_dir), figures_dir, "fig6_epochs", "Fig 6", f"no train.jsonl rows under {runs_dir}")


__all__ = [
    "StepDisplay",
    "export_preferences",
    "fig1_consistency",
    "fig2_table2",
    "fig3_bt_histograms",
    "fig5_online_vs_reset",
    "fig6_epochs",
    "heldout_accuracy",
    "judge_bias_summary",
    "fig_frontier",
    "load_main",
    "project_dir",
    "progress_figure",
    "show_and_save",
    "step_table",
    "summary_line",
]
