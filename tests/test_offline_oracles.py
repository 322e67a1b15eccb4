"""Offline oracles: sentiment (vader / tfidf), classifier / reward model, ROUGE reference."""

from __future__ import annotations

import math

import pytest

from aplkit.config import OracleConfig
from aplkit.oracles.base import OracleError
from aplkit.oracles.sentiment import SentimentOracle, TfidfScorer, repeated_ngram_fraction
from aplkit.records import Comparison

POS = " an absolutely wonderful film, I loved every minute of it."
NEG = " a boring, terrible waste of time. The worst film I have seen."
PROMPT = "I watched this movie last night and it was"
DEGENERATE = " I loved the movie. I loved the movie. I loved the movie."
NORMAL = " the acting was good and the plot kept me interested until the end."


# --------------------------------------------------------------------------- sentiment


def test_repeated_ngram_fraction_hand_computed():
    # 12 words -> 10 trigrams, 4 distinct ("i loved the", "loved the movie", "the movie i", "movie i loved")
    assert repeated_ngram_fraction(DEGENERATE) == pytest.approx(6 / 10)
    assert repeated_ngram_fraction(NORMAL) == 0.0
    assert repeated_ngram_fraction("good good") == 0.0  # fewer than 3 words: no trigram
    # "a b c a b c": trigrams abc, bca, cab, abc -> 1 repeat of 4
    assert repeated_ngram_fraction("a b c a b c") == pytest.approx(1 / 4)


def test_vader_prefers_positive_in_both_orders_and_p_a_is_sigmoid_of_gap():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    oracle = SentimentOracle("vader", repetition_penalty=1.0, tau=0.1)
    fwd, rev = oracle.judge([Comparison(PROMPT, POS, NEG), Comparison(PROMPT, NEG, POS)])
    assert fwd.choice == "A" and rev.choice == "B"
    sia = SentimentIntensityAnalyzer()
    sa, sb = sia.polarity_scores(PROMPT + POS)["compound"], sia.polarity_scores(PROMPT + NEG)["compound"]
    assert sa > 0 > sb
    assert fwd.p_a == pytest.approx(1 / (1 + math.exp(-(sa - sb) / 0.1)))
    assert rev.p_a == pytest.approx(1 - fwd.p_a)


def test_repetition_penalty_flips_a_degenerate_completion():
    items = [Comparison(PROMPT, DEGENERATE, NORMAL)]
    # Without the penalty the degenerate text is "more positive" by VADER, so the penalty is what decides.
    assert SentimentOracle("vader", repetition_penalty=0.0).judge(items)[0].choice == "A"
    v = SentimentOracle("vader", repetition_penalty=1.0).judge(items)[0]
    assert v.choice == "B" and v.p_a < 0.5
    # On normal text the penalty changes nothing.
    o0, o1 = SentimentOracle("vader", repetition_penalty=0.0), SentimentOracle("vader", repetition_penalty=1.0)
    assert o0.score([PROMPT], [NORMAL]) == o1.score([PROMPT], [NORMAL])


def test_identical_texts_tie_and_p_a_half():
    v = SentimentOracle("vader").judge([Comparison(PROMPT, NORMAL, NORMAL)])[0]
    assert v.choice == "tie" and v.p_a == 0.5


def test_p_a_above_half_iff_choice_a():
    oracle = SentimentOracle("vader", tau=0.05)
    texts = [POS, NEG, NORMAL, DEGENERATE, " it was fine.", " meh."]
    items = [Comparison(PROMPT, a, b) for a in texts for b in texts]
    for v in oracle.judge(items):
        assert (v.p_a > 0.5) == (v.choice == "A") and (v.p_a < 0.5) == (v.choice == "B")


def test_identity_and_bad_arguments():
    a, b = SentimentOracle("vader", 1.0, tau=0.1), SentimentOracle("vader", 0.5, tau=0.1)
    assert a.identity != b.identity and "vader" in a.identity
    assert SentimentOracle("vader", tau=0.2).identity != a.identity
    with pytest.raises(OracleError, match="backend"):
        SentimentOracle("bert")
    with pytest.raises(OracleError, match="tau"):
        SentimentOracle("vader", tau=0)


def test_from_config():
    o = SentimentOracle.from_config(OracleConfig(sentiment_model="vader", repetition_penalty=0.25))
    assert o.backend == "vader" and o.repetition_penalty == 0.25


@pytest.fixture(scope="module")
def small_imdb():
    from aplkit.oracles.sentiment import imdb_train_pool

    texts, labels = imdb_train_pool()
    return texts[:3000], labels[:3000]


def test_tfidf_trains_caches_and_judges(small_imdb, tmp_path, monkeypatch):
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path))
    texts, labels = small_imdb
    scorer = TfidfScorer(texts, labels)
    cached = list((tmp_path / "oracles").glob("sentiment-tfidf-*.joblib"))
    assert len(cached) == 1
    oracle = SentimentOracle("tfidf", scorer=scorer)
    fwd, rev = oracle.judge([Comparison(PROMPT, POS, NEG), Comparison(PROMPT, NEG, POS)])
    assert fwd.choice == "A" and rev.choice == "B" and fwd.p_a > 0.5 > rev.p_a
    assert scorer.data_hash in oracle.identity
    # A second scorer on the same data loads the cached model and scores identically.
    again = TfidfScorer(texts, labels)
    assert again([PROMPT + POS, PROMPT + NEG]) == scorer([PROMPT + POS, PROMPT + NEG])
    # Different training data -> different identity, so cached labels are never reused across models.
    other = TfidfScorer(texts[:2000], labels[:2000], cache=False)
    assert other.data_hash != scorer.data_hash
    # Accuracy on unseen train-pool reviews is far above chance even with 3k training reviews.
    from aplkit.oracles.sentiment import imdb_train_pool

    all_texts, all_labels = imdb_train_pool()
    held_t, held_y = all_texts[3000:3400], all_labels[3000:3400]
    acc = sum((s > 0) == bool(y) for s, y in zip(scorer(held_t), held_y, strict=True)) / len(held_y)
    assert acc > 0.75
