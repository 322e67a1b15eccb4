"""The config checks that need the registries, and ``load_config``, which runs them.

``aplkit.config`` is a plain schema that imports no registry: it parses YAML and overrides into typed
sections and checks what each section can check alone. What only the registries know — the strategy
(``acquisition.SCORERS``), the objective (``objectives.OBJECTIVES``), the oracle kind
(``oracles.ORACLES``), whether the strategy's prompts per step fit in the train pool, whether a model spec names something loadable, whether a tracker's package is
installed — is checked here, one floor above them. Every mistake is one ``ConfigError`` line naming
the dotted field, before any model is loaded or any oracle is paid; nothing here imports torch (a
scorer, objective or oracle registered in a notebook is valid, since the registries are read at
check time).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from aplkit.config import ConfigError, ExperimentConfig, ModelConfig, OracleConfig, TrainingConfig, read_config

#: tracker name → (the module it imports, the aplkit extra that installs it)
TRACKER_PACKAGES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"), "trackio": ("trackio", "trackio")}


def model_problems(model: ModelConfig, prefix: str = "model") -> list[str]:
    """``model.spec`` names the embedded model, the tiny one, a local folder or a hub id in the local cache; and a
    bf16 compute dtype on a CPU runs only where the CPU has bf16 instructions."""
    from aplkit.models import known_spec

    ok, why = known_spec(model.spec, model.revision)
    out = [] if ok else [f"{prefix}.spec: {why}"]
    return out + compute_dtype_problems(model, prefix)


def compute_dtype_problems(model: ModelConfig, prefix: str = "model") -> list[str]:
    """A config that asks for bf16 on a CPU without bf16 instructions is refused, not run in fp32 or emulated.

    A study fixes its compute dtype in its config, so one code version and one config give one kind of
    numerics; emulated bf16 is several times slower and would let a study's records mix two CPUs' results
    silently. ``auto`` stays fp32 on any CPU.
    """
    from aplkit.provenance import NATIVE_BF16, machine

    on_cpu = model.device == "cpu" or (model.device == "auto" and not Path("/proc/driver/nvidia/version").exists())
    if model.dtype != "bfloat16" or not on_cpu:
        return []
    isa = machine()["isa"]
    if isa in NATIVE_BF16:
        return []
    return [
        f"{prefix}.dtype: bfloat16 needs a CPU with bf16 instructions (AVX512-BF16 or AMX); this one has {isa or 'neither'}: "
        f"set {prefix}.dtype=float32 (a study's records keep the dtype they were made with)"
    ]


def objective_problems(training: TrainingConfig, prefix: str = "training") -> list[str]:
    from aplkit.objectives import OBJECTIVES

    if training.objective in OBJECTIVES:
        return []
    return [f"{prefix}.objective: unknown '{training.objective}' (registered: {', '.join(sorted(OBJECTIVES))})"]


def oracle_kind_problems(oracle: OracleConfig, prefix: str = "oracle") -> list[str]:
    from aplkit.oracles import ORACLES

    return [] if oracle.kind in ORACLES else [f"{prefix}.kind: unknown '{oracle.kind}' (registered: {', '.join(sorted(ORACLES))})"]


def strategy_problems(strategy: str) -> list[str]:
    from aplkit.acquisition import SCORERS

    return [] if strategy in SCORERS else [f"strategy: unknown '{strategy}' (registered: {', '.join(sorted(SCORERS))})"]


def train_pool_problems(cfg: ExperimentConfig) -> list[str]:
    """The strategy's prompts per step fit in the train pool, which holds exactly ``data.train_size`` prompts once loaded.

    A scorer that asks for more than the pool holds draws it whole (``Scorer.min_prompts``): only a pool
    below that minimum is impossible, and it is refused here rather than at step 1 after the model loads.
    """
    from aplkit.acquisition import SCORERS

    if cfg.data.task == "preferences":  # a preference data set's pool is checked by pool_problems
        return []
    acq = cfg.acquisition
    least = SCORERS[cfg.strategy]().min_prompts(acq)
    if least <= cfg.data.train_size:
        return []
    return [
        f"data.train_size: {cfg.data.train_size} prompts, but strategy '{cfg.strategy}' needs {least} per step "
        f"(acquisition.prompt_batch={acq.prompt_batch}, acquire_batch={acq.acquire_batch}, entropy_pool={acq.entropy_pool})"
    ]


def judge_price_problems(oracle: OracleConfig) -> list[str]:
    """An API judge on a paid endpoint has a price (listed or configured), or says it runs unpriced."""
    from aplkit.oracles.llm.prices import price_problems

    return price_problems(oracle.llm, "oracle.llm") if oracle.kind == "llm" else []


def tracker_missing(name: str) -> str:
    module, extra = TRACKER_PACKAGES[name]
    return f"tracking: {name} needs the '{module}' package, which is not installed; pip install 'aplkit[{extra}]'"


def tracker_installed(name: str) -> bool:
    """Whether the tracker's package can be imported, without importing it (a config check stays fast)."""
    module = TRACKER_PACKAGES[name][0]
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or sys.modules[module] set to None
        return False


def tracking_problems(names: list[str]) -> list[str]:
    """The config's ``tracking`` list checked: known names (also checked when parsed), no repeats, packages installed."""
    out = [f"tracking: unknown '{n}' (choose from {', '.join(TRACKER_PACKAGES)})" for n in names if n not in TRACKER_PACKAGES]
    dup = sorted({n for n in names if names.count(n) > 1})
    out += [f"tracking: {', '.join(dup)} named more than once"] if dup else []
    return out + [tracker_missing(n) for n in dict.fromkeys(names) if n in TRACKER_PACKAGES and not tracker_installed(n)]


def pair_reward_problems(cfg: ExperimentConfig) -> list[str]:
    """``training.phf.pair_rewards: oracle`` needs a PHF objective, an oracle that scores each completion, and no simulated noise."""
    from aplkit.objectives import PHF_OBJECTIVES
    from aplkit.oracles import POINTWISE

    if cfg.training.phf.pair_rewards != "oracle":
        return []
    field = "training.phf.pair_rewards"
    if cfg.training.objective not in PHF_OBJECTIVES:
        return [
            f"{field}: 'oracle' sets the rewards of the PHF objectives ({', '.join(PHF_OBJECTIVES)}), not of training.objective={cfg.training.objective}"
        ]
    if cfg.oracle.kind not in POINTWISE:
        return [
            f"{field}: 'oracle' needs an oracle that scores each completion; oracle.kind={cfg.oracle.kind} gives only a pair verdict"
            f" (pointwise kinds: {', '.join(sorted(POINTWISE))})"
        ]
    if cfg.oracle.flip_prob > 0 or cfg.oracle.sample_bt:
        return [
            f"{field}: 'oracle' trains on the oracle's scores, which oracle.flip_prob/sample_bt's simulated label noise does not change"
        ]
    return []


def pool_problems(cfg: ExperimentConfig) -> list[str]:
    """Pool-based runs: the ``dataset`` oracle only with a preference data set, a judge of the generations for
    ``evaluation.oracle``, the data set's column mapping and sizes (read now, before any model loads), and a train
    split that lasts the budget (a stored pair is labelled at most once)."""
    from aplkit.acquisition import SCORERS
    from aplkit.oracles import ORACLES, POOL_ONLY

    out = []
    pool = cfg.data.task == "preferences"
    if cfg.oracle.kind in POOL_ONLY and not pool:
        out.append(f"oracle.kind: '{cfg.oracle.kind}' answers from a preference data set's stored labels; it needs data.task=preferences")
    kind = cfg.evaluation.oracle
    if kind is not None and kind not in ORACLES:
        out.append(f"evaluation.oracle: unknown '{kind}' (registered: {', '.join(sorted(ORACLES))})")
    elif kind in POOL_ONLY:
        out.append(
            f"evaluation.oracle: '{kind}' judges only a pool's stored pairs, not the policy's generations; name a judge such as sentiment"
        )
    if not pool or out:
        return out
    from aplkit.data import DataError, preference_splits

    try:
        train, _ = preference_splits(cfg.data)
    except DataError as e:
        return [str(e)]
    acq = cfg.acquisition
    need = cfg.steps * acq.acquire_batch - acq.acquire_batch + SCORERS[cfg.strategy]().prompts_needed(acq)
    if need > len(train):
        out.append(
            f"acquisition.budget: the last step draws {SCORERS[cfg.strategy]().prompts_needed(acq)} of the pairs not yet labelled, "
            f"so B={acq.budget} needs {need} train pairs; data.train_size is {len(train)}"
        )
    return out


def problems(cfg: Any) -> list[str]:
    """Every problem of a config, the first one first: an ``ExperimentConfig`` here, any other config by its ``problems()``."""
    if not isinstance(cfg, ExperimentConfig):
        return cfg.problems()
    out = strategy_problems(cfg.strategy) + ([] if cfg.seed >= 0 else [f"seed: must be >= 0, got {cfg.seed}"])
    out += model_problems(cfg.model) + cfg.acquisition.problems()
    out += objective_problems(cfg.training) + cfg.training.problems() + cfg.evaluation.problems()
    out += oracle_kind_problems(cfg.oracle) + cfg.oracle.problems() + judge_price_problems(cfg.oracle)
    out += cfg.data.problems() + tracking_problems(cfg.tracking)
    if out:
        return out
    return cfg.cross_problems() + train_pool_problems(cfg) + pair_reward_problems(cfg) + pool_problems(cfg)


def validate(cfg: Any) -> None:
    """Raise the first problem of the config as one ``ConfigError`` line naming the field."""
    bad = problems(cfg)
    if bad:
        raise ConfigError(bad[0])


def load_config(
    path: str | Path | None = None,
    overrides: list[str] | dict[str, Any] | None = None,
    *,
    cls: type = ExperimentConfig,
    **top: Any,
) -> Any:
    """Load a YAML config (a path or a shipped preset's name), apply dotted overrides and top-level keyword values,
    and check it (``cls``: the config's class)."""
    cfg = read_config(path, overrides, cls=cls, **top)
    validate(cfg)
    return cfg


__all__ = [
    "TRACKER_PACKAGES",
    "compute_dtype_problems",
    "judge_price_problems",
    "load_config",
    "model_problems",
    "objective_problems",
    "oracle_kind_problems",
    "pair_reward_problems",
    "pool_problems",
    "train_pool_problems",
    "problems",
    "strategy_problems",
    "tracker_installed",
    "tracker_missing",
    "tracking_problems",
    "validate",
]
