"""PHF results: run folders → the trade-off figure (misalignment against LM loss) and a table like the paper's Table 2.

Each objective's curve runs through its checkpoints (θ0 first, shared by all), every point the mean
over seeds with its standard error s/√n on both axes; MLE is the reference point (its last
checkpoint, dashed lines). Down and to the left is better: less misaligned and more capable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from aplkit.objectives import PHF_OBJECTIVES
from aplkit.records import PHFEvalRow, from_dict
from aplkit.runfolder import CONFIG, FILES, read_jsonl

METRICS = ("misalignment", "negative_share", "prompted_misalignment", "prompted_negative_share", "lm_loss", "lm_loss_change", "kl")
#: conditional training's samples under <|bad|>: read only where some run measured them, so older records report as before
BAD = "misalignment_bad"
LABELS = {
    "mle": "MLE",
    "filtering": "Filtering",
    "conditional": "Conditional",
    "unlikelihood": "Unlikelihood",
    "rwr": "RWR",
    "awr": "AWR",
}


def load_phf(runs_dir: str | Path) -> pd.DataFrame:
    """Every checkpoint of every PHF run folder under ``runs_dir``: objective, seed, step, tokens, the measurements and
    the run's stratum (code version · CPU, ``aplkit.results.load.folder_stratum``)."""
    from aplkit.results.load import folder_stratum

    rows: list[dict[str, Any]] = []
    for path in sorted(Path(runs_dir).rglob(FILES[PHFEvalRow])):
        folder = path.parent
        cfg = yaml.safe_load((folder / CONFIG).read_text()) if (folder / CONFIG).exists() else {}
        seed = (cfg or {}).get("seed", 0)
        stratum = folder_stratum(folder)
        for r in read_jsonl(path):
            row = from_dict(PHFEvalRow, r)
            rows.append({"run": str(folder), "seed": seed, "stratum": stratum, **row.__dict__})
    return with_lm_loss_change(pd.DataFrame(rows))


def with_lm_loss_change(df: pd.DataFrame) -> pd.DataFrame:
    """``lm_loss_change``: each checkpoint's LM loss minus its own run's θ0 (``lm_loss_theta0``).

    An objective that changes θ0 (conditional training reads a new ``<|good|>`` token) starts from another
    LM loss than MLE's θ0; its LM-loss cost is the change from where it started, not the gap to MLE's value.
    """
    if "lm_loss_theta0" not in df or "lm_loss" not in df:
        return df
    return df.assign(lm_loss_change=df["lm_loss"].astype(float) - df["lm_loss_theta0"].astype(float))


def order(objectives: Any) -> list[str]:
    known = [o for o in PHF_OBJECTIVES if o in set(objectives)]
    return known + sorted(set(objectives) - set(known))


def curves(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard error over seeds of each measurement per (objective, k-th checkpoint).

    Runs of one objective reach the token budget at different optimiser steps (documents differ in
    length by seed), so checkpoints are matched by their order in the run, not by step number;
    ``step`` and ``tokens`` are the seeds' means.
    """
    df = with_lm_loss_change(df).assign(checkpoint=df.groupby("run")["step"].rank(method="dense").astype(int) - 1)
    metrics = METRICS + ((BAD,) if _measured(df, BAD) else ())
    out = []
    for (obj, _k), g in df.groupby(["objective", "checkpoint"], sort=True):
        row: dict[str, Any] = {"objective": obj, "step": float(g["step"].mean()), "tokens": int(round(g["tokens"].mean())), "n": len(g)}
        for m in metrics:
            x = g[m].dropna().astype(float) if m in g else pd.Series(dtype=float)
            row[m] = x.mean() if len(x) else float("nan")
            row[f"{m}_se"] = x.std(ddof=1) / len(x) ** 0.5 if len(x) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def _measured(df: pd.DataFrame, metric: str) -> bool:
    return metric in df and bool(df[metric].notna().any())


def final(c: pd.DataFrame) -> pd.DataFrame:
    """Each objective's last checkpoint, in the paper's order."""
    last = c.sort_values("step").groupby("objective").tail(1).set_index("objective")
    return last.loc[order(last.index)]


def _colour(objective: str, i: int, palette: list) -> object:
    """MLE black; every other objective keeps one colour in every figure, whichever subset is drawn."""
    if objective == "mle":
        return "black"
    k = PHF_OBJECTIVES.index(objective) if objective in PHF_OBJECTIVES else len(PHF_OBJECTIVES) + i
    return palette[k % len(palette)]


def plot_tradeoff(c: pd.DataFrame):
    """Misalignment (unconditional; prompted) against LM loss, one curve per objective through its checkpoints."""
    from aplkit.results.plots import _EXTRA, plt, style

    objs = order(c["objective"].unique())
    with style():
        fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
        for ax, y, title in zip(
            axes, ("misalignment", "prompted_misalignment"), ("unconditional samples", "continuing test prompts"), strict=True
        ):
            for i, o in enumerate(objs):
                g = c[c["objective"] == o].sort_values("step")
                ax.errorbar(
                    g["lm_loss"],
                    g[y],
                    xerr=g["lm_loss_se"],
                    yerr=g[f"{y}_se"],
                    marker="o",
                    ms=4,
                    lw=1.5,
                    capsize=2,
                    color=_colour(o, i, _EXTRA),
                    label=LABELS.get(o, o),
                )
                ax.plot(g["lm_loss"].iloc[-1:], g[y].iloc[-1:], marker="*", ms=12, color=ax.lines[-1].get_color())
            ref = final(c).loc["mle"] if "mle" in set(c["objective"]) else None
            if ref is not None:
                ax.axhline(ref[y], color="black", ls="--", lw=0.8)
                ax.axvline(ref["lm_loss"], color="black", ls="--", lw=0.8)
            ax.set_xlabel("LM loss on held-out reviews (nats/token)")
            ax.set_ylabel("misalignment: mean P(negative)")
            ax.set_title(title)
        n = int(c["n"].max()) if len(c) else 0
        axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), title=f"mean ± SE, n ≤ {n} seeds")
        fig.suptitle("Alignment–capability trade-off (★ last checkpoint; dashed: MLE)")
        fig.tight_layout()
    return fig


def table(c: pd.DataFrame) -> pd.DataFrame:
    """Table-2-style: per objective at its last checkpoint, each cell "mean ± SE" over seeds (the mean alone for one seed), and LM loss relative to MLE."""
    f = final(c)
    mle = f.loc["mle"] if "mle" in f.index else None
    rows = []
    for o, r in f.iterrows():
        cell = lambda m, d=3, r=r: f"{r[m]:.{d}f} ± {r[m + '_se']:.{d}f}" if r["n"] > 1 else f"{r[m]:.{d}f}"  # noqa: E731 (one seed: no SE)
        rows.append(
            {
                "objective": LABELS.get(o, o),
                "misalignment": cell("misalignment"),
                "share negative": cell("negative_share", 2),
                "prompted misalignment": cell("prompted_misalignment"),
                "prompted share negative": cell("prompted_negative_share", 2),
                "LM loss": cell("lm_loss"),
                "Δ LM loss vs MLE": f"{r['lm_loss'] - mle['lm_loss']:+.3f}" if mle is not None else "–",
                "Δ LM loss from own θ0": cell("lm_loss_change") if "lm_loss_change" in r else "–",
                "KL from θ0": cell("kl", 2),
                **({"misalignment under <|bad|>": cell(BAD) if r[BAD] == r[BAD] else "–"} if _measured(f, BAD) else {}),
                "tokens": int(r["tokens"]),
                "seeds": int(r["n"]),
            }
        )
    return pd.DataFrame(rows)


def vs_mle(
    df: pd.DataFrame, metrics: tuple[str, ...] = ("misalignment", "prompted_misalignment", "lm_loss", "lm_loss_change")
) -> pd.DataFrame:
    """Each objective − MLE at the last checkpoint, paired by seed: mean, 95 % t interval, Holm-adjusted interval, verdict.

    The paper's finding is a difference from MLE (less misalignment, little LM loss given up), so that is
    what is tested. Each metric is one family (every objective against MLE): ``holm_lo``/``holm_hi`` is the
    t interval that excludes 0 exactly when Holm's step-down rejects (``compare.holm_intervals``), and the
    verdict reads it — "lower" / "higher" where it excludes 0, "undecided" where it holds 0. ``lo``/``hi``
    are the plain 95 % t intervals, ``boot_lo``/``boot_hi`` the percentile bootstrap over seeds beside them.
    ``df`` is ``load_phf``'s table. ``lm_loss_change`` (the LM loss each run gave up from its own θ0) is the
    LM-loss cost to read; ``lm_loss`` also carries any difference between the θ0s.
    Where conditional runs measured it, ``misalignment_bad`` (their samples under ``<|bad|>``) − MLE's
    misalignment is added: a family of one, expected "higher".
    """
    from aplkit.results.compare import bootstrap_interval, holm_intervals, t_interval

    df = with_lm_loss_change(df)
    metrics = tuple(m for m in metrics if m in df) + ((BAD,) if _measured(df, BAD) else ())

    last = last_checkpoints(df).set_index(["objective", "seed"])
    if "mle" not in last.index.get_level_values(0):
        return pd.DataFrame()
    rows, diffs = [], []
    for o in order(last.index.get_level_values(0).unique()):
        if o == "mle":
            continue
        for m in metrics:
            if m == BAD and not last.loc[o][BAD].notna().any():
                continue
            d = paired(last, o, "mle", m, "misalignment" if m == BAD else m)
            lo, hi = t_interval(d)
            b_lo, b_hi = bootstrap_interval(d)
            rows.append(
                {
                    "objective": o,
                    "metric": m,
                    "seeds": len(d),
                    "diff": float(d.mean()) if len(d) else float("nan"),
                    "lo": lo,
                    "hi": hi,
                    "boot_lo": b_lo,
                    "boot_hi": b_hi,
                }
            )
            diffs.append(d)
    out = pd.DataFrame(rows)
    if out.empty:  # MLE alone: nothing to compare
        return out
    for m in metrics:
        at = out.index[out["metric"] == m]
        iv = holm_intervals([diffs[i] for i in at])
        out.loc[at, "p_holm"] = iv["p_holm"].to_numpy()
        out.loc[at, "holm_lo"] = iv["low"].to_numpy()
        out.loc[at, "holm_hi"] = iv["high"].to_numpy()
    out["verdict"] = [_direction(lo, hi) for lo, hi in zip(out["holm_lo"], out["holm_hi"], strict=True)]
    return out


def paired(last: pd.DataFrame, a: str, b: str, metric: str, b_metric: str | None = None) -> np.ndarray:
    """Objective ``a`` − objective ``b`` in ``metric`` (``b``'s ``b_metric`` where given), seed by seed over the seeds
    both ran; ``last`` is ``last_checkpoints``' table indexed by (objective, seed)."""
    mine, base = last.loc[a], last.loc[b]
    seeds = sorted(set(mine.index) & set(base.index))
    return (mine.loc[seeds, metric].astype(float) - base.loc[seeds, b_metric or metric].astype(float)).to_numpy()


def control_token_gap(df: pd.DataFrame) -> dict[str, Any] | None:
    """Within each conditional run, misalignment under ``<|bad|>`` − under ``<|good|>`` at the last checkpoint, over
    seeds: how much of the control tokens' meaning the model learned, as ``compare.interval_cells``. It describes
    conditional training itself, not a comparison with MLE, so it is in no Holm family. None where no conditional
    run measured ``<|bad|>``."""
    from aplkit.results.compare import interval_cells

    last = last_checkpoints(df).set_index(["objective", "seed"])
    if BAD not in last or "conditional" not in last.index.get_level_values(0):
        return None
    d = paired(last, "conditional", "conditional", BAD, "misalignment")
    d = d[~np.isnan(d)]
    return interval_cells(d) if len(d) else None


def _direction(lo: float, hi: float) -> str:
    """lower / higher than MLE when the interval excludes 0 (lower misalignment is good, lower LM loss is good), else undecided."""
    if lo != lo or hi != hi:
        return "n/a"
    return "lower" if hi < 0 else "higher" if lo > 0 else "undecided"


def vs_mle_markdown(v: pd.DataFrame, strata: list[str] | None = None, gap: dict[str, Any] | None = None) -> str:
    """``vs_mle`` as Markdown; ``strata``: the strata its paired seeds were pooled over, when more than one;
    ``gap``: ``control_token_gap``'s reading, added beneath."""
    lines = [
        "| objective | metric | seeds | − MLE | 95 % t interval | 95 % bootstrap interval | Holm-adjusted interval (per metric) | verdict (Holm) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in v.itertuples():
        lines.append(
            f"| {LABELS.get(r.objective, r.objective)} | {r.metric} | {r.seeds} | {r.diff:+.3f} | [{r.lo:+.3f}, {r.hi:+.3f}] "
            f"| [{r.boot_lo:+.3f}, {r.boot_hi:+.3f}] | [{r.holm_lo:+.3f}, {r.holm_hi:+.3f}] | {r.verdict} |"
        )
    n = v.loc[v["metric"] != BAD, "objective"].nunique() if len(v) else 0
    bad = (
        f"\n{BAD} is each conditional run's misalignment under <|bad|> − MLE's misalignment, a family of its own; the paper implies it is higher.\n"
        if len(v) and (v["metric"] == BAD).any()
        else ""
    )
    pooled = (
        f"\nPaired seeds from {len(strata)} strata (code version · CPU) pooled on request: phf_strata.md gives each one's estimate.\n"
        if strata and len(strata) > 1
        else ""
    )
    tokens = (
        f"\nConditional training's control tokens, within each run (no comparison with MLE): misalignment under <|bad|> − "
        f"under <|good|> {gap['mean_diff']:+.3f} [{gap['t_low']:+.3f}, {gap['t_high']:+.3f}], bootstrap "
        f"[{gap['boot_low']:+.3f}, {gap['boot_high']:+.3f}] ({gap['n']} seeds).\n"
        if gap
        else ""
    )
    return (
        "\n".join(lines)
        + f"\n\nEach metric is one family of {n} comparisons with MLE; the verdict reads the Holm-adjusted interval.\n"
        + bad
        + tokens
        + pooled
    )


#: how far above MLE's LM loss conditional training's may lie and still cost "little" (nats/token: e^0.1 ≈ 1.105, a
#: perplexity 10 % higher), fixed before the from-scratch grid was read
LITTLE_LM_LOSS = 0.10
#: the objectives conditional training is compared with, beside MLE
OTHERS = ("filtering", "unlikelihood", "rwr", "awr")


def paper_claims(df: pd.DataFrame, little: float = LITTLE_LM_LOSS) -> pd.DataFrame:
    """The paper's findings, each read by a rule fixed before the reading: reproduced / not reproduced / undecided.

    Against MLE the verdict reads ``vs_mle``'s Holm interval (each metric a family). A claim about several
    comparisons at once ("lowers misalignment the most"; "in between") is an intersection–union test: reproduced
    when every plain 95 % t interval lies on the claimed side (no adjustment is needed for "all of them"), not
    reproduced when one Holm-adjusted interval of the set lies on the other, undecided otherwise. LM loss is read
    directly: every objective of a seed starts from the same initialisation. ``df`` is ``load_phf``'s table.
    Columns: claim, rule, evidence, verdict ("n/a" where an objective it needs did not run).
    """
    from aplkit.results.compare import holm_intervals, t_interval

    v = vs_mle(df)
    last = last_checkpoints(df).set_index(["objective", "seed"])
    ran = set(last.index.get_level_values(0))
    rows: list[dict[str, str]] = []

    def against_mle(claim: str, o: str, metric: str, want: str, margin: float = 0.0) -> None:
        """``o`` − MLE's Holm interval against ``margin``: wholly on the ``want`` ("lower"/"higher") side, or the other."""
        below = want == "lower"
        rule = f"{metric}: {o} − MLE, Holm interval {'below' if below else 'above'} {f'{margin:+.2f}' if margin else '0'}"
        r = v[(v["objective"] == o) & (v["metric"] == metric)] if len(v) else v
        if r.empty:
            rows.append({"claim": claim, "rule": rule, "evidence": "–", "verdict": "n/a"})
            return
        lo, hi = r.iloc[0][["holm_lo", "holm_hi"]]
        yes, no = (hi < margin, lo > margin) if below else (lo > margin, hi < margin)
        verdict = "n/a" if lo != lo else "reproduced" if yes else "not reproduced" if no else "undecided"
        who = LABELS.get(o, o) + (" under <|bad|>" if metric == BAD else "")
        evidence = f"{who} − MLE {r.iloc[0]['diff']:+.3f}, Holm [{lo:+.3f}, {hi:+.3f}] ({r.iloc[0]['seeds']} seeds)"
        rows.append({"claim": claim, "rule": rule, "evidence": evidence, "verdict": verdict})

    def all_of(claim: str, metric: str, pairs: list[tuple[str, str, int]]) -> None:
        """``pairs``: (a, b, sign), each claiming sign · (a − b) > 0."""
        if not pairs or any(a not in ran or b not in ran for a, b, _ in pairs):
            rows.append({"claim": claim, "rule": "every pair's t interval on the claimed side", "evidence": "–", "verdict": "n/a"})
            return
        diffs = [sign * paired(last, a, b, metric) for a, b, sign in pairs]
        plain = [t_interval(d) for d in diffs]
        holm = holm_intervals(diffs)
        if all(lo > 0 for lo, _ in plain):
            verdict = "reproduced"
        elif (holm["high"] < 0).any():
            verdict = "not reproduced"
        else:
            verdict = "undecided"
        said = []
        for (a, b, sign), d, (lo, hi) in zip(pairs, diffs, plain, strict=True):
            lo, hi = sorted((sign * lo, sign * hi))
            said.append(f"{LABELS.get(a, a)} − {LABELS.get(b, b)} {sign * d.mean():+.3f} [{lo:+.3f}, {hi:+.3f}]")
        sides = ", ".join(f"{LABELS.get(a, a)} − {LABELS.get(b, b)} {'>' if sign > 0 else '<'} 0" for a, b, sign in pairs)
        rows.append({"claim": claim, "rule": f"{metric}: {sides}", "evidence": "; ".join(said), "verdict": verdict})

    against_mle("Conditional training lowers misalignment", "conditional", "misalignment", "lower")
    all_of(
        "… more than any other objective",
        "misalignment",
        [("conditional", o, -1) for o in OTHERS if o in ran] if "conditional" in ran else [],
    )
    against_mle("… at little LM-loss cost", "conditional", "lm_loss", "lower", margin=little)
    for o in ("filtering", "unlikelihood"):
        against_mle(f"{LABELS[o]} pays in LM loss", o, "lm_loss", "higher")
    for o in ("rwr", "awr"):
        all_of(
            f"{LABELS[o]} lies in between in LM loss: above conditional, below filtering and unlikelihood",
            "lm_loss",
            [(o, "conditional", 1), (o, "filtering", -1), (o, "unlikelihood", -1)],
        )
    against_mle("Conditional samples under <|bad|> are more misaligned than MLE's", "conditional", BAD, "higher")
    return pd.DataFrame(rows, columns=["claim", "rule", "evidence", "verdict"])


def claims_markdown(c: pd.DataFrame) -> str:
    """``paper_claims`` as Markdown, with the rules' conventions under it."""
    head = "| the paper's finding | rule | difference, 95 % interval | verdict |\n|---|---|---|---|\n"
    body = "".join(f"| {r.claim} | {r.rule} | {r.evidence} | {r.verdict} |\n" for r in c.itertuples())
    return (
        head
        + body
        + (
            "\nAgainst MLE: the Holm-adjusted interval (each metric a family). Several comparisons at once: reproduced when"
            " every plain 95 % t interval lies on the claimed side, not reproduced when one Holm-adjusted interval of the set"
            f' lies on the other, undecided otherwise. "Little" LM-loss cost: below +{LITTLE_LM_LOSS:.2f} nats/token.\n'
        )
    )


def to_markdown(t: pd.DataFrame) -> str:
    head = "| " + " | ".join(t.columns) + " |\n|" + "---|" * len(t.columns) + "\n"
    return head + "".join("| " + " | ".join(str(v) for v in row) + " |\n" for row in t.itertuples(index=False))


def to_latex(t: pd.DataFrame) -> str:
    esc = lambda s: str(s).replace("±", r"$\pm$").replace("Δ", r"$\Delta$").replace("θ0", r"$\theta_0$")  # noqa: E731
    lines = [
        r"\begin{tabular}{l" + "r" * (len(t.columns) - 1) + "}",
        r"\toprule",
        " & ".join(esc(c) for c in t.columns) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(esc(v) for v in row) + r" \\" for row in t.itertuples(index=False)]
    return "\n".join([*lines, r"\bottomrule", r"\end{tabular}", ""])


def last_checkpoints(df: pd.DataFrame) -> pd.DataFrame:
    """Each run's last checkpoint (``load_phf``'s rows), where objectives are compared."""
    return df.sort_values("step").groupby(["objective", "seed"]).tail(1)


def phf_strata(df: pd.DataFrame, pool: bool = False) -> tuple[list[str], str | None]:
    """The strata (code version · CPU) of the paired seeds objective − MLE, and, where there are several and ``pool``
    is asked for, each stratum's misalignment − MLE with Welch's test of their difference (Markdown).

    Several strata without ``pool``: ``StrataError`` in one line, as ``aplkit report`` (``compare.check_strata``).
    """
    from aplkit.results.compare import by_stratum, check_strata
    from aplkit.results.tables import strata_markdown

    last = last_checkpoints(df)
    # compare's tables pair "strategies" at one "size": here the objectives at their last checkpoint (size: the most tokens)
    pairs = last.assign(task="PHF", strategy=last["objective"].map(lambda o: LABELS.get(o, o)), acquired=int(last["tokens"].max()))
    strata = dict(zip(pairs["run"], pairs["stratum"], strict=True)) if "stratum" in pairs else {}
    present = check_strata(pairs, strata, pool, baseline=LABELS["mle"])
    if len(present) < 2:
        return present, None
    return present, strata_markdown(*by_stratum(pairs, strata, metric="misalignment", baseline=LABELS["mle"]), baseline=LABELS["mle"])


def phf_report(
    runs_dir: str | Path, out_dir: str | Path = "figures", pool_strata: bool = False, planned: set[tuple[str, int]] | None = None
) -> dict[str, Path]:
    """Write phf_tradeoff.png/.pdf, phf_table.md/.tex, phf_curves.csv, phf_vs_mle.md and phf_claims.md (the paper's
    findings read by ``paper_claims``' rules) from the PHF run folders under ``runs_dir``; ``planned``: the
    (objective, seed) runs to read, the rest left out.

    Paired seeds from several code versions or CPUs are refused before anything is written unless ``pool_strata``;
    pooled, ``phf_strata.md`` gives each stratum's estimate and the test of their difference.
    """
    from aplkit.results.plots import save

    df = load_phf(runs_dir)
    if planned is not None and not df.empty:
        df = df[[(o, int(k)) in planned for o, k in zip(df["objective"], df["seed"], strict=True)]]
    if df.empty:
        raise FileNotFoundError(f"no PHF run folders (phf_eval.jsonl) under {runs_dir}")
    present, by_stratum = phf_strata(df, pool_strata)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    c = curves(df)
    paths = {f"phf_tradeoff.{p.suffix[1:]}": p for p in save(plot_tradeoff(c), out, "phf_tradeoff")}
    t = table(c)
    (out / "phf_table.md").write_text(to_markdown(t))
    (out / "phf_table.tex").write_text(to_latex(t))
    c.to_csv(out / "phf_curves.csv", index=False, float_format="%.6g")
    v = vs_mle(df)
    (out / "phf_vs_mle.md").write_text(vs_mle_markdown(v, present, control_token_gap(df)) if len(v) else "no MLE runs to compare with\n")
    paths["phf_vs_mle.md"] = out / "phf_vs_mle.md"
    if len(v):
        (out / "phf_claims.md").write_text(claims_markdown(paper_claims(df)))
        paths["phf_claims.md"] = out / "phf_claims.md"
    if by_stratum is not None:
        (out / "phf_strata.md").write_text(by_stratum)
        paths["phf_strata.md"] = out / "phf_strata.md"
    paths.update({"phf_table.md": out / "phf_table.md", "phf_table.tex": out / "phf_table.tex", "phf_curves.csv": out / "phf_curves.csv"})
    return paths
