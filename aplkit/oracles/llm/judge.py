"""LLM-as-judge over any OpenAI-compatible chat API (the paper's GPT-4 oracle, or a local llama.cpp server).

The judge is shown the paper's Appendix A prompt (an editable template file), asked
for a one-sentence comparison and a final A or B, and parsed robustly. Where the
server allows it the answer is constrained to a JSON schema; where it returns
logprobs, P(A) comes from the distribution over the token that carries the choice.
Sending the request (retries, the structured-output ladder, key scrubbing) is the
``ChatClient``'s job; an unparsable answer is re-asked here, then recorded as invalid.

The label cache key (``identity``) says which prompt was really sent: ``prompt=json`` (the
Appendix-A prompt plus ``JSON_HINT`` and a ``response_format``) or ``prompt=text`` (the plain
prompt). With ``structured: auto`` that is only known once the server has accepted or rejected
JSON output, so each verdict is recorded under the variant its request used, and a lookup
accepts an answer stored under either variant (an auto judge is content with both); a judge
pinned to ``json`` or ``text`` only ever gets answers to its own prompt.

It also says how the sampling settings were sent: ``temperature=0.05|max_tokens=128`` as configured, or,
for a model that refused them (reasoning models), ``max_completion_tokens=128`` and ``temperature=default``
(none sent). The server, not the config, decides that shape, so a lookup accepts each shape's answers
(the one in use first) while every answer is stored under the shape of its own request.

``check_endpoint`` runs before a run loads anything: the key is there, the server answers, and
``GET /models`` lists the model (a retired one, such as the paper's, is refused in one line).

A judge that cannot answer raises ``OracleError`` and the ledger keeps everything answered before.
The API key is read from the environment once and only handed to the client: it is not part
of the config, the identity, the repr, the raw text or any error message.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from typing import Any

from aplkit.config import LLM_PREFIX as PREFIX
from aplkit.config import STRUCTURED, LLMJudgeConfig
from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.llm.client import CLASSIC, SHAPES, ChatClient, Shape
from aplkit.oracles.llm.parsing import choice_probability, parse_choice
from aplkit.oracles.llm.templates import Template, load_template
from aplkit.records import Comparison, Verdict

SCHEMA = {
    "type": "object",
    "properties": {"comparison": {"type": "string"}, "preferred": {"type": "string", "enum": ["A", "B"]}},
    "required": ["comparison", "preferred"],
    "additionalProperties": False,
}
SCHEMA_NAME = "preference"
JSON_HINT = '\n\nAnswer with a JSON object {"comparison": "<one sentence>", "preferred": "A" or "B"}.'
PROMPT_VARIANTS = ("json", "text")  # what ``identity`` records: JSON_HINT + response_format sent, or the plain prompt
HAND_BUILT_TEMPLATE = "sentiment"  # LLMJudge("model", ...) has no data task to pick a template by

log = logging.getLogger(__name__)


def prompt_variant(mode: str) -> str:
    """``json`` for json_schema / json_object (same prompt, same schema), ``text`` for plain text."""
    return "text" if mode == "text" else "json"


def judge_client(config: LLMJudgeConfig, transport: Any = None) -> ChatClient:
    """The chat client a judge with ``config`` talks through (``transport``: a stand-in for ``openai.OpenAI``, for tests),
    waiting in the rate limit this machine's judges of the same endpoint and key variable share."""
    from aplkit.oracles.llm.ratelimit import shared_limit

    limit = shared_limit(config.base_url, config.api_key_env, config.requests_per_minute, config.tokens_per_minute)
    return ChatClient(
        config.model,
        base_url=config.base_url,
        api_key_env=config.api_key_env,
        timeout=config.timeout,
        max_retries=config.max_retries,
        backoff=config.backoff,
        backoff_max=config.backoff_max,
        structured=config.structured,
        logprobs=config.logprobs,
        schema=SCHEMA,
        schema_name=SCHEMA_NAME,
        json_hint=JSON_HINT,
        label="LLM judge",
        field_prefix=PREFIX,
        transport=transport,
        limit=limit,
        max_wait=config.max_wait,
    )


def check_endpoint(config: LLMJudgeConfig, transport: Any = None) -> None:
    """Before a run loads anything: the key is set, the server answers, and it serves ``model``.

    A server without ``GET /models`` is said so (a warning) and not held against the run. Raises
    ``OracleError``, one line naming the setting to change.
    """
    client = judge_client(config, transport)  # a paid endpoint without its key stops here
    try:
        served = client.served_models()
    finally:
        client.close()
    where = config.base_url or "api.openai.com"
    if served is None:
        log.warning("%s has no GET /models: %s.model=%s is not checked before the run", where, PREFIX, config.model)
        return
    if config.model in served:
        return
    from aplkit.oracles.llm.prices import PRICES

    live = [m for m in PRICES if m in served][-4:] or sorted(served)[:4]
    hint = f" (it serves e.g. {', '.join(live)})" if live else ""
    raise OracleError(
        f"{PREFIX}.model: {where} does not serve '{config.model}' to this key{hint}; the model may be retired: "
        f"choose a live one with --set {PREFIX}.model=NAME"
    )


class LLMJudge(Oracle):
    """A chat model that prefers A or B, asked through a ``ChatClient`` (OpenAI or any compatible server).

    ``LLMJudge(config, task=...)`` takes an ``LLMJudgeConfig``; ``task`` picks the template when it is
    ``auto``. By hand, ``LLMJudge("model", base_url=..., temperature=0.7)`` is
    ``LLMJudgeConfig(model="model", template="sentiment")`` with those fields replaced. Keyword
    overrides also apply on top of a config. ``client`` replaces the one built from the config.
    """

    kind = "llm"

    def __init__(
        self,
        config: LLMJudgeConfig | str,
        *,
        task: str | None = None,
        client: ChatClient | None = None,
        **overrides: Any,
    ):
        if isinstance(config, str):
            config = LLMJudgeConfig(model=config, template=HAND_BUILT_TEMPLATE)
        if overrides:
            config = dataclasses.replace(config, **overrides)  # an unknown setting is a TypeError, as before
        if config.structured not in STRUCTURED:
            raise OracleError(f"{PREFIX}.structured: unknown '{config.structured}' (auto, json or text)")
        self.config = config
        self.client = client if client is not None else judge_client(config)
        if self.client.structured != config.structured:
            raise ValueError(f"the client's structured={self.client.structured!r} differs from the judge's {config.structured!r}")
        t = config.template
        self.template = t if isinstance(t, Template) else load_template(t, task)
        self.temperature = float(config.temperature)
        self.max_tokens = int(config.max_tokens)
        self.concurrency = max(1, int(config.concurrency))
        self._state = threading.Lock()
        self._sent: dict[Comparison, tuple[str, Shape]] = {}  # prompt variant and shape of the request behind each pending verdict

    @classmethod
    def from_config(cls, cfg: Any, task: str | None) -> LLMJudge:
        """Build from the experiment's ``oracle`` section (its ``llm`` field, an ``LLMJudgeConfig``) and the data task."""
        return cls(cfg.llm, task=task)

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def base_url(self) -> str | None:
        return self.config.base_url

    @property
    def structured(self) -> str:
        return self.config.structured

    @property
    def mode(self) -> str:
        """The structured mode in use now: json_schema, json_object or text (auto moves down once per rejection)."""
        return self.client.mode

    # ------------------------------------------------------------------ identities (they key the ledger: byte-stable)
    def _base_identity(self, shape: Shape = CLASSIC) -> str:
        temperature = f"{self.temperature:g}" if shape.temperature else "default"
        return (
            f"llm|model={self.model}|base_url={self.base_url or 'openai'}|template={self.template.name}@{self.template.digest}"
            f"|temperature={temperature}|{shape.tokens}={self.max_tokens}"
        )

    def identity_for(self, variant: str, shape: Shape = CLASSIC) -> str:
        """The cache identity of answers to the ``json`` or ``text`` prompt variant, sent in ``shape``."""
        if variant not in PROMPT_VARIANTS:
            raise ValueError(f"prompt variant must be one of {PROMPT_VARIANTS}, got {variant!r}")
        return f"{self._base_identity(shape)}|prompt={variant}"

    @property
    def identity(self) -> str:
        """Identity of what the judge sends now (auto: json until the server rejects JSON output; the shape the server took)."""
        return self.identity_for(prompt_variant(self.mode), self.client.shape)

    def cache_identities(self) -> list[str]:
        """json / text: that variant only. auto: the variant in use first, then the other (both are auto's answers).

        Each in the shape in use first, then the others a server could have made this judge send. Then the
        identities written before the variant was recorded (``structured=<setting>``): a json or text judge's
        old answers are unambiguous; old auto answers (either variant) serve only an auto judge.
        """
        now = prompt_variant(self.mode)
        variants = [now] if self.structured != "auto" else [now, *(v for v in PROMPT_VARIANTS if v != now)]
        shapes = [self.client.shape, *(s for s in SHAPES if s != self.client.shape)]
        legacy = [self.structured] if self.structured != "auto" else ["auto", "json", "text"]
        return [self.identity_for(v, s) for s in shapes for v in variants] + [f"{self._base_identity()}|structured={x}" for x in legacy]

    def record_identity(self, c: Comparison) -> str:
        """Identity of the prompt variant and shape the request that answered ``c`` really used."""
        with self._state:
            sent = self._sent.pop(c, None)
        return self.identity if sent is None else self.identity_for(*sent)

    def __repr__(self) -> str:
        return (
            f"LLMJudge(model={self.model!r}, base_url={self.base_url!r}, template={self.template.name!r}, structured={self.structured!r})"
        )

    # ------------------------------------------------------------------ public
    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(items)
        try:
            for i, v in self.judge_iter(items):
                out[i] = v
        finally:
            with self._state:  # no ledger asks record_identity for these: drop what was kept for it
                for c in items:
                    self._sent.pop(c, None)
        return out  # type: ignore[return-value]

    def judge_iter(self, items: Sequence[Comparison]) -> Iterator[tuple[int, Verdict]]:
        """Yield verdicts as they complete. On a failure, answers already paid for are yielded before it is raised."""
        if not items:
            return
        abort = threading.Event()
        error: BaseException | None = None
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="llm-judge") as pool:
            futs = {pool.submit(self._ask, c, abort): i for i, c in enumerate(items)}
            try:
                for f in as_completed(futs):
                    try:
                        v = f.result()
                    except CancelledError:
                        continue
                    except BaseException as e:  # noqa: BLE001 - re-raised below, after draining
                        if error is None:
                            error = e
                            abort.set()
                            for g in futs:
                                g.cancel()
                        continue
                    yield futs[f], v
            finally:
                abort.set()
                for g in futs:
                    g.cancel()
        if error is not None:
            if isinstance(error, OracleError):
                raise error
            raise OracleError(self.client.scrub(f"LLM judge {self.model}: {type(error).__name__}: {error}")) from None

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------------ one comparison
    def _ask(self, c: Comparison, abort: threading.Event) -> Verdict:
        attempts = tokens_in = tokens_out = 0
        text = ""
        for _ in range(int(self.config.max_invalid_retries) + 1):
            resp, n, mode, shape = self.client.complete(
                self.template.messages(c), temperature=self.temperature, max_tokens=self.max_tokens, abort=abort
            )
            attempts += n
            usage = getattr(resp, "usage", None)
            tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
            tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
            choice0 = resp.choices[0]
            text = self.client.scrub(choice0.message.content or "")
            choice, pos = parse_choice(text)
            if choice is not None:
                p_a = choice_probability(choice0.logprobs, text, pos, choice) if getattr(choice0, "logprobs", None) else None
                self._mark_sent(c, mode, shape)
                return Verdict(choice=choice, raw=text, p_a=p_a, tokens_in=tokens_in, tokens_out=tokens_out, attempts=attempts)
        self._mark_sent(c, mode, shape)
        return Verdict(choice=None, raw=text, tokens_in=tokens_in, tokens_out=tokens_out, attempts=attempts)

    def _mark_sent(self, c: Comparison, mode: str, shape: Shape) -> None:
        """Remember the prompt variant and shape of the request whose answer is ``c``'s verdict, for ``record_identity``."""
        with self._state:
            self._sent[c] = (prompt_variant(mode), shape)


__all__ = ["JSON_HINT", "PROMPT_VARIANTS", "SCHEMA", "LLMJudge", "check_endpoint", "judge_client", "prompt_variant"]
