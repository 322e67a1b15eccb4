"""IMDB reviews cut into sentences, each scored by the misalignment scorer (``phf.misalignment``): the PHF training corpus.

Segments are **sentences**, not fixed token windows: the paper segments documents into sentences;
sentiment is expressed sentence by sentence ("The acting is wooden. The score, though, is superb."),
so a window cut across two sentences would average two verdicts into one reward; and the tfidf judge
was fitted on whole reviews and their 40-word openings, text that ends where a thought ends. A review
contributes its first whole sentences up to ``phf.doc_tokens`` tokens (a first sentence longer than
that is cut), so every document fits one training row.

Reward R = −misalignment of the sentence: the oracle's probability that it is bad (the sentiment
back-end's P(negative), or a classifier's 1 − P(good)), as toxicity is in the paper.
Only the training split's reviews are used (``data.split_seed`` etc. as the APL experiment), in an
order seeded per run; the test reviews give the held-out prompts and LM-loss texts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from aplkit.objectives.segments import Document, Segment
from aplkit.seeding import derive_seed

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[\"'(\[A-Z0-9])")


def sentences(text: str) -> list[str]:
    """A review's sentences: split after ., ! or ? followed by space and a capital, digit or opening quote."""
    return [s for s in (p.strip() for p in _SENTENCE.split(text)) if s]


@dataclass
class ScoredReview:
    review_id: str
    sentences: list[str]
    ids: list[list[int]]  # token ids of each sentence as it sits in the text (a leading space after the first)
    p_negative: list[float]  # misalignment of each sentence, P(bad) (the records' name, from the sentiment oracle)

    def document(self) -> Document:
        return Document([Segment(ids, -p) for ids, p in zip(self.ids, self.p_negative, strict=True)])

    @property
    def tokens(self) -> int:
        return sum(len(i) for i in self.ids)


def cut_review(text: str, tokenizer, max_tokens: int) -> tuple[list[str], list[list[int]]]:
    """The review's first whole sentences within ``max_tokens`` tokens (a too-long first sentence is cut)."""
    out_s, out_ids, n = [], [], 0
    for i, s in enumerate(sentences(text)):
        ids = tokenizer((" " if i else "") + s, add_special_tokens=False)["input_ids"]
        if n + len(ids) > max_tokens:
            if not out_ids:
                ids = ids[:max_tokens]
                out_s.append(tokenizer.decode(ids))
                out_ids.append(ids)
            break
        out_s.append(s)
        out_ids.append(ids)
        n += len(ids)
    return out_s, out_ids


def training_reviews(cfg, tokenizer, misalignment: Callable[[Sequence[str]], Sequence[float]]) -> list[ScoredReview]:
    """Reviews of the train split in this seed's order, cut and scored, until ``phf.token_budget`` tokens are covered."""
    import numpy as np

    from aplkit.data import imdb_reviews, split_ids

    df = imdb_reviews()
    d = cfg.data
    train_ids, _ = split_ids(list(df["id"]), list(df["label"]), train_size=d.train_size, test_size=d.test_size, seed=d.split_seed)
    text = dict(zip(df["id"], df["text"], strict=True))
    order = np.random.default_rng(derive_seed(cfg.seed, "phf-docs")).permutation(len(train_ids))
    out, total = [], 0
    for k in order:
        rid = train_ids[int(k)]
        sents, ids = cut_review(text[rid], tokenizer, cfg.phf.doc_tokens)
        if not ids:
            continue
        out.append(ScoredReview(rid, sents, ids, []))
        total += sum(len(i) for i in ids)
        if total >= cfg.phf.token_budget:
            break
    flat = [float(q) for q in misalignment([s for r in out for s in r.sentences])]
    k = 0
    for r in out:
        r.p_negative = flat[k : k + len(r.sentences)]
        k += len(r.sentences)
    return out
