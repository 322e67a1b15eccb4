"""Results, layer 3: tables as text — Table 2 and every Markdown / LaTeX / CSV formatter.

``table2`` arranges ``stats.winrate_curves`` as the paper's Table 2 (cells "mean ± SE", best per row
marked); ``to_markdown`` / ``to_latex`` / ``to_csv`` write it; ``significance_markdown`` and
``efficiency_markdown`` write ``compare.significance_vs_random`` and ``stats.data_efficiency``;
``metrics_markdown`` / ``metrics_to_csv`` write ``stats.companion_metrics`` (the win-rate's companions).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from aplkit.metrics import COMPANION_METRICS, METRICS, Metric, metric, shown
from aplkit.results.compare import MIN_STRATUM_SEEDS
from aplkit.results.load import DISPLAY, strategy_order
from aplkit.results.stats import trained_gaps, winrate_curves

# --------------------------------------------------------------------------- Table 2


def format_cell(mean: float, se: float) -> str:
    """The paper's Table 2 cell: mean to 2 d.p. ± standard error to 3 d.p."""
    return f"{mean:.2f} ± {se:.3f}"


def table2(df: pd.DataFrame) -> pd.DataFrame:
    """Table 2: rows = acquired size (with a dataset level when several tasks), columns = strategies.

    Cells are ``format_cell`` strings. ``attrs["stats"]`` holds the numeric mean/se/n per cell and
    ``attrs["best"]`` maps each row key to the strategies with the highest mean (exact ties all marked);
    the writers below use both.
    """
    curves = winrate_curves(df)
    strategies = strategy_order(curves["strategy"])
    multi = curves["task"].nunique() > 1
    index = ["task", "acquired"] if multi else ["acquired"]
    curves = curves.assign(cell=[format_cell(m, s) for m, s in zip(curves["mean"], curves["se"], strict=True)])
    table = curves.pivot(index=index, columns="strategy", values="cell").reindex(columns=strategies).fillna("–")
    table.columns.name = None
    best: dict[Any, list[str]] = {}
    for key, g in curves.groupby(index, sort=True):
        top = g["mean"].max()
        best[key[0] if not multi else key] = [s for s in strategies if s in set(g.loc[g["mean"] == top, "strategy"])]
    table.attrs["stats"] = curves.drop(columns="cell")
    table.attrs["best"] = best
    return table


def _rows(table: pd.DataFrame) -> list[tuple[Any, list[str], list[str]]]:
    """(row key, header cells for the index, [(strategy, cell)]) with a flag for the best."""
    out = []
    best = table.attrs.get("best", {})
    for key, row in table.iterrows():
        idx_cells = [str(k) for k in key] if isinstance(key, tuple) else [str(key)]
        out.append((key, idx_cells, [(s, row[s], s in best.get(key, [])) for s in table.columns]))
    return out


def _footnote(table: pd.DataFrame) -> str:
    stats = table.attrs.get("stats")
    if stats is None or stats.empty:
        return ""
    ns = sorted(set(stats["n"].astype(int)))
    text = f"Mean win-rate ± standard error over seeds (n = {', '.join(map(str, ns))}); best per row in bold."
    if (stats["se_kind"] == "binomial").any():
        text += " Cells from a single seed use that run's binomial stderr from eval.jsonl."
    if not trained_gaps(stats).empty:
        text += (
            " Size = labels acquired; some runs trained on fewer pairs (ties/invalid labels dropped): see the trained column of the CSV."
        )
    return text


def _index_names(table: pd.DataFrame) -> list[str]:
    return ["Dataset", "Size"] if table.index.nlevels > 1 else ["Size"]


def to_markdown(table: pd.DataFrame) -> str:
    """GitHub Markdown of ``table2`` output; the best cell per row in **bold**."""
    head = [*_index_names(table), *(DISPLAY.get(s, s) for s in table.columns)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(_index_names(table)) + ["---:"] * len(table.columns)) + "|"]
    for _, idx, cells in _rows(table):
        body = [f"**{c}**" if b else c for _, c, b in cells]
        lines.append("| " + " | ".join(idx + body) + " |")
    foot = _footnote(table)
    return "\n".join(lines) + ("\n\n" + foot if foot else "") + "\n"


def _tex(s: str) -> str:
    return s.replace("\\", r"\textbackslash{}").replace("&", r"\&").replace("%", r"\%").replace("_", r"\_").replace("#", r"\#")


def to_latex(table: pd.DataFrame, caption: str | None = None, label: str = "tab:winrate") -> str:
    """A booktabs LaTeX table of ``table2`` output; the best cell per row in \\textbf{}."""
    k = len(_index_names(table))
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\begin{tabular}{" + "l" * k + "c" * len(table.columns) + "}",
        r"\toprule",
        " & ".join([*_index_names(table), *(_tex(DISPLAY.get(s, s)) for s in table.columns)]) + r" \\",
        r"\midrule",
    ]
    for _, idx, cells in _rows(table):
        body = []
        for _, c, b in cells:
            c = c.replace("±", r"$\pm$").replace("–", "--")
            body.append(rf"\textbf{{{c}}}" if b else c)
        lines.append(" & ".join([_tex(i) for i in idx] + body) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines.append(r"\caption{" + _tex(caption or _footnote(table)) + "}")
    lines += [r"\label{" + label + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: pd.DataFrame, path: str | Path) -> Path:
    """The raw numbers behind ``table2``: one row per (task, size, strategy) with trained (mean pairs trained on over
    seeds, blank when unknown), mean, se, n, se_kind, best."""
    stats = table.attrs["stats"].copy()
    best = table.attrs.get("best", {})
    multi = table.index.nlevels > 1
    stats["best"] = [
        s in best.get((t, a) if multi else a, []) for t, a, s in zip(stats["task"], stats["acquired"], stats["strategy"], strict=True)
    ]
    stats["cell"] = [format_cell(m, s) for m, s in zip(stats["mean"], stats["se"], strict=True)]
    stats.to_csv(path, index=False)
    return Path(path)


# --------------------------------------------------------------------------- significance and data efficiency


def _fmt_p(p: float) -> str:
    return "n/a" if p is None or (isinstance(p, float) and math.isnan(p)) else (f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}")


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


PAIRED_HEADER = ["Dataset", "Size", "Strategy", "Seeds", "Δ vs random"]  # the headings of ``_paired_cells``


def _paired_cells(r: Any) -> list[str]:
    """The first cells of a row comparing a strategy with random: dataset, size, strategy, seeds, mean difference."""
    return [r.task, str(r.acquired), DISPLAY.get(r.strategy, r.strategy), str(r.n), f"{r.mean_diff:+.3f}"]


def _ci(lo: float, hi: float) -> str:
    return "n/a" if math.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"


def significance_markdown(sig: pd.DataFrame, metric: str = "win_rate") -> str:
    """significance_vs_random (in ``metric``) as Markdown: raw and Holm-adjusted p-values side by side; 'n/a' where
    there is nothing to test."""
    rows = []
    for r in sig.itertuples():
        se = "n/a" if math.isnan(r.se) else f"{r.se:.3f}"
        rows.append(
            [
                *_paired_cells(r),
                se,
                _fmt_p(r.t_p),
                _fmt_p(r.t_p_holm),
                _fmt_p(r.wilcoxon_p),
                _fmt_p(r.wilcoxon_p_holm),
            ]
        )
    header = [
        "Dataset",
        "Size",
        "Strategy",
        "Seeds",
        f"Δ {METRIC_NAMES.get(metric, metric)} vs random",
        "SE",
        "paired t p",
        "t p (Holm)",
        "Wilcoxon p",
        "Wilcoxon p (Holm)",
    ]
    text = _md(header, rows)
    text += "\nPaired over seeds run with both the strategy and random; Wilcoxon signed-rank only with ≥ 6 pairs.\n"
    families = []
    for task, g in sig.groupby("task", sort=True):
        m_t, m_w = int(g["t_p"].notna().sum()), int(g["wilcoxon_p"].notna().sum())
        families.append(f"{task}: {m_t} t-test(s), {m_w} Wilcoxon test(s)")
    text += (
        "Holm columns: Holm step-down adjustment (family-wise error) over the family of every test of that kind in this "
        "table for the same dataset — all strategies vs random at all sizes; tests reported n/a are not in the family"
        + (f" ({'; '.join(families)})" if families else "")
        + ".\n"
    )
    return text


def efficiency_markdown(eff: pd.DataFrame) -> str:
    """data_efficiency as Markdown, with its caveats as footnotes."""
    rows, notes = [], []
    for r in eff.itertuples():
        labels = "never (in range)" if math.isinf(r.labels_random) else f"{r.labels_random:.0f}"
        ratio = "∞" if math.isinf(r.ratio) else f"{r.ratio:.2f}×"
        mark = ""
        if r.note:
            notes.append(r.note)
            mark = f" [{len(notes)}]"
        rows.append([r.task, DISPLAY.get(r.strategy, r.strategy), str(r.budget), f"{r.win_rate:.3f}", labels + mark, ratio])
    text = _md(["Dataset", "Strategy", "Labels", "Mean win-rate", "Labels random needs", "Ratio"], rows)
    text += "\nRandom's mean curve over the seeds each strategy ran (paired), made monotone (running max) and interpolated linearly over its measured sizes.\n"
    return text + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, 1)) + ("\n" if notes else "")


# --------------------------------------------------------------------------- beside every win-rate


def _nan(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pm(mean: float, se: float, fmt: str, se_fmt: str = ".3f") -> str:
    """ "mean ± se" (the SE left out where there is none); "–" where the metric was not recorded."""
    if _nan(mean):
        return "–"
    return f"{mean:{fmt}}" if _nan(se) else f"{mean:{fmt}} ± {se:{se_fmt}}"


def _companion_cell(r: Any, m: Metric) -> str:
    """A metric's cell of ``metrics_markdown``: mean ± SE over seeds; one with a θ0 column: its mean, then the change from θ0's ± SE."""
    value = getattr(r, m.field)
    if m.theta0 is None:
        return _pm(value, getattr(r, f"{m.field}_se"), m.fmt)
    if _nan(value):
        return "–"
    delta = getattr(r, f"{m.field}_delta")
    if _nan(delta):
        return f"{value:{m.fmt}}"
    return f"{value:{m.fmt}} ({_pm(delta, getattr(r, f'{m.field}_delta_se'), '+' + m.fmt.lstrip('+'))})"


def _and(words: list[str]) -> str:
    """a, b and c."""
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else "".join(words)


def metrics_markdown(metrics: pd.DataFrame) -> str:
    """``stats.companion_metrics`` as Markdown: beside every win-rate its companions (``aplkit.metrics``: soft win-rate,
    reward gap, KL from θ0 and LM loss, Δ vs θ0), one column and one footnote line each."""
    ms = shown(metrics)
    rows = [
        [str(r.task), str(r.acquired), DISPLAY.get(r.strategy, r.strategy), *(_companion_cell(r, m) for m in ms)]
        for r in metrics.itertuples()
    ]
    header = ["Dataset", "Size", "Strategy", *(m.title + (" (Δ vs θ0)" if m.theta0 else "") for m in ms)]
    text = _md(header, rows)
    companions = [m for m in ms if m in COMPANION_METRICS]
    held = [m for m in companions if m.row == "heldout"]  # a pool-based run's: from its held-out pairs, not the test prompts
    counted = ["win_rate_n"] + [f"{m.field}_n" for m in held]  # the seeds of a study without a judge are its held-out rows'
    ns = next((sorted({int(n) for n in metrics[c].dropna()}) for c in counted if c in metrics and metrics[c].notna().any()), [])
    with_se = [f"{m.short}'s" for m in companions if m.se and m.row == "eval"]
    without = [f"the {m.short}" for m in companions if not m.se]
    source = "all from the same test prompts as the win-rate" + (
        f", the {_and([m.short for m in held])} from the pool's held-out pairs" if held else ""
    )
    text += (
        f"\nMean ± standard error over seeds (n = {', '.join(map(str, ns)) or '–'}), {source}. "
        f"With a single seed the win-rate's SE is binomial, and the {_and(with_se)} are over the test prompts"
        + (f"; {_and(without)} {'has' if len(without) == 1 else 'have'} none" if without else "")
        + ".\n\n"
        + "".join(f"- {m.title}: {m.doc}\n" for m in companions)
        + "- '–': not recorded (an oracle without probabilities or scores, evaluation.lm_texts = 0, or a run from before these metrics).\n"
    )
    return text


def metrics_to_csv(metrics: pd.DataFrame, path: str | Path) -> Path:
    """The numbers behind ``metrics_markdown``: ``stats.companion_metrics`` as CSV."""
    metrics.to_csv(path, index=False)
    return Path(path)


#: how a table names each metric of ``aplkit.metrics``
METRIC_NAMES = {m.field: m.label for m in METRICS}


def precision_markdown(prec: pd.DataFrame) -> str:
    """compare.precision as Markdown: is each strategy's interval against random at the final size within the target?"""
    rows = []
    for r in prec.itertuples():
        half = "n/a" if math.isnan(r.half_width) else f"±{r.half_width:.3f}"
        need = "n/a" if math.isnan(r.seeds_for_target) else "∞" if math.isinf(r.seeds_for_target) else f"{r.seeds_for_target:.0f}"
        rows.append(
            [
                r.task,
                str(r.acquired),
                DISPLAY.get(r.strategy, r.strategy),
                str(r.n),
                f"{r.mean_diff:+.3f}",
                half,
                "yes" if r.within else "no",
                need,
            ]
        )
    target = f"±{prec['target'].iloc[0]:.2f}" if len(prec) else "the target"
    header = [*PAIRED_HEADER, "95 % t half-width", f"Within {target}", f"Seeds for {target}"]
    return _md(header, rows) + (
        f"\nAt the final size. Seeds for {target}: the fewest paired seeds whose 95 % t interval would be no wider, "
        "at the spread observed so far (t(0.975, n − 1) · sd / √n).\n"
    )


def comparison_markdown(cmp: pd.DataFrame) -> str:
    """compare.paired_comparison as Markdown: the paired difference with both 95 % intervals and a verdict.

    A table of companion metrics (``metric`` other than the win-rate, several concatenated) gets a Metric column.
    """
    by_metric = "metric" in cmp and set(cmp["metric"]) - {"win_rate"}
    rows = []
    for r in cmp.itertuples():
        seeds = "n/a" if math.isnan(r.seeds_80) else f"{r.seeds_80:.0f}"
        cells = _paired_cells(r)
        rows.append(
            [
                *([METRIC_NAMES.get(r.metric, r.metric)] if by_metric else []),
                *cells,
                _ci(r.t_low, r.t_high),
                _ci(r.boot_low, r.boot_high),
                f"{r.p_improve:.2f}",
                r.verdict,
                seeds,
            ]
        )
    header = [
        *(["Metric"] if by_metric else []),
        *PAIRED_HEADER,
        "95 % CI (t)",
        "95 % CI (bootstrap)",
        "P(improve)",
        "Verdict",
        "Seeds for 80 % power at +0.05",
    ]
    text = _md(header, rows)
    return text + (
        "\nPaired by seed. Verdict from the t interval: better / worse when it excludes 0, else undecided. "
        "P(improve): share of seeds on which the strategy beat random (ties ½). Power: paired t-test, α = 0.05, at the observed spread.\n"
    )


def ranking_markdown(rank: pd.DataFrame) -> str:
    """compare.ranking as Markdown: rank, the paired difference from random, its 95 % t interval, and the Holm
    p, interval and verdict over the ranked strategies (the family a reader compares at once)."""
    if rank.empty:
        return "no strategy paired with random yet\n"
    rows = [
        [
            str(r.rank),
            *_paired_cells(r),
            _ci(r.t_low, r.t_high),
            f"{r.p_improve:.2f}",
            _fmt_p(r.p_holm),
            _ci(r.holm_low, r.holm_high),
            r.holm_verdict,
        ]
        for r in rank.itertuples()
    ]
    header = [
        "Rank",
        *PAIRED_HEADER,
        "95 % CI (t)",
        "P(improve)",
        "t p (Holm)",
        "Holm CI",
        "Verdict",
    ]
    return _md(header, rows) + (
        "\nBest point estimate first; the order is not a result where the intervals overlap. Holm over the ranked "
        "strategies of a dataset; the verdict reads the Holm interval: better / worse than random when it excludes 0, "
        "else undecided.\n"
    )


def _directions(fields: list[str]) -> str:
    """Which way is better for each metric, in words: "higher win-rate, lower LM loss; KL from θ0 reads higher /
    lower"."""
    higher = [metric(f).label for f in fields if metric(f).higher_is_better]
    lower = [metric(f).label for f in fields if metric(f).higher_is_better is False]
    neither = [metric(f).label for f in fields if metric(f).higher_is_better is None]
    good = ", ".join([*([f"higher {_and(higher)}"] if higher else []), *([f"lower {_and(lower)}"] if lower else [])])
    return good + (f"; {_and(neither)} read{'s' if len(neither) == 1 else ''} higher / lower, judged neither way" if neither else "")


def against_markdown(cmp: pd.DataFrame, arm: str, baseline: str = "DPO") -> str:
    """compare.paired_against as Markdown: ``arm`` − ``baseline`` per metric, size and strategy, both 95 % intervals,
    the Holm-adjusted p and its interval, and the verdict in the metric's good direction."""
    rows = [
        [METRIC_NAMES.get(r.metric, r.metric), *_paired_cells(r), _ci(r.t_low, r.t_high), _ci(r.boot_low, r.boot_high)]
        + [_fmt_p(r.p_holm), _ci(r.holm_low, r.holm_high), r.verdict]
        for r in cmp.itertuples()
    ]
    header = ["Metric", "Dataset", "Size", "Strategy", "Seeds", f"{arm} − {baseline}", "95 % CI (t)", "95 % CI (bootstrap)"]
    header += ["t p (Holm)", "Holm CI", "Verdict"]
    return _md(header, rows) + (
        f"\nPaired by strategy, seed and labels: each {arm} run with the {baseline} run of the same strategy and seed. "
        "Holm over every size and strategy of one metric; the verdict reads the Holm interval: better / worse for "
        f"{arm} when it excludes 0 ({_directions(list(dict.fromkeys(cmp['metric'])))}), else undecided; n/a where nothing can be "
        "tested (one seed, or the same difference on every seed).\n"
    )


def cost_markdown(cost: pd.DataFrame) -> str:
    """compare.acquisition_cost as Markdown: what each strategy's acquisition costs per step, beside random's."""
    if cost.empty:
        return "no steps.jsonl rows with acquisition seconds\n"
    f = lambda x, fmt: "n/a" if _nan(x) else format(x, fmt)  # noqa: E731
    rows = [
        [
            r.task,
            DISPLAY.get(r.strategy, r.strategy),
            str(r.runs),
            f(r.acquire_s, ".2f"),
            f(r.seconds_ratio, ".2f") + ("×" if not _nan(r.seconds_ratio) else ""),
            f(r.passes, ".0f"),
            f(r.flops_ratio, ".2f") + ("×" if not _nan(r.flops_ratio) else ""),
        ]
        for r in cost.itertuples()
    ]
    text = _md(["Dataset", "Strategy", "Runs", "Acquire s / step", "÷ random", "Sequence passes / step", "FLOPs ÷ random"], rows)
    return text + (
        "\nSeconds: steps.jsonl `acquire_s`, mean over runs and steps (machine- and load-dependent; ÷ random against random's runs of the same seeds). Passes: sampled completions "
        "plus forward passes over (x, y), from each scorer's declared cost (step 1 at θ0; no policy pass for the pairs "
        "where the sampler recorded their log-probs, fp32); bald's output-head products "
        "counted as full passes (an upper bound). n/a: a scorer that declares no cost.\n"
    )


def efficiency_interval_markdown(eff: pd.DataFrame) -> str:
    """compare.efficiency_intervals as Markdown."""
    rows = []
    for r in eff.itertuples():
        fmt = lambda x: "n/a" if math.isnan(x) else "∞" if math.isinf(x) else f"{x:.2f}×"  # noqa: E731
        rows.append(
            [
                r.task,
                DISPLAY.get(r.strategy, r.strategy),
                str(r.budget),
                f"{r.win_rate:.3f}",
                fmt(r.ratio),
                f"[{fmt(r.ratio_low)}, {fmt(r.ratio_high)}]",
            ]
        )
    text = _md(["Dataset", "Strategy", "Labels", "Mean win-rate", "Labels random needs ÷ labels", "95 % bootstrap interval (seeds)"], rows)
    return text + "\n∞: random's mean curve never reaches that win-rate within the measured range (not a measured saving).\n"


def kl_matched_markdown(m: pd.DataFrame) -> str:
    """compare.kl_matched as Markdown."""
    if m.empty:
        return "no run recorded its KL from θ0: no matched-KL comparison\n"
    rows = [
        [
            r.task,
            DISPLAY.get(r.strategy, r.strategy),
            str(r.n),
            "n/a" if math.isnan(r.kl) else f"{r.kl:.2f}",
            "n/a" if math.isnan(r.mean_diff) else f"{r.mean_diff:+.3f}",
            _ci(r.t_low, r.t_high),
            _ci(r.boot_low, r.boot_high),
            "n/a" if math.isnan(r.p_improve) else f"{r.p_improve:.2f}",
            r.verdict,
        ]
        for r in m.itertuples()
    ]
    head = [
        "Dataset",
        "Strategy",
        "Seeds",
        "Mean matched KL",
        "Δ win-rate vs random",
        "95 % CI (t)",
        "95 % CI (bootstrap)",
        "P(improve)",
        "Verdict",
    ]
    return _md(head, rows) + (
        f"\nPer seed, both runs read at the smaller of their {metric('kl').label} at {int(m['acquired'].max())} labels (the other on its own "
        "(KL, win-rate) curve through θ0's (0, 0.5)): is a lead a better direction or only a longer step? Each strategy its own "
        "question, no multiplicity correction (exploratory).\n"
    )


def against_frontier_markdown(table: pd.DataFrame) -> str:
    """Points read against a reference frontier (``frontier.against_frontier`` with a ``beta`` column naming each
    run's setting) as Markdown: per point its epoch ("last": the waypoint's own row), KL, value, the reference's
    value there and the difference (n/a beyond its reach), and the reading."""
    rows = [
        [
            f"{r.beta:g}",
            "last" if pd.isna(r.epoch) else str(int(r.epoch)),
            f"{r.kl:.3f}",
            f"{r.value:.3f}",
            *(("n/a", "n/a") if math.isnan(r.frontier) else (f"{r.frontier:.3f}", f"{r.difference:+.3f}")),
            r.reading,
        ]
        for r in table.itertuples()
    ]
    return _md(["β", "Epoch", "KL", "Value", "Preset's frontier", "Difference", "Reading"], rows)


def frontier_markdown(cmp: pd.DataFrame, kl: str = "kl_t1") -> str:
    """frontier.frontier_comparison as Markdown: per metric, budget and strategy, the mean over the KL grid of its
    frontier minus random's (or, per grid point, the difference there), with t and bootstrap intervals, the
    Holm-adjusted p and interval within the declared family, and the seeds left out for not covering the grid.
    ``kl``: the field of the x-axis (its registry label names it)."""
    if cmp.empty:
        return "no frontier to compare: no strategy paired with random at a budget with the metric recorded\n"
    per_point = cmp["kl"].notna().any()
    rows = []
    for r in cmp.itertuples():
        where = f"{r.kl:g}" if per_point else f"{r.kl_low:g}–{r.kl_high:g}"
        rows.append(
            [
                metric(r.metric).title,
                *_paired_cells(r)[:3],
                where,
                str(r.n),
                str(r.left_out),
                "n/a" if math.isnan(r.mean_diff) else f"{r.mean_diff:+.3f}",
                _ci(r.t_low, r.t_high),
                _ci(r.boot_low, r.boot_high),
                "n/a" if math.isnan(r.p_improve) else f"{r.p_improve:.2f}",
                _fmt_p(r.t_p_holm),
                _ci(r.holm_low, r.holm_high),
                r.holm_verdict,
            ]
        )
    head = ["Metric", "Dataset", "Labels", "Strategy", "KL" if per_point else "KL grid", "Seeds", "Left out", "Δ vs random"]
    head += ["95 % CI (t)", "95 % CI (bootstrap)", "P(improve)", "p (Holm)", "Holm-level CI", "Verdict (Holm)"]
    what = "at each KL" if per_point else "averaged over the KL grid (the area between the frontiers ÷ the grid's width)"
    return _md(head, rows) + (
        f"\nA run's frontier at a budget: the best value reachable up to each KL from θ0 among its evaluations after each "
        f"epoch of that budget's training and θ0's own, linear between them; x-axis: {metric(kl).label}. Strategy − random "
        f"{what}, paired by seed. Left out: seeds whose two frontiers do not both reach the grid's end (no extrapolation). "
        "Holm within the declared family; the verdict reads the Holm-level t interval.\n"
    )


def label_saving_markdown(ls: pd.DataFrame, kl: str = "kl_t1") -> str:
    """frontier.label_saving as Markdown: the labels random needs at equal KL, with their bootstrap interval."""
    if ls.empty:
        return "no label saving at equal KL: no strategy paired with random at the budget\n"

    def labels(x: float, top: int) -> str:
        return "n/a" if math.isnan(x) else f"> {top}" if math.isinf(x) else f"{x:.1f}"

    rows = []
    for r in ls.itertuples():
        top = int(r.largest)
        rows.append(
            [
                r.task,
                DISPLAY.get(r.strategy, r.strategy),
                str(r.budget),
                f"{r.kl:g}",
                str(r.seeds),
                "n/a" if math.isnan(r.height) else f"{r.height:.3f}",
                labels(r.labels_random, top),
                f"[{labels(r.labels_low, top)}, {labels(r.labels_high, top)}]",
                r.note or "",
            ]
        )
    head = ["Dataset", "Strategy", "Labels", "KL", "Seeds", f"Frontier height ({metric(ls['metric'].iloc[0]).label})"]
    head += ["Labels random needs", "95 % bootstrap interval (seeds)", "Note"]
    return _md(head, rows) + (
        f"\nAt the KL grid's middle ({metric(kl).label}): the labels at which random's mean frontier height, over its measured "
        "budgets (running max, linear between them), reaches the strategy's. '> N': random does not get there within the "
        "budgets measured (N the largest); nothing is extrapolated.\n"
    )


def strata_markdown(table: pd.DataFrame, tests: pd.DataFrame, baseline: str = "random") -> str:
    """compare.by_stratum as Markdown: each stratum's paired difference from ``baseline``, then the test of whether they differ."""
    if table.empty:
        return "no paired seeds\n"
    rows = [
        [
            r.task,
            str(r.acquired),
            DISPLAY.get(r.strategy, r.strategy),
            r.stratum,
            r.seeds,
            str(r.n),
            f"{r.mean_diff:+.3f}",
            _ci(r.t_low, r.t_high) if r.tested else "not tested",
        ]
        for r in table.itertuples()
    ]
    text = _md(
        ["Dataset", "Size", "Strategy", "Stratum (code · CPU)", "Seeds", "n", f"Δ vs {DISPLAY.get(baseline, baseline)}", "95 % CI (t)"],
        rows,
    )
    lines = [
        f"- {r.task} {DISPLAY.get(r.strategy, r.strategy)}: {r.test} over {r.strata} strata"
        + (f" = {r.statistic:+.2f} ({r.df:.1f} df)" if r.test == "Welch t" else f" = {r.statistic:.2f}")
        + f", p {_fmt_p(r.p)}"
        for r in tests.itertuples()
    ]
    return (
        text
        + f"\nStratum: the package code (its git tree id, first 12 hex) × the CPU (model, instruction set) every start of both runs of a "
        f'seed ran on; a seed whose two runs differ is its own "mixed" stratum. Strata with fewer than {MIN_STRATUM_SEEDS} seeds are '
        "listed, not tested. Do the tested strata differ? Welch's t for two, Welch's one-way ANOVA for more:\n\n"
        + ("\n".join(lines) if lines else "- fewer than two strata with enough seeds: no test")
        + "\n"
    )


def looks_markdown(looks: pd.DataFrame, declared: list[int]) -> str:
    """compare.looks_table as Markdown: the plain t interval beside Pocock's look-adjusted one at each declared look."""
    if looks.empty:
        return f"no strategy has reached a declared look ({', '.join(map(str, declared))} seeds)\n"
    c, nominal = float(looks["boundary"].iloc[0]), float(looks["nominal"].iloc[0])
    rows = [
        [
            r.task,
            str(r.acquired),
            DISPLAY.get(r.strategy, r.strategy),
            str(r.look),
            f"{r.mean_diff:+.3f}",
            _ci(r.t_low, r.t_high),
            _ci(r.pocock_low, r.pocock_high),
            f"{r.z:+.2f}" + (" (crossed)" if r.crossed else ""),
            _fmt_p(r.t_p) + (" (crossed)" if r.t_crossed else ""),
        ]
        for r in looks.itertuples()
    ]
    text = _md(
        ["Dataset", "Size", "Strategy", "Look (seeds)", "Δ vs random", "95 % CI (t)", "Pocock interval", "z against c", "t p against α′"],
        rows,
    )
    return text + (
        f"\nLooks declared: {', '.join(map(str, declared))} seeds (the last the maximum); each look reads the first n paired seeds. "
        f"Pocock interval: mean ± c·SE with c = {c:.3f}, the constant normal boundary that |z| = |mean/SE| crosses with probability 0.05 over "
        "these looks under no effect (from the multivariate normal of the looks' z statistics, corr √(n_i/n_j)), SE = sd/√n as "
        f"in the t interval: a normal boundary, so a little narrow at few seeds. Its t version: the look's paired t p against "
        f"the level the boundary spends per look, α′ = 2(1 − Φ(c)) = {nominal:.4f}.\n"
    )


def confident_errors_markdown(ce: pd.DataFrame, threshold: float = 0.6) -> str:
    """compare.confident_errors as Markdown: strategies × steps, share of confidently wrong pairs."""
    if ce.empty:
        return "no acquired pairs\n"
    steps = sorted(ce["step"].unique())
    rows = []
    for (task, s), g in ce.groupby(["task", "strategy"], sort=False):
        by = {int(r.step): r for r in g.itertuples()}
        cells = [
            ("n/a" if by[k].pairs == 0 else f"{by[k].share:.2f} ({by[k].confident_wrong}/{by[k].pairs})") if k in by else "" for k in steps
        ]
        rows.append([task, DISPLAY.get(s, s), *cells])
    text = _md(["Dataset", "Strategy", *[f"step {k}" for k in steps]], rows)
    return (
        text
        + f"\nShare of acquired pairs the implicit BT model gets wrong with confidence > {threshold} (pairs at p = 0.5 make no prediction and are left out).\n"
    )


__all__ = [
    "against_frontier_markdown",
    "against_markdown",
    "comparison_markdown",
    "confident_errors_markdown",
    "cost_markdown",
    "efficiency_interval_markdown",
    "efficiency_markdown",
    "format_cell",
    "frontier_markdown",
    "kl_matched_markdown",
    "label_saving_markdown",
    "looks_markdown",
    "METRIC_NAMES",
    "metrics_markdown",
    "metrics_to_csv",
    "precision_markdown",
    "ranking_markdown",
    "significance_markdown",
    "strata_markdown",
    "table2",
    "to_csv",
    "to_latex",
    "to_markdown",
]
