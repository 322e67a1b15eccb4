"""How good are the offline sentiment judges on held-out IMDB reviews? Picks the back-end and the judge's weights.

Everything is measured on the experiment's 5,000 held-out test reviews (split 20000/5000, seed 0), which
neither the tfidf classifier nor the fluency n-gram model ever trained on.

Part 1, sentiment back-ends (vader, tfidf), on all test reviews:
  full   accuracy / AUC on whole reviews (AUC = P(a random positive review outscores a random negative one))
  short  the same on the first 40 words: what the oracle really sees (8–16 prompt tokens + ~24 new words)
  speed  texts scored per second (short texts, one process)

Part 2, the judge's weights. The test reviews are cut in two halves (first / second 2,500): weights are
picked on the "dev" half and the numbers to quote are those of the "eval" half.
  (a) sentiment pairs: prompt = first 12 words of a review, A/B = words 12–36 of a positive and a negative
      review (prompt taken alternately from each); accuracy = the positive continuation wins (ties = wrong)
  (b) degeneration pairs: for each positive review, prompt = its first 12 words, the real continuation
      (words 12–36) against a degenerate one built from it (seeded per review):
        salad    6–24 distinct positive words in random order ("superb wonderful amazing ...")
        shuffle  the real continuation's words in random order
        loop2    the first 0–12 real words, then a positive bigram ("great film") said 2–4 times
        loop3    the same with a positive trigram ("truly great film" / "a great film")
        echo     the first 4–8 real words said 2–3 times
        stutter  the first 6–18 real words, then the last of them repeated 3–6 times
      accuracy = the real continuation scores strictly higher; (b) = mean over the six kinds
      (positive reviews shorter than 36 words are left out of (b))
  score  s = sentiment(prompt + completion) − w_rep · rep(completion) + fluency term, where
         rep  = share of repeated word n-grams: trigrams only (today's judge), max over n = 2..4,
                or mean over n = 1..4
         fluency term = 0, or + w_flu · SLOR (linear), or − w_flu · max(0, floor − SLOR) (hinge);
         SLOR = mean per-token ln P_KN-trigram − ln P_unigram of the completion given the prompt
         (aplkit/oracles/ngram.py, fitted on the same reviews as tfidf)

Criterion, fixed before the grid was run: on the dev half with the tfidf back-end, maximise (b) subject to
(a) ≥ (a of today's judge: trigrams, w_rep = 1, no fluency) − 0.01; ties go to the higher (a), then to the
smaller w_rep + w_flu. The chosen weights are the defaults of ``OracleConfig``; the script checks that
``SentimentOracle`` with those defaults scores exactly as the grid's row does.

Run:  .venv/bin/python bench/oracle_accuracy.py [--n 5000] [--json bench/results/oracle_accuracy.json]
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from aplkit.data import imdb_reviews, split_ids
from aplkit.oracles.ngram import imdb_lm
from aplkit.oracles.sentiment import DEFAULT_TAU, SentimentOracle, TfidfScorer, VaderScorer, repeated_ngram_fraction
from bench.provenance import commit

POSITIVE_WORDS = (
    "excellent superb wonderful amazing brilliant fantastic best great beautiful perfect loved masterpiece outstanding "
    "favorite enjoyable stunning delightful terrific touching charming hilarious gorgeous superbly wonderfully perfectly "
    "beautifully awesome incredible memorable impressive remarkable fabulous marvelous lovely moving powerful enjoyed "
    "recommend highly"
).split()
ADJECTIVES = "great wonderful excellent brilliant beautiful amazing superb perfect fantastic lovely".split()
NOUNS = "film movie story cast acting performance ending script music direction".split()
ADVERBS = "really truly very so".split()
KINDS = ("salad", "shuffle", "loop2", "loop3", "echo", "stutter")
REP_MEASURES = ("tri", "max2-4", "mean1-4")
TODAY = {"rep": "tri", "w_rep": 1.0, "fluency": "none", "w_flu": 0.0, "floor": None}


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


def degenerate(kind: str, real: list[str], rng: np.random.Generator) -> str:
    """One degenerate variant of a real continuation (a list of words)."""
    if kind == "salad":
        return " ".join(rng.choice(POSITIVE_WORDS, size=int(rng.integers(6, 25)), replace=False))
    if kind == "shuffle":
        return " ".join(real[i] for i in rng.permutation(len(real)))
    if kind in ("loop2", "loop3"):
        adj, noun = rng.choice(ADJECTIVES), rng.choice(NOUNS)
        phrase = f"{adj} {noun}" if kind == "loop2" else f"{rng.choice([*ADVERBS, 'a'])} {adj} {noun}"
        return " ".join(real[: int(rng.integers(0, 13))] + [phrase] * int(rng.integers(2, 5)))
    if kind == "echo":
        return " ".join(real[: int(rng.integers(4, 9))] * int(rng.integers(2, 4)))
    if kind == "stutter":
        m = int(rng.integers(6, 19))
        return " ".join(real[:m] + [real[m - 1]] * int(rng.integers(3, 7)))
    raise ValueError(kind)


def build_half(frame) -> dict:
    """Sentiment pairs (a) and degeneration pairs (b) of one half of the test reviews, as flat (prompt, completion) lists."""
    texts, labels, ids = list(frame["text"]), list(frame["label"]), list(frame.index)
    pos = [(i, t) for i, t, y in zip(ids, texts, labels, strict=True) if y == 1]
    neg = [(i, t) for i, t, y in zip(ids, texts, labels, strict=True) if y == 0]
    prompts, comps = [], []
    for k, ((_, p), (_, n)) in enumerate(zip(pos, neg, strict=False)):
        prompt = words(p if k % 2 == 0 else n, 0, 12) + " "
        prompts += [prompt, prompt]
        comps += [words(p, 12, 36), words(n, 12, 36)]  # (a): even index = positive, odd = negative
    n_a = len(prompts) // 2
    kinds = []
    for rid, p in pos:
        real = p.split()[12:36]
        if len(real) < 24:  # (b) needs a full 24-word continuation
            continue
        prompt = words(p, 0, 12) + " "
        rng = np.random.default_rng(int(rid.split("-")[-1]))
        for kind in KINDS:
            prompts += [prompt, prompt]
            comps += [" ".join(real), degenerate(kind, real, rng)]  # (b): real, then its degenerate variant
            kinds.append(kind)
    return {"prompts": prompts, "comps": comps, "n_a": n_a, "kinds": np.array(kinds)}


def components(half: dict, scorers: dict, lm) -> dict:
    prompts, comps = half["prompts"], half["comps"]
    out = {name: np.array(s([p + c for p, c in zip(prompts, comps, strict=True)])) for name, s in scorers.items()}
    fr = np.array([[repeated_ngram_fraction(c, n) for n in (1, 2, 3, 4)] for c in comps])
    out["rep"] = {"tri": fr[:, 2], "max2-4": fr[:, 1:].max(axis=1), "mean1-4": fr.mean(axis=1)}
    out["slor"] = np.array(lm.slor(prompts, comps))
    return out


def combined(comp: dict, backend: str, cfg: dict) -> np.ndarray:
    s = comp[backend] - cfg["w_rep"] * comp["rep"][cfg["rep"]]
    if cfg["fluency"] == "linear":
        s = s + cfg["w_flu"] * comp["slor"]
    elif cfg["fluency"] == "hinge":
        s = s - cfg["w_flu"] * np.maximum(0.0, cfg["floor"] - comp["slor"])
    return s


def evaluate(half: dict, comp: dict, backend: str, cfg: dict) -> dict:
    s = combined(comp, backend, cfg)
    n_a = half["n_a"]
    a_pos, a_neg = s[0 : 2 * n_a : 2], s[1 : 2 * n_a : 2]
    real, fake = s[2 * n_a :: 2], s[2 * n_a + 1 :: 2]
    wins = real > fake
    per_kind = {k: float(np.mean(wins[half["kinds"] == k])) for k in KINDS}
    return {
        "a": float(np.mean(a_pos > a_neg)),
        "b": float(np.mean(list(per_kind.values()))),
        **{f"b_{k}": v for k, v in per_kind.items()},
        "tau": best_tau(a_pos - a_neg),
    }


def grid() -> list[dict]:
    rows = []
    for rep, w_rep in itertools.product(REP_MEASURES, (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)):
        rows.append({"rep": rep, "w_rep": w_rep, "fluency": "none", "w_flu": 0.0, "floor": None})
        for w in (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0):
            rows.append({"rep": rep, "w_rep": w_rep, "fluency": "linear", "w_flu": w, "floor": None})
        for floor, w in itertools.product((0.0, 0.5, 1.0, 1.5), (0.1, 0.2, 0.5, 1.0, 2.0, 4.0)):
            rows.append({"rep": rep, "w_rep": w_rep, "fluency": "hinge", "w_flu": w, "floor": floor})
    return rows


def choose(rows: list[dict], today_a: float) -> dict:
    ok = [r for r in rows if r["dev"]["a"] >= today_a - 0.01 - 1e-12]
    return max(ok, key=lambda r: (r["dev"]["b"], r["dev"]["a"], -(r["w_rep"] + r["w_flu"])))


def rounded(x):
    """Floats to 4 decimals for the JSON (the grid has ~600 rows)."""
    if isinstance(x, float):
        return round(x, 4)
    if isinstance(x, dict):
        return {k: rounded(v) for k, v in x.items()}
    if isinstance(x, list):
        return [rounded(v) for v in x]
    return x


def fmt(cfg: dict) -> str:
    if cfg["fluency"] == "none":
        return f"rep={cfg['rep']} w_rep={cfg['w_rep']:g} no fluency"
    if cfg["fluency"] == "linear":
        return f"rep={cfg['rep']} w_rep={cfg['w_rep']:g} +{cfg['w_flu']:g}·SLOR"
    return f"rep={cfg['rep']} w_rep={cfg['w_rep']:g} −{cfg['w_flu']:g}·max(0, {cfg['floor']:g} − SLOR)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=5000, help="held-out reviews to use (of 5000)")
    ap.add_argument("--json", default=None, help="write the results here (e.g. bench/results/oracle_accuracy.json)")
    args = ap.parse_args()
    started = time.time()

    df = imdb_reviews().set_index("id")
    train_ids, test_ids = split_ids(list(df.index), list(df["label"]), train_size=20000, test_size=5000, seed=0)
    assert not set(test_ids) & set(train_ids)
    test = df.loc[test_ids[: args.n]]
    texts, labels = list(test["text"]), test["label"].to_numpy()
    short = [words(t, 0, 40) for t in texts]

    t0 = time.perf_counter()
    tfidf = TfidfScorer()  # the oracle's own model: every review outside this test split, cached
    lm = imdb_lm()  # the fluency model: the same reviews, cached
    fit_s = time.perf_counter() - t0
    scorers = {"vader": VaderScorer(), "tfidf": tfidf}
    print(f"held-out reviews: {len(texts)}  tfidf + n-gram LM fit/load: {fit_s:.1f}s  ({tfidf.tag}, {lm.tag})")

    # ---------------------------------------------------------------- part 1: sentiment back-ends
    sentiment = {}
    print(f"{'backend':8} {'full acc':>8} {'full AUC':>8} {'short acc':>9} {'short AUC':>9} {'texts/s':>8}")
    for name, scorer in scorers.items():
        full = np.array(scorer(texts))
        t0 = time.perf_counter()
        sh = np.array(scorer(short))
        speed = len(short) / (time.perf_counter() - t0)
        sentiment[name] = {
            "full_acc": float(np.mean((full > 0) == labels)),
            "full_auc": auc(full, labels),
            "short_acc": float(np.mean((sh > 0) == labels)),
            "short_auc": auc(sh, labels),
            "texts_per_s": speed,
        }
        r = sentiment[name]
        print(f"{name:8} {r['full_acc']:8.3f} {r['full_auc']:8.3f} {r['short_acc']:9.3f} {r['short_auc']:9.3f} {speed:8.0f}")

    # ---------------------------------------------------------------- part 2: weights
    half = len(test) // 2  # every prefix of the split's test order is stratified (±1), so both halves are too
    halves = {"dev": build_half(test.iloc[:half]), "eval": build_half(test.iloc[half:])}
    comps = {h: components(halves[h], scorers, lm) for h in halves}
    for h, d in halves.items():
        print(f"{h}: {d['n_a']} sentiment pairs, {len(d['kinds'])} degeneration pairs")
    rows = grid()
    for r in rows:
        for h in halves:
            r[h] = evaluate(halves[h], comps[h], "tfidf", r)
    today = next(r for r in rows if all(r[k] == v for k, v in TODAY.items()))
    chosen = choose(rows, today["dev"]["a"])
    print(f"criterion: max (b) on dev s.t. (a) >= {today['dev']['a']:.3f} - 0.01 ({len(rows)} settings)")
    print(f"chosen: {fmt(chosen)}")

    cols = ["a", "b", *[f"b_{k}" for k in KINDS], "tau"]
    print(f"{'judge':44} {'half':5} " + " ".join(f"{c:>9}" for c in cols))
    table = []
    for label, cfg in (("today (trigram rep, w 1, no fluency)", today), ("chosen", chosen)):
        for backend in ("tfidf", "vader"):
            for h in ("dev", "eval"):
                res = evaluate(halves[h], comps[h], backend, cfg)
                table.append({"judge": label, "backend": backend, "half": h, **res})
                print(f"{label + ' ' + backend:44} {h:5} " + " ".join(f"{res[c]:9.3f}" for c in cols))

    # the oracle with its defaults must score exactly as the chosen row
    oracle = SentimentOracle("tfidf", scorer=tfidf)
    ev = halves["eval"]
    t0 = time.perf_counter()
    got = np.array(oracle.score(ev["prompts"], ev["comps"]))
    judge_speed = len(got) / (time.perf_counter() - t0)
    want = combined(comps["eval"], "tfidf", chosen)
    assert np.allclose(got, want, atol=1e-9), f"SentimentOracle defaults differ from the chosen row: {oracle.identity}"
    print(f"SentimentOracle() defaults reproduce the chosen row ({oracle.identity}); judge speed {judge_speed:.0f} texts/s")
    print(f"default tau per backend: {DEFAULT_TAU} (a score gap of tau gives p_a = {1 / (1 + math.exp(-1)):.2f})")

    if args.json:
        blob = {
            "date": datetime.date.today().isoformat(),
            "git": commit(),
            "machine": platform.processor() or platform.machine(),
            "seconds": round(time.time() - started, 1),
            "held_out_reviews": len(texts),
            "models": {"tfidf": tfidf.tag, "fluency": lm.tag},
            "sentiment": sentiment,
            "criterion": "dev half, tfidf: maximise (b) subject to (a) >= (a of today's judge) - 0.01; ties: higher (a), then smaller w_rep + w_flu",
            "today": {k: today[k] for k in TODAY},
            "chosen": {k: chosen[k] for k in TODAY},
            "oracle_identity": oracle.identity,
            "judge_texts_per_s": judge_speed,
            "table": table,
            "grid": [{**{k: r[k] for k in TODAY}, "dev": r["dev"], "eval": r["eval"]} for r in rows],
        }
        Path(args.json).write_text(json.dumps(rounded(blob), indent=1) + "\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
