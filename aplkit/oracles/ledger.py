"""The label ledger: every oracle answer, durable the moment it arrives, never paid for twice.

One SQLite file (WAL mode) keyed by oracle identity + prompt + A + B. The display
order is part of the key, so asking the same pair the other way round is a new
question (that is what self-consistency measures). ``label_pairs`` is the one path
from pairs to labels: it randomises the display order (paper §3.2.1), answers what
the ledger already holds, sends the rest to the oracle, records each verdict before
asking for the next, maps A/B back to the pair's order, and only then applies the
simulated imperfect judges so the ledger always holds the true verdict.

Each answer is stored under the identity of the question really sent (``Oracle.record_identity``)
and looked up under every identity the oracle accepts (``Oracle.cache_identities``): the LLM
judge with ``structured: auto`` may send the JSON or the plain prompt, and either stored answer
serves it, while a judge pinned to one of them never gets the other's.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aplkit.oracles.base import Oracle, OracleError
from aplkit.records import Comparison, Label, Verdict

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


def _digest(*parts: str) -> bytes:
    h = hashlib.sha256()
    for p in parts:
        b = p.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))  # length-prefixed: no separator can collide
        h.update(b)
    return h.digest()


def ledger_key(oracle_id: str, c: Comparison) -> str:
    return _digest(oracle_id, c.prompt, c.a, c.b).hex()


def _uniform(*parts: str) -> float:
    """A deterministic U[0, 1) draw from its inputs (stable across processes, unlike ``hash()``)."""
    return int.from_bytes(_digest(*parts)[:8], "big") / 2.0**64


def shown_order(seed: int, prompt: str, y0: str, y1: str) -> str:
    """Display order for a pair: "01" shows y0 as A, "10" shows y1 as A; a fair coin fixed by the inputs."""
    return "01" if _digest("order", str(seed), prompt, y0, y1)[0] & 1 == 0 else "10"


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
        self._session = {"calls": 0, "cache_hits": 0, "invalid": 0, "tokens_in": 0, "tokens_out": 0, "cost_usd": 0.0}

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.price_in + tokens_out * self.price_out) / 1e6

    def lookup(self, oracle_id: str, c: Comparison) -> Verdict | None:
        """The stored verdict for this exact question, or None. Invalid verdicts are stored answers too."""
        with self._lock:
            row = self._db.execute(
                "SELECT choice, raw, p_a, tokens_in, tokens_out, attempts FROM labels WHERE key = ?",
                (ledger_key(oracle_id, c),),
            ).fetchone()
            if row is None:
                return None
            self._session["cache_hits"] += 1
        return Verdict(choice=row[0], raw=row[1], p_a=row[2], tokens_in=row[3], tokens_out=row[4], attempts=row[5])

    def record(self, oracle_id: str, c: Comparison, v: Verdict, purpose: str = "train") -> None:
        """Store a paid answer. Asking again (e.g. after ``forget``) replaces the verdict and adds to the bill."""
        now = time.time()
        cost = self.cost(v.tokens_in, v.tokens_out)
        with self._lock:
            self._db.execute(
                """INSERT INTO labels (key, oracle, prompt, a, b, choice, raw, p_a, tokens_in, tokens_out, attempts,
                                       calls, cost_usd, purpose, created, updated)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?)
                   ON CONFLICT(key) DO UPDATE SET choice = excluded.choice, raw = excluded.raw, p_a = excluded.p_a,
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


def _to_label(v: Verdict, order: str, cached: bool) -> Label:
    if v.choice in ("A", "B"):
        a_is_y1 = order == "10"
        preferred = int(a_is_y1) if v.choice == "A" else int(not a_is_y1)
    else:
        preferred = None
    return Label(preferred=preferred, tie=v.choice == "tie", shown_order=order, verdict=v, cached=cached)


def _simulate(label: Label, seed: int, c: Comparison, flip_prob: float, sample_bt: bool) -> Label:
    """Simulated imperfect judges, drawn from (seed, comparison) so a resumed run gets the same labels."""
    if label.preferred is None:
        return label
    true = label.preferred
    p = label.p_y1
    if sample_bt and p is not None:
        label.preferred = int(_uniform("bt", str(seed), c.prompt, c.a, c.b) < p)
    if flip_prob > 0 and _uniform("flip", str(seed), c.prompt, c.a, c.b) < flip_prob:
        label.preferred = 1 - label.preferred
    label.flipped = label.preferred != true
    return label


def ask(
    oracle: Oracle, ledger: Ledger, comps: Sequence[Comparison], *, purpose: str = "train", progress: bool = False
) -> list[tuple[Verdict, bool]]:
    """(verdict, cached) per comparison as shown: stored answers from the ledger, the rest asked once and recorded on arrival.

    A stored answer is looked up under each of ``oracle.cache_identities()`` in turn (first hit wins);
    a new one is recorded under ``oracle.record_identity(c)``, the identity of what was really sent.
    """
    oids = oracle.cache_identities()
    answers: dict[Comparison, tuple[Verdict, bool]] = {}
    misses: list[Comparison] = []
    for c in dict.fromkeys(comps):  # unique, first-seen order
        v = None
        for oid in oids:
            v = ledger.lookup(oid, c)
            if v is not None:
                break
        if v is None:
            misses.append(c)
        else:
            answers[c] = (v, True)
    if misses:
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(misses), desc=f"labelling ({oracle.kind})", unit="pair")
        try:
            for i, v in oracle.judge_iter(misses):
                ledger.record(oracle.record_identity(misses[i]), misses[i], v, purpose)
                answers[misses[i]] = (v, False)
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        missing = sum(c not in answers for c in misses)
        if missing:
            raise OracleError(f"{oracle.kind} oracle returned no verdict for {missing} of {len(misses)} comparisons")
    return [answers[c] for c in comps]


def label_pairs(
    oracle: Oracle,
    ledger: Ledger,
    pairs: Sequence[tuple[str, str, str]],
    seed: int,
    *,
    flip_prob: float = 0.0,
    sample_bt: bool = False,
    purpose: str = "train",
    progress: bool = False,
) -> list[Label]:
    """Labels for ``(prompt, y0, y1)`` pairs, in pair order; each new verdict is recorded as it arrives.

    An ``OracleError`` propagates; every verdict recorded before it stays in the ledger, so a
    rerun only asks the rest.
    """
    orders = [shown_order(seed, p, y0, y1) for p, y0, y1 in pairs]
    comps = [Comparison(p, y0, y1) if o == "01" else Comparison(p, y1, y0) for (p, y0, y1), o in zip(pairs, orders, strict=True)]
    answers = dict(zip(comps, ask(oracle, ledger, comps, purpose=purpose, progress=progress), strict=True))
    labels = []
    for c, o in zip(comps, orders, strict=True):
        v, cached = answers[c]
        labels.append(_simulate(_to_label(v, o, cached), seed, c, flip_prob, sample_bt))
    return labels


__all__ = ["Ledger", "ask", "label_pairs", "ledger_key", "shown_order"]
