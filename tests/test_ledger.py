"""The label ledger: display order, caching, durability, mapping back to pair order, simulated noise."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading

import pytest

from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.labelling import label_pairs, shown_order
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison, Verdict


class LongerOracle(Oracle):
    """A real (if simple) judge: prefers the longer completion, ties on equal length; counts what it is asked."""

    kind = "longer"

    def __init__(self, fail_after: int | None = None, p_a: float | None = None, tokens: tuple[int, int] = (0, 0)):
        self.asked: list[Comparison] = []
        self.fail_after = fail_after
        self.p_a = p_a
        self.tokens = tokens

    @property
    def identity(self) -> str:
        return "longer/v1"

    def judge(self, items):
        return [v for _, v in self.judge_iter(items)]

    def judge_iter(self, items):
        for i, c in enumerate(items):
            if self.fail_after is not None and len(self.asked) >= self.fail_after:
                raise OracleError("quota exhausted")
            self.asked.append(c)
            choice = "A" if len(c.a) > len(c.b) else "B" if len(c.b) > len(c.a) else "tie"
            yield i, Verdict(choice=choice, raw=f"Preferred: {choice}", p_a=self.p_a, tokens_in=self.tokens[0], tokens_out=self.tokens[1])


def make_pairs(n: int, start: int = 0) -> list[tuple[str, str, str]]:
    # y1 is always the longer completion, so the true label is 1 for every pair
    return [(f"prompt {i}", f"short {i}", f"a longer completion {i}") for i in range(start, start + n)]


def test_shown_order_is_a_fair_deterministic_coin():
    orders = [shown_order(0, p, y0, y1) for p, y0, y1 in make_pairs(1000)]
    assert set(orders) == {"01", "10"}
    assert 430 <= orders.count("01") <= 570  # Binomial(1000, 0.5): ±4.4 sd
    assert orders == [shown_order(0, p, y0, y1) for p, y0, y1 in make_pairs(1000)]
    other = [shown_order(1, p, y0, y1) for p, y0, y1 in make_pairs(1000)]
    assert other != orders


def test_shown_order_does_not_depend_on_python_hash_salt():
    code = "from aplkit.oracles.labelling import shown_order; print(''.join(shown_order(3, f'p{i}', 'x', 'y') for i in range(64)))"
    outs = set()
    for salt in ("1", "2"):
        env = dict(os.environ, PYTHONHASHSEED=salt)
        outs.add(subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout)
    assert len(outs) == 1
    assert outs.pop().strip() == "".join(shown_order(3, f"p{i}", "x", "y") for i in range(64))


def test_labels_map_back_to_pair_order(tmp_path):
    pairs = make_pairs(40)
    # swap half the pairs so the longer completion is y0 there (true label 0)
    pairs = [(p, y1, y0) if i % 2 else (p, y0, y1) for i, (p, y0, y1) in enumerate(pairs)]
    oracle = LongerOracle()
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        labels = label_pairs(oracle, ledger, pairs, seed=0)
    assert [lab.preferred for lab in labels] == [0 if i % 2 else 1 for i in range(40)]
    assert {lab.shown_order for lab in labels} == {"01", "10"}
    for (p, y0, y1), lab, c in zip(pairs, labels, oracle.asked, strict=True):
        assert c.prompt == p
        assert (c.a, c.b) == ((y0, y1) if lab.shown_order == "01" else (y1, y0))
        assert not lab.cached and not lab.flipped


def test_tie_and_invalid_are_not_labels(tmp_path):
    class Picky(LongerOracle):
        def judge_iter(self, items):
            for i, c in enumerate(items):
                self.asked.append(c)
                yield i, Verdict(choice=None if "bad" in c.prompt else "tie", raw="I cannot decide")

    with Ledger(tmp_path / "l.sqlite") as ledger:
        labels = label_pairs(Picky(), ledger, [("bad", "x", "y"), ("fine", "x", "y")], seed=0, flip_prob=0.5, sample_bt=True)
        assert [(lab.preferred, lab.tie) for lab in labels] == [(None, False), (None, True)]
        assert ledger.stats()["invalid"] == 1
        assert ledger.stats()["total"]["invalid"] == 1


def test_second_run_is_answered_from_the_ledger(tmp_path):
    pairs = make_pairs(25)
    path = tmp_path / "labels.sqlite"
    first = LongerOracle(tokens=(1000, 200))
    with Ledger(path, price_in=10.0, price_out=30.0) as ledger:
        a = label_pairs(first, ledger, pairs, seed=7)
        s = ledger.stats()
    assert len(first.asked) == 25
    assert s["calls"] == 25 and s["cache_hits"] == 0
    assert s["tokens_in"] == 25_000 and s["tokens_out"] == 5_000
    assert s["cost_usd"] == pytest.approx(25 * (1000 * 10 + 200 * 30) / 1e6)  # 25 × $0.016

    again = LongerOracle()
    with Ledger(path, price_in=10.0, price_out=30.0) as ledger:
        b = label_pairs(again, ledger, pairs, seed=7)
        s = ledger.stats()
    assert again.asked == []
    assert s["calls"] == 0 and s["cache_hits"] == 25 and s["cost_usd"] == 0
    assert s["total"]["calls"] == 25 and s["total"]["cost_usd"] == pytest.approx(0.4)
    assert all(lab.cached for lab in b)
    assert [lab.preferred for lab in b] == [lab.preferred for lab in a]


def test_duplicates_in_one_call_are_asked_once(tmp_path):
    pairs = make_pairs(5) * 3
    oracle = LongerOracle()
    with Ledger(tmp_path / "l.sqlite") as ledger:
        labels = label_pairs(oracle, ledger, pairs, seed=0)
        assert ledger.stats()["calls"] == 5
    assert len(oracle.asked) == 5
    assert [lab.preferred for lab in labels] == [1] * 15


def test_display_order_is_part_of_the_key(tmp_path):
    c = Comparison("p", "x", "yy")
    with Ledger(tmp_path / "l.sqlite") as ledger:
        ledger.record("o", c, Verdict("B"))
        assert ledger.lookup("o", c).choice == "B"
        assert ledger.lookup("o", Comparison("p", "yy", "x")) is None
        assert ledger.lookup("other-oracle", c) is None


def test_lookup_tries_every_cache_identity_and_records_under_what_was_sent(tmp_path):
    class TwoPrompts(LongerOracle):
        """Accepts answers to either of two prompt versions; asks (and records) with v2."""

        @property
        def identity(self) -> str:
            return "longer/v2"

        def cache_identities(self):
            return ["longer/v2", "longer/v1"]

        def record_identity(self, c):
            return "longer/v2"

    pairs = make_pairs(10)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        label_pairs(LongerOracle(), ledger, pairs[:6], seed=0)  # paid for under v1
        ledger.record("longer/v2", Comparison("prompt 6", "x", "y"), Verdict("A"))  # unrelated v2 answer
        oracle = TwoPrompts()
        labels = label_pairs(oracle, ledger, pairs, seed=0)
        s = ledger.stats()
        by_oracle = {r["oracle"]: 0 for r in ledger.rows()}
        for r in ledger.rows():
            by_oracle[r["oracle"]] += 1
    assert len(oracle.asked) == 4 and [lab.cached for lab in labels] == [True] * 6 + [False] * 4  # nothing asked twice
    assert s["cache_hits"] == 6 and s["calls"] == 6 + 1 + 4
    assert by_oracle == {"longer/v1": 6, "longer/v2": 5}
    assert [lab.preferred for lab in labels] == [1] * 10


def test_oracle_error_keeps_what_was_recorded_and_a_rerun_asks_only_the_rest(tmp_path):
    pairs = make_pairs(20)
    path = tmp_path / "labels.sqlite"
    with Ledger(path) as ledger, pytest.raises(OracleError, match="quota"):
        label_pairs(LongerOracle(fail_after=8), ledger, pairs, seed=0)
    con = sqlite3.connect(path)  # a fresh reader sees the 8 answers without the writer's help
    assert con.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 8
    con.close()
    rest = LongerOracle()
    with Ledger(path) as ledger:
        labels = label_pairs(rest, ledger, pairs, seed=0)
        assert ledger.stats()["cache_hits"] == 8
    assert len(rest.asked) == 12
    assert sum(lab.cached for lab in labels) == 8
    assert [lab.preferred for lab in labels] == [1] * 20


def test_record_is_durable_before_return_and_readable_concurrently(tmp_path):
    path = tmp_path / "labels.sqlite"
    ledger = Ledger(path)
    seen: list[int] = []
    stop = threading.Event()

    def reader():
        r = Ledger(path)
        while not stop.is_set():
            seen.append(r.stats()["total"]["labels"])
        r.close()

    t = threading.Thread(target=reader)
    t.start()
    for i in range(50):
        ledger.record("o", Comparison(f"p{i}", "a", "b"), Verdict("A"))
    stop.set()
    t.join()
    # another process sees every row while the writer is still open
    code = f"import sqlite3; print(sqlite3.connect({str(path)!r}).execute('SELECT COUNT(*) FROM labels').fetchone()[0])"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "50"
    assert seen == sorted(seen) and seen[-1] <= 50
    ledger.close()


def test_rerecording_adds_to_the_bill(tmp_path):
    c = Comparison("p", "a", "b")
    with Ledger(tmp_path / "l.sqlite", price_in=1.0, price_out=2.0) as ledger:
        ledger.record("o", c, Verdict(None, raw="??", tokens_in=100, tokens_out=10))
        assert ledger.forget("o", c)
        ledger.record("o", c, Verdict("A", tokens_in=100, tokens_out=10))
        ledger.record("o", c, Verdict("B", tokens_in=100, tokens_out=10, attempts=3))
        (row,) = ledger.rows("o")
        assert (row["choice"], row["calls"], row["attempts"], row["tokens_in"]) == ("B", 2, 3, 200)
        assert row["cost_usd"] == pytest.approx(2 * (100 * 1.0 + 10 * 2.0) / 1e6)
        assert ledger.stats()["calls"] == 3 and ledger.stats()["invalid"] == 1


def test_flip_noise_is_applied_after_the_ledger_and_is_reproducible(tmp_path):
    pairs = make_pairs(400)
    path = tmp_path / "labels.sqlite"
    with Ledger(path) as ledger:
        noisy = label_pairs(LongerOracle(), ledger, pairs, seed=3, flip_prob=0.3)
        again = label_pairs(LongerOracle(), ledger, pairs, seed=3, flip_prob=0.3)
        clean = label_pairs(LongerOracle(), ledger, pairs, seed=3)
        rows = ledger.rows()
    flipped = sum(lab.flipped for lab in noisy)
    assert 90 <= flipped <= 150  # Binomial(400, 0.3): mean 120, sd 9.2
    assert all(lab.preferred == (0 if lab.flipped else 1) for lab in noisy)
    assert [lab.preferred for lab in again] == [lab.preferred for lab in noisy]
    assert [lab.preferred for lab in clean] == [1] * 400 and not any(lab.flipped for lab in clean)
    # the ledger holds the oracle's true answers: A exactly when A is the longer one
    assert all(r["choice"] == ("A" if len(r["a"]) > len(r["b"]) else "B") for r in rows)


def test_sample_bt_draws_from_the_oracles_probability(tmp_path):
    pairs = make_pairs(400)
    with Ledger(tmp_path / "l.sqlite") as ledger:
        # the oracle says P(A) = 0.8 whatever A is, so P(y1 ≻ y0) = 0.8 when y1 is shown as A and 0.2 otherwise
        labels = label_pairs(LongerOracle(p_a=0.8), ledger, pairs, seed=0, sample_bt=True)
    for lab in labels:
        assert lab.p_y1 == pytest.approx(0.8 if lab.shown_order == "10" else 0.2)
    shown_y1_first = [lab for lab in labels if lab.shown_order == "10"]
    shown_y0_first = [lab for lab in labels if lab.shown_order == "01"]
    frac1 = sum(lab.preferred for lab in shown_y1_first) / len(shown_y1_first)
    frac0 = sum(lab.preferred for lab in shown_y0_first) / len(shown_y0_first)
    assert 0.68 <= frac1 <= 0.92  # ≈ 0.8, n ≈ 200, sd 0.028
    assert 0.08 <= frac0 <= 0.32  # ≈ 0.2
    assert all(lab.flipped == (lab.preferred != 1) for lab in labels)


def test_sample_bt_without_a_probability_keeps_the_verdict(tmp_path):
    with Ledger(tmp_path / "l.sqlite") as ledger:
        labels = label_pairs(LongerOracle(p_a=None), ledger, make_pairs(30), seed=0, sample_bt=True)
    assert [lab.preferred for lab in labels] == [1] * 30 and not any(lab.flipped for lab in labels)
