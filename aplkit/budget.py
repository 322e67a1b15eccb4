"""What a run will cost before it runs: labels, judge calls and tokens, DPO pair-epochs, FLOPs per phase, seconds, dollars.

``run_bill(cfg)`` counts what Algorithm 1 does with a config, without loading a model:

* **acquire**: each step's sequences from the scorer's declared cost (``acquisition.step_passes``: sampled
  completions and forward passes over (x, y), step 1 at θ0's shortcut), each ≈ one forward pass over a
  prompt and a completion;
* **label**: M judge calls a step (one per pair; none where a data set's stored labels answer, ``oracle.kind: dataset``);
* **train**: DPO's pair-epochs (``reset``: every epoch over all of X_P at every step; ``online``: the newest
  batch ``online_steps`` times), each pair two sequences forward and backward through θ (≈ 3 forward
  passes) and, once per new pair, two through θ0 for the cached reference log-probs;
* **evaluate**: θ0's baseline completions once, then at every waypoint the policy's test completions, θ0's
  pass for the KL along them (and the policy's, where the sampler's distributions are not used: compute other than
  fp32), the LM loss on held-out text, one judge call per test prompt and, with ``evaluation.kl_samples``, the T = 1
  samples and the KL along them, where a judge of the policy's generations exists; a waypoint with
  ``evaluation.epoch_points`` is evaluated after each earlier epoch of its step too, without the LM loss and (with
  T = 1 samples) the KL along the test completions unless ``evaluation.epoch_companions``; a pool-based run (``data.task: preferences``) also takes the held-out pairs'
  log-probs, θ0's once and the policy's at every waypoint. In a pool the candidate pairs are read, not generated
  (``Passes.pairs``); a stored response is billed at ``max_new_tokens``, as a generated one.

FLOPs are 2·N per token forward (N: the model's matmul parameters, the tied vocabulary head included),
6·N per token trained; completions are counted at ``max_new_tokens`` (an upper bound: a completion that
stops early is cheaper) and prompts at the middle of their token range (``prompt_tokens``; TL;DR: of its posts' length). Seconds divide FLOPs by a matmul
probe's rate (``probe_flops``), so they are the phase's time at the machine's matmul peak: a lower bound
that the physical-limit table in ``bench/README.md`` sets beside measured seconds. A paid judge's dollars
use the judge's prices (``oracle.llm.price_in``/``price_out``, else the model's list price) and the tokens of its template with texts of the configured lengths.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from aplkit.config import ExperimentConfig

#: (matmul parameters incl. the tied head, hidden size, vocabulary) of the models whose shape needs no download
KNOWN_MODELS = {
    "smollm2-135m": (134_515_008, 576, 49_152),
    "tiny-random": (3_219_776, 64, 49_152),
    # the paper's models (Table 1), from their published config.json, as ``model_shape`` reads a cached one: GPT-2 large,
    # 36 × 12·1280² + the tied head 50,257 × 1280 (774,030,080 parameters in all); Pythia-1B, 16 × 12·2048² + its
    # untied head 50,304 × 2048 (1,011,781,632 in all; the input embedding is a lookup)
    "edbeeching/gpt2-large-imdb": (772_117_760, 1280, 50_257),
    "pvduy/pythia-1B-sft-summarize-tldr": (908_328_960, 2048, 50_304),
}
#: characters per token for judge prompts in English (the OpenAI tokenizers' rule of thumb)
CHARS_PER_TOKEN = 4.0
#: characters per completion token of SmolLM2's tokenizer on IMDB text (a review's words are ≈ 1.3 tokens)
CHARS_PER_COMPLETION_TOKEN = 4.2
#: a TL;DR prompt's characters besides its post (``SUBREDDIT: r/… TITLE: … POST: … TL;DR:``): an estimate, a title of ≈ 70
TLDR_HEADER_CHARS = 120


@dataclass
class Phase:
    sequences: float = 0.0  # (prompt, completion) sequences through a model
    tokens: float = 0.0  # tokens through a model (forward)
    trained_tokens: float = 0.0  # tokens through forward and backward
    flops: float = 0.0

    def add(self, sequences: float, tokens_each: float, n_params: float, trained: bool = False) -> None:
        self.sequences += sequences
        if trained:
            self.trained_tokens += sequences * tokens_each
            self.flops += 6 * n_params * sequences * tokens_each
        else:
            self.tokens += sequences * tokens_each
            self.flops += 2 * n_params * sequences * tokens_each


@dataclass
class Bill:
    """One run's counts; ``+`` adds runs (a sweep's bill)."""

    runs: int = 1
    steps: int = 0
    labels: int = 0
    judge_calls: int = 0  # training labels and evaluation verdicts
    judge_tokens_in: float = 0.0
    judge_tokens_out: float = 0.0
    generated_tokens: float = 0.0
    pair_epochs: int = 0
    phases: dict[str, Phase] = field(default_factory=lambda: {k: Phase() for k in ("acquire", "train", "evaluate")})
    price_in: float = 0.0
    price_out: float = 0.0

    @property
    def flops(self) -> float:
        return sum(p.flops for p in self.phases.values())

    @property
    def cost_usd(self) -> float:
        return (self.judge_tokens_in * self.price_in + self.judge_tokens_out * self.price_out) / 1e6

    def __add__(self, other: Bill) -> Bill:
        out = Bill(self.runs + other.runs, price_in=self.price_in, price_out=self.price_out)
        for k in ("steps", "labels", "judge_calls", "judge_tokens_in", "judge_tokens_out", "generated_tokens", "pair_epochs"):
            setattr(out, k, getattr(self, k) + getattr(other, k))
        for k in out.phases:
            a, b = self.phases[k], other.phases[k]
            out.phases[k] = Phase(a.sequences + b.sequences, a.tokens + b.tokens, a.trained_tokens + b.trained_tokens, a.flops + b.flops)
        out.price_in = max(self.price_in, other.price_in)
        out.price_out = max(self.price_out, other.price_out)
        return out


def model_shape(spec: str, revision: str | None = None) -> tuple[int, int, int] | None:
    """(matmul parameters, hidden size, vocabulary) of a model spec without loading its weights; None when unknown.

    Known specs are listed; a local folder or a cached hub id is read from its ``config.json`` (decoder-only
    transformers: 12·layers·hidden² for attention and MLP at a 4× MLP, or the config's intermediate size,
    plus the vocabulary head).
    """
    import json
    from pathlib import Path

    if spec in KNOWN_MODELS:
        return KNOWN_MODELS[spec]
    path = Path(spec) / "config.json"
    if not path.is_file():
        from aplkit.hubcache import hub_cache_dir

        snaps = hub_cache_dir() / f"models--{spec.replace('/', '--')}" / "snapshots"
        found = sorted(snaps.glob(f"{revision or '*'}/config.json")) if snaps.is_dir() else []
        if not found:
            return None
        path = found[-1]
    c = json.loads(path.read_text())
    h = c.get("hidden_size") or c.get("n_embd") or c.get("d_model")
    layers = c.get("num_hidden_layers") or c.get("n_layer")
    vocab = c.get("vocab_size")
    if not (h and layers and vocab):
        return None
    inter = c.get("intermediate_size") or 4 * h
    mlp = (3 if "llama" in str(c.get("model_type", "")).lower() or c.get("hidden_act") == "silu" else 2) * h * inter
    kv = c.get("num_key_value_heads") or c.get("num_attention_heads") or 1
    heads = c.get("num_attention_heads") or 1
    attn = 2 * h * h + 2 * h * (h * kv // heads)
    return int(layers * (attn + mlp) + vocab * h), int(h), int(vocab)


def judge_tokens(cfg: ExperimentConfig, prompt_tokens: float, completion_tokens: float) -> tuple[float, float]:
    """(input, output) tokens of one LLM-judge call: its template filled with a prompt and two completions of the
    configured lengths, and ``oracle.llm.max_tokens`` out (an upper bound; the paper's answers are short)."""
    from aplkit.oracles.llm.templates import TASK_TEMPLATES, load_template

    name = cfg.oracle.llm.template
    name = TASK_TEMPLATES.get(cfg.data.task, "sentiment") if name == "auto" else name
    try:
        tpl = load_template(name)
        chars = len(tpl.system or "") + len(tpl.user or "")
    except Exception:  # noqa: BLE001 - an unreadable template: the estimate uses the texts alone
        chars = 0
    texts = (prompt_tokens + 2 * (prompt_tokens + completion_tokens)) * CHARS_PER_COMPLETION_TOKEN
    return (chars + texts) / CHARS_PER_TOKEN, float(cfg.oracle.llm.max_tokens)


def prompt_tokens(cfg: ExperimentConfig) -> float:
    """A prompt's mean tokens: an IMDB (or a file's) prompt is cut to [min, max]_prompt_tokens, so the middle of that
    range; a TL;DR prompt is a whole post of 200–1000 characters (the data's filter), so the middle of that with its
    header at ``CHARS_PER_TOKEN`` (180 tokens, where the IMDB rule's 12 would bill a fifteenth of it)."""
    if cfg.data.task == "tldr":
        from aplkit.data import TLDR_MAX_POST_CHARS, TLDR_MIN_POST_CHARS

        return ((TLDR_MIN_POST_CHARS + TLDR_MAX_POST_CHARS) / 2 + TLDR_HEADER_CHARS) / CHARS_PER_TOKEN
    return (cfg.data.min_prompt_tokens + cfg.data.max_prompt_tokens) / 2


def fp32_compute(cfg: ExperimentConfig) -> bool:
    """Whether the run computes in plain fp32, where the sampler's records stand in for the policy's passes
    (``generation.sampler_scores_are_the_models``): ``float32``, or ``auto`` off CUDA (``models.pick_dtype``: ``auto``
    is bf16 on a CUDA card, which is how it is billed; ``model.device: auto`` is this machine's device)."""
    m = cfg.model
    if m.dtype != "auto":
        return m.dtype == "float32"
    device = m.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    return not device.startswith("cuda")


def run_bill(cfg: ExperimentConfig) -> Bill:
    """The counts of one run of ``cfg`` from step 1 (a resumed run pays only its remaining steps)."""
    from aplkit.acquisition import get_scorer, step_passes
    from aplkit.oracles import POOL_ONLY
    from aplkit.oracles.llm.prices import judge_prices

    shape = model_shape(cfg.model.spec, cfg.model.revision)
    n = float(shape[0]) if shape else math.nan
    a, e, tr = cfg.acquisition, cfg.evaluation, cfg.training
    prompt = prompt_tokens(cfg)
    comp = float(a.max_new_tokens)
    eval_comp = float(e.max_new_tokens or a.max_new_tokens)
    seq = prompt + comp
    b = Bill(steps=cfg.steps)
    b.price_in, b.price_out = judge_prices(cfg.oracle)
    scorer = get_scorer(cfg.strategy)
    sampler_records = fp32_compute(cfg) and tr.objective != "conditional"
    pool = cfg.data.task == "preferences"  # stored pairs: read, not generated (a response billed at max_new_tokens)
    labeller_judges = cfg.oracle.kind not in POOL_ONLY  # a data set's stored labels call no judge
    judge = cfg.evaluation.oracle or cfg.oracle.kind
    judged = judge not in POOL_ONLY  # the win-rate needs a judge of the policy's generations (``Experiment.evaluation_oracle``)
    waypoints = set(cfg.waypoints())
    held = label_calls = eval_calls = 0
    for t in range(1, cfg.steps + 1):
        p = step_passes(scorer, a, at_theta0=t == 1)
        if p is not None:
            head = (shape[1] * shape[2] / n) if shape else 1.0
            b.phases["acquire"].add(p.sequence_passes(head_fraction=head, sampled_logprobs=sampler_records, pool=pool), seq, n)
            b.generated_tokens += p.generated_in(pool) * comp
        b.labels += a.acquire_batch
        label_calls += a.acquire_batch if labeller_judges else 0
        new, held = a.acquire_batch, held + a.acquire_batch
        trained = held * tr.epochs if tr.mode == "reset" else new * tr.online_steps
        b.pair_epochs += trained
        b.phases["train"].add(2 * trained, seq, n, trained=True)
        b.phases["train"].add(2 * new, seq, n)  # θ0's reference log-probs, once per new pair
        if t * a.acquire_batch in waypoints:
            ev = b.phases["evaluate"]
            last = tr.epochs if tr.mode == "reset" else tr.online_steps
            # after each earlier epoch too (``evaluation.epoch_points``), every one a whole evaluation
            evaluations = last if judged and t * a.acquire_batch in set(e.epoch_points) else 1
            kl_passes = 1 if sampler_records else 2  # θ0's along the sampler's distributions; without them the policy's too
            for i in range(evaluations if judged else 0):
                path_kl, lm = e.epoch_point_measures() if i < evaluations - 1 else (True, True)  # an earlier epoch's
                ev.add(e.test_prompts, prompt + eval_comp, n)  # the policy's test completions
                if path_kl:
                    ev.add(kl_passes * e.test_prompts, prompt + eval_comp, n)  # the KL along them
                if lm and e.lm_texts and e.lm_tokens >= 2:
                    ev.add(e.lm_texts, e.lm_tokens, n)
                if e.kl_samples:  # the policy's KL at T = 1: its own samples and the KL along them
                    ev.add((1 + kl_passes) * e.kl_samples * e.test_prompts, prompt + eval_comp, n)
                b.generated_tokens += e.test_prompts * eval_comp * (1 + e.kl_samples)
                eval_calls += e.test_prompts
            if pool:  # the held-out preference accuracy: the policy's log-probs of both responses of each held-out pair
                ev.add(2 * e.test_prompts, seq, n)
    if judged and e.against != "reference":  # θ0's baseline completions, once
        b.phases["evaluate"].add(e.test_prompts, prompt + eval_comp, n)
        b.generated_tokens += e.test_prompts * eval_comp
    if judged and e.lm_texts and e.lm_tokens >= 2:
        b.phases["evaluate"].add(e.lm_texts, e.lm_tokens, n)  # θ0's LM loss, once
    if pool:
        b.phases["evaluate"].add(2 * e.test_prompts, seq, n)  # θ0's log-probs of the held-out pairs, once
    b.judge_calls = label_calls + eval_calls
    tin, tout = judge_tokens(cfg, prompt, max(comp, eval_comp))
    llm_calls = (label_calls if cfg.oracle.kind == "llm" else 0) + (eval_calls if judge == "llm" else 0)
    b.judge_tokens_in, b.judge_tokens_out = llm_calls * tin, llm_calls * tout
    return b


def probe_flops(dtype: str = "float32", seconds: float = 0.5, size: int = 1024) -> float:
    """FLOP/s of a square matmul on this process's threads in ``dtype``: the machine's matmul rate, measured."""
    import time

    import torch

    dt = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[dtype]
    x, y = torch.randn(size, size, dtype=dt), torch.randn(size, size, dtype=dt)
    torch.mm(x, y)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        torch.mm(x, y)
        n += 1
    return 2 * size**3 * n / (time.perf_counter() - t0)


def describe(bill: Bill, flops_per_s: float | None = None, label: str = "run") -> str:
    """The bill as a few lines of text (``aplkit run --dry-run``)."""
    lines = [
        f"{label}: {bill.runs} run(s), {bill.steps} step(s), {bill.labels} labels, {bill.judge_calls} judge calls, "
        f"{bill.generated_tokens:,.0f} tokens generated, {bill.pair_epochs} DPO pair-epochs"
    ]
    for k, p in bill.phases.items():
        secs = f", ≥ {p.flops / flops_per_s:,.0f} s at the matmul peak" if flops_per_s else ""
        lines.append(f"  {k:9s} {p.flops / 1e12:10.1f} TFLOP{secs}")
    total = f" (≥ {bill.flops / flops_per_s / 3600:,.2f} h at {flops_per_s / 1e9:,.0f} GFLOP/s)" if flops_per_s else ""
    lines.append(f"  total     {bill.flops / 1e12:10.1f} TFLOP{total}")
    if bill.judge_tokens_in:
        price = (
            f"${bill.cost_usd:,.2f}"
            if bill.price_in or bill.price_out
            else "unpriced (no list price and oracle.llm.price_in/price_out are 0)"
        )
        lines.append(f"  judge     {bill.judge_tokens_in:,.0f} tokens in, ≤ {bill.judge_tokens_out:,.0f} out: {price}")
    return "\n".join(lines)


def as_dict(bill: Bill) -> dict[str, Any]:
    from dataclasses import asdict

    return {**asdict(bill), "flops": bill.flops, "cost_usd": bill.cost_usd}


__all__ = [
    "KNOWN_MODELS",
    "Bill",
    "Phase",
    "as_dict",
    "describe",
    "fp32_compute",
    "judge_tokens",
    "model_shape",
    "probe_flops",
    "prompt_tokens",
    "run_bill",
]
