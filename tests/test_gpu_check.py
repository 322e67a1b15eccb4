"""``python -m bench gpu-check``: the refusal without CUDA, the model's shape, and the miniature run on a CPU."""

from __future__ import annotations

import json

import pytest
import torch

from bench import gpu_check


def test_refuses_without_cuda_in_one_line(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--results", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip() == "no CUDA device: run this on a GPU machine (--device cpu runs the miniature check)"
    assert not (tmp_path / "x.json").exists()


def test_the_random_model_has_the_embedded_models_shape():
    """SmolLM2-135M's parameters as the budget counts them (the norms and the tied head included), built on the meta device."""
    from transformers import AutoModelForCausalLM

    from aplkit.budget import KNOWN_MODELS

    config = gpu_check.smollm2_config(49_152)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert (sum(p.numel() for p in model.parameters()), config.hidden_size, config.vocab_size) == KNOWN_MODELS["smollm2-135m"]


def test_device_slug():
    assert gpu_check.device_slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"
    assert gpu_check.device_slug("cpu") == "cpu"


@pytest.mark.slow
def test_miniature_check_on_a_cpu(tmp_path):
    """The whole check at the miniature size: entropy, one step of M = 4 from S = 8 prompts × N = 2, 8 test prompts, two epochs."""
    out = tmp_path / "check.json"
    assert gpu_check.main(["--device", "cpu", "--results", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["device"] == "cpu" and r["peak_gpu_memory_gib"] is None and r["compute_dtype"] == "float32"
    cfg = r["config"]
    assert (cfg["acquisition"]["budget"], cfg["evaluation"]["waypoints"], cfg["evaluation"]["test_prompts"]) == (4, [4], 8)
    assert cfg["model"]["device"] == "cpu" and cfg["strategy"] == "entropy"
    # generate calls of ≤ 8 rows: θ0's baseline (8 test prompts), S × N = 16 samples for the entropies (2 calls), a fresh pair for
    # each of the M = 4 prompts kept, the policy's test completions; random weights run each row to max_new_tokens = 8
    g = r["generation"]
    assert (g["calls"], g["rows"], g["tokens"]) == (5, 8 + 16 + 8 + 8, 40 * 8)
    assert g["tokens_per_s"] == pytest.approx(g["tokens"] / g["seconds"], rel=1e-2)
    d = r["dpo"]
    assert (d["pairs"], d["epochs"]) == (4, 2) and d["tokens"] > 0 and d["tokens"] % 2 == 0
    assert d["tokens_per_s"] == pytest.approx(d["tokens"] / d["seconds"], rel=1e-2)
    assert set(r["seconds"]) >= {"models_s", "setup_s", "acquire_s", "label_s", "train_s", "evaluate_s"}
    assert all(v >= 0 for v in r["seconds"].values()) and all(v > 0 for v in r["flops_per_s"].values())
