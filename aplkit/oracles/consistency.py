"""Self-consistency (paper Fig 1) and the biases of a judge: ask each pair in both display orders.

A judge that prefers the same completion whichever side it is shown on is consistent; one that answers
by position (always "A") scores near 0 on pairs where that matters. ``judge_bias`` adds the two biases
MT-Bench measured in LLM judges (Zheng et al. 2023, arXiv 2306.05685): position bias, the share of pairs whose
verdict flips when A and B swap, and length bias, how often the longer completion wins, beside how often it
is truly the better one where the pairs carry a known preference. Every share comes with a Wilson 95 %
interval (statsmodels). Answers go through the ledger when one is given, so a rerun costs nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aplkit.oracles.base import Oracle
from aplkit.oracles.labelling import ask, shown_order
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison, Verdict

if TYPE_CHECKING:
    from aplkit.config import DataConfig

Pair = tuple[str, str, str]  # (prompt, y0, y1)


def wilson_interval(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    from statsmodels.stats.proportion import proportion_confint

    if n == 0:
        return 0.0, 1.0
    lo, hi = proportion_confint(k, n, alpha=alpha, method="wilson")
    return max(0.0, float(lo)), min(1.0, float(hi))


def _preferred(v: Verdict, a_is_y1: bool) -> int | None:
    if v.choice not in ("A", "B"):
        return None
    return int(a_is_y1) if v.choice == "A" else int(not a_is_y1)


def _both_orders(
    oracle: Oracle, pairs: Sequence[Pair], seed: int, ledger: Ledger | None
) -> tuple[list[Comparison], dict[Comparison, Verdict]]:
    """Each pair asked in both display orders: the comparison asked first (its order a seeded coin), and every verdict."""
    first, second = [], []
    for p, y0, y1 in pairs:
        fwd, rev = Comparison(p, y0, y1), Comparison(p, y1, y0)
        f, s = (fwd, rev) if shown_order(seed, p, y0, y1) == "01" else (rev, fwd)
        first.append(f)
        second.append(s)
    comps = first + second
    if ledger is not None:
        verdicts = [v for v, _ in ask(oracle, ledger, comps, purpose="consistency")]
    else:
        verdicts = oracle.judge(comps)
    return first, dict(zip(comps, verdicts, strict=True))


def _orders(pairs: Sequence[Pair], by_comp: dict[Comparison, Verdict]) -> dict[str, int]:
    """Counts over the pairs answered in both orders: agreement, and which position won where they disagree."""
    out = dict.fromkeys(("n", "agree", "invalid", "ties", "n_a", "n_valid", "first", "second"), 0)
    for p, y0, y1 in pairs:
        v01, v10 = by_comp[Comparison(p, y0, y1)], by_comp[Comparison(p, y1, y0)]
        for v in (v01, v10):
            if v.choice in ("A", "B"):
                out["n_valid"] += 1
                out["n_a"] += v.choice == "A"
        if v01.choice is None or v10.choice is None:
            out["invalid"] += 1
        elif "tie" in (v01.choice, v10.choice):
            out["ties"] += 1
        else:
            out["n"] += 1
            same = _preferred(v01, a_is_y1=False) == _preferred(v10, a_is_y1=True)
            out["agree"] += same
            if not same:  # the same position won both times
                out["first" if v01.choice == "A" else "second"] += 1
    return out


def judge_consistency(oracle: Oracle, pairs: Sequence[Pair], seed: int, ledger: Ledger | None = None) -> dict[str, Any]:
    """Label each ``(prompt, y0, y1)`` once in each display order; the fraction of pairs whose two labels agree.

    Pairs with a tie or an invalid answer in either order are left out of ``n`` and counted
    under ``ties`` / ``invalid``. ``a_rate`` is the share of valid answers that were "A"
    (0.5 for a judge without position bias). ``seed`` only fixes which order is asked first.
    """
    _, by_comp = _both_orders(oracle, pairs, seed, ledger)
    c = _orders(pairs, by_comp)
    n, agree = c["n"], c["agree"]
    lo, hi = wilson_interval(agree, n)
    return {
        "oracle": oracle.identity,
        "pairs": len(pairs),
        "n": n,
        "agree": agree,
        "agreement": agree / n if n else None,
        "ci_low": lo,
        "ci_high": hi,
        "invalid": c["invalid"],
        "ties": c["ties"],
        "a_rate": c["n_a"] / c["n_valid"] if c["n_valid"] else None,
    }


def words(text: str) -> int:
    """A completion's length for the length bias: its whitespace-separated words."""
    return len(text.split())


def _share(prefix: str, k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {f"{prefix}_n": n, f"{prefix}_k": k, f"{prefix}_rate": k / n if n else None, f"{prefix}_ci_low": lo, f"{prefix}_ci_high": hi}


def judge_bias(
    oracle: Oracle,
    pairs: Sequence[Pair],
    seed: int,
    ledger: Ledger | None = None,
    truth: Sequence[int | None] | None = None,
) -> dict[str, Any]:
    """Position and length bias of a judge on ``(prompt, y0, y1)`` pairs; ``truth``: 1 where y1 is known to be better,
    0 where y0 is, None where it is not known.

    * ``flip_*``: of the pairs answered A or B in both orders, the share whose preferred completion changes when
      A and B swap (1 − self-consistency); ``first`` / ``second`` count the flips the first / second position won.
    * ``longer_*``: of the pairs whose completions differ in length (words), the share where the verdict asked
      first (display order a seeded coin, as a run asks) prefers the longer one.
    * ``true_longer_*``: the same share for the known preference, on the pairs that carry one: the rate a judge
      without length bias would show on these pairs. ``length_bias`` is the difference.
    * ``truth_*``: how often the first verdict agrees with the known preference.
    """
    first, by_comp = _both_orders(oracle, pairs, seed, ledger)
    c = _orders(pairs, by_comp)
    truth = list(truth) if truth is not None else [None] * len(pairs)
    if len(truth) != len(pairs):
        raise ValueError(f"truth has {len(truth)} entries for {len(pairs)} pairs")
    longer = agree = known = 0
    judged = true_longer = true_n = equal = 0
    for (_, y0, y1), comp, t in zip(pairs, first, truth, strict=True):
        v = by_comp[comp]
        pref = _preferred(v, a_is_y1=comp.a == y1 and comp.b == y0)
        n0, n1 = words(y0), words(y1)
        long = None if n0 == n1 else int(n1 > n0)
        equal += long is None
        if pref is not None and long is not None:
            judged += 1
            longer += pref == long
        if t is not None and long is not None:
            true_n += 1
            true_longer += t == long
        if t is not None and pref is not None:
            known += 1
            agree += pref == t
    out: dict[str, Any] = {"oracle": oracle.identity, "pairs": len(pairs), "equal_length": equal}
    out.update(_share("flip", c["n"] - c["agree"], c["n"]))
    out.update({"first": c["first"], "second": c["second"], "a_rate": c["n_a"] / c["n_valid"] if c["n_valid"] else None})
    out.update({"invalid": c["invalid"], "ties": c["ties"]})
    out.update(_share("longer", longer, judged))
    out.update(_share("true_longer", true_longer, true_n))
    rates = out["longer_rate"], out["true_longer_rate"]
    out["length_bias"] = rates[0] - rates[1] if None not in rates else None
    out.update(_share("truth", agree, known))
    return out


def bias_line(r: dict[str, Any]) -> str:
    """``judge_bias``'s result in one line."""

    def pct(prefix: str) -> str:
        rate = r[f"{prefix}_rate"]
        if rate is None:
            return "n/a"
        return f"{100 * rate:.1f} % [{100 * r[f'{prefix}_ci_low']:.1f}, {100 * r[f'{prefix}_ci_high']:.1f}] of {r[f'{prefix}_n']}"

    truth = f"; the longer is truly better in {pct('true_longer')}; agrees with the known preference in {pct('truth')}"
    return (
        f"{r['oracle']}: flips when A and B swap in {pct('flip')} (first position won {r['first']}, second {r['second']}); "
        f"the longer completion wins {pct('longer')}" + (truth if r["true_longer_n"] or r["truth_n"] else "")
    )


def bias_pairs(data: DataConfig, path: str | Path | None = None, n: int | None = None) -> tuple[list[Pair], list[int | None]]:
    """The pairs ``judge_bias`` reads, with their known preference where there is one.

    ``path``: a JSONL/CSV/Parquet file, either ``prompt, y0, y1`` rows (a run's ``acquired.jsonl``: no known
    preference, a run's own labels are the judge's) or a preference data set in ``data``'s column mapping (the
    chosen response known better). Without ``path``, the held-out pairs of ``data`` (``data.task: preferences``).
    The first ``n`` pairs are kept.
    """
    import dataclasses

    import pandas as pd

    from aplkit.data import DataError, preference_frames, preference_splits

    if path is None:
        if data.task != "preferences":
            raise DataError("--pairs: a file of pairs is needed unless data.task=preferences (whose held-out pairs are used)")
        frame = preference_splits(data)[1]
    else:
        p = Path(path)
        read = {".jsonl": lambda f: pd.read_json(f, lines=True), ".csv": pd.read_csv, ".parquet": pd.read_parquet}.get(p.suffix)
        rows = read(p) if read is not None and p.is_file() else None
        if rows is not None and {"prompt", "y0", "y1"} <= set(rows.columns):
            rows = rows.head(n) if n is not None else rows
            return list(zip(rows["prompt"], rows["y0"], rows["y1"], strict=True)), [None] * len(rows)
        frames, _, _ = preference_frames(dataclasses.replace(data, task="preferences", source="file", path=str(p)))
        frame = pd.concat(list(frames.values()), ignore_index=True)
    frame = frame.head(n) if n is not None else frame
    truth = [None if pd.isna(t) else int(t) for t in frame["preferred"]]
    return list(zip(frame["text"], frame["y0"], frame["y1"], strict=True)), truth


def measure_bias(cfg: Any, pairs: str | Path | None = None, n: int | None = 200, out: str | Path = "runs/bias/bias.json") -> dict[str, Any]:
    """``judge_bias`` of the oracle an experiment config names (``aplkit judge-bias``), on ``bias_pairs(cfg.data, pairs, n)``.

    The answers are kept in a ledger beside ``out`` (``bias.sqlite``), so a rerun asks nothing; the result is
    written to ``out`` as JSON and returned.
    """
    import json

    from aplkit.data import DataError
    from aplkit.oracles import make_oracle

    items, truth = bias_pairs(cfg.data, pairs, n)
    if not items:
        raise DataError(f"--pairs {pairs}: no pairs")
    dest = Path(out)
    dest.parent.mkdir(parents=True, exist_ok=True)
    oracle = make_oracle(cfg.oracle, cfg.data)
    from aplkit.oracles.llm.prices import judge_prices

    ledger = Ledger(dest.with_suffix(".sqlite"), *judge_prices(cfg.oracle))
    try:
        res = judge_bias(oracle, items, cfg.seed, ledger=ledger, truth=truth)
    finally:
        ledger.close()
        oracle.close()
    dest.write_text(json.dumps(res, indent=2))
    return res


__all__ = ["bias_line", "bias_pairs", "judge_bias", "judge_consistency", "measure_bias", "wilson_interval", "words"]
