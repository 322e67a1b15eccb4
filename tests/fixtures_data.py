"""Small on-disk datasets in the IMDB and TLDR hub schemas, for loading through ``datasets`` from local files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

WORDS = "the film was a quiet story about two friends who travel north and find more than they expected".split()


def words(n: int, start: int = 0) -> str:
    """n words of plain English (each a single SmolLM2 token), rotating through WORDS from ``start``."""
    return " ".join(WORDS[(start + i) % len(WORDS)] for i in range(n))


def post_of_length(n_chars: int, seed: int = 0) -> str:
    """A post of exactly ``n_chars`` characters that starts and ends with a letter."""
    text = words(n_chars, seed)[:n_chars]
    return text[:-1] + "x" if text.endswith(" ") else text


def tldr_prompt(subreddit: str, title: str, post: str, trailing: str = "") -> str:
    """The CarperAI/openai_summarize_tldr prompt layout."""
    return f"SUBREDDIT: r/{subreddit}\nTITLE: {title}\nPOST: {post}\nTL;DR:{trailing}"


def tldr_rows(split: str) -> list[dict[str, Any]]:
    """Rows covering each Appendix B filter; ``keep`` says whether the row should survive."""
    rows = []
    cases = [
        ("relationships", 200, "", True),  # lower bound, inclusive
        ("AskReddit", 1000, "", True),  # upper bound, inclusive
        ("cats", 500, "  \n", True),  # trailing whitespace removed
        ("dogs", 650, " ", True),
        ("pets", 300, "", True),
        ("Advice", 420, "\t", True),
        ("relationships", 199, "", False),  # too short
        ("AskReddit", 1001, "", False),  # too long
        ("offmychest", 500, "", False),  # excluded subreddit
        ("tifu", 500, "", False),
        ("TIFU", 500, "", False),  # case-insensitive
    ]
    for i, (sub, n, trailing, keep) in enumerate(cases):
        rows.append(
            {
                "prompt": tldr_prompt(sub, f"{split} title {i}", post_of_length(n, i), trailing),
                "label": f" summary of {split} post {i} ",
                "keep": keep,
            }
        )
    return rows


def imdb_rows(n: int, split: str) -> list[dict[str, Any]]:
    """IMDB-schema rows (text, label) with ``<br />`` markup and alternating labels."""
    return [{"text": f"{words(30, i)}.<br /><br />{split} review {i}   {words(40, i + 3)}", "label": i % 2} for i in range(n)]


def write_rows(rows: list[dict[str, Any]], path: Path) -> Path:
    """Write rows as JSONL, CSV or Parquet by the file's extension."""
    frame = pd.DataFrame(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True, force_ascii=False)
    elif path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".parquet":
        frame.to_parquet(path, index=False)
    else:
        raise ValueError(path)
    return path
