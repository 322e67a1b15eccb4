"""The LLM judge (the paper's GPT-4 oracle, or any OpenAI-compatible server), in parts.

* ``LLMJudgeConfig`` (in ``aplkit.config``): every setting, its default and its validation (``oracle.llm``)
* ``templates``  the Appendix-A prompts as editable files (``aplkit/oracles/templates/*.txt``)
* ``parsing``    the final A/B in an answer, P(A) from logprobs
* ``client``     ``ChatClient``: one chat completion with retries, the structured-output ladder, the request shape and key scrubbing
* ``ratelimit``  ``RateLimit``: the request and token limit every judge on this machine shares per endpoint and key variable
* ``prices``     list prices of the common judge models, and the price a run bills at
* ``judge``      ``LLMJudge``: prompts, verdicts, re-asks, cache identities, concurrency; ``check_endpoint`` before a run

Importing this package does not import ``openai`` (the client does, on first use).
"""

from aplkit.config import STRUCTURED, LLMJudgeConfig
from aplkit.oracles.llm.client import LADDER, SHAPES, ChatClient, Completion, Shape
from aplkit.oracles.llm.judge import JSON_HINT, PROMPT_VARIANTS, SCHEMA, LLMJudge, check_endpoint, judge_client, prompt_variant
from aplkit.oracles.llm.parsing import choice_probability, parse_choice
from aplkit.oracles.llm.prices import PRICES, PRICES_READ, judge_prices, list_price
from aplkit.oracles.llm.ratelimit import RateLimit, shared_limit
from aplkit.oracles.llm.templates import TASK_TEMPLATES, TEMPLATE_DIR, Template, load_template, parse_template

__all__ = [
    "JSON_HINT",
    "LADDER",
    "PRICES",
    "PRICES_READ",
    "PROMPT_VARIANTS",
    "SCHEMA",
    "SHAPES",
    "STRUCTURED",
    "TASK_TEMPLATES",
    "TEMPLATE_DIR",
    "ChatClient",
    "Completion",
    "LLMJudge",
    "LLMJudgeConfig",
    "RateLimit",
    "Shape",
    "Template",
    "check_endpoint",
    "choice_probability",
    "judge_client",
    "judge_prices",
    "list_price",
    "load_template",
    "parse_choice",
    "parse_template",
    "prompt_variant",
    "shared_limit",
]
