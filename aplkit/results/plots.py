"""Results, layer 3: every figure, from ``aplkit.results.stats`` frames; one function per figure, each returns a Figure.

Style is fixed so figures from different runs dirs compare at a glance: seaborn whitegrid,
the colour-blind palette, one colour per strategy (random is always grey), the paper's
strategy order, legends outside the data. ``save`` writes PNG (dpi 200) and PDF. ``plot_progress``
is the experiment notebook's live view of one run.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib import ticker

if "matplotlib.pyplot" not in sys.modules and "ipykernel" not in sys.modules and not os.environ.get("DISPLAY"):
    matplotlib.use("Agg")  # headless (CLI, CI, papermill without a kernel display): never try a GUI

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from aplkit.metrics import metric  # noqa: E402
from aplkit.results.load import DISPLAY, strategy_order  # noqa: E402
from aplkit.results.stats import trained_gaps  # noqa: E402

_CB = sns.color_palette("colorblind")
COLORS = {"random": _CB[7], "entropy": _CB[0], "certainty": _CB[1], "entropy+certainty": _CB[2]}
_EXTRA = [_CB[4], _CB[5], _CB[9], _CB[6], _CB[8], _CB[3]]
MARKERS = {"random": "o", "entropy": "s", "certainty": "^", "entropy+certainty": "D"}
CORRECT, INCORRECT = _CB[2], _CB[3]  # green / vermillion, as the paper's green / red
AGAINST = {"initial": "win-rate vs initial model", "reference": "win-rate vs human reference"}


def color(strategy: str, others: Sequence[str] = ()) -> Any:
    """Fixed colour per strategy; strategies beyond the paper's four get the next free colours in sorted order."""
    if strategy in COLORS:
        return COLORS[strategy]
    extra = sorted(s for s in others if s not in COLORS)
    return _EXTRA[extra.index(strategy) % len(_EXTRA)] if strategy in extra else _CB[8]


def label(strategy: str) -> str:
    return DISPLAY.get(strategy, strategy)


@contextlib.contextmanager
def style() -> Iterator[None]:
    """Paper style for the figures made inside; the caller's rcParams are left as they were."""
    with (
        sns.axes_style("whitegrid"),
        sns.plotting_context("paper", font_scale=1.35),
        plt.rc_context({"axes.titleweight": "bold", "legend.frameon": False}),
    ):
        yield


def _task_title(task: str) -> str:
    return {"imdb": "IMDB", "tldr": "TLDR"}.get(task, task)


def _ylabel(against: dict[str, str] | None, task: str) -> str:
    return AGAINST.get((against or {}).get(task, ""), "win-rate").capitalize()


def _task_axes(ax: Any, task: str, t: pd.DataFrame, against: dict[str, str] | None) -> None:
    """Title, axis labels and x ticks (the measured sizes) of one task's win-rate panel."""
    ax.set_title(_task_title(task))
    ax.set_xlabel("Acquired dataset size (labelled pairs)")
    ax.set_ylabel(_ylabel(against, task))
    ax.set_xticks(sorted(t["acquired"].unique()))


def _curve(ax: Any, g: pd.DataFrame, c: Any, m: str, lbl: str, ls: str = "-") -> None:
    g = g.sort_values("acquired")
    x, y, e = g["acquired"].to_numpy(float), g["mean"].to_numpy(float), g["se"].to_numpy(float)
    ax.fill_between(x, y - e, y + e, color=c, alpha=0.15, lw=0)
    ax.errorbar(x, y, yerr=e, color=c, marker=m, ls=ls, lw=2, ms=6, capsize=3, label=lbl)


def _n_note(curves: pd.DataFrame) -> str:
    ns = sorted(set(curves["n"].astype(int)))
    note = f"mean ± SE over {'/'.join(map(str, ns))} seed{'s' if ns != [1] else ''}"
    return note + (" (1 seed: binomial SE)" if (curves["se_kind"] == "binomial").any() else "")


def plot_winrate(curves: pd.DataFrame, against: dict[str, str] | None = None, title: str = "Win-rate at evaluation waypoints") -> Figure:
    """Fig 2: one panel per task, win-rate vs acquired-set size per strategy, mean ± SE.

    When some runs trained on fewer pairs than they acquired (``curves["trained"]``), the caption says by how much.
    """
    tasks = sorted(curves["task"].unique())
    strategies = strategy_order(curves["strategy"])
    with style():
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks) + 1.8, 4.2), squeeze=False, layout="constrained")
        for ax, task in zip(axes[0], tasks, strict=True):
            t = curves[curves["task"] == task]
            for s in strategies:
                g = t[t["strategy"] == s]
                if not g.empty:
                    _curve(ax, g, color(s, strategies), MARKERS.get(s, "v"), label(s))
            _task_axes(ax, task, t, against)
        handles, labels = axes[0][0].get_legend_handles_labels()
        for ax in axes[0][1:]:
            for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True):
                if lbl not in labels:
                    handles.append(h)
                    labels.append(lbl)
        fig.legend(handles, labels, loc="outside right center", title="Acquisition")
        fig.suptitle(f"{title}\n({_n_note(curves)}){_trained_note(curves)}", fontsize="medium")
    return fig


def _trained_note(curves: pd.DataFrame) -> str:
    """A caption line when some runs trained on fewer pairs than the labels acquired on the x-axis ('' otherwise)."""
    gaps = trained_gaps(curves)
    if gaps.empty:
        return ""
    most = float((gaps["acquired"] - gaps["trained"]).max())
    return f"\nties/invalid labels were not trained on:\nup to {most:.3g} fewer pairs trained than acquired (seed mean)"


def _n_no_prediction(g: pd.DataFrame) -> int:
    return int(g["n_no_prediction"].iloc[0]) if "n_no_prediction" in g else 0


def bt_panel_caption(g: pd.DataFrame) -> str:
    """A Fig 3 panel's count line: pairs drawn, then those not drawn (no prediction, tie/invalid label)."""
    no_pred, excl = _n_no_prediction(g), int(g["n_excluded"].iloc[0])
    extra = [f"+{no_pred} no prediction"] if no_pred else []
    extra += [f"+{excl} tie/invalid"] if excl else []
    return f"n={int(g['n_used'].iloc[0])}" + (f" ({', '.join(extra)})" if extra else "")


def plot_bt_hist(hist: pd.DataFrame, max_rows: int = 8) -> Figure:
    """Fig 3: BT-model confidence on acquired pairs; columns = strategies, rows = acquisition steps.

    Red (hatched) bars left of 0.5: pairs the implicit reward model got wrong, further left = more
    confidently wrong; green right of 0.5: correct, further right = more confident. Pairs with
    bt_prob = 0.5 (θ_t = θ0, e.g. all of step 1) predict neither winner: they are not drawn and each
    panel's caption counts them ("no prediction") next to its tie/invalid labels. With more than
    ``max_rows`` steps, evenly spaced steps (first and last included) are shown.
    """
    strategies = strategy_order(hist["strategy"])
    steps = sorted(hist["step"].unique())
    if len(steps) > max_rows:
        steps = [steps[i] for i in sorted(set(np.linspace(0, len(steps) - 1, max_rows).round().astype(int)))]
    with style():
        fig, axes = plt.subplots(
            len(steps),
            len(strategies),
            figsize=(3.4 * len(strategies) + 0.6, 2.3 * len(steps) + 1.2),
            squeeze=False,
            sharex=True,
            sharey="row",
            layout="constrained",
        )
        for i, step in enumerate(steps):
            row = hist[hist["step"] == step]
            axes[i][0].set_ylim(0, max(1, int(row[["incorrect", "correct"]].to_numpy().max())) * 1.3)  # shared across the row
            for j, s in enumerate(strategies):
                ax = axes[i][j]
                g = hist[(hist["strategy"] == s) & (hist["step"] == step)]
                if g.empty:
                    ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="0.5")
                else:
                    w = (g["hi"] - g["lo"]).to_numpy()
                    ax.bar(
                        g["lo"],
                        g["incorrect"],
                        width=w,
                        align="edge",
                        color=INCORRECT,
                        edgecolor="white",
                        hatch="//",
                        lw=0.5,
                        label="incorrect",
                    )
                    ax.bar(g["lo"], g["correct"], width=w, align="edge", color=CORRECT, edgecolor="white", lw=0.5, label="correct")
                    ax.text(
                        0.98,
                        0.97,
                        bt_panel_caption(g),
                        ha="right",
                        transform=ax.transAxes,
                        va="top",
                        fontsize="x-small",
                        color="0.25",
                        bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
                    )
                    if int(g["n_used"].iloc[0]) == 0 and _n_no_prediction(g):
                        ax.text(0.5, 0.45, "no prediction\n(bt_prob = 0.5)", ha="center", va="center", transform=ax.transAxes, color="0.4")
                ax.yaxis.set_major_locator(ticker.MaxNLocator(integer=True))
                ax.axvline(0.5, color="0.3", lw=0.8)
                ax.set_xlim(0, 1)
                if i == 0:
                    ax.set_title(label(s))
                if j == 0:
                    ax.set_ylabel(f"step {step}\npairs")
                ax.set_xticks([0, 0.25, 0.5, 0.75, 1.0], ["0", ".25", ".5", ".75", "1"])
                if i == len(steps) - 1:
                    ax.set_xlabel("mapped BT probability")
        handles, labels = axes[0][0].get_legend_handles_labels()
        if handles:
            fig.legend(handles, ["incorrect: at 1 − p (0 → 0.5)", "correct: at p (0.5 → 1)"], loc="outside lower center", ncols=2)
        fig.suptitle(
            "Implicit Bradley–Terry model on acquired pairs vs the oracle (all seeds)\n"
            "p = confidence in the predicted winner: correct pairs at p, incorrect at 1 − p\n"
            "(left edge = most confidently wrong, right edge = most confidently right)\n"
            "pairs at bt_prob = 0.5 (θ_t = θ0) predict no winner: counted, not drawn",
            fontsize="medium",
        )
    return fig


def plot_consistency(records: Sequence[dict[str, Any]]) -> Figure:
    """Fig 1: oracle self-consistency (agreement of two labels for the same pair) with its CI."""
    recs = list(records)
    names = [str(r["oracle"]) + (f"\nT={r['temperature']}" if r.get("temperature") is not None else "") for r in recs]
    agree = np.array([float(r["agreement"]) for r in recs])
    lo = np.array([float(r.get("ci_low", r["agreement"])) for r in recs])
    hi = np.array([float(r.get("ci_high", r["agreement"])) for r in recs])
    with style():
        fig, ax = plt.subplots(figsize=(max(5.0, 1.4 * len(recs) + 2.0), 4.2), layout="constrained")
        ax.bar(range(len(recs)), agree, color=[_CB[i % len(_CB)] for i in range(len(recs))], width=0.6)
        ax.errorbar(range(len(recs)), agree, yerr=[agree - lo, hi - agree], fmt="none", ecolor="0.2", capsize=4, lw=1.2)
        for k, r in enumerate(recs):
            ax.text(k, min(hi[k] + 0.02, 1.02), f"{agree[k]:.0%}\nn={r.get('n', '?')}", ha="center", va="bottom", fontsize="small")
        ax.set_xticks(range(len(recs)), names)
        ax.set_ylim(0, 1.15)
        ax.set_yticks(np.linspace(0, 1, 6))
        ax.set_ylabel("Self-consistency (fraction of pairs\nlabelled the same twice)")
        ax.yaxis.set_major_formatter(ticker.PercentFormatter(1.0))
        ax.set_title("Oracle self-consistency", fontsize="medium")
        ax.set_xlabel("Oracle (error bars: ci_low – ci_high)")
    return fig


def plot_online_vs_reset(curves: pd.DataFrame, against: dict[str, str] | None = None) -> Figure:
    """Fig 5: per task, each strategy's curve with reset (solid) and online (dashed) fine-tuning."""
    tasks = sorted(curves["task"].unique())
    strategies = strategy_order(curves["strategy"])
    with style():
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.2 * len(tasks) + 2.4, 4.2), squeeze=False, layout="constrained")
        for ax, task in zip(axes[0], tasks, strict=True):
            t = curves[curves["task"] == task]
            for s in strategies:
                for mode, ls in (("reset", "-"), ("online", "--")):
                    g = t[(t["strategy"] == s) & (t["mode"] == mode)]
                    if not g.empty:
                        _curve(ax, g, color(s, strategies), MARKERS.get(s, "v"), f"{label(s)} ({mode})", ls=ls)
            _task_axes(ax, task, t, against)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="outside right center", title="Acquisition (fine-tuning)")
        fig.suptitle(f"Online vs reset fine-tuning ({_n_note(curves)})", fontsize="medium")
    return fig


def plot_epochs(loss: pd.DataFrame, wr: pd.DataFrame | None = None) -> Figure:
    """Fig 6: DPO loss per epoch (one line per acquisition step) and, when runs differ in
    training.epochs, the final win-rate vs epochs per strategy."""
    two = wr is not None and not wr.empty and wr["epochs"].nunique() > 1
    with style():
        fig, axes = plt.subplots(1, 2 if two else 1, figsize=(11.5 if two else 6.2, 4.2), squeeze=False, layout="constrained")
        ax = axes[0][0]
        steps = sorted(loss["step"].unique())
        cmap = plt.get_cmap("viridis")
        for k, step in enumerate(steps):
            g = loss[loss["step"] == step].sort_values("epoch")
            c = cmap(k / max(1, len(steps) - 1) * 0.9)
            ax.plot(g["epoch"], g["loss"], color=c, lw=2, marker="o" if len(g) <= 12 else None, ms=4, label=f"step {step}")
            se = g["se"].fillna(0).to_numpy()
            ax.fill_between(g["epoch"], g["loss"] - se, g["loss"] + se, color=c, alpha=0.15, lw=0)
        ax.set_xlabel("Fine-tuning epoch")
        ax.set_ylabel("DPO loss (mean over runs)")
        ax.set_title("Loss convergence per acquisition step", fontsize="medium")
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="Acquisition", fontsize="small")
        if two:
            ax2 = axes[0][1]
            strategies = strategy_order(wr["strategy"])
            for s in strategies:
                g = wr[wr["strategy"] == s].sort_values("epochs")
                ax2.errorbar(
                    g["epochs"],
                    g["mean"],
                    yerr=g["se"],
                    color=color(s, strategies),
                    marker=MARKERS.get(s, "v"),
                    lw=2,
                    capsize=3,
                    label=label(s),
                )
            ax2.set_xlabel("training.epochs per acquisition step")
            ax2.set_ylabel("Final win-rate (largest waypoint)")
            ax2.set_xticks(sorted(wr["epochs"].unique()))
            ax2.set_title("Final win-rate vs epochs", fontsize="medium")
            ax2.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="Acquisition")
    return fig


def plot_progress(run: dict[str, list[dict[str, Any]]]) -> Figure:
    """One run so far (``load.read_run`` rows). Left: DPO loss per epoch, one line per step. Right: win-rate ± stderr vs acquired labels."""
    train = pd.DataFrame(run["train"])
    ev = pd.DataFrame(run["eval"])
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


# Nothing in a figure file but the figure: the same data gives the same bytes, so re-running the report
# (make demo) leaves committed figures untouched. Matplotlib would stamp the PDF with the time of saving
# and both files with its version.
_PNG_METADATA = {"Software": None}
_PDF_METADATA = {"CreationDate": None, "Creator": None, "Producer": None}


def plot_ranking(rank: pd.DataFrame) -> Figure:
    """Each strategy's final paired difference from random (in ``rank``'s metric, the win-rate's by default) with its
    95 % t interval, best on top (one panel per task).

    ``rank`` is ``compare.ranking``; the dashed line is random. An interval that crosses it is undecided.
    """
    tasks = sorted(rank["task"].unique())
    height = max(2.2, 0.45 * rank.groupby("task").size().max() + 1.2)
    with style():
        fig, axes = plt.subplots(1, len(tasks), figsize=(6.2 * len(tasks), height), squeeze=False)
        for ax, task in zip(axes[0], tasks, strict=True):
            g = rank[rank["task"] == task].sort_values("rank", ascending=False)
            y = np.arange(len(g))
            lo = (g["mean_diff"] - g["t_low"]).to_numpy(float)
            hi = (g["t_high"] - g["mean_diff"]).to_numpy(float)
            for yi, (_, r), a, b in zip(y, g.iterrows(), lo, hi, strict=True):
                err = None if np.isnan(a) else [[a], [b]]
                ax.errorbar(r["mean_diff"], yi, xerr=err, fmt="o", color=color(r["strategy"], g["strategy"]), capsize=4, ms=7)
            ax.axvline(0.0, color=COLORS["random"], ls="--", lw=1.2)
            ax.set_yticks(y, [f"{label(s)} (n={n})" for s, n in zip(g["strategy"], g["n"], strict=True)])
            size = int(g["acquired"].iloc[0])
            field = g["metric"].iloc[0] if "metric" in g else "win_rate"
            ax.set_title(f"{_task_title(task)}: Δ {metric(field).label} vs random at {size} labels")
            ax.set_xlabel("paired difference from random (95 % t interval over seeds)")
        _widen_to_fit(fig)
    return fig


def plot_frontier(
    curves: pd.DataFrame, ends: pd.DataFrame, kl: str = "kl_t1", metric_field: str = "win_rate", legend: str = "Acquisition"
) -> Figure:
    """The frontier figure: per task, the metric against the KL from θ0, one colour per strategy.

    ``curves`` (``frontier.mean_frontiers``): for each budget evaluated after each epoch, the seeds' mean frontier
    (the best value reachable up to each KL, every seed's own) with a ± SE band over seeds, up to the KL all its
    seeds reach. ``ends`` (``frontier.waypoint_means``): where each budget's training ended, the mean (KL, value) with
    SEs over seeds, marked and labelled with its label count and joined from θ0's point in budget order.
    ``legend``: what the curves' ``strategy`` column names (another setting, such as β, in its place).
    """
    x_m, y_m = metric(kl), metric(metric_field)
    tasks = sorted(set(curves["task"]) | set(ends["task"]))
    strategies = strategy_order(set(curves["strategy"]) | set(ends["strategy"]))
    with style():
        fig, axes = plt.subplots(1, len(tasks), figsize=(5.6 * len(tasks) + 1.8, 4.4), squeeze=False, layout="constrained")
        for ax, task in zip(axes[0], tasks, strict=True):
            for s in strategies:
                c, mk = color(s, strategies), MARKERS.get(s, "v")
                e = ends[(ends["task"] == task) & (ends["strategy"] == s)].sort_values("acquired")
                for _, g in curves[(curves["task"] == task) & (curves["strategy"] == s)].groupby("acquired", sort=True):
                    x, y, se = g["kl"].to_numpy(float), g["mean"].to_numpy(float), g["se"].to_numpy(float)
                    ax.fill_between(x, y - se, y + se, color=c, alpha=0.15, lw=0)
                    ax.plot(x, y, color=c, lw=2)
                if e.empty:
                    continue
                x = np.concatenate([[0.0], e["kl"].to_numpy(float)])
                y = np.concatenate([[y_m.at_theta0 if y_m.at_theta0 is not None else np.nan], e["mean"].to_numpy(float)])
                ax.plot(x, y, color=c, lw=1, ls=":")
                ax.errorbar(
                    e["kl"], e["mean"], xerr=e["kl_se"], yerr=e["se"], color=c, marker=mk, ls="none", ms=7, capsize=3, label=label(s)
                )
                for r in e.itertuples():
                    ax.annotate(str(r.acquired), (r.kl, r.mean), textcoords="offset points", xytext=(5, -11), fontsize="x-small", color=c)
            if y_m.at_theta0 is not None:
                ax.plot([0.0], [y_m.at_theta0], marker="*", color="black", ms=10, ls="none", label="θ0")
            ax.set_title(_task_title(task))
            ax.set_xlabel(f"{x_m.title} (nats)")
            ax.set_ylabel(y_m.title)
        handles, labels = [], []
        for ax in axes[0]:
            for h, lbl in zip(*ax.get_legend_handles_labels(), strict=True):
                if lbl not in labels:
                    handles.append(h)
                    labels.append(lbl)
        fig.legend(handles, labels, loc="outside right center", title=legend)
        ns = sorted(set(ends["n"].astype(int)) | set(curves["n"].astype(int)))
        n = "/".join(map(str, ns))
        seeds = f"mean ± SE over {n} seed{'s' if ns != [1] else ''}"
        if curves.empty:  # several budgets, no per-epoch points: where each budget's training ended
            head = f"{y_m.title} against the KL from θ0 at each budget\n{seeds}; no evaluations after earlier epochs"
        else:
            head = f"Frontier: the best {y_m.short} reachable up to each KL from θ0\nlines: after each epoch, {seeds}"
        fig.suptitle(f"{head}\nmarkers: where each budget's training ended (labels acquired)", fontsize="medium")
    return fig


def _widen_to_fit(fig: Figure, tries: int = 4) -> None:
    """Widen the figure until its titles and labels fit: long strategy names push the axes right, and a title
    centred on them then runs off the canvas, which ``tight_layout`` alone cannot mend (it never resizes)."""
    for _ in range(tries):
        fig.tight_layout()
        fig.canvas.draw()
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches
        width = fig.get_figwidth()
        over = max(0.0, -box.x0) + max(0.0, box.x1 - width)
        if over <= 0.01:
            return
        fig.set_figwidth(width + over + 0.1)
    fig.tight_layout()


def save(fig: Figure, out_dir: str | Path, stem: str, dpi: int = 200) -> list[Path]:
    """Write ``stem``.png and ``stem``.pdf into out_dir (byte-for-byte reproducible) and close the figure."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=dpi, metadata=_PNG_METADATA)
    fig.savefig(paths[1], metadata=_PDF_METADATA)
    plt.close(fig)
    return paths
