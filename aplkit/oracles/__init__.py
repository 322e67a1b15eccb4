"""Oracles (Algorithm 1, lines 10 and 13) and the factory that builds one from the config.

Each oracle module is imported only when chosen, so the offline default never needs
``openai`` and the API judge never needs scikit-learn.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from aplkit.oracles.base import Oracle, OracleError

if TYPE_CHECKING:
    from aplkit.config import DataConfig, OracleConfig
    from aplkit.data import PromptPools


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

    data = data or DataConfig()
    task = data.task
    if cfg.kind == "sentiment":
        from aplkit.oracles.sentiment import SentimentOracle

        return SentimentOracle.from_config(cfg, data=data)
    if cfg.kind == "llm":
        from aplkit.oracles.llm import LLMJudge

        return LLMJudge.from_config(cfg, task)
    if cfg.kind == "classifier":
        from aplkit.oracles.classifier import ClassifierOracle

        return ClassifierOracle.from_config(cfg)
    if cfg.kind == "rouge":
        from aplkit.oracles.rouge import RougeOracle

        if pools is None:
            raise OracleError("oracle.kind=rouge needs the prompt pools (their human references)")
        refs = {p.text: p.reference for p in pools.train + pools.test if p.reference}
        return RougeOracle(refs)
    if cfg.kind == "human":
        from aplkit.oracles.human import HumanOracle
        from aplkit.runfolder import QUEUE, RunFolder

        return HumanOracle("human", RunFolder(run_dir or ".") / QUEUE)
    raise OracleError(f"oracle.kind: unknown '{cfg.kind}'")


__all__ = ["Oracle", "OracleError", "make_oracle"]
