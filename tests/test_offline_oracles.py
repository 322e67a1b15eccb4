"""Offline oracles: sentiment (vader / tfidf) with its repetition and fluency terms, classifier / reward model, ROUGE reference."""

from __future__ import annotations

import math

import pytest

from aplkit.checks import load_config
from aplkit.config import ConfigError, OracleConfig, SentimentConfig
from aplkit.oracles.base import OracleError
from aplkit.oracles.ngram import NgramLM
from aplkit.oracles.sentiment import SentimentOracle, TfidfScorer, repeated_ngram_fraction, repetition
from aplkit.records import Comparison
from tests.fixtures_models import direct_logits, tiny_classifier

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

    oracle = SentimentOracle("vader", repetition_penalty=1.0, tau=0.1, fluency_weight=0)
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
    assert SentimentOracle("vader", repetition_penalty=0.0, fluency_weight=0).judge(items)[0].choice == "A"
    v = SentimentOracle("vader", repetition_penalty=1.0, fluency_weight=0).judge(items)[0]
    assert v.choice == "B" and v.p_a < 0.5
    # On normal text the penalty changes nothing.
    o0 = SentimentOracle("vader", repetition_penalty=0.0, fluency_weight=0)
    o1 = SentimentOracle("vader", repetition_penalty=1.0, fluency_weight=0)
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
    lm = tiny_lm()
    a, b = SentimentOracle("vader", 1.0, tau=0.1, lm=lm), SentimentOracle("vader", 0.5, tau=0.1, lm=lm)
    assert a.identity != b.identity and "vader" in a.identity
    assert SentimentOracle("vader", 1.0, tau=0.2, lm=lm).identity != a.identity
    # every scoring knob and the fluency model are part of the identity, so ledger answers are never reused across them
    assert SentimentOracle("vader", 1.0, tau=0.1, lm=lm, fluency_weight=1.0).identity != a.identity
    assert SentimentOracle("vader", 1.0, tau=0.1, lm=lm, fluency_floor=0.0).identity != a.identity
    assert SentimentOracle("vader", 1.0, tau=0.1, fluency_weight=0).identity != a.identity
    assert lm.tag in a.identity and a.identity.startswith("sentiment-v2:")
    with pytest.raises(OracleError, match="backend"):
        SentimentOracle("bert")
    with pytest.raises(OracleError, match="tau"):
        SentimentOracle("vader", tau=0)
    with pytest.raises(OracleError, match="fluency_weight"):
        SentimentOracle("vader", fluency_weight=-1)


def test_from_config_and_default_tau(monkeypatch):
    from aplkit.oracles import ngram
    from aplkit.oracles.sentiment import DEFAULT_TAU

    lm = tiny_lm()
    monkeypatch.setattr(ngram, "imdb_lm", lambda split=None, texts=None, cache=True: lm)
    o = SentimentOracle.from_config(SentimentConfig(model="vader", repetition_penalty=0.25, fluency_weight=0.5, fluency_floor=1.0))
    assert o.backend == "vader" and o.repetition_penalty == 0.25 and o.tau == DEFAULT_TAU["vader"]
    assert o.fluency_weight == 0.5 and o.fluency_floor == 1.0 and o.lm is lm
    d = SentimentOracle.from_config(SentimentConfig(model="vader"))
    cfg = OracleConfig().sentiment
    assert (d.repetition_penalty, d.fluency_weight, d.fluency_floor) == (cfg.repetition_penalty, cfg.fluency_weight, cfg.fluency_floor)
    assert SentimentOracle.from_config(SentimentConfig(model="vader", fluency_weight=0)).lm is None


@pytest.mark.parametrize(
    "key, value",
    [("repetition_penalty", -0.5), ("fluency_weight", -1), ("fluency_floor", float("inf")), ("fluency_floor", float("nan"))],
)
def test_config_rejects_bad_judge_weights(key, value):
    for where in (f"oracle.sentiment.{key}", f"oracle.{key}"):  # the judge's own section, and the flat key of earlier configs
        with pytest.raises(ConfigError, match=f"oracle.sentiment.{key}") as e:
            load_config("imdb-cpu", {where: value})
        assert "\n" not in str(e.value)
    ok = load_config("imdb-cpu", {"oracle.sentiment.fluency_weight": 0.0, "oracle.repetition_penalty": 0.0, "oracle.fluency_floor": -1.0})
    assert ok.oracle.sentiment.fluency_weight == 0.0 and ok.oracle.sentiment.fluency_floor == -1.0
    assert ok.oracle.sentiment.repetition_penalty == 0.0


# --------------------------------------------------------------------------- repetition and fluency


def test_repetition_catches_loops_of_any_length_hand_computed():
    # bigram loop, 6 words: bigrams 5 (2 distinct) -> 3/5; trigrams 2/4; 4-grams 1/3; the worst is 3/5
    assert repetition(" great film great film great film") == pytest.approx(3 / 5)
    # said twice: no trigram repeats (the old measure saw nothing), but 1 of 3 bigrams does
    assert repeated_ngram_fraction(" great film great film") == 0.0
    assert repetition(" great film great film") == pytest.approx(1 / 3)
    # trigram loop, 9 words: bigrams 8 (3 distinct) -> 5/8; trigrams 4/7; 4-grams 3/6
    assert repetition("truly great film truly great film truly great film") == pytest.approx(5 / 8)
    # a 4-word sentence loop: 12 words, 11 bigrams, 4 distinct -> 7/11
    assert repetition(DEGENERATE) == pytest.approx(7 / 11)
    # a stuttered word: "the the the the" -> 3 bigrams, 1 distinct
    assert repetition("the the the the") == pytest.approx(2 / 3)
    # ordinary prose repeats "the" three times but no word pair
    assert repetition(NORMAL) == 0.0
    assert repetition(POS) == 0.0 and repetition("good") == 0.0 and repetition("") == 0.0


TINY_CORPUS = ["the cat sat", "the dog sat", "the cat ran"]


def tiny_lm() -> NgramLM:
    return NgramLM.fit(TINY_CORPUS, min_count=1)


def test_ngram_lm_log_prob_hand_computed():
    """Interpolated Kneser–Ney on three 3-word reviews, every count written out."""
    lm = tiny_lm()
    # trigram counts: (<s> <s> the) 3, (<s> the cat) 2, (<s> the dog) 1, (the cat sat), (the dog sat), (the cat ran) 1 each
    # -> n1 = 4, n2 = 1, D3 = 4 / (4 + 2) = 2/3
    # N1+(·bc): every one of the 6 bigram types has one left neighbour -> n1 = 6, n2 = 0, D2 = 1, clamped to 0.95
    # N1+(·c): the 1, cat 1, dog 1, sat 2 (cat, dog), ran 1 -> n1 = 4, n2 = 1, D1 = 2/3; 6 bigram types, 5 continued words
    assert (lm.d1, lm.d2, lm.d3) == pytest.approx((2 / 3, 0.95, 2 / 3))
    v = 6  # cat dog ran sat the <unk>
    p1 = (2 - 2 / 3) / 6 + (2 / 3) * 5 / 6 / v  # = 17/54
    assert p1 == pytest.approx(17 / 54)
    p2 = ((1 - 0.95) + 0.95 * 2 * p1) / 2  # after "cat": N1+(·cat·) = 2 (sat, ran), two types
    p3 = ((1 - 2 / 3) + (2 / 3) * 2 * p2) / 2  # after "the cat": C = 2 (sat, ran), two types
    assert lm.logprob(["sat"], context=["the", "cat"]) == pytest.approx(math.log(p3))
    # an unseen context backs off: "sat cat" was never seen, "cat" never followed "sat" -> P = P1(cat) = (1 - 2/3)/6 + (2/3)·5/6/6
    assert lm.logprob(["cat"], context=["sat"]) == pytest.approx(math.log((1 - 2 / 3) / 6 + (2 / 3) * 5 / 6 / v))
    # every context gives a proper distribution over the words and <unk>
    import numpy as np

    targets = np.arange(1, len(lm.vocab))
    for ctx in (["the", "cat"], ["<s>", "the"], ["sat", "dog"], ["zebra", "the"]):
        a, b = lm.ids(ctx)
        total = np.exp(lm.logprob_ids(np.full(v, a), np.full(v, b), targets)).sum()
        assert total == pytest.approx(1.0)


def test_slor_is_mean_log_ratio_over_completion_tokens(tmp_path):
    lm = tiny_lm()
    # N = 9 predicted tokens, V = 6: P_unigram(w) = (C(w) + 1) / 15
    expect = ((lm.logprob(["cat"], ["the"]) - math.log(3 / 15)) + (lm.logprob(["sat"], ["the", "cat"]) - math.log(3 / 15))) / 2
    assert lm.slor(["The"], [" cat sat"]) == pytest.approx([expect])
    assert lm.slor(["the c"], ["at sat"]) == pytest.approx([expect])  # a word split at the boundary is one completion token
    assert lm.slor(["the cat"], [""]) == [0.0]  # nothing to judge
    # a cached copy scores the same
    lm.save(tmp_path / "lm.npz")
    again = NgramLM.load(tmp_path / "lm.npz")
    assert again.slor(["The"], [" cat sat"]) == pytest.approx([expect]) and again.tag == lm.tag


def test_fluency_hinge_only_penalises_text_below_the_floor():
    lm = tiny_lm()
    oracle = SentimentOracle("vader", repetition_penalty=0.0, fluency_weight=2.0, fluency_floor=0.5, lm=lm)
    plain = SentimentOracle("vader", repetition_penalty=0.0, fluency_weight=0)
    prompts, comps = ["the", "the", "the"], [" cat sat", " sat cat the", ""]
    slor = lm.slor(prompts, comps)
    assert slor[0] > 0.5 > slor[1]  # the seen review clears the floor, the scrambled one does not
    want = [s - 2.0 * max(0.0, 0.5 - f) for s, f in zip(plain.score(prompts, comps), slor, strict=True)]
    assert oracle.score(prompts, comps) == pytest.approx(want)
    assert oracle.score(prompts[:1], comps[:1]) == plain.score(prompts[:1], comps[:1])


# One real IMDB-style prompt and three continuations: a fluent positive review, a "great film" loop and
# positive word salad. Today's judge ranked the salad first; the paper's judge asks for grammatical,
# non-repetitive text.
EX_PROMPT = "I rented this movie on a whim last weekend and"
EX_FLUENT = " it was better than I expected. The story is simple, but the two leads are likeable and I laughed more than once."
EX_LOOP = " great film great film great film"
EX_SALAD = " excellent superb wonderful amazing brilliant fantastic best"


@pytest.mark.slow  # the default judge's TF-IDF and trigram models of the 25k reviews
def test_default_judge_prefers_a_fluent_review_to_loops_and_word_salad():
    oracle = SentimentOracle("tfidf")  # the configured default: tfidf + fluency model, both fitted outside the test split
    fluent, loop, loop2, salad = oracle.score([EX_PROMPT] * 4, [EX_FLUENT, EX_LOOP, " great film great film", EX_SALAD])
    assert fluent > loop and fluent > loop2 and fluent > salad
    assert oracle.score([EX_PROMPT], [EX_FLUENT]) == oracle.scorer([EX_PROMPT + EX_FLUENT])  # a fluent review pays nothing
    verdicts = oracle.judge([Comparison(EX_PROMPT, EX_FLUENT, EX_SALAD), Comparison(EX_PROMPT, EX_LOOP, EX_FLUENT)])
    assert [v.choice for v in verdicts] == ["A", "B"]


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


@pytest.fixture(scope="module")
def tiny_cls_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny-cls")
    net, tok = tiny_classifier(path, num_labels=2)
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
    direct = [_logp(lg, 1) for lg in direct_logits(net, tok, [prompt + c for c in completions])]
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
    direct0 = [_logp(lg, 0) for lg in direct_logits(net, tok, [prompt + c for c in completions])]
    assert col0.score([prompt + c for c in completions]) == pytest.approx(direct0, abs=1e-4)
    assert col0.identity != oracle.identity and str(path) in oracle.identity


def test_single_logit_reward_model(tmp_path):
    from aplkit.oracles.classifier import ClassifierOracle

    net, tok = tiny_classifier(tmp_path, num_labels=1)
    oracle = ClassifierOracle(str(tmp_path))
    a, b = " a", " bb cc dd ee"
    sa, sb = (float(lg[0]) for lg in direct_logits(net, tok, ["x" + a, "x" + b]))
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

    net, tok = tiny_classifier(tmp_path / "src", num_labels=2)
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
    za, zb = direct_logits(net, tok, [prompt + a, prompt + b])
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
        ClassifierOracle.from_config(OracleConfig(kind="classifier").classifier)


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
