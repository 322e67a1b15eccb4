"""Every figure and table from a runs dir in one call, without Jupyter: ``report(runs_dir, out_dir)``.

Figures the data cannot support are skipped (no consistency.json: no Fig 1; no online runs:
no Fig 5; no train.jsonl: no Fig 6). What was left out and why goes into ``notes.md``.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from aplkit import analysis as A


def _fmt_p(p: float) -> str:
    return "n/a" if p is None or (isinstance(p, float) and math.isnan(p)) else (f"{p:.3g}" if p >= 1e-3 else f"{p:.1e}")


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def significance_markdown(sig: pd.DataFrame) -> str:
    """significance_vs_random as Markdown: raw and Holm-adjusted p-values side by side; 'n/a' where there is nothing to test."""
    rows = []
    for r in sig.itertuples():
        se = "n/a" if math.isnan(r.se) else f"{r.se:.3f}"
        rows.append(
            [
                r.task,
                str(r.acquired),
                A.DISPLAY.get(r.strategy, r.strategy),
                str(r.n),
                f"{r.mean_diff:+.3f}",
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
        "Δ win-rate vs random",
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
        rows.append([r.task, A.DISPLAY.get(r.strategy, r.strategy), str(r.budget), f"{r.win_rate:.3f}", labels + mark, ratio])
    text = _md(["Dataset", "Strategy", "Labels", "Mean win-rate", "Labels random needs", "Ratio"], rows)
    text += "\nRandom's mean curve made monotone (running max) and interpolated linearly over its measured sizes.\n"
    return text + "".join(f"\n[{i}] {n}" for i, n in enumerate(notes, 1)) + ("\n" if notes else "")


def report(runs_dir: str | Path, out_dir: str | Path = "figures", budget: int | None = None) -> dict[str, Path]:
    """Write the figures (PNG + PDF) and tables for every run under ``runs_dir``; return {file name: path}.

    ``budget`` is the label count for the data-efficiency table (default: per task, the largest
    size every strategy reached). Prints nothing; ``notes.md`` lists skipped and unfinished runs
    and every caveat.
    """
    from aplkit import plots as P  # late: matplotlib only when figures are wanted

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}

    def put(name: str, text: str) -> None:
        (out / name).write_text(text, encoding="utf-8")
        written[name] = out / name

    def fig(fig_obj, stem: str) -> None:
        for p in P.save(fig_obj, out, stem):
            written[p.name] = p

    df = A.load_runs(runs_dir)
    if df.empty:
        raise ValueError(f"no run folders with eval.jsonl rows under {runs_dir}")
    notes = [f"{len(df['run'].unique())} run(s) with eval rows under {runs_dir}."]
    notes += [f"skipped (no eval rows): {r}" for r in df.attrs.get("skipped", [])]
    notes += [f"unfinished (included, flagged): {r}" for r in df.attrs.get("incomplete", [])]
    against = df.dropna(subset=["against"]).groupby("task")["against"].first().to_dict()
    main, sel_notes = A.select_main(df)
    notes += sel_notes

    # Fig 2 + Table 2
    curves = A.winrate_curves(main)
    if (curves["se_kind"] == "binomial").any():
        notes.append("some strategy/size cells have one seed: their error bars are that run's binomial stderr, not a spread over seeds")
    notes += [f"Fig 2 / Table 2 x-axis is labels acquired (t·M); {n}" for n in A.trained_notes(main)]
    fig(P.plot_winrate(curves, against), "fig2_winrate")
    t2 = A.table2(main)
    put("table2.md", A.to_markdown(t2))
    put("table2.tex", A.to_latex(t2))
    written["table2.csv"] = A.to_csv(t2, out / "table2.csv")

    # statistics
    sig = A.significance_vs_random(main)
    sig.to_csv(out / "significance.csv", index=False)
    written["significance.csv"] = out / "significance.csv"
    put("significance.md", significance_markdown(sig))
    eff, eff_notes = A.efficiency_by_task(main, budget)
    notes += eff_notes
    eff.to_csv(out / "efficiency.csv", index=False)
    written["efficiency.csv"] = out / "efficiency.csv"
    put("efficiency.md", efficiency_markdown(eff))
    notes += [f"efficiency {r.task}/{r.strategy}: {r.note}" for r in eff.itertuples() if r.note]

    # Fig 3
    acq = A.load_acquired(runs_dir)
    acq_main = acq[acq["run"].isin(set(main["run"]))]
    if not acq_main.empty:
        for task, g in acq_main.groupby("task"):
            hist = A.bt_histograms(g)
            left_out = A.bt_left_out_note(hist)
            if left_out:
                notes.append(f"Fig 3 {task}: {left_out}")
            stem = "fig3_bt_hist" if acq_main["task"].nunique() == 1 else f"fig3_bt_hist_{task}"
            fig(P.plot_bt_hist(hist), stem)
    else:
        notes.append("no acquired.jsonl rows: no Fig 3")

    # Fig 1
    cons = A.load_consistency(runs_dir)
    if cons:
        fig(P.plot_consistency(cons), "fig1_consistency")

    # Fig 5
    ovr = A.online_vs_reset(df)
    if not ovr.empty:
        fig(P.plot_online_vs_reset(ovr, against), "fig5_online_vs_reset")

    # Fig 6
    train = A.load_train(runs_dir)
    if not train.empty:
        loss = A.loss_curves(train)
        fig(P.plot_epochs(loss, A.winrate_vs_epochs(df)), "fig6_epochs")

    put("notes.md", "# Report notes\n\n" + "".join(f"- {n}\n" for n in notes))
    return written
