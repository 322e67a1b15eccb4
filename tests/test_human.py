"""Human oracle round trip: loop → queue → panel (clicks simulated) → ledger → resumed labels."""

from __future__ import annotations

import pytest

from aplkit.oracles.human import AwaitingHumanLabels, HumanOracle, LabelPanel, read_queue
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import Ledger
from aplkit.records import Comparison, Verdict

PAIRS = [(f"Review {i}:", f" bad {i}", f" good {i}") for i in range(4)]


def test_unanswered_comparisons_are_queued_once_and_the_loop_stops(tmp_path):
    oracle = HumanOracle("alice", tmp_path / "human_queue.jsonl")
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        for _ in range(2):  # asking twice does not queue twice
            with pytest.raises(AwaitingHumanLabels, match=r"4 comparison\(s\) await a human label") as e:
                label_pairs(oracle, ledger, PAIRS, seed=0)
        assert e.value.n == 4
        assert ledger.stats()["total"]["labels"] == 0
    rows = read_queue(tmp_path / "human_queue.jsonl")
    assert len(rows) == 4 and {r["oracle"] for r in rows} == {"human|alice"}
    assert {(r["prompt"], frozenset((r["a"], r["b"]))) for r in rows} == {(p, frozenset((y0, y1))) for p, y0, y1 in PAIRS}


def test_panel_answers_reach_the_ledger_and_the_rerun_resumes(tmp_path):
    queue = tmp_path / "human_queue.jsonl"
    oracle = HumanOracle("alice", queue)
    with Ledger(tmp_path / "labels.sqlite") as ledger, pytest.raises(AwaitingHumanLabels):
        label_pairs(oracle, ledger, PAIRS, seed=0)

    panel = LabelPanel(tmp_path)
    box = panel.widget  # builds the ipywidgets panel; clicks are simulated below
    assert len(box.children) == 5
    assert panel.remaining == 4 and panel.status().startswith("Item 1 of 4")
    # the human prefers the "good" completion wherever it is shown, except for the tie on pair 2
    skipped_once = False
    while panel.current is not None:
        item = panel.current
        if not skipped_once:
            skipped_once = True
            panel._w["skip"].click()  # skip leaves it queued
            assert panel.remaining == 4 and panel.current is not item
            continue
        if item["prompt"] == "Review 2:":
            panel._w["tie"].click()
        elif "good" in item["a"]:
            panel._w["A"].click()
        else:
            panel._on_key({"type": "keydown", "key": "b"})  # the key event ipyevents sends
        # durable at once: another reader sees the answer and the shorter queue
        assert len(read_queue(queue)) == panel.remaining
        with Ledger(tmp_path / "labels.sqlite") as reader:
            assert reader.stats()["total"]["labels"] == 4 - panel.remaining
    assert panel.status().startswith("Queue empty: 4 labelled")
    assert panel._w["progress"].value == panel._w["progress"].max == 4
    assert panel._w["A"].disabled
    panel.close()

    with Ledger(tmp_path / "labels.sqlite") as ledger:
        labels = label_pairs(oracle, ledger, PAIRS, seed=0)
        assert ledger.stats()["calls"] == 0 and ledger.stats()["cache_hits"] == 4
    assert [(lab.preferred, lab.tie, lab.cached) for lab in labels] == [
        (1, False, True),
        (1, False, True),
        (None, True, True),
        (1, False, True),
    ]
    assert read_queue(queue) == []


def test_panel_drops_queued_items_that_the_ledger_already_answers(tmp_path):
    queue = tmp_path / "human_queue.jsonl"
    oracle = HumanOracle("bob", queue)
    with Ledger(tmp_path / "labels.sqlite") as ledger, pytest.raises(AwaitingHumanLabels):
        label_pairs(oracle, ledger, PAIRS[:2], seed=0)
    first = read_queue(queue)[0]
    with Ledger(tmp_path / "labels.sqlite") as ledger:  # as if the panel crashed after recording, before rewriting the queue
        ledger.record(first["oracle"], Comparison(first["prompt"], first["a"], first["b"]), Verdict("A"))
    panel = LabelPanel(tmp_path)
    assert panel.remaining == 1 and panel.current["key"] != first["key"]
    with pytest.raises(ValueError, match="A, B or tie"):
        panel.answer("C")
    panel.key("x")  # ignored
    assert panel.remaining == 1
    panel.key("a")
    assert panel.remaining == 0
    panel.close()


def test_panel_writes_to_the_ledger_the_loop_reads_when_the_cache_is_elsewhere(tmp_path):
    """With oracle.cache pointing away from the run folder, the panel must answer into that same ledger."""
    from aplkit.checks import load_config
    from aplkit.loop import run_experiment
    from tests.test_loop import TINY

    shared = tmp_path / "shared" / "ledger.sqlite"
    cfg = load_config("imdb-cpu", [*TINY, "oracle.kind=human", f"oracle.cache={shared}"], strategy="random")
    run = tmp_path / "run"
    with pytest.raises(AwaitingHumanLabels) as first:
        run_experiment(cfg, run, progress=False)
    asked = {r["key"] for r in read_queue(run / "human_queue.jsonl")}
    assert first.value.n == len(asked) == 4  # step 1's M pairs
    panel = LabelPanel(run)
    while panel.current is not None:
        panel.answer("A")
    panel.close()
    assert not (run / "labels.sqlite").exists()  # nothing went to a ledger the loop never reads
    with Ledger(shared) as ledger:
        assert ledger.stats()["total"]["labels"] == 4
    with pytest.raises(AwaitingHumanLabels):  # the loop goes on past step 1 and stops at its next questions
        run_experiment(cfg, run, progress=False)
    assert not asked & {r["key"] for r in read_queue(run / "human_queue.jsonl")}  # none asked again


def test_a_missing_queue_is_one_error_naming_the_absolute_path_and_creates_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(FileNotFoundError, match=rf"no labelling queue: there is no {tmp_path.resolve()}/runs/x/human_queue.jsonl"):
        LabelPanel("runs/x")
    assert sorted(tmp_path.rglob("*")) == before  # no labels.sqlite, no folders


def test_a_relative_run_folder_is_found_from_a_notebook_below_the_project(tmp_path, monkeypatch):
    run = tmp_path / "runs" / "x"
    with Ledger(run / "labels.sqlite") as ledger, pytest.raises(AwaitingHumanLabels):
        label_pairs(HumanOracle("alice", run / "human_queue.jsonl"), ledger, PAIRS[:2], seed=0)
    (tmp_path / "analysis").mkdir()
    monkeypatch.chdir(tmp_path / "analysis")  # the kernel starts in the notebook's folder
    panel = LabelPanel("runs/x")
    assert panel.run_dir == run.resolve() and panel.remaining == 2
    panel.answer("tie")
    panel.close()
    assert not (tmp_path / "analysis" / "runs").exists()
    with Ledger(run / "labels.sqlite") as ledger:
        assert [r["choice"] for r in ledger.rows()] == ["tie"]


def test_skip_says_what_it_did_also_on_the_last_item(tmp_path):
    with Ledger(tmp_path / "labels.sqlite") as ledger, pytest.raises(AwaitingHumanLabels):
        label_pairs(HumanOracle("alice", tmp_path / "human_queue.jsonl"), ledger, PAIRS[:2], seed=0)
    panel = LabelPanel(tmp_path)
    assert panel.widget is not None  # builds the widgets
    panel.skip()
    assert panel.pos == 1 and "stays queued" in panel._w["note"].value
    panel.skip()  # wraps round
    assert panel.pos == 0 and "back to the first item" in panel.note
    panel.answer("A")
    assert panel.note == "Saved: A is better."
    panel.skip()
    assert panel.remaining == 1 and "only item left" in panel._w["note"].value
    panel.answer("B")
    panel.skip()
    assert panel.note == "Nothing to skip: the queue is empty." and panel._w["skip"].disabled
    panel.close()


def test_html_in_the_texts_is_shown_not_interpreted(tmp_path):
    pairs = [("<b>bold</b> & co", "<script>alert(1)</script>", "fine")]
    with Ledger(tmp_path / "labels.sqlite") as ledger, pytest.raises(AwaitingHumanLabels):
        label_pairs(HumanOracle("alice", tmp_path / "human_queue.jsonl"), ledger, pairs, seed=0)
    panel = LabelPanel(tmp_path)
    assert panel.widget is not None  # builds the widgets
    shown = panel._w["prompt"].value + panel._w["a"].value + panel._w["b"].value
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; co" in shown and "&lt;script&gt;" in shown and "<script>" not in shown
    panel.close()
