"""The LLM judge's settings, declared once: the ``oracle.llm`` section of the experiment config.

``LLMJudgeConfig`` is what ``LLMJudge`` takes; the experiment config nests it as ``oracle.llm``
and calls ``validate`` with that prefix, so every mistake is one line naming the dotted field.
Importing this module pulls in nothing heavy (no openai, no torch).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args
from urllib.parse import urlparse

from aplkit.errors import ConfigError

Structured = Literal["auto", "json", "text"]
STRUCTURED: tuple[str, ...] = get_args(Structured)
PREFIX = "oracle.llm"  # where the experiment config keeps these settings


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
    price_in: float = 0.0  # USD per 1M input tokens (the ledger's cost column)
    price_out: float = 0.0  # USD per 1M output tokens

    def problems(self, prefix: str = PREFIX) -> list[str]:
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
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (integer and v != int(v)):
                bad(name, f"expected {'an integer' if integer else 'a finite number'}, got {v!r}")
            elif v < low or (strict and v == low):
                bad(name, f"must be {'>' if strict else '>='} {low}, got {v}")
        if self.structured not in STRUCTURED:
            bad("structured", f"unknown '{self.structured}' ({', '.join(STRUCTURED[:-1])} or {STRUCTURED[-1]})")
        if not isinstance(self.logprobs, bool):
            bad("logprobs", f"expected true/false, got {self.logprobs!r}")
        return out

    def validate(self, prefix: str = PREFIX) -> None:
        """Raise ``ConfigError`` with the first of ``problems(prefix)``, if any."""
        found = self.problems(prefix)
        if found:
            raise ConfigError(found[0])


__all__ = ["PREFIX", "STRUCTURED", "LLMJudgeConfig", "Structured"]
