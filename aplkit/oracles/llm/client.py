"""One chat completion over an OpenAI-compatible API, made to arrive: the transport under the LLM judge.

``ChatClient.complete`` sends one chat request and returns the response, the number of
requests it took and the structured-output mode of the one answered. It owns:

* retries: the openai client's own retries are off, so the count is ours; 5xx/timeouts,
  connection errors and 200s whose body is not a completion are retried with exponential
  backoff, jitter and the server's ``Retry-After`` (capped by ``backoff_max``); 4xx refusals are not;
* rate limits: every request first waits its turn in the ``RateLimit`` shared by the judges of this
  machine; a 429 is waited out (``Retry-After``, else the backoff), holds back every judge sharing the
  limit, and counts against ``max_wait`` seconds in total, not against the retries; a 429 that says the
  quota is spent is a refusal;
* the structured-output ladder: ``auto`` sends ``response_format`` json_schema, then json_object,
  then plain text, moving down once per rejection; ``json`` never falls to text; ``text`` never asks;
* logprobs: a server that rejects them is asked without them from then on;
* the request shape: a model that refuses ``max_tokens`` (reasoning models) is sent
  ``max_completion_tokens`` from then on, and one that refuses a non-default ``temperature`` is sent
  none (its default), each once; ``Completion.shape`` says what the answered request carried;
* ``served_models``: the ids ``GET /models`` lists, to check the model before anything loads;
* probe-once: until one request has been answered, requests go one at a time, so a server that
  rejects response_format or logprobs is probed once, not once per thread;
* errors: one line naming the model and server, with the API key scrubbed out.

It knows nothing of A/B or templates: the JSON schema and the hint appended to the last message
in JSON modes are handed to it. The API key is read from the environment once, handed to the
transport and used only to scrub it out of text; it is not part of the repr or any message.
"""

from __future__ import annotations

import os
import random
import threading
import time
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import urlparse

from aplkit.oracles.base import OracleError

if TYPE_CHECKING:
    from aplkit.oracles.llm.ratelimit import RateLimit

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
# structured modes in the order ``auto`` tries them; a server that rejects one moves to the next, once
LADDER = ("json_schema", "json_object", "text")


def is_local(base_url: str | None) -> bool:
    """A server on this machine (it needs no API key)."""
    return bool(base_url) and (urlparse(base_url).hostname or "") in LOCAL_HOSTS


class Shape(NamedTuple):
    """How a request carries its sampling settings; the default is what every chat model took before reasoning models."""

    tokens: str = "max_tokens"  # or max_completion_tokens, for a model that refuses max_tokens
    temperature: bool = True  # False: none sent (the model's default), for a model that refuses any other


#: the shape every client starts in (max_tokens and the configured temperature)
CLASSIC = Shape()
#: every shape a client can move to, the one it starts in first
SHAPES = tuple(Shape(t, k) for t in ("max_tokens", "max_completion_tokens") for k in (True, False))


class Completion(NamedTuple):
    """A chat completion and how it was obtained."""

    response: Any  # the openai ChatCompletion
    requests: int  # requests sent for it, retries and rejected probes included
    mode: str  # structured mode of the request that was answered: json_schema, json_object or text
    shape: Shape = CLASSIC  # how the answered request carried max_tokens and temperature


def _refuses(msg: str, param: str) -> bool:
    """Whether a 400's (lower-cased) text refuses the parameter itself, not merely its value's range."""
    if param == "max_tokens":
        return "max_tokens" in msg and ("max_completion_tokens" in msg or "unsupported" in msg or "not supported" in msg)
    return param in msg and ("unsupported" in msg or "not supported" in msg or "does not support" in msg or "only the default" in msg)


def _quota_spent(err: Exception) -> bool:
    """A 429 that no wait cures: the account's quota or billing limit is reached."""
    body = getattr(err, "body", None)
    code = body.get("code") if isinstance(body, dict) else None
    return code == "insufficient_quota" or "insufficient_quota" in str(err) or "exceeded your current quota" in str(err)


class ChatClient:
    """Chat completions with our own retries, structured-output fallback and logprobs fallback (thread-safe)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 60.0,
        max_retries: int = 5,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
        structured: str = "auto",
        logprobs: bool = True,
        schema: dict[str, Any] | None = None,
        schema_name: str = "response",
        json_hint: str = "",
        label: str = "chat client",
        field_prefix: str = "",
        transport: Any = None,
        limit: RateLimit | None = None,
        max_wait: float = 600.0,
    ):
        """``schema``/``schema_name``/``json_hint`` shape the JSON modes; ``label`` starts every message
        (``LLM judge``); ``field_prefix`` names the settings in messages (``oracle.llm``); ``transport``
        replaces the ``openai.OpenAI`` client (anything with ``chat.completions.create``, ``api_key``, ``close``);
        ``limit`` is the rate limit every request waits for; ``max_wait`` bounds the seconds one request
        spends waiting out 429s.
        """
        if structured not in ("auto", "json", "text"):
            raise ValueError(f"structured must be auto, json or text, got {structured!r}")
        if structured != "text" and schema is None:
            raise ValueError("structured output (auto or json) needs a JSON schema")
        self.model = model
        self.base_url = base_url
        self.structured = structured
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self.schema = schema
        self.schema_name = schema_name
        self.json_hint = json_hint
        self.label = label
        self.field_prefix = field_prefix
        self.limit = limit
        self.max_wait = float(max_wait)
        if transport is None:
            transport = self._openai(api_key_env)
        self._transport = transport
        self._mode = "text" if structured == "text" else LADDER[0]
        self._logprobs = bool(logprobs)
        self._shape = CLASSIC
        self._state = threading.Lock()
        self._probe = threading.Lock()  # until one request succeeds, requests go one at a time
        self._settled = structured == "text" and not logprobs
        self._rng = random.Random()

    def _field(self, name: str) -> str:
        return f"{self.field_prefix}.{name}" if self.field_prefix else name

    def _openai(self, api_key_env: str) -> Any:
        key = os.environ.get(api_key_env, "")
        if not key:
            if not is_local(self.base_url):
                where = self.base_url or "api.openai.com"
                raise OracleError(
                    f"{self._field('api_key_env')}: environment variable {api_key_env} is not set "
                    f"(the {self.label} at {where} needs an API key)"
                )
            key = "sk-no-key-required"  # local servers ignore it; the client insists on one
        from openai import OpenAI

        return OpenAI(api_key=key, base_url=self.base_url, timeout=self.timeout, max_retries=0)

    @property
    def mode(self) -> str:
        """The structured mode in use now: json_schema, json_object or text (auto moves down once per rejection)."""
        return self._mode

    @property
    def shape(self) -> Shape:
        """How requests carry max_tokens and temperature now (moved once per refusal)."""
        return self._shape

    @property
    def logprobs(self) -> bool:
        """Whether requests still ask for logprobs (false once the server has refused them)."""
        return self._logprobs

    def __repr__(self) -> str:
        return f"ChatClient(model={self.model!r}, base_url={self.base_url!r}, structured={self.structured!r}, mode={self._mode!r})"

    def close(self) -> None:
        self._transport.close()

    # ------------------------------------------------------------------ one completion
    def complete(
        self,
        messages: list[dict[str, str]],
        *,
        temperature: float,
        max_tokens: int,
        abort: threading.Event | None = None,
    ) -> Completion:
        """One chat completion with our own retries.

        ``abort`` (set by a caller whose other request failed) stops retrying at the next chance.
        Raises ``OracleError`` (one line, key scrubbed) when the server refuses or retries run out.
        """
        abort = abort if abort is not None else threading.Event()
        if not self._settled:
            with self._probe:
                if not self._settled:
                    out = self._complete_unlocked(messages, temperature, max_tokens, abort)
                    self._settled = True
                    return out
        return self._complete_unlocked(messages, temperature, max_tokens, abort)

    def request(
        self,
        messages: list[dict[str, str]],
        mode: str,
        logprobs: bool,
        temperature: float,
        max_tokens: int,
        shape: Shape = CLASSIC,
    ) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one request in ``mode`` and ``shape``."""
        kw: dict[str, Any] = {"model": self.model, "messages": messages, shape.tokens: max_tokens}
        if shape.temperature:
            kw["temperature"] = temperature
        if mode != "text":
            kw["messages"] = [dict(m) for m in messages]
            kw["messages"][-1]["content"] += self.json_hint
            if mode == "json_schema":
                kw["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": self.schema_name, "strict": True, "schema": self.schema},
                }
            else:  # OpenAI's JSON mode; llama.cpp servers also honour the schema here
                kw["response_format"] = {"type": "json_object", "schema": self.schema}
        if logprobs:
            kw["logprobs"] = True
            kw["top_logprobs"] = 5
        return kw

    def _complete_unlocked(self, messages: list[dict[str, str]], temperature: float, max_tokens: int, abort: threading.Event) -> Completion:
        import openai

        from aplkit.oracles.llm.ratelimit import estimate_tokens

        sent = 0
        transport_failures = 0
        limited = 0  # 429s answered so far
        waited = 0.0  # seconds spent waiting them out
        while True:
            if abort.is_set():
                raise OracleError(f"{self.label} {self.model}: stopped because another request failed")
            if self.limit is not None:
                self.limit.wait(estimate_tokens(messages, max_tokens), abort)
                if abort.is_set():
                    continue
            mode, logprobs, shape = self._mode, self._logprobs, self._shape
            sent += 1
            try:
                resp = self._transport.chat.completions.create(**self.request(messages, mode, logprobs, temperature, max_tokens, shape))
                if not getattr(resp, "choices", None) or not hasattr(resp.choices[0], "message"):
                    raise ValueError("the response has no choices")
                return Completion(resp, sent, mode, shape)
            except (openai.BadRequestError, openai.UnprocessableEntityError, openai.InternalServerError) as e:
                msg = str(e).lower()
                if mode != "text" and "response_format" in msg:
                    self._step_down(mode)
                    continue  # the server, not the network: no backoff, not a transport retry
                if logprobs and "logprob" in msg and not isinstance(e, openai.InternalServerError):
                    with self._state:
                        self._logprobs = False
                    continue
                if not isinstance(e, openai.InternalServerError):
                    if shape.tokens == "max_tokens" and _refuses(msg, "max_tokens"):
                        self._reshape(shape, shape._replace(tokens="max_completion_tokens"))
                        continue
                    if shape.temperature and _refuses(msg, "temperature"):
                        self._reshape(shape, shape._replace(temperature=False))
                        continue
                    raise OracleError(self.describe(e, "rejected the request", sent)) from None
                err: Exception = e
            except openai.RateLimitError as e:
                if _quota_spent(e):
                    raise OracleError(self.describe(e, "refused (the quota is spent)", sent)) from None
                limited += 1
                delay = self._delay(limited, e, cap=self.max_wait)
                if waited + delay > self.max_wait:
                    why = f"stayed rate-limited past {self._field('max_wait')}={self.max_wait:g} s of waiting"
                    raise OracleError(self.describe(e, why, sent)) from None
                if self.limit is not None:
                    self.limit.hold(delay)  # every judge sharing the key pauses, not only this request
                waited += delay
                abort.wait(delay)
                continue  # a rate limit is not a failed request: the transport retries are untouched
            except (openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError) as e:
                err = e
            except openai.APIStatusError as e:
                if e.status_code in (408, 409) or e.status_code >= 500:
                    err = e
                else:  # 401/403/404 and friends: retrying cannot help
                    raise OracleError(self.describe(e, "refused", sent)) from None
            except (ValueError, TypeError, AttributeError, KeyError) as e:  # a 200 whose body is not a completion
                err = e
            transport_failures += 1
            if transport_failures > self.max_retries or abort.is_set():
                why = "gave up" if not abort.is_set() else "stopped (another request failed)"
                raise OracleError(self.describe(err, why, sent)) from None
            self._sleep(transport_failures, err, abort)

    def _step_down(self, mode: str) -> None:
        with self._state:
            if self._mode != mode:
                return  # another thread already moved on
            nxt = LADDER[LADDER.index(mode) + 1]
            if nxt == "text" and self.structured == "json":
                raise OracleError(
                    f"{self.label} {self.model}: the server rejects response_format (JSON output); "
                    f"set {self._field('structured')}=text or auto"
                )
            self._mode = nxt

    def _reshape(self, was: Shape, now: Shape) -> None:
        with self._state:
            if self._shape == was:  # else another thread already moved on
                self._shape = now

    def _delay(self, failures: int, err: Exception, cap: float | None = None) -> float:
        """Seconds before the next try: doubling backoff with jitter, or the server's Retry-After (up to ``cap``)."""
        delay = min(self.backoff_max, self.backoff * 2 ** (failures - 1))
        headers = getattr(getattr(err, "response", None), "headers", {}) or {}
        try:
            if headers.get("retry-after-ms") is not None:
                asked = float(headers["retry-after-ms"]) / 1000
            else:
                asked = float(headers.get("retry-after", 0))
            delay = max(delay, min(self.backoff_max if cap is None else cap, asked))
        except (TypeError, ValueError):
            pass
        with self._state:
            jitter = self._rng.uniform(0, delay / 2)
        return delay + jitter

    def _sleep(self, failures: int, err: Exception, abort: threading.Event) -> None:
        abort.wait(self._delay(failures, err))

    # ------------------------------------------------------------------ the endpoint
    def served_models(self) -> list[str] | None:
        """The model ids ``GET /models`` lists, or None where the server has no such route.

        Raises ``OracleError`` (one line naming the setting) when the key is refused or the server cannot be reached.
        """
        import openai

        failures = 0
        where = self.base_url or "api.openai.com"
        while True:
            try:
                return [str(m.id) for m in self._transport.models.list()]
            except openai.APIStatusError as e:
                if e.status_code in (404, 405, 501):
                    return None
                if e.status_code in (401, 403):
                    raise OracleError(
                        f"{self._field('api_key_env')}: {where} refuses the key in it: "
                        + self.describe(e, "refused GET /models", failures + 1)
                    ) from None
                if e.status_code < 500 and e.status_code not in (408, 409, 429):
                    raise OracleError(self.describe(e, "refused GET /models", failures + 1)) from None
                err: Exception = e
            except (openai.APITimeoutError, openai.APIConnectionError) as e:
                err = e
            except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, KeyError):
                return None  # an answer that is not a model list: the route is something else
            failures += 1
            if failures > self.max_retries:
                raise OracleError(f"{self._field('base_url')}: " + self.describe(err, "could not be reached", failures)) from None
            time.sleep(self._delay(failures, err))

    # ------------------------------------------------------------------ messages
    def describe(self, err: Exception, what: str, sent: int) -> str:
        """One line: who failed where, how, after how many requests (key scrubbed)."""
        status = getattr(err, "status_code", None)
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        kind = f"HTTP {status}" if status else type(err).__name__
        where = self.base_url or "api.openai.com"
        return self.scrub(f"{self.label} {self.model} at {where} {what} after {sent} request(s): {kind} {detail}".rstrip())

    def scrub(self, s: str) -> str:
        """``s`` with the API key replaced by ``***`` (servers may echo it in answers and error bodies)."""
        key = getattr(self._transport, "api_key", None)
        return s.replace(key, "***") if key and len(key) >= 8 else s


__all__ = ["CLASSIC", "LADDER", "LOCAL_HOSTS", "SHAPES", "ChatClient", "Completion", "Shape", "is_local"]
