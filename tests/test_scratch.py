"""Models pretrained from scratch: the BPE (deterministic, cached), the architecture and its seeded initialisation, and
the PHF experiment on a miniature scratch model, every objective, end to end."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from aplkit import scratch
from aplkit.config import ConfigError
from aplkit.models import ModelError, known_spec, load_models
from aplkit.objectives import PHF_OBJECTIVES
from aplkit.phf.config import load_phf_config
from aplkit.phf.experiment import run_phf
from aplkit.runfolder import read_jsonl
from tests.test_phf import TINY as PHF_TINY

SPEC = "scratch:imdb-tiny"
#: test_phf's tiny PHF run on a scratch model, at the preset's lr, scoring 4 texts a batch
TINY = [
    f"model.spec={SPEC}",
    *(s for s in PHF_TINY if not s.startswith(("model.spec=", "training.lr="))),
    "phf.batch_size=4",
]
REVIEW = 'The acting is wooden. The score, though, is superb!  Ten/10 -- "really" (honestly) <i>great</i>.'


def _build_in_a_fresh_process(cache) -> bytes:
    env = {**os.environ, "APLKIT_CACHE": str(cache), "PYTHONHASHSEED": "123", "TOKENIZERS_PARALLELISM": "true"}
    code = "from aplkit import scratch; print(scratch.build_tokenizer(scratch.SIZES['imdb-tiny']))"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True, timeout=300)
    return open(out.stdout.strip(), "rb").read()


def test_the_bpe_is_deterministic_cached_and_reserves_the_control_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path / "a"))
    path = scratch.build_tokenizer(scratch.SIZES["imdb-tiny"])
    assert path.is_relative_to(tmp_path / "a" / "tokenizers") and (path.parent / "recipe.json").exists()
    # another process, another hash seed and thread setting, another cache: byte for byte the same file
    assert _build_in_a_fresh_process(tmp_path / "b") == path.read_bytes()

    def refuse(*a, **k):
        raise AssertionError("trained again although cached")

    monkeypatch.setattr(scratch, "train_bpe", refuse)
    tok = scratch.load_tokenizer(SPEC)  # read from the cache
    assert len(tok) == 320 and tok.name_or_path == SPEC
    assert tok.convert_tokens_to_ids(list(scratch.SPECIAL)) == [0, 1, 2] and tok.eos_token_id == tok.pad_token_id == 0
    ids = tok(REVIEW, add_special_tokens=False)["input_ids"]
    assert tok.decode(ids) == REVIEW  # byte-level: every text round-trips
    marked = [0, 1, *ids[:5], 2, *ids[5:]]
    assert tok.decode(marked, skip_special_tokens=True) == REVIEW  # the control tokens never reach the judge


def test_a_new_recipe_is_a_new_cache_entry(tmp_path, monkeypatch):
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path))
    small = scratch.SIZES["imdb-tiny"]
    other = scratch.ScratchSize(**{**small.__dict__, "vocab": 300})
    assert scratch.tokenizer_file(small) != scratch.tokenizer_file(other)
    assert scratch.tokenizer_file(small) == scratch.tokenizer_file(scratch.ScratchSize(**small.__dict__))


def test_the_scratch_model_has_its_sizes_shape_and_a_seeded_initialisation():
    a = load_models(SPEC, device="cpu", dtype="float32", seed=3)
    s, c = scratch.SIZES["imdb-tiny"], a.policy.config
    assert (c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads, c.vocab_size) == (2, 32, 64, 2, 320)
    assert c.eos_token_id == c.bos_token_id == c.pad_token_id == 0 and c.tie_word_embeddings
    # by hand: tied embedding V·d; per layer q, k, v, o (d·d each) + gate, up, down (d·ffn each) + 2 norms; the final norm
    d, f, v = s.hidden, s.ffn, s.vocab
    assert sum(p.numel() for p in a.policy.parameters()) == v * d + s.layers * (4 * d * d + 3 * d * f + 2 * d) + d == 30880
    assert a.policy.get_input_embeddings().weight is a.policy.get_output_embeddings().weight
    again, other = load_models(SPEC, seed=3), load_models(SPEC, seed=4)
    weights = lambda m: list(m.policy.state_dict().values())  # noqa: E731
    assert all(torch.equal(x, y) for x, y in zip(weights(a), weights(again), strict=True))
    assert not torch.equal(a.policy.model.layers[0].mlp.up_proj.weight, other.policy.model.layers[0].mlp.up_proj.weight)
    assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), a.reference.parameters(), strict=True))
    assert not any(p.requires_grad for p in a.reference.parameters())
    state = torch.random.get_rng_state()
    load_models(SPEC, seed=5)
    assert torch.equal(state, torch.random.get_rng_state())  # the draw does not move the caller's random stream


def test_conditional_training_uses_the_reserved_tokens_and_adds_no_row():
    from aplkit.config import PHFLossConfig
    from aplkit.objectives.trainer import make_loss

    m = load_models(SPEC, seed=0)
    before = m.policy.get_input_embeddings().weight.clone()
    loss = make_loss("conditional", PHFLossConfig(), m.tokenizer, [m.policy, m.reference])
    assert (loss.good_id, loss.bad_id) == (1, 2) and len(m.tokenizer) == 320
    assert torch.equal(m.policy.get_input_embeddings().weight, before)


def test_bad_scratch_settings_fail_in_one_line_naming_the_field():
    ok, why = known_spec("scratch:imdb-huge")
    assert not ok and "unknown scratch size 'imdb-huge'" in why and "scratch:imdb-s" in why
    with pytest.raises(ModelError, match="unknown scratch size"):
        load_models("scratch:imdb-huge")
    with pytest.raises(ConfigError, match=r"^model.spec: unknown scratch size"):
        load_phf_config("phf-imdb-scratch", ["model.spec=scratch:imdb-huge"])
    with pytest.raises(ConfigError, match=r"^training.lora.enabled: scratch:imdb-tiny is trained from scratch"):
        load_phf_config("phf-imdb-scratch", [*TINY, "training.lora.enabled=true"])
    assert load_phf_config("phf-imdb-scratch").model.spec.startswith(scratch.PREFIX)


@pytest.mark.parametrize("objective", PHF_OBJECTIVES)
def test_every_objective_pretrains_the_miniature_from_the_seeds_initialisation(tmp_path, objective):
    cfg = load_phf_config("phf-imdb-scratch", TINY, objective=objective, seed=1)
    summary = run_phf(cfg, tmp_path, progress=False)
    assert summary["complete"] and summary["tokens"] >= 400
    ev = list(read_jsonl(tmp_path / "phf_eval.jsonl"))
    assert [e["step"] for e in ev] == [0, (summary["steps"] + 1) // 2, summary["steps"]]
    # θ0 is a random model: its LM loss is close to ln V, and training lowers it
    assert abs(ev[0]["lm_loss"] - torch.log(torch.tensor(320.0)).item()) < 0.3 and ev[-1]["lm_loss"] < ev[0]["lm_loss"]
    samples = list(read_jsonl(tmp_path / "phf_samples.jsonl"))
    assert not any(t in (0, 1, 2) for s in samples if objective == "conditional" for t in s["ids"])  # suppressed
    assert all("<|" not in s["text"] for s in samples)
    kinds = {s["kind"] for s in samples}
    bad = [e["misalignment_bad"] for e in ev]
    if objective == "conditional":
        assert kinds == {"unconditional", "prompted", "unconditional-bad"} and all(0 <= b <= 1 for b in bad)
    else:
        assert kinds == {"unconditional", "prompted"} and bad == [None] * 3


def test_every_objective_of_a_seed_starts_from_one_theta0(tmp_path):
    """The same initialisation and documents for MLE and conditional training: θ0's LM loss differs only by what the
    conditional model is prompted with (EOS <|good|>, the control tokens masked) — and is equal when that is undone."""
    from aplkit.phf.experiment import PHFExperiment

    exps = {
        o: PHFExperiment(load_phf_config("phf-imdb-scratch", TINY, objective=o, seed=2), tmp_path / o, progress=False)
        for o in ("mle", "conditional")
    }
    try:
        mle, cond = exps["mle"], exps["conditional"]
        for a, b in zip(mle.models.reference.parameters(), cond.models.reference.parameters(), strict=True):
            assert torch.equal(a, b)
        assert [r.ids for r in mle.reviews] == [r.ids for r in cond.reviews]
        cond.models.reference.aplkit_suppress_tokens = None
        cond.measurer.prefix = mle.measurer.prefix
        assert cond.measurer.lm_loss(cond.models.reference) == pytest.approx(mle.measurer.lm_loss_theta0(), abs=1e-6)
    finally:
        for e in exps.values():
            e.run_dir.release()


@pytest.mark.slow  # a training CLI subprocess
def test_the_cli_runs_the_scratch_setting(tmp_path):
    args = [
        sys.executable,
        "-m",
        "aplkit.cli",
        "phf",
        "phf-imdb-scratch",
        "--objective",
        "conditional",
        "--seed",
        "0",
        "--out",
        str(tmp_path),
    ]
    for s in TINY:
        args += ["--set", s]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    subprocess.run([*args, "--quiet"], env=env, check=True, capture_output=True, timeout=600)
    final = list(read_jsonl(tmp_path / "phf_eval.jsonl"))[-1]
    assert final["misalignment_bad"] is not None and final["lm_loss"] < final["lm_loss_theta0"]
