"""The paper's four findings, read from the data by fixed rules, so the verdict is not a matter of reading.

Each finding gets a verdict — reproduced, not reproduced or undecided — and the numbers that decided it.
Differences are strategy − random, paired by seed (``compare.paired_differences``); M is a task's
smallest acquired size (the first step), "later sizes" are those ≥ 2M, the final budget the largest.
Intervals are 95 % Student-t over seeds; over a family of sizes they are Holm-adjusted
(``compare.holm_intervals``: off 0 exactly when Holm's step-down rejects).

(i) No difference at the first step. Per paper strategy, the paired differences at M: *identical by
    construction* when every one is exactly 0 (certainty at θ = θ0 takes random's draw of the same seed:
    common random numbers); otherwise its 95 % t interval excludes 0 (a difference), or contains 0 and
    lies within ±``PAPER_EFFECT`` (no difference of the size the paper reports later), or is too wide to
    say. Verdict: not reproduced if any strategy's interval excludes 0; undecided if any cannot be judged
    (fewer than 2 seeds, or too wide); otherwise reproduced — or "identical by construction" when every
    strategy is.
(ii) Certainty above random from the second step on. Holm-adjusted intervals over the later sizes.
    Reproduced if the final budget's lies above 0 and no later size's lies below 0; else not reproduced
    if the final budget's upper end is below ``NEGLIGIBLE`` (+0.03: that rules out an effect of the
    paper's size, +0.06); else undecided.
(iii) Entropy alone is not robust (the paper: entropy does not reliably beat random; certainty does).
    Holm-adjusted intervals of entropy over the later sizes. Reproduced if some size's interval lies below
    0 (entropy measurably worse), or if none lies above 0 and the final budget's upper end is below
    ``NEGLIGIBLE`` (a gain of the paper's size ruled out); not reproduced by (ii)'s rule for certainty (the
    final budget's interval above 0, none below); undecided otherwise — wide intervals, or means that
    change sign inside them, are not evidence either way. (Fixed before the 9-seed reading of the
    powered study: the earlier rule, "no interval above 0", was met by any interval wide enough.)
(iv) Certainty surfaces confidently wrong pairs. Per seed, the share of acquired pairs at steps ≥ 2 that
    the implicit BT model gets wrong with confidence > 0.6 (``compare.confident_errors``: P(oracle's
    label) < 0.4; no-prediction and unlabelled pairs left out), pooled over those steps; certainty −
    random paired by seed, 95 % t interval. Reproduced above 0, not reproduced below 0, else undecided.

Rules are applied in the order written; a verdict never depends on anything not shown in its numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from aplkit.results.compare import CONFIDENCE, confident_errors, holm_intervals, paired_differences, t_interval
from aplkit.results.load import DISPLAY, PAPER_ORDER, strategy_order

REPRODUCED, NOT_REPRODUCED, UNDECIDED, IDENTICAL = "reproduced", "not reproduced", "undecided", "identical by construction"
PAPER_EFFECT = 0.06  # certainty − random at 256 labels, the paper's Fig 2 (IMDB)
NEGLIGIBLE = 0.03  # an upper end below this rules out an effect of the paper's size
CLAIMS = {
    "i": "no difference at the first step",
    "ii": "certainty above random from the second step on",
    "iii": "entropy alone is not robust",
    "iv": "certainty surfaces confidently wrong pairs",
}
COLUMNS = ["task", "finding", "claim", "verdict", "evidence", "detail"]


def _ci(lo: float, hi: float) -> str:
    return "no interval" if math.isnan(lo) else f"[{lo:+.3f}, {hi:+.3f}]"


def _row(task: str, finding: str, verdict: str, evidence: str, detail: list[dict[str, Any]]) -> dict[str, Any]:
    return {"task": task, "finding": finding, "claim": CLAIMS[finding], "verdict": verdict, "evidence": evidence, "detail": detail}


def _first_step(df: pd.DataFrame, task: str, size: int, confidence: float) -> dict[str, Any]:
    parts, detail, judged = [], [], []
    others = [s for s in strategy_order(df["strategy"]) if s in PAPER_ORDER and s != "random"]
    for s in others:
        d = paired_differences(df, task, size, s)
        if len(d) == 0:
            continue
        lo, hi = t_interval(d, confidence)
        if np.all(d == 0):
            call = IDENTICAL
        elif math.isnan(lo):
            call = UNDECIDED
        else:
            call = "excludes 0" if not lo <= 0 <= hi else "contains 0" if -PAPER_EFFECT <= lo and hi <= PAPER_EFFECT else "too wide"
        judged.append(call)
        detail.append({"strategy": s, "acquired": size, "n": len(d), "mean_diff": float(d.mean()), "low": lo, "high": hi, "call": call})
        shown = f"every paired difference is 0, n = {len(d)}" if call == IDENTICAL else f"{d.mean():+.3f} {_ci(lo, hi)}, n = {len(d)}"
        parts.append(f"{DISPLAY.get(s, s)}: {shown} ({call})")
    if not judged:
        verdict = UNDECIDED
    elif "excludes 0" in judged:
        verdict = NOT_REPRODUCED
    elif UNDECIDED in judged or "too wide" in judged:
        verdict = UNDECIDED
    elif all(c == IDENTICAL for c in judged):
        verdict = IDENTICAL
    else:
        verdict = REPRODUCED
    return _row(task, "i", verdict, f"at {size} labels: " + ("; ".join(parts) or "no strategy paired with random"), detail)


def _later_sizes(df: pd.DataFrame, task: str, strategy: str, confidence: float, first: int) -> list[dict[str, Any]]:
    """Holm-adjusted paired intervals of ``strategy`` at every size ≥ 2·first it shares with random."""
    g = df[df["task"] == task]
    sizes = sorted(int(a) for a in set(g.loc[g["strategy"] == strategy, "acquired"]) & set(g.loc[g["strategy"] == "random", "acquired"]))
    diffs = {a: paired_differences(df, task, a, strategy) for a in sizes if a >= 2 * first}
    diffs = {a: d for a, d in diffs.items() if len(d)}
    iv = holm_intervals(list(diffs.values()), confidence)
    return [
        {"strategy": strategy, "acquired": a, "n": len(d), "mean_diff": float(d.mean()), **iv.iloc[i].to_dict()}
        for i, (a, d) in enumerate(diffs.items())
    ]


def _sizes_text(rows: list[dict[str, Any]]) -> str:
    return "; ".join(
        f"{r['acquired']}: {r['mean_diff']:+.3f} {_ci(r['low'], r['high'])}"
        + ("" if math.isnan(r["p_holm"]) else f" (Holm p {r['p_holm']:.3g})")
        + f", n = {r['n']}"
        for r in rows
    )


def _certainty(df: pd.DataFrame, task: str, first: int, confidence: float, negligible: float) -> dict[str, Any]:
    rows = _later_sizes(df, task, "certainty", confidence, first)
    if not rows:
        return _row(task, "ii", UNDECIDED, "certainty and random share no size ≥ 2M", rows)
    final = rows[-1]
    if math.isnan(final["low"]):
        verdict = UNDECIDED
    elif final["low"] > 0 and not any(r["high"] < 0 for r in rows):
        verdict = REPRODUCED
    elif final["high"] < negligible:
        verdict = NOT_REPRODUCED
    else:
        verdict = UNDECIDED
    why = f"final budget {final['acquired']}: {_ci(final['low'], final['high'])}"
    if verdict == NOT_REPRODUCED:
        why += f", upper end below +{negligible:.2f} (the paper: +{PAPER_EFFECT:.2f})"
    return _row(task, "ii", verdict, f"{why}. Certainty − random, Holm-adjusted over sizes ≥ {2 * first}: {_sizes_text(rows)}", rows)


def _entropy(df: pd.DataFrame, task: str, first: int, confidence: float, negligible: float) -> dict[str, Any]:
    rows = _later_sizes(df, task, "entropy", confidence, first)
    if not rows:
        return _row(task, "iii", UNDECIDED, "entropy and random share no size ≥ 2M", rows)
    final = rows[-1]
    below = [r["acquired"] for r in rows if r["high"] < 0]
    above = [r["acquired"] for r in rows if r["low"] > 0]
    if below:
        verdict, why = REPRODUCED, f"below 0 at {below}"
    elif math.isnan(final["low"]):
        verdict, why = UNDECIDED, "the final budget has fewer than 2 seeds"
    elif not above and final["high"] < negligible:
        verdict, why = REPRODUCED, f"no interval above 0; final budget {final['acquired']}: upper end below +{negligible:.2f}"
    elif final["low"] > 0:
        verdict, why = NOT_REPRODUCED, f"final budget {final['acquired']}: above 0, no size below"
    else:
        verdict = UNDECIDED
        why = f"final budget {final['acquired']}: {_ci(final['low'], final['high'])}" + (f", above 0 at {above}" if above else "")
    return _row(task, "iii", verdict, f"{why}. Entropy − random, Holm-adjusted over sizes ≥ {2 * first}: {_sizes_text(rows)}", rows)


def confident_error_shares(acq: pd.DataFrame, threshold: float = 0.6, from_step: int = 2) -> pd.DataFrame:
    """Per task × strategy × seed: the share of acquired pairs at steps ≥ ``from_step`` that the implicit BT model
    gets confidently wrong (``compare.confident_errors``), pooled over those steps. Columns: task, strategy,
    seed, pairs, confident_wrong, share."""
    cols = ["task", "strategy", "seed", "pairs", "confident_wrong", "share"]
    if acq.empty:
        return pd.DataFrame(columns=cols)
    ce = confident_errors(acq, threshold, by=("task", "strategy", "seed", "step"))
    ce = ce[ce["step"] >= from_step]
    out = ce.groupby(["task", "strategy", "seed"], sort=True)[["pairs", "confident_wrong"]].sum().reset_index()
    out = out[out["pairs"] > 0]
    return out.assign(share=out["confident_wrong"] / out["pairs"])[cols].reset_index(drop=True)


def _confident_wrong(acq: pd.DataFrame, task: str, confidence: float, threshold: float) -> dict[str, Any]:
    shares = confident_error_shares(acq, threshold)
    shares = shares[shares["task"] == task]
    by = {s: g.set_index("seed")["share"] for s, g in shares.groupby("strategy")}
    if "certainty" not in by or "random" not in by:
        return _row(task, "iv", UNDECIDED, "no acquired pairs of certainty and random at steps ≥ 2 with a BT prediction", [])
    seeds = sorted(set(by["certainty"].index) & set(by["random"].index))
    d = (by["certainty"].loc[seeds] - by["random"].loc[seeds]).to_numpy(float)
    lo, hi = t_interval(d, confidence)
    verdict = UNDECIDED if math.isnan(lo) else REPRODUCED if lo > 0 else NOT_REPRODUCED if hi < 0 else UNDECIDED
    c, r = float(by["certainty"].loc[seeds].mean()), float(by["random"].loc[seeds].mean())
    detail = [{"n": len(d), "certainty": c, "random": r, "mean_diff": float(d.mean()) if len(d) else math.nan, "low": lo, "high": hi}]
    if not len(d):
        return _row(task, "iv", UNDECIDED, "certainty and random share no seed with acquired pairs at steps ≥ 2", detail)
    ev = (
        f"share confidently wrong (> {threshold}) at steps ≥ 2: certainty {c:.3f}, random {r:.3f}; "
        f"difference {d.mean():+.3f} {_ci(lo, hi)}, n = {len(d)} seeds"
    )
    return _row(task, "iv", verdict, ev, detail)


def findings(
    df: pd.DataFrame, acq: pd.DataFrame, confidence: float = CONFIDENCE, negligible: float = NEGLIGIBLE, threshold: float = 0.6
) -> pd.DataFrame:
    """The four findings per task of ``df`` (``load_runs``; one setting, e.g. ``select_main``) and ``acq``
    (``load_acquired`` of the same runs). Columns: task, finding (i–iv), claim, verdict, evidence (the numbers,
    as text), detail (the same numbers as records)."""
    rows = []
    for task, g in df.dropna(subset=["win_rate"]).groupby("task", sort=True):
        if "random" not in set(g["strategy"]):
            rows += [_row(task, f, UNDECIDED, "no random runs to compare with", []) for f in CLAIMS]
            continue
        first = int(g["acquired"].min())
        task_acq = acq[acq["task"] == task] if len(acq) else acq
        rows += [
            _first_step(g, task, first, confidence),
            _certainty(g, task, first, confidence, negligible),
            _entropy(g, task, first, confidence, negligible),
            _confident_wrong(task_acq, task, confidence, threshold),
        ]
    out = pd.DataFrame(rows, columns=COLUMNS)
    out.attrs["negligible"] = negligible
    return out


def findings_markdown(table: pd.DataFrame, tasks: Iterable[str] | None = None) -> str:
    """``findings`` as Markdown: one row per finding with its verdict and the numbers behind it."""
    if table.empty:
        return "no runs to read the findings from\n"
    keep = table if tasks is None else table[table["task"].isin(list(tasks))]
    negligible = table.attrs.get("negligible", NEGLIGIBLE)
    lines = ["| Dataset | Finding | Verdict | The numbers |", "|---|---|---|---|"]
    for r in keep.itertuples():
        lines.append(f"| {r.task} | ({r.finding}) {r.claim} | **{r.verdict}** | {r.evidence} |")
    return (
        "\n".join(lines) + "\n\nDifferences are strategy − random, paired by seed, with 95 % t intervals; over several sizes (ii, iii) "
        f"Holm-adjusted. (ii) is not reproduced when the final budget's upper end is below +{negligible:.2f} (the paper "
        f"reports +{PAPER_EFFECT:.2f}). The rules are in bench/findings.py's docstring.\n"
    )


__all__ = ["CLAIMS", "confident_error_shares", "findings", "findings_markdown"]
