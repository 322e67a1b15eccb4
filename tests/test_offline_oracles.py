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


def test_from_config_and_default_tau():
    from aplkit.oracles.sentiment import DEFAULT_TAU

    o = SentimentOracle.from_config(OracleConfig(sentiment_model="vader", repetition_penalty=0.25))
    assert o.backend == "vader" and o.repetition_penalty == 0.25 and o.tau == DEFAULT_TAU["vader"]


def test_train_pool_excludes_the_experiments_test_split():
    from aplkit.data import imdb_reviews, split_ids
    from aplkit.oracles.sentiment import imdb_train_pool

    df = imdb_reviews()
    for train_size, test_size, seed in ((20000, 5000, 0), (1000, 500, 3)):
        _, test_ids = split_ids(list(df["id"]), list(df["label"]), train_size, test_size, seed)
        texts, labels = imdb_train_pool(train_size, test_size, seed)
        assert len(texts) == len(labels) and len(df) - test_size - 100 < len(texts) <= len(df) - test_size
        held = set(df[df["id"].isin(set(test_ids))]["text"])
        assert not held & set(texts)


@pytest.fixture(scope="module")
def small_imdb():
    from aplkit.oracles.sentiment import imdb_train_pool

    texts, labels = imdb_train_pool()  # CSV order: all negatives, then all positives
    return texts[::6], labels[::6]


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
    # Accuracy on unseen train-pool reviews is far above chance even with ~3.3k training reviews.
    from aplkit.oracles.sentiment import imdb_train_pool

    all_texts, all_labels = imdb_train_pool()
    held_t, held_y = all_texts[1::50], all_labels[1::50]  # disjoint from [::6]: 1 + 50k is odd
    acc = sum((s > 0) == bool(y) for s, y in zip(scorer(held_t), held_y, strict=True)) / len(held_y)
    assert acc > 0.75


# --------------------------------------------------------------------------- classifier / reward model


def _tiny_classifier(path, num_labels: int):
    import torch
    from transformers import LlamaForSequenceClassification

    from aplkit.models import load_tokenizer, tiny_config

    tok = load_tokenizer("tiny-random")
    cfg = tiny_config(len(tok))
    cfg.num_labels = num_labels
    cfg.pad_token_id = tok.pad_token_id
    cfg.initializer_range = 0.2  # random logits far enough apart that the argmax is unambiguous
    torch.manual_seed(0)
    net = LlamaForSequenceClassification(cfg).eval()
    net.save_pretrained(path)
    tok.save_pretrained(path)  # saved left-padded: the oracle must switch to right padding itself
    return net, tok


def _direct_logits(net, tok, texts):
    import torch

    with torch.no_grad():
        return [net(**tok(t, return_tensors="pt")).logits[0] for t in texts]  # one text at a time: no padding


@pytest.fixture(scope="module")
def tiny_cls_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-cls")
    net, tok = _tiny_classifier(path, num_labels=2)
    return path, net, tok


def _logp(logits, col):
    import torch

    return float(torch.log_softmax(logits, dim=-1)[col])


def test_classifier_prefers_argmax_of_model_logits_in_both_orders(tiny_cls_dir):
    from aplkit.oracles.classifier import ClassifierOracle

    path, net, tok = tiny_cls_dir
    prompt = "The film"
    completions = [" was great.", " was a long and very boring mess of a film, honestly.", " ok", " I loved it, really loved it!"]
    oracle = ClassifierOracle(str(path), batch_size=3)  # default column: the last (1)
    direct = [_logp(lg, 1) for lg in _direct_logits(net, tok, [prompt + c for c in completions])]
    # Batched + right-padded scores equal the unpadded one-at-a-time log P(positive).
    assert oracle.score([prompt + c for c in completions]) == pytest.approx(direct, abs=1e-4)
    pairs = [(i, j) for i in range(4) for j in range(4) if i != j]
    assert all(abs(direct[i] - direct[j]) > 1e-3 for i, j in pairs)  # precondition: no near-ties
    verdicts = oracle.judge([Comparison(prompt, completions[i], completions[j]) for i, j in pairs])
    for (i, j), v in zip(pairs, verdicts, strict=True):
        assert v.choice == ("A" if direct[i] > direct[j] else "B")
        assert v.p_a == pytest.approx(1 / (1 + math.exp(-(direct[i] - direct[j]))), abs=1e-4)
    # Column 0 is the negated preference only if the columns disagree; just check it really reads column 0.
    col0 = ClassifierOracle(str(path), positive_label=0)
    direct0 = [_logp(lg, 0) for lg in _direct_logits(net, tok, [prompt + c for c in completions])]
    assert col0.score([prompt + c for c in completions]) == pytest.approx(direct0, abs=1e-4)
    assert col0.identity != oracle.identity and str(path) in oracle.identity


def test_single_logit_reward_model(tmp_path):
    from aplkit.oracles.classifier import ClassifierOracle

    net, tok = _tiny_classifier(tmp_path, num_labels=1)
    oracle = ClassifierOracle(str(tmp_path))
    a, b = " a", " bb cc dd ee"
    sa, sb = (float(lg[0]) for lg in _direct_logits(net, tok, ["x" + a, "x" + b]))
    v = oracle.judge([Comparison("x", a, b)])[0]
    assert v.choice == ("A" if sa > sb else "B")
    assert v.p_a == pytest.approx(1 / (1 + math.exp(-(sa - sb))), abs=1e-4)
    assert "score=" not in oracle.identity  # a reward model's rule never changed: its cached answers stay valid
    with pytest.raises(OracleError, match="positive_label=1"):
        ClassifierOracle(str(tmp_path), positive_label=1)


def test_classifier_ranks_by_p_positive_not_the_raw_positive_logit(tmp_path):
    """Text A gets the larger raw positive logit but the lower P(positive): the oracle must prefer B."""
    import torch

    from aplkit.oracles.classifier import ClassifierOracle

    net, tok = _tiny_classifier(tmp_path / "src", num_labels=2)
    prompt, a, b = "x", " a", " bb cc dd ee"

    def last_hidden(text):
        with torch.no_grad():
            return net.model(**tok(text, return_tensors="pt")).last_hidden_state[0, -1]

    # Set the two-class head (rows 5u and u, u = d/|d|²) so that z1(A) − z1(B) = 1 (A has the larger
    # positive logit) while z0(A) − z0(B) = 5, so (z1 − z0)(A) − (z1 − z0)(B) = −4: P(positive | B) > P(positive | A).
    d = last_hidden(prompt + a) - last_hidden(prompt + b)
    u = d / d.dot(d)
    with torch.no_grad():
        net.score.weight.copy_(torch.stack([5 * u, u]))
    net.save_pretrained(tmp_path / "cls")
    tok.save_pretrained(tmp_path / "cls")
    za, zb = _direct_logits(net, tok, [prompt + a, prompt + b])
    assert za[1] > zb[1] and torch.softmax(za, -1)[1] < torch.softmax(zb, -1)[1]  # the precondition, as built
    oracle = ClassifierOracle(str(tmp_path / "cls"))
    fwd, rev = oracle.judge([Comparison(prompt, a, b), Comparison(prompt, b, a)])
    assert fwd.choice == "B" and rev.choice == "A" and fwd.p_a < 0.5 < rev.p_a
    # p_a = σ(log P_A − log P_B) = P_A / (P_A + P_B) over the two texts' P(positive)
    pa, pb = float(torch.softmax(za, -1)[1]), float(torch.softmax(zb, -1)[1])
    assert fwd.p_a == pytest.approx(pa / (pa + pb), abs=1e-4)
    # the scoring rule is part of the identity: labels cached under the raw-logit rule are not reused
    assert ":score=logp:" in oracle.identity


def test_classifier_load_errors_are_one_line(tmp_path):
    from aplkit.oracles.classifier import ClassifierOracle

    with pytest.raises(OracleError, match="cannot load") as e:
        ClassifierOracle(str(tmp_path / "nope"))
    assert "\n" not in str(e.value)
    with pytest.raises(OracleError, match="oracle.classifier"):
        ClassifierOracle.from_config(OracleConfig(kind="classifier", classifier=None))


# --------------------------------------------------------------------------- ROUGE reference


def test_rouge_oracle_hand_computed():
    from aplkit.oracles.rouge import RougeOracle

    ref = "the cat sat on the mat"
    oracle = RougeOracle({"post": ref}, tau=0.05)
    a, b = "the cat sat", "a cat on a mat"
    # a: R1 P=3/3 R=3/6 -> F=2/3; R2 2 of 5 ref bigrams, P=1 -> F=4/7; RL LCS=3 -> F=2/3
    sa = (2 / 3 + 4 / 7 + 2 / 3) / 3
    # b: R1 cat,on,mat P=3/5 R=3/6 -> F=6/11; R2 no shared bigram -> 0; RL LCS cat,on,mat -> F=6/11
    sb = (6 / 11 + 0 + 6 / 11) / 3
    assert oracle.score(ref, a) == pytest.approx(sa) and oracle.score(ref, b) == pytest.approx(sb)
    fwd, rev, same = oracle.judge([Comparison("post", a, b), Comparison("post", b, a), Comparison("post", a, a)])
    assert fwd.choice == "A" and fwd.p_a == pytest.approx(1 / (1 + math.exp(-(sa - sb) / 0.05)))
    assert rev.choice == "B" and rev.p_a == pytest.approx(1 - fwd.p_a)
    assert same.choice == "tie" and same.p_a == 0.5


def test_rouge_oracle_needs_a_reference_per_prompt():
    from aplkit.oracles.rouge import RougeOracle
    from aplkit.records import Prompt

    oracle = RougeOracle.from_prompts([Prompt("1", "post one", reference="a summary"), Prompt("2", "post two")])
    assert oracle.references == {"post one": "a summary"}
    with pytest.raises(OracleError, match="no reference for 1 prompt"):
        oracle.judge([Comparison("post one", "x", "y"), Comparison("post two", "x", "y")])
    other = RougeOracle({"post one": "another summary"})
    assert other.identity != oracle.identity  # different references never share cached labels
