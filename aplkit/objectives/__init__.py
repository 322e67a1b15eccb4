"""Training objectives behind one seam (Algorithm 1, line 12): DPO and the five of "Pretraining LMs with Human Preferences".

An objective is built from the models (θ being trained, the frozen θ0, the tokenizer) and the
``training`` section, takes the acquired data (``Preference`` pairs) and returns one ``EpochStats``
row per epoch, as ``DPOFinetuner`` always did; ``on_epoch`` hears each row as its epoch ends, with the
policy as that epoch left it (the loop evaluates frontier points there, ``evaluation.epoch_points``). ``training.objective`` names an entry of
``OBJECTIVES``; ``register_objective`` adds your own, as ``register_scorer`` does for strategies.
Factories import their module only when chosen, so validating a config never imports torch.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from aplkit.config import TrainingConfig
    from aplkit.models import Models
    from aplkit.records import EpochStats, Preference


class Objective(ABC):
    """Fine-tunes the policy on X_P from θ0 (reset) or from θ_t (online); checkpointable."""

    name: str = "objective"

    @abstractmethod
    def finetune(
        self,
        prefs: Sequence[Preference],
        seed: int,
        newest: Sequence[Preference] | None = None,
        on_epoch: Callable[[EpochStats], Any] | None = None,
    ) -> list[EpochStats]:
        """Train on all of X_P (``newest``: the latest batch, for online mode); one row per epoch or step, each given to
        ``on_epoch`` as it ends (which may evaluate the policy, and must leave it and the training as they were)."""

    @abstractmethod
    def state(self) -> dict:
        """What a checkpoint needs to continue exactly."""

    @abstractmethod
    def load_state(self, state: dict) -> None: ...


#: name → factory(models, training section, forward micro-batch) → Objective
ObjectiveFactory = Callable[["Models", "TrainingConfig", int], Objective]
OBJECTIVES: dict[str, ObjectiveFactory] = {}


def register_objective(name: str) -> Callable[[ObjectiveFactory], ObjectiveFactory]:
    """Register a factory under ``training.objective: NAME``."""

    def add(factory: ObjectiveFactory) -> ObjectiveFactory:
        OBJECTIVES[name] = factory
        return factory

    return add


def make_objective(models: Models, cfg: TrainingConfig, batch_size: int = 32) -> Objective:
    """The objective named by ``training.objective``; may add tokens or heads to ``models`` (conditional, AWR)."""
    from aplkit.config import ConfigError

    if cfg.objective not in OBJECTIVES:
        raise ConfigError(f"training.objective: unknown '{cfg.objective}' (registered: {', '.join(sorted(OBJECTIVES))})")
    return OBJECTIVES[cfg.objective](models, cfg, batch_size)


@register_objective("dpo")
def _dpo(models: Models, cfg: TrainingConfig, batch_size: int) -> Objective:
    from aplkit.objectives.dpo import DPOFinetuner

    return DPOFinetuner(models.policy, models.reference, models.tokenizer, cfg, batch_size)


def _phf(name: str) -> ObjectiveFactory:
    def factory(models: Models, cfg: TrainingConfig, batch_size: int) -> Objective:
        from aplkit.objectives.preferences import PreferenceObjective

        return PreferenceObjective(name, models, cfg, batch_size)

    return factory


#: the objectives of Korbak et al. (2023), MLE first (the reference point); on X_P via ``preferences.py``
PHF_OBJECTIVES = ("mle", "filtering", "conditional", "unlikelihood", "rwr", "awr")
for _name in PHF_OBJECTIVES:
    register_objective(_name)(_phf(_name))

__all__ = ["OBJECTIVES", "PHF_OBJECTIVES", "Objective", "make_objective", "register_objective"]
