"""The PHF experiment's config: the APL sections it shares (model, data, training, oracle) and its own ``phf`` section."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aplkit.checks import load_config, model_problems, objective_problems
from aplkit.config import DataConfig, ModelConfig, OracleConfig, TrainingConfig, _positive
from aplkit.scratch import is_scratch


@dataclass
class PHFRunConfig:
    """``phf``: how much is trained and what is measured at each checkpoint."""

    token_budget: int = 6144  # review tokens trained on (before filtering drops or control tokens add any)
    doc_tokens: int = 128  # each review contributes its first whole sentences up to this many tokens
    batch_docs: int = 8  # documents per optimiser step
    checkpoints: int = 2  # evaluations (and resume points) evenly through the budget, θ0 measured besides
    unconditional_samples: int = 16  # samples from the start token alone
    prompted_samples: int = 16  # continuations of held-out test prompts (8–16 tokens of test reviews)
    max_new_tokens: int = 32
    temperature: float = 1.0  # samples are scored as the model's distribution, so unmodified
    lm_texts: int = 16  # LM loss on the first lm_tokens tokens of this many held-out test reviews
    lm_tokens: int = 64
    batch_size: int = 16  # forward / generation micro-batch (compute only)

    def problems(self, prefix: str = "phf") -> list[str]:
        names = ("token_budget", "doc_tokens", "batch_docs", "checkpoints", "max_new_tokens", "temperature", "lm_tokens", "batch_size")
        out = _positive(self, prefix, names)
        return out + [
            f"{prefix}.{n}: must be >= 0, got {getattr(self, n)}"
            for n in ("unconditional_samples", "prompted_samples", "lm_texts")
            if getattr(self, n) < 0
        ]


@dataclass
class PHFConfig:
    name: str = "phf"
    seed: int = 0
    out: str | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    training: TrainingConfig = field(default_factory=lambda: TrainingConfig(objective="mle", lr=1e-4, batch_size=8))
    phf: PHFRunConfig = field(default_factory=PHFRunConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)

    @property
    def objective(self) -> str:
        return self.training.objective

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def problems(self) -> list[str]:
        from aplkit.objectives import PHF_OBJECTIVES
        from aplkit.phf import misalignment

        out = [] if self.seed >= 0 else [f"seed: must be >= 0, got {self.seed}"]
        out += model_problems(self.model) + self.data.problems() + objective_problems(self.training) + self.training.problems()
        out += self.phf.problems()
        if is_scratch(self.model.spec) and self.training.lora.enabled:
            out.append(f"training.lora.enabled: {self.model.spec} is trained from scratch, every weight: set it to false")
        if not out and self.training.objective not in PHF_OBJECTIVES:
            out.append(
                f"training.objective: the PHF experiment trains on scored text, not pairs: choose from {', '.join(PHF_OBJECTIVES)}, got '{self.training.objective}'"
            )
        if self.data.task != "imdb":
            out.append(f"data.task: the PHF experiment cuts IMDB reviews into sentences, got '{self.data.task}'")
        out += misalignment.problems(self.oracle)
        if self.phf.prompted_samples > self.data.test_size:
            out.append(f"phf.prompted_samples: {self.phf.prompted_samples} exceeds data.test_size={self.data.test_size}")
        return out


def load_phf_config(path: str | Path | None = None, overrides: list[str] | dict[str, Any] | None = None, **top: Any) -> PHFConfig:
    """As ``load_config``; ``objective`` sets ``training.objective``."""
    objective = top.pop("objective", None)
    items = list(overrides.items()) if isinstance(overrides, dict) else list(overrides or [])
    if isinstance(overrides, dict):
        extra = {"training.objective": objective} if objective else {}
        return load_config(path, {**overrides, **extra}, cls=PHFConfig, **top)
    if objective:
        items.append(f"training.objective={objective}")
    return load_config(path, items, cls=PHFConfig, **top)


def default_out(cfg: PHFConfig) -> Path:
    return Path("runs") / cfg.name / cfg.objective / f"seed{cfg.seed}"
