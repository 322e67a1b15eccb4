"""Position and length bias of a judge (``aplkit judge-bias``), on hand-made pairs whose answers are known."""

import json
from pathlib import Path

import pandas as pd
import pytest

from aplkit.cli import main
from aplkit.config import DataConfig
from aplkit.oracles.base import Oracle
from aplkit.oracles.consistency import judge_bias, judge_consistency, words
from aplkit.oracles.ledger import Ledger
from aplkit.records import Verdict
from tests.llama_server import llama_server  # noqa: F401 - fixture

FIXTURE = Path(__file__).parent / "data" / "preferences.jsonl"

# pairs 0–9: y0 has i+1 words, y1 has 10−i; pair 10: three words each
PAIRS = [(f"x{i}", " ".join(["w"] * (i + 1)), " ".join(["v"] * (10 - i))) for i in range(10)] + [("x10", "a b c", "d e f")]
# the known preference: y1 in 0–2 (the longer), y0 in 3–4 (the shorter) and 5–7 (the longer), unknown in 8–9, y1 in 10 (equal lengths)
TRUTH = [1, 1, 1, 0, 0, 0, 0, 0, None, None, 1]


class Longer(Oracle):
    """Prefers the completion with more words, on either side; a tie when they have as many."""

    kind = "longer"
    identity = "longer"
    asked = 0

    def judge(self, items):
        self.asked += len(items)
        return [Verdict("A" if words(c.a) > words(c.b) else "B" if words(c.b) > words(c.a) else "tie") for c in items]


class AlwaysA(Oracle):
    kind = "always-a"
    identity = "always-a"

    def judge(self, items):
        return [Verdict("A") for _ in items]


def test_a_length_judge_never_flips_and_always_takes_the_longer(tmp_path):
    with Ledger(tmp_path / "bias.sqlite") as ledger:
        judge = Longer()
        r = judge_bias(judge, PAIRS, seed=0, ledger=ledger, truth=TRUTH)
        assert judge.asked == 22
        assert judge_bias(judge, PAIRS, seed=5, ledger=ledger, truth=TRUTH) == r and judge.asked == 22  # both orders in the ledger
    assert (r["flip_n"], r["flip_k"], r["flip_rate"], r["ties"], r["equal_length"]) == (10, 0, 0.0, 1, 1)
    assert (r["flip_ci_low"], r["flip_ci_high"]) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert (r["longer_n"], r["longer_k"], r["longer_rate"]) == (10, 10, 1.0)
    assert (r["longer_ci_low"], r["longer_ci_high"]) == (pytest.approx(0.7225, abs=1e-4), 1.0)
    # the longer is truly better in 0–2 and 5–7 of the 8 pairs with a known preference and unequal lengths
    assert (r["true_longer_n"], r["true_longer_k"], r["true_longer_rate"]) == (8, 6, 0.75)
    assert (r["true_longer_ci_low"], r["true_longer_ci_high"]) == (pytest.approx(0.4093, abs=1e-4), pytest.approx(0.9285, abs=1e-4))
    assert r["length_bias"] == pytest.approx(0.25)
    assert (r["truth_n"], r["truth_k"]) == (8, 6)  # wrong in 3–4, where the shorter is better; 10 is a tie


def test_a_position_judge_flips_on_every_pair():
    r = judge_bias(AlwaysA(), PAIRS, seed=0)
    assert (r["flip_n"], r["flip_k"], r["flip_rate"], r["first"], r["second"], r["a_rate"]) == (11, 11, 1.0, 11, 0, 1.0)
    assert (r["flip_ci_low"], r["flip_ci_high"]) == (pytest.approx(0.7412, abs=1e-4), 1.0)
    assert r["true_longer_n"] == 0 and r["truth_n"] == 0  # no known preference given
    c = judge_consistency(AlwaysA(), PAIRS, seed=0)
    assert c["agreement"] == 1 - r["flip_rate"] and (c["ci_low"], c["ci_high"]) == (0.0, pytest.approx(1 - 0.7412, abs=1e-4))


def test_cli_measures_the_offline_judge_on_a_preference_file(tmp_path, capsys):
    out = tmp_path / "bias.json"
    args = ["judge-bias", "imdb-cpu", "--set", "oracle.sentiment.model=vader", "--pairs", str(FIXTURE), "--n", "40", "--out", str(out)]
    assert main(args) == 0
    r = json.loads(out.read_text())
    assert r["pairs"] == 40 and r["flip_k"] == 0  # a pointwise judge answers the same whichever side a text is on
    assert r["truth_n"] + r["ties"] == 40 and r["true_longer_n"] == 40 - r["equal_length"]
    line = capsys.readouterr().out
    assert line.startswith("sentiment-v2:vader") and "flips when A and B swap in 0.0 %" in line
    assert (tmp_path / "bias.sqlite").exists()
    from aplkit.notebook import judge_bias_summary

    assert judge_bias_summary("imdb-cpu", ["oracle.sentiment.model=vader"], FIXTURE, 40, out) == r
    assert capsys.readouterr().out == line
    # a run's acquired.jsonl (prompt, y0, y1) carries no known preference
    rows = tmp_path / "acquired.jsonl"
    rows.write_text("".join(json.dumps({"prompt": p, "y0": a, "y1": b}) + "\n" for p, a, b in PAIRS))
    assert main([*args[:4], "--pairs", str(rows), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert (r["pairs"], r["true_longer_n"], r["truth_n"], r["true_longer_rate"]) == (11, 0, 0, None)
    from aplkit.oracles.consistency import bias_pairs

    table = tmp_path / "pairs.parquet"
    pd.read_json(rows, lines=True).to_parquet(table)
    assert bias_pairs(DataConfig(), table, 5) == (PAIRS[:5], [None] * 5)


def test_without_pairs_the_held_out_pairs_of_a_preference_data_set_are_judged(capsys):
    from aplkit.oracles.consistency import bias_pairs

    data = DataConfig(task="preferences", source="file", path=str(FIXTURE), train_size=30, test_size=10)
    pairs, truth = bias_pairs(data, None, 4)
    rows = {r["prompt"] + r["chosen"]: r for r in map(json.loads, FIXTURE.read_text().splitlines())}
    assert len(pairs) == 4 and all(p + (y1 if t == 1 else y0) in rows for (p, y0, y1), t in zip(pairs, truth, strict=True))
    assert main(["judge-bias", "imdb-cpu"]) == 1  # an IMDB prompt pool has no pairs of its own
    assert (
        capsys.readouterr().err.strip()
        == "aplkit: error: --pairs: a file of pairs is needed unless data.task=preferences (whose held-out pairs are used)"
    )


@pytest.mark.server
def test_bias_of_the_local_llm_judge(llama_server, tmp_path):  # noqa: F811
    from aplkit.oracles.llm import LLMJudge

    j = LLMJudge("smollm2", base_url=llama_server, template="sentiment", max_tokens=48, concurrency=1)
    with Ledger(tmp_path / "bias.sqlite") as ledger:
        r = judge_bias(j, PAIRS[:2], seed=0, ledger=ledger, truth=TRUTH[:2])
        c = judge_consistency(j, PAIRS[:2], seed=0, ledger=ledger)
        assert ledger.stats()["calls"] == 4  # the consistency check read the same four answers
    assert r["flip_n"] == c["n"] and r["flip_n"] - r["flip_k"] == c["agree"]
    assert r["flip_n"] + r["invalid"] + r["ties"] == 2 and r["first"] + r["second"] == r["flip_k"]
