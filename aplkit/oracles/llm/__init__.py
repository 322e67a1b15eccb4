"""The LLM judge (the paper's GPT-4 oracle, or any OpenAI-compatible server), in parts.

* ``LLMJudgeConfig`` (in ``aplkit.config``): every setting, its default and its validation (``oracle.llm``)
* ``templates``  the Appendix-A prompts as editable files (``aplkit/oracles/templates/*.txt``)
* ``parsing``    the final A/B in an answer, P(A) from logprobs
* ``client``     ``ChatClient``: one chat completion with retries, the structured-output ladder and key scrubbing
* ``judge``      ``LLMJudge``: prompts, verdicts, re-asks, cache identities, concurrency

Importing this package does not import ``openai`` (the client does, on first use).
"""

from aplkit.config import STRUCTURED, LLMJudgeConfig
from aplkit.oracles.llm.client import LADDER, ChatClient, Completion
from aplkit.oracles.llm.judge import JSON_HINT, PROMPT_VARIANTS, SCHEMA, LLMJudge, judge_client, prompt_variant
from aplkit.oracles.llm.parsing import choice_probability, parse_choice
from aplkit.oracles.llm.templates import TASK_TEMPLATES, TEMPLATE_DIR, Template, load_template, parse_template

__all__ = [
    "JSON_HINT",
    "LADDER",
    "PROMPT_VARIANTS",
    "SCHEMA",
    "STRUCTURED",
    "TASK_TEMPLATES",
    "TEMPLATE_DIR",
    "ChatClient",
    "Completion",
    "LLMJudge",
    "LLMJudgeConfig",
    "Template",
    "choice_probability",
    "judge_client",
    "load_template",
    "parse_choice",
    "parse_template",
    "prompt_variant",
]
