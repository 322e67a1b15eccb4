"""Oracles (Algorithm 1, lines 10 and 13) and the registry that builds one from the config.

``oracle.kind`` names an entry of ``ORACLES``; ``register_oracle`` adds your own (a kind the
config then accepts). Each oracle module is imported only when chosen, so the offline default
never needs ``openai`` and the API judge never needs scikit-learn.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from aplkit.oracles.base import Oracle, OracleError

if TYPE_CHECKING:
    from aplkit.config import DataConfig, OracleConfig
    from aplkit.data import PromptPools

#: kind → factory(oracle section, data section, prompt pools, run folder) → Oracle
OracleFactory = Callable[["OracleConfig", "DataConfig", "PromptPools | None", Path], Oracle]
ORACLES: dict[str, OracleFactory] = {}
#: kinds whose verdicts carry pointwise scores s(x, y) (``Oracle.pointwise``): known from the config, before any is built
POINTWISE: set[str] = set()


def register_oracle(kind: str, *, pointwise: bool = False) -> Callable[[OracleFactory], OracleFactory]:
    """Register a factory under ``oracle.kind: KIND``; ``pointwise``: its verdicts carry each completion's score."""

    def add(factory: OracleFactory) -> OracleFactory:
        ORACLES[kind] = factory
        if pointwise:
            POINTWISE.add(kind)
        else:
            POINTWISE.discard(kind)
        return factory

    return add


def make_oracle(
    cfg: OracleConfig,
    data: DataConfig | None = None,
    pools: PromptPools | None = None,
    run_dir: str | Path | None = None,
) -> Oracle:
    """The oracle named by ``oracle.kind``; checks its own settings before any label is asked for.

    ``data`` matters for the tfidf sentiment judge: it trains only outside this experiment's test split.
    """
    from aplkit.config import DataConfig

    if cfg.kind not in ORACLES:
        raise OracleError(f"oracle.kind: unknown '{cfg.kind}' (registered: {', '.join(sorted(ORACLES))})")
    return ORACLES[cfg.kind](cfg, data or DataConfig(), pools, Path(run_dir or "."))


def check_oracle(cfg: OracleConfig) -> None:
    """What an oracle can check before a run makes its folder or loads a model: an API judge's key, endpoint and model.

    Raises ``OracleError`` (one line naming the setting); the other kinds have nothing to check here.
    """
    if cfg.kind == "llm":
        from aplkit.oracles.llm import check_endpoint

        check_endpoint(cfg.llm)


@register_oracle("sentiment", pointwise=True)
def _sentiment(cfg: OracleConfig, data: DataConfig, pools: PromptPools | None, run_dir: Path) -> Oracle:
    from aplkit.oracles.sentiment import SentimentOracle

    return SentimentOracle.from_config(cfg.sentiment, data=data)


@register_oracle("llm")
def _llm(cfg: OracleConfig, data: DataConfig, pools: PromptPools | None, run_dir: Path) -> Oracle:
    from aplkit.oracles.llm import LLMJudge

    return LLMJudge.from_config(cfg, data.task)


@register_oracle("classifier", pointwise=True)
def _classifier(cfg: OracleConfig, data: DataConfig, pools: PromptPools | None, run_dir: Path) -> Oracle:
    from aplkit.oracles.classifier import ClassifierOracle

    return ClassifierOracle.from_config(cfg.classifier)


@register_oracle("rouge", pointwise=True)
def _rouge(cfg: OracleConfig, data: DataConfig, pools: PromptPools | None, run_dir: Path) -> Oracle:
    from aplkit.oracles.rouge import RougeOracle

    if pools is None:
        raise OracleError("oracle.kind=rouge needs the prompt pools (their human references)")
    return RougeOracle({p.text: p.reference for p in pools.train + pools.test if p.reference})


@register_oracle("human")
def _human(cfg: OracleConfig, data: DataConfig, pools: PromptPools | None, run_dir: Path) -> Oracle:
    from aplkit.oracles.human import HumanOracle
    from aplkit.runfolder import QUEUE, RunFolder

    return HumanOracle("human", RunFolder(run_dir) / QUEUE)


__all__ = ["ORACLES", "POINTWISE", "Oracle", "OracleError", "check_oracle", "make_oracle", "register_oracle"]
