"""Sampling completions and scoring sequence log-probabilities log p(y|x).

Every log-prob in the kit (acquisition scores, implicit rewards, DPO) goes through
``encode_ids`` + ``completion_logprobs`` so the same layout is used everywhere: prompt
tokens, then completion tokens, right-padded, with a mask that keeps only completion
positions. Generation uses left padding.

A sampled completion is scored and trained on as the token ids the sampler drew, EOS
included when the model stopped (``Sample.ids``); its text (special tokens dropped) is
only for the oracle and the run folder. Decoding and re-tokenising would change 2–4 % of
sequences (``ĠDun|s`` → ``ĠD|uns``, 1–20 nats) and hide whether a completion finished or
was cut at ``max_new_tokens``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from aplkit.models import autocast


@dataclass
class EncodedPairs:
    """A right-padded batch of prompt+completion sequences and the completion-token mask."""

    input_ids: torch.Tensor  # [B, L]
    attention_mask: torch.Tensor  # [B, L]
    completion_mask: torch.Tensor  # [B, L] 1 where the token is part of the completion


def encode_ids(prompt_ids: Sequence[Sequence[int]], completion_ids: Sequence[Sequence[int]], pad_id: int) -> EncodedPairs:
    if len(prompt_ids) != len(completion_ids):
        raise ValueError("prompt_ids and completion_ids must have the same length")
    seqs = [list(p) + list(c) for p, c in zip(prompt_ids, completion_ids, strict=True)]
    width = max((len(s) for s in seqs), default=1)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), width), dtype=torch.long)
    comp = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, (p, s) in enumerate(zip(prompt_ids, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        comp[i, len(p) : len(s)] = 1
    return EncodedPairs(ids, attn, comp)


def tokenize_pairs(tokenizer, prompts: Sequence[str], completions: Sequence[str]) -> tuple[list[list[int]], list[list[int]]]:
    """Prompt and completion tokenised separately (as TRL does), so the boundary is exact."""
    p = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    c = tokenizer(list(completions), add_special_tokens=False)["input_ids"]
    return p, c


def next_token_logits(model, batch: EncodedPairs, at: torch.Tensor | None = None) -> torch.Tensor:
    """fp32 logits of the distribution of token t+1 at positions t < L−1: all of them ([B, L−1, V]), or only where
    ``at`` ([B, L−1], bool) holds, row by row ([N, V]: the vocabulary head runs at those positions alone).

    The head is ≈ a fifth of SmolLM2-135M's FLOPs per token, and the prompt positions' logits are never read;
    ``at`` skips them (``logits_to_keep`` of ``transformers``' causal LMs; a model that does not take it is
    sliced after its full head). The model's suppressed tokens (``suppressed_tokens``) get −∞, so every
    log-prob, KL and LM loss taken from these logits is of the distribution the sampler draws from:
    renormalised over the tokens the model may emit, as it is deployed.
    """
    device = next(model.parameters()).device
    ids, attn = batch.input_ids.to(device), batch.attention_mask.to(device)
    if at is None:
        with autocast(model):
            logits = model(input_ids=ids, attention_mask=attn).logits
        return mask_suppressed(model, logits[:, :-1].float())
    at = at.to(device).bool()
    if _takes_logits_to_keep(model):
        keep = torch.cat([at, torch.zeros_like(at[:, :1])], dim=1)  # [B, L]: the last position predicts nothing here
        with autocast(model):
            logits = model(input_ids=ids, attention_mask=attn, logits_to_keep=keep).logits
    else:
        with autocast(model):
            logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1][at]
    return mask_suppressed(model, logits.float())


def _takes_logits_to_keep(model) -> bool:
    import inspect

    params = inspect.signature(model.forward).parameters
    if "logits_to_keep" in params:
        return True
    base = getattr(model, "get_base_model", None)  # a PEFT wrapper passes keywords through to its base model
    return base is not None and "logits_to_keep" in inspect.signature(base().forward).parameters


def mask_suppressed(model, logits: torch.Tensor) -> torch.Tensor:
    """``logits`` with the model's suppressed tokens set to −∞ (out of place, so gradients flow through the rest)."""
    suppress = suppressed_tokens(model)
    if not suppress:
        return logits
    idx = torch.tensor(suppress, dtype=torch.long, device=logits.device)
    return logits.index_fill(-1, idx, float("-inf"))


def completion_logprobs(model, batch: EncodedPairs) -> torch.Tensor:
    """Σ_t log p(y_t | x, y_<t) over completion tokens, one value per row (differentiable).

    Logits only at the completion positions (``next_token_logits(at=)``): a prompt token is read, never
    scored (one the model never emits, a control token, would have log-prob −∞).
    """
    at = batch.completion_mask[:, 1:].bool()
    logits = next_token_logits(model, batch, at)  # [N, V]
    targets = batch.input_ids[:, 1:][at].to(logits.device)
    token_lp = torch.gather(F.log_softmax(logits, dim=-1), 1, targets.unsqueeze(-1)).squeeze(-1)
    rows = at.nonzero()[:, 0].to(logits.device)
    return torch.zeros(at.shape[0], dtype=token_lp.dtype, device=logits.device).index_add(0, rows, token_lp)


@torch.no_grad()
def sequence_logprobs(
    model,
    tokenizer,
    prompts: Sequence[str],
    completions: Sequence[str],
    batch_size: int = 32,
) -> torch.Tensor:
    """log p(y|x) for many (x, y) in batched no-grad forward passes; returns a CPU float tensor."""
    p_ids, c_ids = tokenize_pairs(tokenizer, prompts, completions)
    return ids_logprobs(model, p_ids, c_ids, tokenizer.pad_token_id, batch_size)


def _by_length(prompt_ids, completion_ids, batch_size: int):
    """Micro-batches of row indices sorted by length, so each pads little (callers restore the order)."""
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]) + len(completion_ids[i]))
    return [order[s : s + batch_size] for s in range(0, len(order), batch_size)]


@torch.no_grad()
def ids_logprobs(model, prompt_ids, completion_ids, pad_id: int, batch_size: int = 32) -> torch.Tensor:
    was_training = model.training
    model.eval()
    out, order = [], []
    # Sort by length so each micro-batch pads little; restore order at the end.
    for idx in _by_length(prompt_ids, completion_ids, batch_size):
        batch = encode_ids([prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_id)
        out.append(completion_logprobs(model, batch).cpu())
        order += idx
    model.train(was_training)
    flat = torch.cat(out) if out else torch.zeros(0)
    result = torch.empty_like(flat)
    result[torch.tensor(order, dtype=torch.long)] = flat
    return result


def token_kl(lp: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) per row of two [N, V] log-softmax tables, clamped at 0 against rounding (CPU float64).

    A token p gives probability 0 (a suppressed one, −∞ in ``lp``) adds 0, as in the definition
    (0 · log 0/q = 0), not the NaN that −∞ − (−∞) would give.
    """
    terms = torch.where(torch.isneginf(lp), torch.zeros_like(lp), lp.exp() * (lp - lq))
    return terms.sum(-1).clamp_min(0.0).double().cpu()


@torch.no_grad()
def kl_along_sampled(dists: Sequence[torch.Tensor], reference, prompt_ids, completion_ids, pad_id: int) -> torch.Tensor:
    """``completion_kl`` for one generation batch, the policy's side taken from the sampler (one forward pass fewer).

    ``dists[t]`` is the policy's [rows, V] log-softmax at T = 1 for generated step t, as ``generate``
    computed it; only the reference runs, once, on the rows' prompt + completion (right-padded), its head at
    the completion positions alone. Row r's step t is the t-th of row r's positions among them.
    """
    out = torch.zeros(len(prompt_ids), dtype=torch.float64)
    if not prompt_ids:
        return out
    batch = encode_ids(prompt_ids, completion_ids, pad_id)
    q_logits = next_token_logits(reference, batch, batch.completion_mask[:, 1:].bool())  # [N, V], row by row
    lens = torch.tensor([len(c) for c in completion_ids])
    first = torch.cumsum(lens, 0) - lens  # where each row's completion starts among the N positions
    for t, lp_t in enumerate(dists):
        rows = (lens > t).nonzero().squeeze(1)
        if not len(rows):
            break
        lq = F.log_softmax(q_logits[(first[rows] + t).to(q_logits.device)], dim=-1)
        lp = lp_t[rows.to(lp_t.device)]
        out.index_add_(0, rows, token_kl(lp, lq.to(lp.device)))
    return out


@torch.no_grad()
def completion_kl(policy, reference, prompt_ids, completion_ids, pad_id: int, batch_size: int = 32) -> torch.Tensor:
    """Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)) over each completion's positions, one value per (x, y) (CPU float64).

    Full next-token distributions at temperature 1 from one forward pass of each model on the same
    right-padded batch, along the given completion ids (EOS included when the sampler stopped); no
    sampling. Identical models give identical logits and so exactly 0; per-token values are clamped
    at 0 against rounding.
    """
    out = torch.zeros(len(prompt_ids), dtype=torch.float64)
    was_training = policy.training
    policy.eval()
    try:
        for idx in _by_length(prompt_ids, completion_ids, batch_size):
            batch = encode_ids([prompt_ids[i] for i in idx], [completion_ids[i] for i in idx], pad_id)
            mask = batch.completion_mask[:, 1:].bool()
            if not mask.any():
                continue
            p_logits, q_logits = next_token_logits(policy, batch, mask), next_token_logits(reference, batch, mask)
            lp = F.log_softmax(p_logits, dim=-1)
            per_token = token_kl(lp, F.log_softmax(q_logits.to(lp.device), dim=-1))
            rows = torch.tensor(idx, dtype=torch.long)[mask.nonzero()[:, 0]]
            out.index_add_(0, rows, per_token)
    finally:
        policy.train(was_training)
    return out


@torch.no_grad()
def mean_token_nll(model, token_ids: Sequence[Sequence[int]], pad_id: int, batch_size: int = 32) -> float | None:
    """Mean negative log-likelihood per predicted token: −Σ log p(t_k | t_<k) over k ≥ 2 of every text, over their count.

    The first token of each text has no context and is not predicted; texts of fewer than two tokens
    add nothing; None when no token is predicted. Computed with ``ids_logprobs`` (first token as the
    "prompt", the rest as the "completion").
    """
    rows = [list(t) for t in token_ids if len(t) >= 2]
    if not rows:
        return None
    lp = ids_logprobs(model, [r[:1] for r in rows], [r[1:] for r in rows], pad_id, batch_size)
    return float(-lp.double().sum()) / sum(len(r) - 1 for r in rows)


@dataclass
class Sample:
    """One sampled completion: the ids the sampler drew and the text the oracle reads."""

    text: str  # decoded without special tokens
    ids: list[int]  # sampled token ids up to and including the first EOS (if the model stopped)
    logprob: float | None = None  # Σ log p_T(y_t | x, y_<t) under the sampling distribution (temperature T)
    eos_id: int | None = None
    model_logprob: float | None = None  # Σ log p(y_t | x, y_<t) at T = 1: what ``ids_logprobs`` gives, up to float noise
    kl: float | None = None  # Σ_t KL(π(·|x, y<t) ‖ π_ref(·|x, y<t)) along ids: what ``completion_kl`` gives, up to float noise

    @property
    def finished(self) -> bool:
        """Whether the model ended the completion itself (False: cut at max_new_tokens)."""
        return self.eos_id is not None and bool(self.ids) and self.ids[-1] == self.eos_id


def _cut(row: list[int], eos_id: int | None, pad_id: int | None) -> list[int]:
    """Generated ids up to and including the first EOS; padding after it dropped."""
    out = []
    for t in row:
        if eos_id is not None and t == eos_id:
            out.append(t)
            break
        if pad_id is not None and t == pad_id:
            break  # generate pads finished rows; pad == eos was handled above
        out.append(t)
    return out


def suppressed_tokens(model) -> list[int] | None:
    """Token ids this model must never emit (conditional training's control tokens), set as ``model.aplkit_suppress_tokens``."""
    ids = getattr(model, "aplkit_suppress_tokens", None)
    return list(ids) if ids else None


def sampler_scores_are_the_models(model) -> bool:
    """Whether what ``_Tempered`` sees at T = 1 is ``model``'s own distribution, as a scoring pass gives it.

    Only under fp32 compute: there the sampler's one-token-at-a-time (KV-cached, left-padded) pass and a
    scoring pass (right-padded) agree to float noise (≈ 1e-5); under bf16/fp16 autocast they round
    differently. Not when tokens are suppressed (conditional training's control tokens): the sampler's
    distribution then excludes them and the model's does not.
    """
    from aplkit.models import float32_compute

    return float32_compute(model) and not suppressed_tokens(model)


#: how a token is drawn; part of every cache key holding sampled text (``theta0``): a new draw gives new samples
SAMPLER = "inverse-cdf/1"


def draw(logp: torch.Tensor) -> torch.Tensor:
    """One token per row from exp(logp) by inverse CDF: one uniform per row and a search in the float64 CDF.

    ``torch.multinomial`` took 139 ms on [64, 49152] where this takes 8 ms (docs/results.md, "Speed of one step");
    a token of probability 0 (suppressed, −∞) has an empty interval and is never drawn.
    """
    cdf = logp.double().exp().cumsum(-1)
    u = torch.rand(cdf.shape[0], 1, dtype=torch.float64, device=cdf.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, right=True).squeeze(1).clamp_(max=cdf.shape[1] - 1)


def _one_hot_scores(tokens: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Scores whose argmax is ``tokens`` (0 there, −∞ elsewhere): ``generate`` then takes the drawn token greedily."""
    out = torch.full_like(like, float("-inf"))
    return out.scatter_(1, tokens.unsqueeze(1), 0.0)


class _Tempered:
    """The one logits processor of ``sample``: divides by T, draws the token (``draw``) and keeps Σ log p_T.

    The temperature is applied here rather than by ``generate`` (whose warpers run after custom
    processors), so the distribution recorded is exactly the one sampled from. Only the previous
    step's log-softmax is held: ``output_scores`` kept every step's [rows, V] scores (≈ 0.6 GB for
    128 rows × 24 tokens) and made sampling with log-probs ≈ 4× slower in an early probe (docs/results.md, "Speed of one step").
    ``raw`` also keeps log p at T = 1 (the model's own distribution, the scores as they arrive): the
    log-prob a scoring forward pass would give, taken from the pass generation already made.
    """

    def __init__(self, temperature: float, record: bool, raw: bool = False, dists: bool = False):
        self.temperature, self.record, self.raw = temperature, record, raw
        self.prev: dict[str, torch.Tensor] = {}
        self.taken: dict[str, list[torch.Tensor]] = {"tempered": [], "raw": []}
        self.dists: list[torch.Tensor] | None = [] if dists else None  # every step's [rows, V] log p at T = 1 (the batch's KL)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        self._take(input_ids[:, -1])
        if self.raw or self.dists is not None:
            raw = F.log_softmax(scores.float(), dim=-1)
            if self.raw:
                self.prev["raw"] = raw
            if self.dists is not None:
                self.dists.append(raw)
        logp = F.log_softmax(scores.float() / self.temperature, dim=-1)
        if self.record:
            self.prev["tempered"] = logp
        return _one_hot_scores(draw(logp), logp)

    def _take(self, drawn: torch.Tensor) -> None:
        """Keep each step's log p of the drawn tokens where they are (a copy to the host per token would wait for the GPU)."""
        for k, lp in self.prev.items():
            self.taken[k].append(lp.gather(1, drawn.to(lp.device).unsqueeze(1)).squeeze(1))
        self.prev = {}

    def logprobs(self, new: torch.Tensor, which: str = "tempered") -> torch.Tensor:
        """[rows, steps] log p of each generated token under ``which`` (the last step's taken from ``new``), on the CPU."""
        if new.shape[1]:
            self._take(new[:, -1])
        taken = self.taken[which]
        return torch.stack(taken, dim=1).cpu() if taken else torch.zeros(new.shape[0], 0)


def _generate(model, processor: _Tempered, max_new_tokens: int, pad_id, eos_id, suppress: list[int] | None, **inputs) -> torch.Tensor:
    """``model.generate`` with only the kit's processors acting: ``suppress`` (logits set to −∞), then ``processor``
    (temperature and draw, so the recorded log-probs are those sampled from), EOS, padding and the length.

    ``generate`` fills every field its ``generation_config`` leaves at None from ``model.generation_config``, and
    transformers has no switch to skip that merge. Processors a checkpoint ships are off only at None
    (``forced_eos_token_id``, ``bad_words_ids``, ``sequence_bias``, ``suppress_tokens``), so no config passed here
    can turn them off; they would run before ``processor``. The model's own config is therefore swapped for a
    bare ``GenerationConfig()`` for the call (in every module holding one: a LoRA wrapper's base model) and put
    back afterwards, also on error.
    """
    from transformers import GenerationConfig, LogitsProcessorList

    gen_cfg = GenerationConfig(
        suppress_tokens=suppress,
        do_sample=False,  # ``processor`` draws the token and hands ``generate`` a one-hot score row
        max_new_tokens=max_new_tokens,
        pad_token_id=pad_id,
        eos_token_id=eos_id,
    )
    owners = [m for m in model.modules() if isinstance(vars(m).get("generation_config"), GenerationConfig)]
    own = [m.generation_config for m in owners]
    try:
        for m in owners:
            m.generation_config = GenerationConfig()
        with autocast(model):
            return model.generate(**inputs, generation_config=gen_cfg, logits_processor=LogitsProcessorList([processor]))
    finally:
        for m, g in zip(owners, own, strict=True):
            m.generation_config = g


#: the share of free GPU memory one ``generate`` call may fill (the rest: allocator fragmentation, cuBLAS workspaces, estimate error)
GENERATION_MEMORY_SHARE = 0.6


def generation_row_bytes(config, prompt_tokens: int, new_tokens: int, value_bytes: int, keep_dists: bool = False) -> int:
    """GPU bytes one row of a ``sample`` batch needs at its peak, from the model's config (Llama, GPT-2 and GPT-NeoX names).

    Its KV cache at full length; one layer's activations and fp32 attention scores in the prompt's pass; the sampler's
    vocabulary-wide temporaries each step (fp32 logits, log-softmax at T and at 1, the one-hot scores, ``draw``'s float64
    probabilities and CDF: ≈ 64 bytes a token of the vocabulary); with ``keep_dists`` every step's fp32 distribution
    (``sample(kl_reference=)``) and the reference's logits along it. Weights and optimiser state are already allocated
    and so not in the free memory this is compared with.
    """
    layers = config.num_hidden_layers
    hidden = config.hidden_size
    heads = config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    inter = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    kv = 2 * layers * kv_heads * head_dim * (prompt_tokens + new_tokens) * value_bytes
    prefill = prompt_tokens * (4 * hidden + 3 * inter) * value_bytes + heads * prompt_tokens**2 * 4
    sampler = 64 * config.vocab_size
    dists = 2 * 4 * new_tokens * config.vocab_size if keep_dists else 0
    return int(kv + prefill + sampler + dists)


def rows_for_memory(free_bytes: int, row_bytes: int, rows: int, share: float = GENERATION_MEMORY_SHARE) -> int:
    """Rows per ``generate`` call in ``share`` of ``free_bytes``: all ``rows`` when they fit, else the largest power of two that does.

    A power of two keeps the batches, and so a seed's samples, the same under small changes in free memory; at least 1.
    """
    fit = int(free_bytes * share) // max(1, row_bytes)
    if fit >= rows:
        return max(1, rows)
    return 1 << (fit.bit_length() - 1) if fit >= 1 else 1


def generation_rows(model, rows: int, prompt_tokens: int, new_tokens: int, keep_dists: bool = False, free_bytes: int | None = None) -> int:
    """Rows per ``generate`` call on a CUDA device, sized from its free memory (``torch.cuda.mem_get_info`` plus what this
    process's allocator holds unused, or ``free_bytes``) and the model's shape (``generation_row_bytes``).

    A large GPU is launch-bound at 64 rows: each token is a few small kernels per layer, whatever the rows.
    On CUDA the rows of a call, and so the random draws each row gets, then depend on the card's free memory.
    """
    if free_bytes is None:
        device = next(model.parameters()).device
        free, _ = torch.cuda.mem_get_info(device)
        free_bytes = free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    compute = getattr(model, "aplkit_compute_dtype", None) or next(model.parameters()).dtype
    value_bytes = torch.empty((), dtype=compute).element_size()
    return rows_for_memory(free_bytes, generation_row_bytes(model.config, prompt_tokens, new_tokens, value_bytes, keep_dists), rows)


@torch.no_grad()
def sample(
    model,
    tokenizer,
    prompts: Sequence[str],
    *,
    n: int = 1,
    temperature: float = 0.7,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    seed: int = 0,
    with_logprobs: bool = False,
    with_model_logprobs: bool = False,
    kl_reference=None,
) -> list[list[Sample]]:
    """n completions per prompt by pure temperature sampling (no top-k/top-p), left-padded batches.

    ``with_logprobs`` also returns each sample's log-probability under the distribution it was
    drawn from (the sampler's processed scores, softmax(logits / T)), summed over its ids: the
    predictive-entropy estimate needs exactly that and no second forward pass. ``with_model_logprobs``
    also returns log p(y|x) at T = 1 (``Sample.model_logprob``), the model's own log-prob that a scoring
    pass would compute, without that pass. ``kl_reference`` (a model) also returns ``Sample.kl``, the KL
    from it along each sample (``completion_kl``), from the distributions generation already computed and
    one reference pass per batch; it holds the batch's [rows, steps, V] table for that pass (as
    ``completion_kl`` holds its logits). Not with suppressed tokens: the sampler's scores then differ from
    the model's. Seeded once per call, so the same model, prompts and seed give the same completions, with
    or without any recording. ``batch_size`` rows go to each ``generate`` call on a CPU; on CUDA as many as free
    memory holds (``generation_rows``).
    """
    if not prompts:
        return []
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    if device.type == "cuda":
        width = max(len(p) for p in prompt_ids(tokenizer, prompts))
        batch_size = generation_rows(model, len(prompts) * n, width, max_new_tokens, keep_dists=kl_reference is not None)
    torch.manual_seed(seed)
    per_batch = max(1, batch_size // n)
    results: list[list[Sample]] = []
    pad_id = tokenizer.pad_token_id
    eos_id = tokenizer.eos_token_id
    suppress = suppressed_tokens(model)
    if kl_reference is not None and suppress:
        raise ValueError("kl_reference: the sampler's scores exclude the suppressed tokens; use completion_kl")
    for s in range(0, len(prompts), per_batch):
        chunk = list(prompts[s : s + per_batch])
        enc = tokenizer(chunk, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=True).to(device)
        enc = {k: v.repeat_interleave(n, dim=0) for k, v in enc.items()}  # n rows per prompt, as num_return_sequences lays them
        tempered = _Tempered(temperature, with_logprobs, with_model_logprobs, dists=kl_reference is not None)
        seqs = _generate(model, tempered, max_new_tokens, pad_id, eos_id, suppress, **enc)
        new = seqs[:, enc["input_ids"].shape[1] :].cpu()
        rows = [_cut(r, eos_id, pad_id) for r in new.tolist()]
        lens = torch.tensor([len(r) for r in rows])
        mask = torch.arange(new.shape[1]).unsqueeze(0) < lens.unsqueeze(1)
        lps, mlps = (
            (tempered.logprobs(new, k) * mask).sum(-1).double().tolist() if on else [None] * len(rows)
            for k, on in (("tempered", with_logprobs), ("raw", with_model_logprobs))
        )
        kls: list[float | None] = [None] * len(rows)
        if tempered.dists is not None:
            shown = enc["attention_mask"].bool().cpu()
            p_ids = [ids[keep].tolist() for ids, keep in zip(enc["input_ids"].cpu(), shown, strict=True)]
            kls = kl_along_sampled(tempered.dists, kl_reference, p_ids, rows, pad_id).tolist()
            tempered.dists = None
        texts = tokenizer.batch_decode(rows, skip_special_tokens=True)
        flat = [
            Sample(text=t, ids=r, logprob=lp, eos_id=eos_id, model_logprob=m, kl=k)
            for t, r, lp, m, k in zip(texts, rows, lps, mlps, kls, strict=True)
        ]
        results.extend(flat[i * n : (i + 1) * n] for i in range(len(chunk)))
    model.train(was_training)
    return results


@torch.no_grad()
def sample_ids(
    model,
    prompts: Sequence[Sequence[int]],
    pad_id: int,
    eos_id: int | None,
    *,
    temperature: float = 1.0,
    max_new_tokens: int = 24,
    batch_size: int = 32,
    seed: int = 0,
) -> list[list[int]]:
    """One completion per prompt given as token ids (left-padded here), cut after EOS; never a suppressed token."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    torch.manual_seed(seed)
    suppress = suppressed_tokens(model)
    out: list[list[int]] = []
    for s in range(0, len(prompts), batch_size):
        chunk = [list(p) for p in prompts[s : s + batch_size]]
        width = max(len(p) for p in chunk)
        ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in chunk], dtype=torch.long, device=device)
        attn = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in chunk], dtype=torch.long, device=device)
        seqs = _generate(model, _Tempered(temperature, False), max_new_tokens, pad_id, eos_id, suppress, input_ids=ids, attention_mask=attn)
        out += [_cut(r, eos_id, None if pad_id == eos_id else pad_id) for r in seqs[:, width:].cpu().tolist()]
    model.train(was_training)
    return out


def sample_completions(model, tokenizer, prompts: Sequence[str], **kw) -> list[list[str]]:
    """The texts of ``sample`` (for the oracle, evaluation and benchmarks); keywords as ``sample``."""
    return [[x.text for x in row] for row in sample(model, tokenizer, prompts, **kw)]


def prompt_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Prompt tokens exactly as generation encodes them (special tokens added, no padding)."""
    return tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
