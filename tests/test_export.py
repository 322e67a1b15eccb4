"""``aplkit export``: the labelled pairs of a run or a sweep as a preference data set that datasets and TRL read."""

import copy
import json
import math
import subprocess
import sys

import pytest

from aplkit.checks import load_config
from aplkit.cli import main
from aplkit.config import ExperimentConfig
from aplkit.export import COLUMNS, export_preferences
from aplkit.loop import run_experiment
from aplkit.records import AcquiredRow
from aplkit.runfolder import CONFIG, RunFolder


def _row(step: int, index: int, choice: str | None, preferred: int | None, p_y1: float | None = None) -> AcquiredRow:
    return AcquiredRow(
        step=step,
        index=index,
        prompt_id=f"p{step}{index}",
        prompt=f"prompt {step}.{index}",
        y0=f" first {step}.{index}",
        y1=f" second {step}.{index}",
        score=0.25 * index,
        reward0=0.1,
        reward1=0.3,
        shown_order="01",
        choice=choice,
        preferred=preferred,
        oracle_p_y1=p_y1,
        oracle_score0=-1.0,
        oracle_score1=2.0,
        raw=f"answer {index}",
    )


def _run(root, strategy: str, seed: int, rows: list[AcquiredRow]):
    run = RunFolder(root / strategy / f"seed{seed}").ensure()
    ExperimentConfig(name="hand", strategy=strategy, seed=seed).dump(run / CONFIG)
    for r in rows:
        run.add(r)
    return run.path


def test_export_maps_the_labels_to_chosen_and_rejected_and_counts_what_it_leaves_out(tmp_path, capsys):
    import datasets

    one = _run(
        tmp_path, "certainty", 0, [_row(1, 0, "B", 1, 0.8), _row(1, 1, "A", 0, 0.8), _row(1, 2, "tie", None), _row(2, 0, None, None)]
    )
    _run(tmp_path, "random", 2, [_row(1, 0, "A", 0, None)])
    e = export_preferences(one)
    assert (e.path, e.pairs, e.ties, e.invalid, e.runs) == (one / "preferences.parquet", 2, 1, 1, 1)
    assert e.line() == f"wrote 2 preference pairs from 1 run(s) to {e.path} (left out: 1 ties, 1 invalid answers)"
    ds = datasets.load_dataset("parquet", data_files=str(e.path))["train"]
    assert ds.column_names == list(COLUMNS)
    a, b = ds[0], ds[1]
    assert (a["prompt"], a["chosen"], a["rejected"]) == ("prompt 1.0", " second 1.0", " first 1.0")  # preferred 1: y1 ≻ y0
    assert (b["chosen"], b["rejected"]) == (" first 1.1", " second 1.1")
    assert (a["reward_chosen"], a["reward_rejected"], b["reward_chosen"], b["reward_rejected"]) == (0.3, 0.1, 0.1, 0.3)
    assert (a["oracle_score_chosen"], a["oracle_score_rejected"], b["oracle_score_chosen"]) == (2.0, -1.0, -1.0)
    assert a["oracle_p_chosen"] == pytest.approx(0.8) and b["oracle_p_chosen"] == pytest.approx(0.2)
    assert (a["strategy"], a["seed"], a["step"], a["index"], a["oracle"], a["choice"], a["judgement"]) == (
        "certainty",
        0,
        1,
        0,
        "sentiment",
        "B",
        "answer 0",
    )

    assert main(["export", str(tmp_path), "--format", "jsonl", "--out", str(tmp_path / "all.jsonl")]) == 0
    assert (
        capsys.readouterr().out.strip()
        == f"wrote 3 preference pairs from 2 run(s) to {tmp_path / 'all.jsonl'} (left out: 1 ties, 1 invalid answers)"
    )
    sweep = datasets.load_dataset("json", data_files=str(tmp_path / "all.jsonl"))["train"]
    assert sorted(set(sweep["run"])) == ["certainty/seed0", "random/seed2"] and sweep.num_rows == 3
    assert [r["oracle_p_chosen"] for r in sweep if r["run"] == "random/seed2"] == [None]  # the oracle gave no probability


def test_notebook_helper_exports_as_the_command_does(tmp_path, capsys):
    from aplkit.notebook import export_preferences as in_a_cell

    run = _run(tmp_path, "random", 1, [_row(1, 0, "A", 0), _row(1, 1, "tie", None)])
    path = in_a_cell(run, fmt="jsonl")
    assert path == run / "preferences.jsonl" and capsys.readouterr().out.strip() == export_preferences(run, fmt="jsonl").line()
    assert [json.loads(line)["chosen"] for line in path.read_text().splitlines()] == [" first 1.0"]


def test_export_of_nothing_is_one_line(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "aplkit.cli", "export", str(tmp_path / "none")], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 1 and res.stderr.strip().startswith("aplkit: error: runs dir not found") and "\n" not in res.stderr.strip()


def test_trl_dpo_trainer_trains_on_an_export_of_a_tiny_run(tmp_path, tiny):
    from datasets import load_dataset
    from trl import DPOConfig, DPOTrainer

    sets = ["model.spec=tiny-random", "data.train_size=40", "data.test_size=8", "acquisition.budget=8", "acquisition.acquire_batch=4"]
    sets += ["acquisition.prompt_batch=4", "acquisition.max_new_tokens=6", "training.epochs=1", "evaluation.test_prompts=4"]
    cfg = load_config(
        "imdb-cpu", [*sets, "evaluation.waypoints=[8]", "evaluation.lm_texts=0", "oracle.sentiment.model=vader"], strategy="random"
    )
    run_experiment(cfg, tmp_path / "run", progress=False)
    e = export_preferences(tmp_path / "run")
    assert e.pairs + e.ties + e.invalid == 8 and e.pairs >= 4
    ds = load_dataset("parquet", data_files=str(e.path))["train"]
    policy = copy.deepcopy(tiny.reference)
    for p in policy.parameters():
        p.requires_grad_(True)
    before = [p.detach().clone() for p in policy.parameters()]
    args = DPOConfig(
        output_dir=str(tmp_path / "trl"), max_steps=1, per_device_train_batch_size=4, learning_rate=1e-3, report_to=[], use_cpu=True,
        bf16=False, logging_steps=1, save_strategy="no",
    )  # fmt: skip
    trainer = DPOTrainer(
        model=policy, ref_model=copy.deepcopy(tiny.reference), args=args, train_dataset=ds, processing_class=tiny.tokenizer
    )
    trainer.train()
    assert trainer.state.global_step == 1
    assert trainer.state.log_history[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # π = π_ref at the first step: −log σ(0)
    assert any(not (a == b).all() for a, b in zip(before, policy.parameters(), strict=True))
