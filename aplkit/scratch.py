"""Models pretrained from scratch on the IMDB train split: their sizes, their tokenizer and their seeded initialisation.

``model.spec: scratch:<size>`` (``SIZES``) names a small Llama-style causal LM whose whole distribution comes
from the data it is trained on, as in the paper, which pretrains with each objective. Nothing is downloaded:

* the tokenizer is a byte-level BPE trained on the train split's reviews (``data.imdb_train_pool``: every
  review outside the 5,000 held-out test reviews of split seed 0), once, and cached under ``cache_dir()``
  keyed by its recipe, the data's version and the ``tokenizers`` version; training is deterministic, so
  every machine with those versions builds the same file. 8,192 tokens rather than SmolLM2's 49,152: at
  a hidden size of 128–256 the output layer costs 2·V·d FLOPs a token, and a small vocabulary keeps it below
  the body's cost and its rows seen often enough to learn; the reviews' words are then mostly single tokens.
* ``<|endoftext|>`` (document start and padding), ``<|good|>`` and ``<|bad|>`` are reserved in the vocabulary:
  conditional training adds no row (``objectives.conditional.add_control_tokens`` finds them), so every
  objective of a seed starts from one θ0 and their LM losses compare directly.
* the weights are ``transformers``' initialisation drawn under ``derive_seed(seed, "scratch-init")``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aplkit.paths import cache_dir
from aplkit.seeding import derive_seed

PREFIX = "scratch:"
EOS, GOOD, BAD = "<|endoftext|>", "<|good|>", "<|bad|>"
SPECIAL = (EOS, GOOD, BAD)


@dataclass(frozen=True)
class ScratchSize:
    """A Llama-style architecture (tied embeddings, SwiGLU, RoPE) and the BPE it reads."""

    layers: int
    hidden: int
    ffn: int  # the SwiGLU's intermediate size
    heads: int
    kv_heads: int | None = None  # None: as many as ``heads``
    vocab: int = 8192
    context: int = 512
    tokenizer_reviews: int | None = None  # the first this many train-split reviews fit the BPE (None: all)


#: the sizes a spec can name: the test miniature and the from-scratch setting's candidates (bench/README.md)
SIZES: dict[str, ScratchSize] = {
    "imdb-tiny": ScratchSize(layers=2, hidden=32, ffn=64, heads=2, vocab=320, tokenizer_reviews=300),
    "imdb-xs": ScratchSize(layers=4, hidden=128, ffn=384, heads=4),
    "imdb-s": ScratchSize(layers=6, hidden=192, ffn=512, heads=6),
    "imdb-m": ScratchSize(layers=8, hidden=256, ffn=704, heads=8),
}


def is_scratch(spec: str) -> bool:
    return spec.startswith(PREFIX)


def problem(spec: str) -> str:
    """Why ``spec`` names no scratch size ("" when it does); cheap, no torch."""
    name = spec[len(PREFIX) :]
    return "" if name in SIZES else f"unknown scratch size '{name}' in '{spec}' (choose from {', '.join(PREFIX + s for s in SIZES)})"


def size_of(spec: str) -> ScratchSize:
    why = problem(spec)
    if why:
        raise ValueError(why)
    return SIZES[spec[len(PREFIX) :]]


def llama_config(size: ScratchSize, vocab_size: int, eos_id: int | None = None):
    """The ``LlamaConfig`` of ``size`` over ``vocab_size`` tokens; ``eos_id`` (given) is also its BOS and padding."""
    from transformers import LlamaConfig

    ids = {} if eos_id is None else {"bos_token_id": eos_id, "eos_token_id": eos_id, "pad_token_id": eos_id}
    return LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=size.hidden,
        intermediate_size=size.ffn,
        num_hidden_layers=size.layers,
        num_attention_heads=size.heads,
        num_key_value_heads=size.kv_heads or size.heads,
        max_position_embeddings=size.context,
        tie_word_embeddings=True,
        **ids,
    )


# --------------------------------------------------------------------------- the tokenizer


def recipe(size: ScratchSize) -> dict[str, Any]:
    """Everything the trained BPE depends on (the data's identity, not its text: read only to train)."""
    import tokenizers

    from aplkit.data import imdb_identity

    return {
        "kind": "byte-level-bpe",
        "vocab": size.vocab,
        "reviews": size.tokenizer_reviews,
        "special": list(SPECIAL),
        "min_frequency": 2,
        "split": {"train_size": 20000, "test_size": 5000, "split_seed": 0},
        "data": imdb_identity(),
        "tokenizers": tokenizers.__version__,
    }


def tokenizer_file(size: ScratchSize) -> Path:
    r = recipe(size)
    digest = hashlib.blake2b(json.dumps(r, sort_keys=True).encode(), digest_size=8).hexdigest()
    return cache_dir() / "tokenizers" / f"scratch-bpe{size.vocab}-{digest}" / "tokenizer.json"


def train_bpe(texts: list[str], vocab: int):
    """A byte-level BPE of ``vocab`` tokens (the reserved ones first: ids 0, 1, 2) fitted on ``texts``."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tk.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        min_frequency=2,
        special_tokens=list(SPECIAL),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tk.train_from_iterator(texts, trainer)
    return tk


def build_tokenizer(size: ScratchSize) -> Path:
    """The cached BPE of ``size``, trained first if absent (written whole or not at all)."""
    path = tokenizer_file(size)
    if path.exists():
        return path
    from aplkit.data import imdb_train_pool

    texts, _ = imdb_train_pool(**recipe(size)["split"])
    tk = train_bpe(texts[: size.tokenizer_reviews] if size.tokenizer_reviews else texts, size.vocab)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(tk.to_str())
    (path.parent / "recipe.json").write_text(json.dumps({**recipe(size), "size": asdict(size)}, indent=1))
    os.replace(tmp, path)  # another process writing the same file writes the same bytes
    return path


def load_tokenizer(spec: str):
    """The ``transformers`` tokenizer of a scratch spec: EOS = BOS = padding, the control tokens special (never decoded)."""
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_file=str(build_tokenizer(size_of(spec))),
        eos_token=EOS,
        bos_token=EOS,
        pad_token=EOS,
        additional_special_tokens=[GOOD, BAD],
        model_max_length=size_of(spec).context,
    )
    tok.name_or_path = spec
    return tok


# --------------------------------------------------------------------------- the model


def init_model(spec: str, seed: int, tokenizer=None):
    """A freshly initialised causal LM of ``spec``: the same weights for the same seed, fp32."""
    import torch
    from transformers import AutoModelForCausalLM

    tok = tokenizer or load_tokenizer(spec)
    config = llama_config(size_of(spec), len(tok), tok.eos_token_id)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "scratch-init"))
        model = AutoModelForCausalLM.from_config(config)
    return model


__all__ = [
    "BAD",
    "EOS",
    "GOOD",
    "PREFIX",
    "SIZES",
    "ScratchSize",
    "build_tokenizer",
    "init_model",
    "is_scratch",
    "llama_config",
    "load_tokenizer",
    "problem",
    "recipe",
    "size_of",
    "train_bpe",
]
