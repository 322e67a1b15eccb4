"""The label ledger: storage of every oracle answer, durable the moment it arrives.

One SQLite file (WAL mode) keyed by oracle identity + prompt + A + B. The display
order is part of the key, so asking the same pair the other way round is a new
question (that is what self-consistency measures). A scoring oracle's pointwise
scores of A and B are stored with its choice, so a resumed run gets the same rewards
back (``training.phf.pair_rewards: oracle``); a ledger written before they were kept
gains the columns on open, NULL in its old rows. How pairs become questions and
answers become labels is ``aplkit.oracles.labelling``; this module only stores.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aplkit.records import Comparison, Verdict

if TYPE_CHECKING:
    from aplkit.config import OracleConfig
    from aplkit.runfolder import RunFolder

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    key TEXT PRIMARY KEY,
    oracle TEXT NOT NULL,
    prompt TEXT NOT NULL,
    a TEXT NOT NULL,
    b TEXT NOT NULL,
    choice TEXT,
    raw TEXT NOT NULL DEFAULT '',
    p_a REAL,
    score_a REAL,
    score_b REAL,
    tokens_in INTEGER NOT NULL DEFAULT 0,
    tokens_out INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 1,
    calls INTEGER NOT NULL DEFAULT 1,
    cost_usd REAL NOT NULL DEFAULT 0,
    purpose TEXT NOT NULL DEFAULT 'train',
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS labels_oracle ON labels(oracle);
"""
#: columns added after the first ledgers were written: (name, SQL type); an older file gains them, NULL in its rows
_ADDED = (("score_a", "REAL"), ("score_b", "REAL"))


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: no separator can collide
        h.update(b)
    return h.digest()


def ledger_key(oracle_id: str, c: Comparison) -> str:
    return _digest(oracle_id, c.prompt, c.a, c.b).hex()


class Ledger:
    """SQLite store of oracle verdicts; ``record`` commits before it returns.

    Prices are USD per 1M tokens. One writer thread (the caller's) and any number of
    readers (other processes, the label panel) may use the file at the same time.
    """

    def __init__(self, path: str | Path, price_in: float = 0.0, price_out: float = 0.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.price_in = float(price_in)
        self.price_out = float(price_out)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # durable at commit, not only at checkpoint
        self._db.executescript(_SCHEMA)
        have = {r[1] for r in self._db.execute("PRAGMA table_info(labels)")}
        for name, kind in _ADDED:
            if name not in have:
                try:
                    self._db.execute(f"ALTER TABLE labels ADD COLUMN {name} {kind}")
                except sqlite3.OperationalError as e:  # another process opening the same old file added it first
                    if "duplicate column" not in str(e):
                        raise
        self._session = {"calls": 0, "cache_hits": 0, "invalid": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    def lookup(self, oracle_id: str, c: Comparison) -> Verdict | None:
        """The stored verdict for this exact question, or None. Invalid verdicts are stored answers too."""
        with self._lock:
            row = self._db.execute(
                "SELECT choice, raw, p_a, tokens_in, tokens_out, attempts, score_a, score_b FROM labels WHERE key = ?",
                (ledger_key(oracle_id, c),),
            ).fetchone()
            if row is None:
                return None
            self._session["cache_hits"] += 1
        return Verdict(*row[:3], tokens_in=row[3], tokens_out=row[4], attempts=row[5], score_a=row[6], score_b=row[7])

    def record(self, oracle_id: str, c: Comparison, v: Verdict, purpose: str = "train") -> None:
        """Store a paid answer. Asking again (e.g. after ``forget``) replaces the verdict and adds to the bill."""
        now = time.time()
        cost = self.cost(v.tokens_in, v.tokens_out)
        with self._lock:
            self._db.execute(
                """INSERT INTO labels (key, oracle, prompt, a, b, choice, raw, p_a, score_a, score_b, tokens_in, tokens_out,
                                       attempts, calls, cost_usd, purpose, created, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET choice = excluded.choice, raw = excluded.raw, p_a = excluded.p_a,
                       score_a = excluded.score_a, score_b = excluded.score_b,
                       tokens_in = tokens_in + excluded.tokens_in, tokens_out = tokens_out + excluded.tokens_out,
                       attempts = excluded.attempts, calls = calls + 1, cost_usd = cost_usd + excluded.cost_usd,
                       purpose = excluded.purpose, updated = excluded.updated""",
                (
                    ledger_key(oracle_id, c),
                    oracle_id,
                    c.prompt,
                    c.a,
                    c.b,
                    v.choice,
                    v.raw,
                    v.p_a,
                    v.score_a,
                    v.score_b,
                    int(v.tokens_in),
                    int(v.tokens_out),
                    int(v.attempts),
                    cost,
                    purpose,
                    now,
                    now,
                ),
            )
            s = self._session
            s["calls"] += 1
            s["invalid"] += 0 if v.valid else 1
            s["tokens_in"] += int(v.tokens_in)
            s["tokens_out"] += int(v.tokens_out)
            s["cost_usd"] += cost

    def add_scores(self, oracle_id: str, c: Comparison, score_a: float, score_b: float) -> bool:
        """Fill in the pointwise scores of an answer stored before the ledger kept them (not a call, nothing billed)."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE labels SET score_a = ?, score_b = ? WHERE key = ? AND score_a IS NULL",
                (score_a, score_b, ledger_key(oracle_id, c)),
            )
            return cur.rowcount > 0

    def forget(self, oracle_id: str, c: Comparison) -> bool:
        """Drop one stored answer so it is asked again (e.g. to retry an invalid one on purpose)."""
        with self._lock:
            cur = self._db.execute("DELETE FROM labels WHERE key = ?", (ledger_key(oracle_id, c),))
            return cur.rowcount > 0

    def rows(self, oracle_id: str | None = None) -> list[dict[str, Any]]:
        """All stored answers (for analysis and the label panel), oldest first."""
        q = "SELECT * FROM labels" + (" WHERE oracle = ?" if oracle_id is not None else "") + " ORDER BY created, rowid"
        with self._lock:
            cur = self._db.execute(q, (oracle_id,) if oracle_id is not None else ())
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def stats(self) -> dict:
        """This session's calls, cache hits, invalid answers, tokens and cost; whole-ledger totals under "total"."""
        with self._lock:
            r = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(calls), 0), COALESCE(SUM(choice IS NULL), 0), COALESCE(SUM(tokens_in), 0),"
                " COALESCE(SUM(tokens_out), 0), COALESCE(SUM(cost_usd), 0) FROM labels"
            ).fetchone()
            out: dict[str, Any] = dict(self._session)
        out["total"] = {"labels": r[0], "calls": r[1], "invalid": r[2], "tokens_in": r[3], "tokens_out": r[4], "cost_usd": r[5]}
        return out

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_ledger(run: RunFolder, oracle: OracleConfig) -> Ledger:
    """The label ledger of a run for its ``oracle`` section: where ``oracle.cache`` says, billed at its prices."""
    from aplkit.oracles.llm.prices import judge_prices

    price_in, price_out = judge_prices(oracle)
    return Ledger(run.ledger_path(oracle.cache), price_in=price_in, price_out=price_out)


__all__ = ["Ledger", "ledger_key", "open_ledger"]
