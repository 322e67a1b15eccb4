"""A fixed word-trigram language model of IMDB reviews: the offline judge's sense of fluency.

The paper's GPT-4 judge also asks for grammatical, consistent text; a sentiment score alone is
beaten by a list of positive adjectives. The fluency model must not be the policy (or θ0): a judge
that rewards closeness to θ0 would pull DPO back towards the reference model, so this is a separate,
frozen model fitted once on the IMDB reviews outside the experiment's test split.

Interpolated Kneser–Ney (Chen & Goodman 1998, one absolute discount per order, D = n1/(n1 + 2·n2)):

    P3(c|a,b) = max(C(abc) − D3, 0)/C(ab·) + D3·N1+(ab·)/C(ab·) · P2(c|b)       (C(ab·) = 0: P2(c|b))
    P2(c|b)   = max(N1+(·bc) − D2, 0)/N1+(·b·) + D2·N1+(b·)/N1+(·b·) · P1(c)  (N1+(·b·) = 0: P1(c))
    P1(c)     = max(N1+(·c) − D1, 0)/N1+(··) + D1·|{c: N1+(·c) > 0}|/N1+(··) · 1/V

(N1+ = number of distinct left or right neighbours). Each review starts with two ``<s>``; words seen
fewer than ``min_count`` times become ``<unk>``. Fluency is reported as SLOR (Kann et al. 2018): the
mean over the completion's tokens of ln P3 − ln P_unigram, so rare-but-apt words are not punished
and an empty completion scores 0 ("no evidence"), not the best possible value.

Why not a library: kenlm's Python module only queries models (estimating one needs its C++
``lmplz`` build), and nltk.lm's Kneser–Ney is pure Python and recomputes continuation counts per
query, far too slow for ~5M tokens. Here all counts are sorted int64 keys in numpy: fitting takes
seconds, a query is a ``searchsorted``, and the model is cached under ``cache_dir()/oracles/``.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from collections.abc import Sequence
from itertools import chain

import numpy as np

NGRAM_VERSION = 1  # bump when the tokens, the smoothing or the cached arrays change
BOS, UNK = "<s>", "<unk>"
_BITS = 21  # word ids < 2**21, so a trigram packs into one int64
_MASK = (1 << _BITS) - 1
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z0-9]+)*|[.!?]+|[,;:()\"]")
_ARRAYS = (
    "uni_count",
    "cont1",
    "mid_total",
    "mid_types",
    "keys2",
    "n1p_mid",
    "keys_ctx",
    "ctx_total",
    "ctx_types",
    "keys3",
    "count3",
    "discounts",
)


def tokenize(text: str) -> list[str]:
    """Lower-cased words (with inner apostrophes) and punctuation marks."""
    return _TOKEN.findall(text.lower())


def _discount(counts: np.ndarray) -> float:
    n1, n2 = int(np.sum(counts == 1)), int(np.sum(counts == 2))
    return min(max(n1 / (n1 + 2 * n2), 0.05), 0.95) if n1 + 2 * n2 else 0.5


def _lookup(keys: np.ndarray, values: np.ndarray, query: np.ndarray) -> np.ndarray:
    """values[keys == q] for each q, 0 where q is absent (keys sorted)."""
    if len(keys) == 0:
        return np.zeros(len(query), dtype=values.dtype)
    i = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return np.where(keys[i] == query, values[i], 0)


def text_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\n")
    return h.hexdigest()[:16]


class NgramLM:
    """Interpolated Kneser–Ney word trigram model; ``fit`` builds one, ``slor``/``logprob`` query it."""

    def __init__(self, vocab: Sequence[str], arrays: dict[str, np.ndarray], data_hash: str = "") -> None:
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        for name in _ARRAYS:
            setattr(self, name, arrays[name])
        self.d1, self.d2, self.d3 = (float(x) for x in self.discounts)
        self.n_targets = len(self.vocab) - 1  # every word and <unk>; <s> is never predicted
        self.total = float(self.uni_count.sum())
        self.bigram_types = float(len(self.keys2))
        self.seen_cont = float(np.count_nonzero(self.cont1))
        self.data_hash = data_hash

    @property
    def tag(self) -> str:
        return f"kn3-v{NGRAM_VERSION}-{self.data_hash}"

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, texts: Sequence[str], min_count: int = 2) -> NgramLM:
        counts: Counter[str] = Counter()
        for t in texts:
            counts.update(tokenize(t))
        vocab = [BOS, UNK] + sorted(w for w, n in counts.items() if n >= min_count)
        if len(vocab) >= 1 << _BITS:
            raise ValueError(f"n-gram LM: vocabulary of {len(vocab)} words exceeds 2**{_BITS}")
        index = {w: i for i, w in enumerate(vocab)}
        ids = np.fromiter(
            (index.get(w, 1) for t in texts for w in chain((BOS, BOS), tokenize(t))),
            dtype=np.int64,
        )
        a, b, c = ids[:-2], ids[1:-1], ids[2:]
        keep = c != 0  # never predict <s> (the trigrams that run across two reviews)
        a, b, c = a[keep], b[keep], c[keep]
        n = len(vocab)
        keys3, count3 = np.unique((a << (2 * _BITS)) | (b << _BITS) | c, return_counts=True)
        count3 = count3.astype(np.int32)
        # highest order: C(abc), and per context (a, b) its total C(ab·) and N1+(ab·)
        keys_ctx, start, ctx_types = np.unique(keys3 >> _BITS, return_index=True, return_counts=True)
        ctx_total = np.add.reduceat(count3, start) if len(start) else np.zeros(0, np.int32)
        # middle order: N1+(·bc) = distinct a before (b, c); per b: N1+(·b·) and N1+(b·)
        keys2, n1p_mid = np.unique(keys3 & ((1 << (2 * _BITS)) - 1), return_counts=True)
        n1p_mid, ctx_types = n1p_mid.astype(np.int32), ctx_types.astype(np.int32)
        b2, c2 = keys2 >> _BITS, keys2 & _MASK
        mid_total = np.bincount(b2, weights=n1p_mid, minlength=n).astype(np.int64)
        mid_types = np.bincount(b2, minlength=n)
        # lowest order: N1+(·c) = distinct b before c
        cont1 = np.bincount(c2, minlength=n)
        arrays = {
            "uni_count": np.bincount(c, minlength=n),
            "cont1": cont1,
            "mid_total": mid_total,
            "mid_types": mid_types,
            "keys2": keys2,
            "n1p_mid": n1p_mid,
            "keys_ctx": keys_ctx,
            "ctx_total": ctx_total,
            "ctx_types": ctx_types,
            "keys3": keys3,
            "count3": count3,
            "discounts": np.array([_discount(cont1[cont1 > 0]), _discount(n1p_mid), _discount(count3)]),
        }
        return cls(vocab, arrays, text_hash(texts))

    # ------------------------------------------------------------------ caching

    def save(self, path: os.PathLike | str) -> None:
        path = os.fspath(path)
        tmp = f"{path}.tmp{os.getpid()}.npz"
        np.savez(tmp, vocab=np.array(self.vocab), data_hash=np.array(self.data_hash), **{k: getattr(self, k) for k in _ARRAYS})
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: os.PathLike | str) -> NgramLM:
        with np.load(path, allow_pickle=False) as z:
            return cls([str(w) for w in z["vocab"]], {k: z[k] for k in _ARRAYS}, str(z["data_hash"]))

    # ------------------------------------------------------------------ queries

    def ids(self, words: Sequence[str]) -> np.ndarray:
        return np.array([self.index.get(w, 1) for w in words], dtype=np.int64)

    def logprob_ids(self, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        """ln P3(c | a, b) for arrays of word ids."""
        cont = self.cont1[c]
        p1 = np.maximum(cont - self.d1, 0) / self.bigram_types + self.d1 * self.seen_cont / self.bigram_types / self.n_targets
        mt = self.mid_total[b].astype(float)
        n_bc = _lookup(self.keys2, self.n1p_mid, (b << _BITS) | c)
        with np.errstate(divide="ignore", invalid="ignore"):
            p2 = np.where(mt > 0, (np.maximum(n_bc - self.d2, 0) + self.d2 * self.mid_types[b] * p1) / mt, p1)
        ctx = (a << _BITS) | b
        ct = _lookup(self.keys_ctx, self.ctx_total, ctx).astype(float)
        ctypes = _lookup(self.keys_ctx, self.ctx_types, ctx)
        n_abc = _lookup(self.keys3, self.count3, (ctx << _BITS) | c)
        with np.errstate(divide="ignore", invalid="ignore"):
            p3 = np.where(ct > 0, (np.maximum(n_abc - self.d3, 0) + self.d3 * ctypes * p2) / ct, p2)
        return np.log(p3)

    def unigram_logprob_ids(self, c: np.ndarray) -> np.ndarray:
        """ln of the add-one unigram probability (C(c) + 1)/(N + V): SLOR's baseline."""
        return np.log((self.uni_count[c] + 1.0) / (self.total + self.n_targets))

    def logprob(self, words: Sequence[str], context: Sequence[str] = ()) -> float:
        """Total ln P of ``words`` after ``context`` (the text so far), starting from ``<s> <s>``."""
        seq = self.ids([BOS, BOS, *context, *words])
        k = len(words)
        if k == 0:
            return 0.0
        return float(self.logprob_ids(seq[-k - 2 : -2], seq[-k - 1 : -1], seq[-k:]).sum())

    def slor(self, prompts: Sequence[str], completions: Sequence[str]) -> list[float]:
        """Per completion: mean over its tokens of ln P3(token | prompt and completion so far) − ln P_unigram(token).

        Tokens are found in prompt + completion together, so a word split across the boundary counts
        as one completion token. A completion without tokens scores 0.
        """
        a_all, b_all, c_all, owner = [], [], [], []
        for k, (p, c) in enumerate(zip(prompts, completions, strict=True)):
            lp = p.lower()
            text, cut = lp + c.lower(), len(lp)
            toks, scored = [BOS, BOS], []
            for m in _TOKEN.finditer(text):
                toks.append(m.group())
                scored.append(m.end() > cut)
            seq = self.ids(toks)
            mask = np.array(scored, dtype=bool)
            if not mask.any():
                continue
            a_all.append(seq[:-2][mask])
            b_all.append(seq[1:-1][mask])
            c_all.append(seq[2:][mask])
            owner.append(np.full(int(mask.sum()), k))
        out = np.zeros(len(prompts))
        if owner:
            a, b, c, who = (np.concatenate(x) for x in (a_all, b_all, c_all, owner))
            diff = self.logprob_ids(a, b, c) - self.unigram_logprob_ids(c)
            out = np.bincount(who, weights=diff, minlength=len(prompts)) / np.maximum(np.bincount(who, minlength=len(prompts)), 1)
        return [float(x) for x in out]


# --------------------------------------------------------------------------- the judge's model

_LOADED: dict[object, NgramLM] = {}  # by data hash, and by split for the default pool


def imdb_lm(split: tuple[int, int, int] = (20000, 5000, 0), texts: Sequence[str] | None = None, cache: bool = True) -> NgramLM:
    """The fluency model fitted on ``texts``, by default the IMDB reviews outside the test split ``split``.

    Fitted once (a few seconds for 20k reviews), then loaded from ``cache_dir()/oracles/`` and kept for
    the rest of the process, so building many oracles costs one load.
    """
    from aplkit.paths import cache_dir

    if texts is None:
        if ("split", tuple(split)) in _LOADED:
            return _LOADED[("split", tuple(split))]
        from aplkit.data import imdb_train_pool

        lm = imdb_lm(split, imdb_train_pool(*split)[0], cache)
        _LOADED[("split", tuple(split))] = lm
        return lm
    h = text_hash(texts)
    if h in _LOADED:
        return _LOADED[h]
    path = cache_dir() / "oracles" / f"fluency-kn3-v{NGRAM_VERSION}-{h}.npz"
    lm = None
    if cache and path.exists():
        try:
            lm = NgramLM.load(path)
        except Exception:  # truncated or from an incompatible version: refit below
            lm = None
    if lm is None:
        lm = NgramLM.fit(texts)
        if cache:
            path.parent.mkdir(parents=True, exist_ok=True)
            lm.save(path)
    _LOADED[h] = lm
    return lm
