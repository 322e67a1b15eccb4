"""Tiny local models built in the test (nothing downloads): a random sequence classifier on the SmolLM2 tokenizer,
a hub id laid out in a local hub cache."""

from __future__ import annotations

from pathlib import Path


def tiny_classifier(path: str | Path, num_labels: int):
    """A seeded 2-layer random ``LlamaForSequenceClassification`` saved to ``path``; returns (net, tokenizer)."""
    import torch
    from transformers import LlamaForSequenceClassification

    from aplkit.models import load_tokenizer, tiny_config

    tok = load_tokenizer("tiny-random")
    cfg = tiny_config(len(tok))
    cfg.num_labels = num_labels
    cfg.pad_token_id = tok.pad_token_id
    cfg.initializer_range = 0.2  # random logits far enough apart that the argmax is unambiguous
    torch.manual_seed(0)
    net = LlamaForSequenceClassification(cfg).eval()
    net.save_pretrained(path)
    tok.save_pretrained(path)  # saved left-padded: the oracle must switch to right padding itself
    return net, tok


def direct_logits(net, tok, texts):
    """The logits of each text on its own (one at a time: no padding), the hand reference for batched scoring."""
    import torch

    with torch.no_grad():
        return [net(**tok(t, return_tensors="pt")).logits[0] for t in texts]


def cache_model(home: Path, repo_id: str, folder_of=None) -> Path:
    """``repo_id`` laid out in the hub cache under HF_HOME ``home`` as huggingface_hub caches it (refs/main →
    snapshots/<commit>/): a config.json, or the files ``folder_of(snapshot)`` saves there."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    if folder_of is None:
        (snapshot / "config.json").write_text("{}")
    else:
        folder_of(snapshot)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    return snapshot
