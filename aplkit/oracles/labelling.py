"""From pairs to labels: display order → ledger → oracle → labels (paper §3.2.1).

``label_pairs`` is the one path from pairs to labels: it randomises the display order,
answers what the ledger already holds, sends the rest to the oracle, records each verdict
before asking for the next, maps A/B back to the pair's order, and only then applies the
simulated imperfect judges so the ledger always holds the true verdict.

Each answer is stored under the identity of the question really sent (``Oracle.record_identity``)
and looked up under every identity the oracle accepts (``Oracle.cache_identities``): the LLM
judge with ``structured: auto`` may send the JSON or the plain prompt, and either stored answer
serves it, while a judge pinned to one of them never gets the other's.
"""

from __future__ import annotations

from collections.abc import Sequence

from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.ledger import Ledger, _digest
from aplkit.records import Comparison, Label, Verdict


def _uniform(*parts: str) -> float:
    """A deterministic U[0, 1) draw from its inputs (stable across processes, unlike ``hash()``)."""
    return int.from_bytes(_digest(*parts)[:8], "big") / 2.0**64


def shown_order(seed: int, prompt: str, y0: str, y1: str) -> str:
    """Display order for a pair: "01" shows y0 as A, "10" shows y1 as A; a fair coin fixed by the inputs."""
    return "01" if _digest("order", str(seed), prompt, y0, y1)[0] & 1 == 0 else "10"


def _to_label(v: Verdict, order: str, cached: bool) -> Label:
    if v.choice in ("A", "B"):
        a_is_y1 = order == "10"
        preferred = int(a_is_y1) if v.choice == "A" else int(not a_is_y1)
    else:
        preferred = None
    return Label(preferred=preferred, tie=v.choice == "tie", shown_order=order, verdict=v, cached=cached)


def _simulate(label: Label, seed: int, c: Comparison, flip_prob: float, sample_bt: bool) -> Label:
    """Simulated imperfect judges, drawn from (seed, comparison) so a resumed run gets the same labels."""
    if label.preferred is None:
        return label
    true = label.preferred
    p = label.p_y1
    if sample_bt and p is not None:
        label.preferred = int(_uniform("bt", str(seed), c.prompt, c.a, c.b) < p)
    if flip_prob > 0 and _uniform("flip", str(seed), c.prompt, c.a, c.b) < flip_prob:
        label.preferred = 1 - label.preferred
    label.flipped = label.preferred != true
    return label


def _backfill_scores(
    oracle: Oracle, ledger: Ledger, oid_of: dict[Comparison, str], answers: dict[Comparison, tuple[Verdict, bool]]
) -> None:
    """Stored answers from before the ledger kept scores get them from ``Oracle.pointwise`` (a local, deterministic
    scorer: no label is asked again) and keep them; a pairwise judge has none and its answers stay as they are."""
    old = [c for c, (v, _) in answers.items() if v.valid and v.score_a is None]
    if not old:
        return
    s = oracle.pointwise([c.prompt for c in old] * 2, [c.a for c in old] + [c.b for c in old])
    if s is None:
        return
    n = len(old)
    for i, c in enumerate(old):
        v = answers[c][0]
        v.score_a, v.score_b = float(s[i]), float(s[n + i])
        ledger.add_scores(oid_of[c], c, v.score_a, v.score_b)


def ask(
    oracle: Oracle, ledger: Ledger, comps: Sequence[Comparison], *, purpose: str = "train", progress: bool = False
) -> list[tuple[Verdict, bool]]:
    """(verdict, cached) per comparison as shown: stored answers from the ledger, the rest asked once and recorded on arrival.

    A stored answer is looked up under each of ``oracle.cache_identities()`` in turn (first hit wins);
    a new one is recorded under ``oracle.record_identity(c)``, the identity of what was really sent.
    """
    oids = oracle.cache_identities()
    answers: dict[Comparison, tuple[Verdict, bool]] = {}
    oid_of: dict[Comparison, str] = {}
    misses: list[Comparison] = []
    for c in dict.fromkeys(comps):  # unique, first-seen order
        v = None
        for oid in oids:
            v = ledger.lookup(oid, c)
            if v is not None:
                oid_of[c] = oid
                break
        if v is None:
            misses.append(c)
        else:
            answers[c] = (v, True)
    _backfill_scores(oracle, ledger, oid_of, answers)
    if misses:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(misses), desc=f"labelling ({oracle.kind})", unit="pair")
        try:
            for i, v in oracle.judge_iter(misses):
                ledger.record(oracle.record_identity(misses[i]), misses[i], v, purpose)
                answers[misses[i]] = (v, False)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        missing = sum(c not in answers for c in misses)
        if missing:
            raise OracleError(f"{oracle.kind} oracle returned no verdict for {missing} of {len(misses)} comparisons")
    return [answers[c] for c in comps]


def label_pairs(
    oracle: Oracle,
    ledger: Ledger,
    pairs: Sequence[tuple[str, str, str]],
    seed: int,
    *,
    flip_prob: float = 0.0,
    sample_bt: bool = False,
    purpose: str = "train",
    progress: bool = False,
) -> list[Label]:
    """Labels for ``(prompt, y0, y1)`` pairs, in pair order; each new verdict is recorded as it arrives.

    An ``OracleError`` propagates; every verdict recorded before it stays in the ledger, so a
    rerun only asks the rest.
    """
    orders = [shown_order(seed, p, y0, y1) for p, y0, y1 in pairs]
    comps = [Comparison(p, y0, y1) if o == "01" else Comparison(p, y1, y0) for (p, y0, y1), o in zip(pairs, orders, strict=True)]
    answers = dict(zip(comps, ask(oracle, ledger, comps, purpose=purpose, progress=progress), strict=True))
    labels = []
    for c, o in zip(comps, orders, strict=True):
        v, cached = answers[c]
        labels.append(_simulate(_to_label(v, o, cached), seed, c, flip_prob, sample_bt))
    return labels


__all__ = ["ask", "label_pairs", "shown_order"]
