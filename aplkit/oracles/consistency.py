"""Self-consistency of an oracle (paper Fig 1): ask each pair in both display orders, count agreement.

A judge that prefers the same completion whichever side it is shown on is consistent;
one that answers by position (always "A") scores near 0 on pairs where that matters.
Answers go through the ledger when one is given, so a rerun costs nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from aplkit.oracles.base import Oracle
from aplkit.oracles.labelling import ask, shown_order
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison, Verdict


def wilson_interval(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials (95% by default); (0, 1) when n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _preferred(v: Verdict, a_is_y1: bool) -> int | None:
    if v.choice not in ("A", "B"):
        return None
    return int(a_is_y1) if v.choice == "A" else int(not a_is_y1)


def judge_consistency(oracle: Oracle, pairs: Sequence[tuple[str, str, str]], seed: int, ledger: Ledger | None = None) -> dict[str, Any]:
    """Label each ``(prompt, y0, y1)`` once in each display order; the fraction of pairs whose two labels agree.

    Pairs with a tie or an invalid answer in either order are left out of ``n`` and counted
    under ``ties`` / ``invalid``. ``a_rate`` is the share of valid answers that were "A"
    (0.5 for a judge without position bias). ``seed`` only fixes which order is asked first.
    """
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
    by_comp = dict(zip(comps, verdicts, strict=True))
    n = agree = invalid = ties = n_a = n_valid = 0
    for p, y0, y1 in pairs:
        v01, v10 = by_comp[Comparison(p, y0, y1)], by_comp[Comparison(p, y1, y0)]
        for v in (v01, v10):
            if v.choice in ("A", "B"):
                n_valid += 1
                n_a += v.choice == "A"
        if v01.choice is None or v10.choice is None:
            invalid += 1
        elif "tie" in (v01.choice, v10.choice):
            ties += 1
        else:
            n += 1
            agree += _preferred(v01, a_is_y1=False) == _preferred(v10, a_is_y1=True)
    lo, hi = wilson_interval(agree, n)
    return {
        "oracle": oracle.identity,
        "pairs": len(pairs),
        "n": n,
        "agree": agree,
        "agreement": agree / n if n else None,
        "ci_low": lo,
        "ci_high": hi,
        "invalid": invalid,
        "ties": ties,
        "a_rate": n_a / n_valid if n_valid else None,
    }


__all__ = ["judge_consistency", "wilson_interval"]
