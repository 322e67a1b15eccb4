"""The bill of a run (``aplkit run --dry-run``) against what a real tiny run did, and its FLOP arithmetic by hand."""

from __future__ import annotations

import subprocess
import sys

import pytest

from aplkit.budget import KNOWN_MODELS, describe, judge_tokens, run_bill
from aplkit.checks import load_config
from aplkit.loop import run_experiment
from aplkit.runfolder import read_jsonl
from tests.test_loop import TINY


def test_counts_equal_a_real_tiny_runs_ledger_and_rows(tmp_path):
    cfg = load_config("imdb-cpu", TINY, strategy="certainty", seed=1)
    run_experiment(cfg, tmp_path / "run", progress=False)
    acquired = list(read_jsonl(tmp_path / "run" / "acquired.jsonl"))
    evals = list(read_jsonl(tmp_path / "run" / "eval_pairs.jsonl"))
    train = list(read_jsonl(tmp_path / "run" / "train.jsonl"))
    bill = run_bill(cfg)
    assert bill.steps == len(list(read_jsonl(tmp_path / "run" / "steps.jsonl"))) == 3
    assert bill.labels == len(acquired) == 12
    assert bill.judge_calls == len(acquired) + len(evals) == 12 + 2 * 8  # waypoints 4 and 12, 8 test prompts each
    # reset mode: every epoch runs over all of X_P; a tie is not trained on, so the bill is exact when none occurs
    ties = [r["step"] for r in acquired if r.get("preferred") is None]
    held = [sum(1 for r in acquired if r["step"] <= t) - sum(1 for s in ties if s <= t) for t in (1, 2, 3)]
    assert sum(r["n_pairs"] for r in train) == cfg.training.epochs * sum(held)
    assert bill.pair_epochs == cfg.training.epochs * (4 + 8 + 12) >= sum(r["n_pairs"] for r in train)


def test_flops_by_hand_for_random_on_the_embedded_shape():
    """random, B = M = 16 (one step at θ0), one waypoint: every term by hand at N = SmolLM2-135M's matmul parameters."""
    cfg = load_config(
        "imdb-cpu",
        ["acquisition.budget=16", "evaluation.waypoints=[16]", "evaluation.test_prompts=32", "evaluation.lm_texts=8"],
        strategy="random",
    )
    n = KNOWN_MODELS["smollm2-135m"][0]
    b = run_bill(cfg)
    prompt, comp = 12, 24  # prompts of 8–16 tokens, completions at max_new_tokens
    acquire = 2 * n * (2 * 16) * (prompt + comp)  # 2M completions generated, nothing scored at θ0
    train = 6 * n * (2 * 16 * 4) * (prompt + comp) + 2 * n * (2 * 16) * (prompt + comp)  # 4 epochs of 16 pairs; θ0 once
    evaluate = 2 * n * 32 * (prompt + comp) * 3 + 2 * n * 8 * 64 * 2  # policy + θ0 KL + baseline; LM loss policy + θ0
    assert b.phases["acquire"].flops == pytest.approx(acquire)
    assert b.phases["train"].flops == pytest.approx(train)
    assert b.phases["evaluate"].flops == pytest.approx(evaluate)
    assert b.judge_calls == 16 + 32 and b.cost_usd == 0.0
    assert "unpriced" not in describe(b, 1e11)


def test_a_paid_judge_is_billed_at_its_prices():
    cfg = load_config("imdb-cpu", ["oracle.kind=llm", "oracle.llm.price_in=10", "oracle.llm.price_out=30"], strategy="random")
    b = run_bill(cfg)
    tin, tout = judge_tokens(cfg, 12, 24)
    assert tin > 100 and tout == cfg.oracle.llm.max_tokens
    assert b.cost_usd == pytest.approx(b.judge_calls * (tin * 10 + tout * 30) / 1e6)
    assert (b + b).cost_usd == pytest.approx(2 * b.cost_usd) and (b + b).runs == 2


def test_dry_run_prints_the_bill_and_loads_no_model(tmp_path):
    code = (
        "import sys, aplkit.models as m; m.load_models = lambda *a, **k: sys.exit('a model was loaded'); "
        "from aplkit.cli import main; sys.exit(main(['run', 'imdb-cpu', '--strategy', 'certainty', '--dry-run', '--out', sys.argv[1]]))"
    )
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "64 labels, 1088 judge calls" in r.stdout and "TFLOP" in r.stdout and "GFLOP/s" in r.stdout
    assert not (tmp_path / "run").exists()


def test_the_papers_models_and_tldr_posts_are_billed_without_their_download():
    """The presets read without the config check (their hub models need not be cached): GPT-2 large's and Pythia-1B's matmul
    parameters, and a TL;DR prompt billed as a whole post of 200–1000 characters with its header (180 tokens, not 12)."""
    from aplkit.config import read_config

    assert KNOWN_MODELS[read_config("imdb").model.spec] == (36 * 12 * 1280**2 + 50_257 * 1280, 1280, 50_257)
    cfg = read_config("tldr", ["acquisition.budget=128", "evaluation.waypoints=[128]"], strategy="random")
    n = 16 * 12 * 2048**2 + 50_304 * 2048
    assert KNOWN_MODELS[cfg.model.spec][0] == n == 908_328_960
    seq = (600 + 120) / 4 + 64  # the middle post with its header at 4 characters a token, and a completion at max_new_tokens
    b = run_bill(cfg)
    assert b.phases["train"].flops == pytest.approx(6 * n * (2 * 128 * 70) * seq + 2 * n * (2 * 128) * seq)  # 70 epochs; θ0 once
    assert b.phases["acquire"].flops == pytest.approx(2 * n * (2 * 128) * seq)  # random at θ0: M pairs generated
    tin, _ = judge_tokens(cfg, 180, 64)
    assert b.judge_tokens_in == pytest.approx(b.judge_calls * tin)
