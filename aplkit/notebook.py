"""What the notebooks show, as plain functions: the cells stay one-liners and the logic is tested.

``StepDisplay`` is the experiment notebook's ``on_step`` callback: after each acquisition step it
re-reads the run folder (so a resumed run shows its earlier steps too) and updates one table and
one figure in place. The ``fig*`` functions are the analysis notebooks' cells; each returns the
files it wrote, or ``[]`` with a printed note when the runs dir has no data for that figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from aplkit import analysis as A
from aplkit.runfolder import read_jsonl

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
    and is counted in no_prediction instead, the rule of ``analysis.bt_histogram``; pref_y1: label
    balance, the fraction of labelled pairs won by y1; unlabelled: ties and invalid answers (not trained on).
    """
    from aplkit.analysis import NO_PREDICTION_TOL

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


def step_table(run_dir: str | Path) -> pd.DataFrame:
    """One row per finished acquisition step of a run folder (STEP_COLUMNS).

    labels: acquired-set size after the step; loss: the DPO loss per epoch as "a → b → c";
    win_rate/stderr: blank for steps that are not evaluation waypoints.
    """
    d = Path(run_dir)
    acquired: dict[int, list[dict]] = {}
    for r in read_jsonl(d / "acquired.jsonl"):
        acquired.setdefault(int(r["step"]), []).append(r)
    losses: dict[int, list[float]] = {}
    for r in sorted(read_jsonl(d / "train.jsonl"), key=lambda r: (int(r["step"]), int(r["epoch"]))):
        losses.setdefault(int(r["step"]), []).append(float(r["loss"]))
    evals = {int(r["step"]): r for r in read_jsonl(d / "eval.jsonl")}
    rows = []
    for s in read_jsonl(d / "steps.jsonl"):
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


def progress_figure(run_dir: str | Path):
    """Left: DPO loss per epoch, one line per step. Right: win-rate ± stderr vs acquired labels."""
    import matplotlib.pyplot as plt

    d = Path(run_dir)
    train = pd.DataFrame(list(read_jsonl(d / "train.jsonl")))
    ev = pd.DataFrame(list(read_jsonl(d / "eval.jsonl")))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9.5, 3.2), layout="constrained")
    if not train.empty:
        for step, g in train.groupby("step"):
            g = g.sort_values("epoch")
            ax1.plot(g["epoch"], g["loss"], marker="o", ms=3, label=f"step {step}")
        ax1.legend(fontsize="small")
    ax1.set(xlabel="epoch", ylabel="DPO loss", title="Training loss")
    if not ev.empty:
        ev = ev.sort_values("acquired")
        ax2.errorbar(ev["acquired"], ev["win_rate"], yerr=ev["stderr"], marker="o", capsize=3)
        ax2.set_xticks(ev["acquired"].tolist())
    ax2.axhline(0.5, color="0.6", lw=1, ls=":")
    ax2.set(xlabel="acquired labels", ylabel="win-rate", ylim=(0, 1), title="Win-rate so far")
    return fig


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


class StepDisplay:
    """``on_step`` callback: a per-step table and a loss / win-rate figure, updated in place."""

    def __init__(self, run_dir: str | Path, plot: bool = True):
        self.run_dir = Path(run_dir)
        self.plot = plot
        self._table = None
        self._fig = None

    def show(self) -> pd.DataFrame:
        """Draw (or redraw) from the run folder; returns the step table."""
        table = step_table(self.run_dir)
        self._table = _display(table.set_index("step") if len(table) else "no finished steps yet", self._table)
        if self.plot and len(table):
            import matplotlib.pyplot as plt

            fig = progress_figure(self.run_dir)
            self._fig = _display(fig, self._fig)
            plt.close(fig)
        return table

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


# --------------------------------------------------------------------------- analysis notebooks


def show_and_save(fig: Any, figures_dir: str | Path, stem: str) -> list[Path]:
    """Show a figure inline, then write stem.png and stem.pdf (aplkit.plots.save closes it)."""
    from aplkit import plots as P

    _display(fig)
    return P.save(fig, figures_dir, stem)


def _no_data(what: str, why: str) -> list[Path]:
    print(f"no data for {what}: {why}")
    return []


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
    """(all eval rows, the Fig 2 / Table 2 selection, task → 'against'); prints the selection notes."""
    df = A.load_runs(runs_dir)
    if df.empty:
        return df, df, {}
    main, notes = A.select_main(df)
    for n in notes + [f"unfinished run (included): {r}" for r in df.attrs.get("incomplete", [])]:
        print(n)
    against = df.dropna(subset=["against"]).groupby("task")["against"].first().to_dict()
    return df, main, against


def fig2_table2(runs_dir: str | Path, figures_dir: str | Path, budget: int | None = None) -> dict[str, Any]:
    """Fig 2 (saved), Table 2, significance vs random and data efficiency (shown as Markdown).

    Returns {"files": [...], "table2": DataFrame, "significance": DataFrame, "efficiency": DataFrame};
    empty files when there are no eval rows.
    """
    from aplkit import plots as P
    from aplkit.report import efficiency_markdown, significance_markdown

    _, main, against = load_main(runs_dir)
    if main.empty:
        _no_data("Fig 2 / Table 2", f"no run folders with eval.jsonl rows under {runs_dir}")
        return {"files": []}
    files = show_and_save(P.plot_winrate(A.winrate_curves(main), against), figures_dir, "fig2_winrate")
    t2 = A.table2(main)
    _markdown("**Table 2** — win-rate, mean ± SE over seeds\n\n" + A.to_markdown(t2))
    sig = A.significance_vs_random(main)
    _markdown("**Significance vs random**\n\n" + significance_markdown(sig))
    eff, notes = A.efficiency_by_task(main, budget)
    for note in notes:
        print(note)
    if not eff.empty:
        _markdown("**Data efficiency**\n\n" + efficiency_markdown(eff))
    return {"files": files, "table2": t2, "significance": sig, "efficiency": eff}


def fig3_bt_histograms(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 3 per task from the acquired pairs of the Fig 2 runs."""
    from aplkit import plots as P

    _, main, _ = load_main(runs_dir)
    acq = A.load_acquired(runs_dir)
    acq = acq[acq["run"].isin(set(main["run"]))] if not main.empty else acq
    if acq.empty:
        return _no_data("Fig 3", f"no acquired.jsonl rows under {runs_dir}")
    files = []
    for task, g in acq.groupby("task"):
        hist = A.bt_histograms(g)
        left_out = A.bt_left_out_note(hist)
        if left_out:
            print(f"{task}: {left_out}")
        stem = "fig3_bt_hist" if acq["task"].nunique() == 1 else f"fig3_bt_hist_{task}"
        files += show_and_save(P.plot_bt_hist(hist), figures_dir, stem)
    return files


def fig1_consistency(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 1 from consistency.json files (written by ``aplkit judge-consistency``)."""
    from aplkit import plots as P

    recs = A.load_consistency(runs_dir)
    if not recs:
        return _no_data("Fig 1", f"no consistency.json under {runs_dir} (make one with `aplkit judge-consistency`)")
    return show_and_save(P.plot_consistency(recs), figures_dir, "fig1_consistency")


def fig5_online_vs_reset(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 5: strategies run with training.mode=online against their reset runs."""
    from aplkit import plots as P

    df, _, against = load_main(runs_dir)
    ovr = A.online_vs_reset(df) if not df.empty else pd.DataFrame()
    if ovr.empty:
        return _no_data("Fig 5", f"no training.mode=online runs under {runs_dir}")
    return show_and_save(P.plot_online_vs_reset(ovr, against), figures_dir, "fig5_online_vs_reset")


def fig6_epochs(runs_dir: str | Path, figures_dir: str | Path) -> list[Path]:
    """Fig 6: DPO loss per epoch and, when runs differ in training.epochs, win-rate vs epochs."""
    from aplkit import plots as P

    train = A.load_train(runs_dir)
    if train.empty:
        return _no_data("Fig 6", f"no train.jsonl rows under {runs_dir}")
    df = A.load_runs(runs_dir)
    wr = A.winrate_vs_epochs(df) if not df.empty else None
    return show_and_save(P.plot_epochs(A.loss_curves(train), wr), figures_dir, "fig6_epochs")


def project_dir(start: str | Path | None = None) -> Path:
    """Where relative paths in a notebook's parameters point: the project root.

    JupyterLab starts a kernel in the notebook's own folder (``notebooks/``), papermill and the
    sweep in the caller's; both should read ``runs/…`` and ``params/…`` from the same place.
    """
    here = Path(start or Path.cwd()).resolve()
    return here.parent if here.name == "notebooks" else here


__all__ = [
    "StepDisplay",
    "batch_stats",
    "fig1_consistency",
    "fig2_table2",
    "fig3_bt_histograms",
    "fig5_online_vs_reset",
    "fig6_epochs",
    "load_main",
    "project_dir",
    "progress_figure",
    "show_and_save",
    "step_table",
    "summary_line",
]
