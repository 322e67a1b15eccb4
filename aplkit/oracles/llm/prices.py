"""What an API judge's tokens cost: OpenAI's list prices for the common judge models, and the price a run bills at.

The ledger turns token counts into dollars at ``judge_prices(oracle)``: the configured
``oracle.llm.price_in``/``price_out`` when either is set, nothing for a server on this machine, else the
model's list price below. A paid endpoint whose model is in neither is refused when the config is checked
(``price_problems``) unless ``oracle.llm.unpriced: true``, so a paid run never reports $0 by omission.

Prices change: check https://platform.openai.com/docs/pricing before a large run and set
``price_in``/``price_out`` where they differ.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from aplkit.oracles.llm.client import is_local

if TYPE_CHECKING:
    from aplkit.config import LLMJudgeConfig, OracleConfig

#: when the table was read: OpenAI's standard-tier list prices as of March 2026 (a retired model: its last list price)
PRICES_READ = "2026-03"
#: model → (USD per 1M input tokens, USD per 1M output tokens); a dated snapshot (``gpt-4o-mini-2024-07-18``)
#: takes its family's price unless listed itself
PRICES: dict[str, tuple[float, float]] = {
    "gpt-4-1106-preview": (10.0, 30.0),  # the paper's judge (retired from the API since)
    "gpt-4-0125-preview": (10.0, 30.0),
    "gpt-4-turbo": (10.0, 30.0),
    "gpt-4": (30.0, 60.0),
    "gpt-3.5-turbo": (0.50, 1.50),
    "gpt-4o": (2.50, 10.0),
    "gpt-4o-2024-05-13": (5.0, 15.0),
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4.1": (2.0, 8.0),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-5": (1.25, 10.0),
    "gpt-5.1": (1.25, 10.0),
    "gpt-5-mini": (0.25, 2.0),
    "gpt-5-nano": (0.05, 0.40),
    "o1": (15.0, 60.0),
    "o3": (2.0, 8.0),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
}
_SNAPSHOT = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{4})$")  # gpt-4.1-2025-04-14, gpt-3.5-turbo-0125


def list_price(model: str) -> tuple[float, float] | None:
    """The list price of ``model`` (or of the family of a dated snapshot), None when the table does not know it."""
    if model in PRICES:
        return PRICES[model]
    family = _SNAPSHOT.sub("", model)
    return PRICES.get(family) if family != model else None


def configured(llm: LLMJudgeConfig) -> bool:
    """Whether ``price_in``/``price_out`` are set (0, their default, means: take the list price)."""
    return llm.price_in > 0 or llm.price_out > 0


def judge_prices(oracle: OracleConfig) -> tuple[float, float]:
    """USD per 1M input and output tokens the ledger bills this oracle at (only an API judge costs money)."""
    if oracle.kind != "llm":
        return 0.0, 0.0
    llm = oracle.llm
    if configured(llm):
        return float(llm.price_in), float(llm.price_out)
    if is_local(llm.base_url):
        return 0.0, 0.0
    return list_price(llm.model) or (0.0, 0.0)


def price_problems(llm: LLMJudgeConfig, prefix: str = "oracle.llm") -> list[str]:
    """A paid endpoint whose model has no list price and no configured price, unless ``unpriced`` says that is meant."""
    if configured(llm) or is_local(llm.base_url) or llm.unpriced or list_price(llm.model) is not None:
        return []
    where = llm.base_url or "api.openai.com"
    return [
        f"{prefix}.model: no known price for '{llm.model}' at {where}; set {prefix}.price_in and price_out "
        f"(USD per 1M tokens) or {prefix}.unpriced=true to run without a bill"
    ]


__all__ = ["PRICES", "PRICES_READ", "configured", "judge_prices", "list_price", "price_problems"]
