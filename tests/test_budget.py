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


def test_a_pool_runs_bill_counts_the_passes_it_made_and_no_generation_or_judge(tmp_path, monkeypatch):
    """A pool-based certainty run without a judge of its generations: its stored pairs are read, not generated, and
    the stored labels call no judge; every log-prob pass the run made (θ0's and the policy's r̂ of the ranked pairs,
    DPO's cached reference, the held-out pairs) is in the bill, sequence for sequence."""
    import aplkit.generation as gen
    import aplkit.objectives.dpo as dpo
    from tests.test_pool import POOL

    seen = {"sequences": 0, "sampled": 0}
    plain_lp, plain_sample = gen.ids_logprobs, gen.sample

    def counted_lp(model, prompt_ids, completion_ids, *a, **k):
        seen["sequences"] += len(prompt_ids)
        return plain_lp(model, prompt_ids, completion_ids, *a, **k)

    def counted_sample(*a, **k):
        seen["sampled"] += 1
        return plain_sample(*a, **k)

    monkeypatch.setattr(gen, "ids_logprobs", counted_lp)
    monkeypatch.setattr(dpo, "ids_logprobs", counted_lp)  # DPO imports it by name
    monkeypatch.setattr(gen, "sample", counted_sample)
    cfg = load_config("imdb-cpu", POOL, strategy="certainty", seed=1)
    run_experiment(cfg, tmp_path / "run", progress=False)
    bill = run_bill(cfg)
    acquired = list(read_jsonl(tmp_path / "run" / "acquired.jsonl"))
    assert bill.labels == len(acquired) == 12 and bill.judge_calls == 0 and bill.generated_tokens == 0
    assert seen["sampled"] == 0  # nothing generated: neither the pairs nor an evaluation
    assert not (tmp_path / "run" / "eval.jsonl").exists() or not list(read_jsonl(tmp_path / "run" / "eval.jsonl"))
    # acquire: steps 2 and 3 rank S = 8 stored pairs, r̂ of both responses under the policy and θ0 (step 1 is at θ0)
    assert bill.phases["acquire"].sequences == 2 * (2 * 8 + 2 * 8)
    new_pairs = 2 * 12  # DPO's θ0 log-probs, once per new pair (no ties in the fixture)
    held_out = 2 * 8 * (2 + 1)  # both responses of 8 held-out pairs: the policy at waypoints 4 and 12, θ0 once
    assert bill.phases["evaluate"].sequences == held_out
    assert seen["sequences"] == bill.phases["acquire"].sequences + new_pairs + held_out


def test_a_pool_run_judged_on_its_generations_bills_the_evaluation_judge():
    from tests.test_pool import POOL

    cfg = load_config("imdb-cpu", [*POOL, "evaluation.oracle=sentiment"], strategy="random")
    bill = run_bill(cfg)
    assert bill.judge_calls == 8 * 2  # the test prompts at two waypoints; the stored labels call no judge
    assert bill.generated_tokens == 8 * 8 * (2 + 1)  # the policy's test completions at each waypoint and θ0's once


def test_in_a_pool_only_the_pairs_completions_are_read_and_entropys_samples_are_still_generated():
    from aplkit.acquisition import get_scorer
    from aplkit.config import AcquisitionConfig

    acq = AcquisitionConfig(prompt_batch=8, acquire_batch=2, entropy_samples=3)
    ent = get_scorer("entropy").passes(acq, at_theta0=False)  # N·S samples + 2M pair completions; r̂ of the M pairs
    assert ent.generated_in(pool=False) == 3 * 8 + 2 * 2 and ent.generated_in(pool=True) == 3 * 8
    assert ent.sequence_passes(pool=False) == 3 * 8 + 2 * 2 + 2 * 2  # the policy's log-probs from the sampler's record
    assert ent.sequence_passes(pool=True) == 3 * 8 + 2 * 2 + 2 * 2  # stored pairs: the policy's log-probs a pass each
    cert = get_scorer("certainty").passes(acq, at_theta0=False)
    assert cert.generated_in(pool=True) == 0 and cert.sequence_passes(pool=True) == 2 * 8 + 2 * 8


def test_epoch_points_and_t1_samples_are_billed_as_the_evaluations_a_tiny_run_made(tmp_path):
    """Each epoch point is a whole evaluation (judge calls, completions) and kl_samples adds T = 1 samples to each."""
    cfg = load_config("imdb-cpu", [*TINY, "evaluation.epoch_points=[12]", "evaluation.kl_samples=1"], strategy="random", seed=2)
    run_experiment(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    acquired = list(read_jsonl(run / "acquired.jsonl"))
    judged = list(read_jsonl(run / "eval_pairs.jsonl")) + list(read_jsonl(run / "eval_epoch_pairs.jsonl"))
    bill = run_bill(cfg)
    assert bill.judge_calls == len(acquired) + len(judged) == 12 + 8 * (1 + 2)  # waypoint 4 once; 12 after both epochs
    comp, evaluations = 8, 1 + 2
    assert bill.generated_tokens == 3 * 2 * 4 * comp + 8 * comp * evaluations * 2 + 8 * comp  # 3 steps' pairs, test + T = 1 samples, θ0's


def test_an_earlier_epochs_point_is_billed_without_the_companions_the_frontier_does_not_read():
    """The frontier's settings (per-epoch points at 32 and 64, one T = 1 sample): each of the 6 earlier epochs' points
    leaves out θ0's pass along the 256 test completions (12 + 24 tokens) and the LM loss (64 texts × 64 tokens)."""
    from aplkit.config import read_config

    sets = ["evaluation.waypoints=[32,64]", "evaluation.epoch_points=[32,64]", "evaluation.kl_samples=1"]
    lean = run_bill(read_config("imdb-cpu", sets, strategy="random"))
    every = run_bill(read_config("imdb-cpu", [*sets, "evaluation.epoch_companions=true"], strategy="random"))
    n = KNOWN_MODELS["smollm2-135m"][0]
    saved = 6 * 2 * n * (256 * (12 + 24) + 64 * 64)
    assert every.phases["evaluate"].flops - lean.phases["evaluate"].flops == pytest.approx(saved)
    assert every.judge_calls == lean.judge_calls and every.generated_tokens == lean.generated_tokens  # judged and sampled alike
    plain = run_bill(read_config("imdb-cpu", [*sets, "evaluation.kl_samples=0"], strategy="random"))
    again = run_bill(read_config("imdb-cpu", [*sets, "evaluation.kl_samples=0", "evaluation.epoch_companions=true"], strategy="random"))
    assert again.phases["evaluate"].flops - plain.phases["evaluate"].flops == pytest.approx(6 * 2 * n * 64 * 64)  # the KL is the x-axis


def test_compute_other_than_fp32_bills_the_policy_pass_the_sampler_saves():
    from aplkit.config import read_config  # unchecked: a CPU without bf16 instructions refuses the bf16 config

    fp32 = run_bill(read_config("imdb-cpu", ["evaluation.kl_samples=1"], strategy="random"))
    bf16 = run_bill(read_config("imdb-cpu", ["evaluation.kl_samples=1", "model.dtype=bfloat16", "model.device=cpu"], strategy="random"))
    n, seq, prompts, waypoints = KNOWN_MODELS["smollm2-135m"][0], 12 + 24, 256, 4
    extra = 2 * n * seq * prompts * waypoints * (1 + 1)  # the policy's pass along the test completions and along the T = 1 samples
    assert bf16.phases["evaluate"].flops - fp32.phases["evaluate"].flops == pytest.approx(extra)


def test_auto_dtype_on_a_cuda_card_is_billed_as_bf16_compute():
    from aplkit.budget import fp32_compute
    from aplkit.config import read_config

    cpu, cuda = (read_config("imdb-cpu", [f"model.device={d}"], strategy="certainty") for d in ("cpu", "cuda"))
    assert fp32_compute(cpu) and not fp32_compute(cuda)  # models.pick_dtype: auto is bf16 on a CUDA card
    n, seq, s = KNOWN_MODELS["smollm2-135m"][0], 12 + 24, 256
    extra_acquire = 2 * n * seq * (2 * s) * 3  # certainty's policy log-probs of its 2S pairs at steps 2-4
    assert run_bill(cuda).phases["acquire"].flops - run_bill(cpu).phases["acquire"].flops == pytest.approx(extra_acquire)
    assert run_bill(cuda).phases["evaluate"].flops - run_bill(cpu).phases["evaluate"].flops == pytest.approx(2 * n * seq * 256 * 4)
