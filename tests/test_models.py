import subprocess
import sys
import time

import pytest
import torch

from aplkit.models import EMBEDDED, ModelError, convert_embedded, known_spec, load_models, pick_device, pick_dtype
from tests.fixtures_models import cache_model


def test_tiny_random_is_seeded_and_reference_is_a_frozen_copy():
    a = load_models("tiny-random", seed=0)
    b = load_models("tiny-random", seed=0)
    assert all(torch.equal(x, y) for x, y in zip(a.policy.parameters(), b.policy.parameters(), strict=True))
    assert all(not p.requires_grad for p in a.reference.parameters())
    assert any(p.requires_grad for p in a.policy.parameters())
    with torch.no_grad():
        next(a.policy.parameters()).add_(1.0)
    assert not torch.equal(next(a.policy.parameters()), next(a.reference.parameters()))
    a.reset_policy()
    assert torch.equal(next(a.policy.parameters()), next(a.reference.parameters()))
    assert a.tokenizer.padding_side == "left" and a.tokenizer.pad_token is not None


def test_local_directory_spec_loads_with_from_pretrained(tmp_path, tokenizer):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=1, n_head=2, n_positions=128))
    model.save_pretrained(tmp_path / "m")
    tokenizer.save_pretrained(tmp_path / "m")
    m = load_models(str(tmp_path / "m"))
    assert type(m.policy).__name__ == "GPT2LMHeadModel"
    sd = model.state_dict()
    assert all(torch.equal(v, sd[k]) for k, v in m.policy.state_dict().items() if k in sd)
    assert m.tokenizer.padding_side == "left"


def test_hub_id_spec_is_read_from_the_local_cache_only(hub_online, tokenizer, monkeypatch):
    """Online, a hub id is still never downloaded: a missing one is one line before torch loads anything, a cached
    one loads from the cache without a single network lookup (before: a HEAD request per file, or a download)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    def tiny_gpt2(folder):
        GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=16, n_layer=1, n_head=2, n_positions=64)).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    assert not known_spec("not a model")[0]
    ok, why = known_spec("aplkit-test/not-cached")
    assert not ok and why.startswith("'aplkit-test/not-cached' is not in the local Hugging Face cache")
    with pytest.raises(ModelError) as e:
        load_models("aplkit-test/not-cached")
    assert str(e.value) == why and "\n" not in why
    cache_model(hub_online, "aplkit-test/tiny-gpt2", tiny_gpt2)
    assert known_spec("aplkit-test/tiny-gpt2") == (True, "")
    # the hub library reads HF_HOME and HF_HUB_OFFLINE when imported: load in a fresh process, online, every lookup refused
    # (its telemetry, which looks up a registry of AI agents for the user-agent header, is switched off: not a model file)
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    code = (
        "import socket\n"
        "lookups = []\n"
        "def no_network(host, *a, **k):\n"
        "    lookups.append(host)\n"
        "    raise OSError('no network in this test')\n"
        "socket.getaddrinfo = no_network\n"
        "from aplkit.models import load_models\n"
        "m = load_models('aplkit-test/tiny-gpt2', device='cpu', dtype='float32')\n"
        "print(type(m.policy).__name__, lookups)"
    )
    probe = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert probe.stdout.strip() == "GPT2LMHeadModel []", probe.stderr[-2000:]


def test_device_and_dtype_defaults():
    d = pick_device("auto")
    assert d.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if d.type == "cpu":
        assert pick_dtype("auto", d) == torch.float32
    assert pick_dtype("bfloat16", d) == torch.bfloat16


@pytest.mark.model
def test_embedded_smollm2_converts_once_then_loads_from_cache():
    path = convert_embedded()
    assert (path / "model.safetensors").exists() and (path / "tokenizer.json").exists()
    t0 = time.perf_counter()
    m = load_models(EMBEDDED)
    elapsed = time.perf_counter() - t0  # reported, not asserted: speed is a benchmark's job
    n = sum(p.numel() for p in m.policy.parameters())
    assert 130e6 < n < 140e6
    ids = m.tokenizer("This movie was", return_tensors="pt")
    with torch.no_grad():
        nxt = m.policy(**ids).logits[0, -1].argmax().item()
    assert m.tokenizer.decode([nxt]).strip() != ""  # real weights: a real next token
    print(f"embedded load from cache: {elapsed:.2f}s")
