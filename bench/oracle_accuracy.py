"""How good are the offline sentiment judges on held-out IMDB reviews? Picks the default back-end.

For each back-end (vader, tfidf fitted on the 20k train pool only) on the 5,000 held-out test reviews:
  full   accuracy / AUC on whole reviews (AUC = P(a random positive review outscores a random negative one))
  short  the same on the first 40 words: what the oracle really sees (8–16 prompt tokens + ~24 new words)
  pairs  same-prompt pairs as in the loop: prompt = first 12 words of a review, A/B = words 12–36 of a
         positive and a negative review (order alternated); accuracy = picks the positive continuation,
         ties counted as wrong and reported; best τ = maximum-likelihood temperature for p_a on those pairs
  speed  texts scored per second (short texts, one process)

Run:  .venv/bin/python bench/oracle_accuracy.py [--n 5000]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np

from aplkit.data import imdb_reviews, split_ids
from aplkit.oracles.sentiment import DEFAULT_TAU, SentimentOracle, TfidfScorer, VaderScorer
from aplkit.records import Comparison


def auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(labels, scores))


def words(text: str, lo: int, hi: int) -> str:
    return " ".join(text.split()[lo:hi])


def best_tau(gaps: np.ndarray) -> float:
    """τ maximising mean log σ(gap/τ), where gap = s(positive) − s(negative) (ties excluded)."""
    gaps = gaps[gaps != 0]
    grid = np.geomspace(0.005, 2.0, 200)
    ll = [np.mean(-np.logaddexp(0.0, -gaps / t)) for t in grid]
    return float(grid[int(np.argmax(ll))])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="held-out reviews to use (of 5000)")
    args = ap.parse_args()

    df = imdb_reviews().set_index("id")
    train_ids, test_ids = split_ids(list(df.index), list(df["label"]), train_size=20000, test_size=5000, seed=0)
    test = df.loc[test_ids[: args.n]]
    texts, labels = list(test["text"]), test["label"].to_numpy()
    short = [words(t, 0, 40) for t in texts]
    pos = [t for t, y in zip(texts, labels, strict=True) if y == 1]
    neg = [t for t, y in zip(texts, labels, strict=True) if y == 0]
    items, truth = [], []
    for k, (p, n) in enumerate(zip(pos, neg, strict=False)):
        prompt = words(p if k % 2 == 0 else n, 0, 12) + " "
        a, b = words(p, 12, 36), words(n, 12, 36)
        items.append(Comparison(prompt, a, b) if k % 2 == 0 else Comparison(prompt, b, a))
        truth.append("A" if k % 2 == 0 else "B")

    t0 = time.perf_counter()
    tfidf = TfidfScorer()  # the oracle's own model: every review outside this test split, cached
    fit_s = time.perf_counter() - t0
    assert not set(test_ids) & set(train_ids)
    print(f"held-out reviews: {len(texts)}  pairs: {len(items)}  tfidf fit/load: {fit_s:.1f}s  ({tfidf.tag})")
    print(
        f"{'backend':8} {'full acc':>8} {'full AUC':>8} {'short acc':>9} {'short AUC':>9} {'pair acc':>8} {'ties':>6} {'best tau':>8} {'texts/s':>8}"
    )
    for name, scorer in (("vader", VaderScorer()), ("tfidf", tfidf)):
        full = np.array(scorer(texts))
        t0 = time.perf_counter()
        sh = np.array(scorer(short))
        speed = len(short) / (time.perf_counter() - t0)
        oracle = SentimentOracle(name, repetition_penalty=1.0, scorer=scorer)
        verdicts = oracle.judge(items)
        pair_acc = np.mean([v.choice == t for v, t in zip(verdicts, truth, strict=True)])
        ties = np.mean([v.choice == "tie" for v in verdicts])
        gaps = []
        for v, t in zip(verdicts, truth, strict=True):
            sa, sb = (float(x.split("=")[1]) for x in v.raw.split())
            gaps.append(sa - sb if t == "A" else sb - sa)
        print(
            f"{name:8} {np.mean((full > 0) == labels):8.3f} {auc(full, labels):8.3f} {np.mean((sh > 0) == labels):9.3f} "
            f"{auc(sh, labels):9.3f} {pair_acc:8.3f} {ties:6.3f} {best_tau(np.array(gaps)):8.3f} {speed:8.0f}"
        )
    print(f"default tau per backend: {DEFAULT_TAU} (a score gap of tau gives p_a = {1 / (1 + math.exp(-1)):.2f})")


if __name__ == "__main__":
    main()
