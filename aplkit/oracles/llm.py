"""LLM-as-judge over any OpenAI-compatible chat API (the paper's GPT-4 oracle, or a local llama.cpp server).

The judge is shown the paper's Appendix A prompt (an editable template file), asked
for a one-sentence comparison and a final A or B, and parsed robustly. Where the
server allows it the answer is constrained to a JSON schema; where it returns
logprobs, P(A) comes from the distribution over the token that carries the choice.

The label cache key (``identity``) says which prompt was really sent: ``prompt=json`` (the
Appendix-A prompt plus ``JSON_HINT`` and a ``response_format``) or ``prompt=text`` (the plain
prompt). With ``structured: auto`` that is only known once the server has accepted or rejected
JSON output, so each verdict is recorded under the variant its request used, and a lookup
accepts an answer stored under either variant (an auto judge is content with both); a judge
pinned to ``json`` or ``text`` only ever gets answers to its own prompt.

Transport faults are retried here (the openai client's own retries are off so the
count is ours and lands in ``Verdict.attempts``); a judge that cannot answer raises
``OracleError`` and the ledger keeps everything answered before.

The API key is read from the environment once and only handed to the client: it is
not part of the identity, the repr, the raw text or any error message.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import re
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from aplkit.oracles.base import Oracle, OracleError
from aplkit.records import Comparison, Verdict

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
TASK_TEMPLATES = {"imdb": "sentiment", "tldr": "summary"}
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1", "0.0.0.0")
SCHEMA = {
    "type": "object",
    "properties": {"comparison": {"type": "string"}, "preferred": {"type": "string", "enum": ["A", "B"]}},
    "required": ["comparison", "preferred"],
    "additionalProperties": False,
}
JSON_HINT = '\n\nAnswer with a JSON object {"comparison": "<one sentence>", "preferred": "A" or "B"}.'
# structured modes in the order ``auto`` tries them; a server that rejects one moves to the next, once
LADDER = ("json_schema", "json_object", "text")
PROMPT_VARIANTS = ("json", "text")  # what ``identity`` records: JSON_HINT + response_format sent, or the plain prompt


def prompt_variant(mode: str) -> str:
    """``json`` for json_schema / json_object (same prompt, same schema), ``text`` for plain text."""
    return "text" if mode == "text" else "json"


# --------------------------------------------------------------------------- templates


@dataclass(frozen=True)
class Template:
    """A judge prompt: system and user parts with {prompt}, {a}, {b} placeholders."""

    name: str
    system: str
    user: str
    text: str  # the whole file, hashed into the judge's identity

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()[:16]

    def messages(self, c: Comparison) -> list[dict[str, str]]:
        def fill(s: str) -> str:
            # one pass, so a completion that contains "{b}" is not substituted again
            return re.sub(r"\{(prompt|a|b)\}", lambda m: {"prompt": c.prompt, "a": c.a, "b": c.b}[m.group(1)], s)

        out = [{"role": "system", "content": fill(self.system)}] if self.system else []
        return out + [{"role": "user", "content": fill(self.user)}]


def parse_template(text: str, name: str = "<template>") -> Template:
    """Split a template file into its ``[system]`` and ``[user]`` sections (text before the first is a comment)."""
    sections: dict[str, list[str]] = {}
    current: str | None = None
    for line in text.splitlines():
        head = line.strip().lower()
        if head in ("[system]", "[user]"):
            current = head[1:-1]
            if current in sections:
                raise OracleError(f"template {name}: section [{current}] appears twice")
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    if "user" not in sections:
        raise OracleError(f"template {name}: no [user] section (see aplkit/oracles/templates/sentiment.txt for the format)")
    user = "\n".join(sections["user"]).strip()
    for ph in ("{a}", "{b}"):
        if ph not in user:
            raise OracleError(f"template {name}: the [user] section has no {ph} placeholder")
    return Template(name=name, system="\n".join(sections.get("system", [])).strip(), user=user, text=text)


def load_template(template: str, task: str | None = None) -> Template:
    """``auto`` (by task), a shipped name (``sentiment``, ``summary``) or a path to a template file."""
    if template == "auto":
        if task not in TASK_TEMPLATES:
            raise OracleError(
                f"oracle.template: no default template for task '{task}'; set oracle.template to sentiment, summary or a file"
            )
        template = TASK_TEMPLATES[task]
    shipped = TEMPLATE_DIR / f"{template}.txt"
    path = shipped if shipped.is_file() and "/" not in template else Path(template).expanduser()
    if not path.is_file():
        raise OracleError(
            f"oracle.template: '{template}' is neither a shipped template ({', '.join(sorted(TASK_TEMPLATES.values()))}) nor a file"
        )
    return parse_template(path.read_text(encoding="utf-8"), name=template)


# --------------------------------------------------------------------------- parsing

_PREFERRED = re.compile(
    r"prefer(?:red|ence)?(?:\s+(?:answer|review|summary|completion|choice|response))?\**\s*[:=\-–]?\s*[\s\"'“”‘’*<(\[]*([AB])(?![\w])(?!\W{0,3}\s+or\s)",
    re.IGNORECASE,
)
_LINE = re.compile(r"^[\s\"'“”*#>(\[`]*([AB])[\s\"'“”*.)\]`]*$", re.MULTILINE)
_MARKED = re.compile(r"\*\*([AB])\*\*|[\"“]([AB])[\"”]")
_ECHO = re.compile(r"<?\s*[\"'“”]?\s*A\s*[\"'“”]?\s+or\s+[\"'“”]?\s*B\s*[\"'“”]?\s*>?", re.IGNORECASE)


def parse_choice(text: str) -> tuple[str | None, int]:
    """The final A/B in a judgement and its character offset (-1 if none).

    Tries, in order: a JSON object's "preferred", the last "Preferred: X", the last line
    that is only A or B, the last **A** / "A". An echoed format line (``<"A" or "B">``)
    is not an answer.
    """
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        try:
            obj = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("preferred"), str):
            val = obj["preferred"].strip().strip("\"'*").strip().upper()
            if val in ("A", "B"):
                m = re.search(r"\"preferred\"\s*:\s*\"\s*\**([AaBb])", text)
                return val, (m.start(1) if m else -1)
    text = _ECHO.sub(lambda m: " " * len(m.group()), text)  # blank the echoed format, keep offsets
    for rx in (_PREFERRED, _LINE):
        hits = list(rx.finditer(text))
        if hits:
            m = hits[-1]
            return m.group(1).upper(), m.start(1)
    hits = list(_MARKED.finditer(text))
    if hits:
        m = hits[-1]
        g = 1 if m.group(1) else 2
        return m.group(g), m.start(g)
    return None, -1


def _norm_token(tok: str) -> str:
    return tok.strip().strip("\"'“”*`:.()[]<>").strip()


def choice_probability(logprobs: Any, text: str, pos: int, choice: str) -> float | None:
    """P(A) renormalised over A and B from the top logprobs of the token that carries the choice."""
    content = getattr(logprobs, "content", None) or []
    target = None
    if pos >= 0:
        offset = 0
        for tok in content:
            if offset <= pos < offset + len(tok.token):
                target = tok
                break
            offset += len(tok.token)
        if target is not None and _norm_token(target.token) != choice:
            target = None  # token text does not line up with the content (byte-level tokens): search instead
    if target is None:
        target = next((t for t in reversed(content) if _norm_token(t.token) == choice), None)
    if target is None:
        return None
    mass = {"A": 0.0, "B": 0.0}
    seen = set()
    for t in list(target.top_logprobs or []) + [target]:
        key = _norm_token(t.token)
        if key in mass and t.token not in seen and t.logprob is not None:
            seen.add(t.token)
            mass[key] += math.exp(t.logprob)
    total = mass["A"] + mass["B"]
    return None if total <= 0 else mass["A"] / total


# --------------------------------------------------------------------------- the judge


def _is_local(base_url: str | None) -> bool:
    return bool(base_url) and (urlparse(base_url).hostname or "") in LOCAL_HOSTS


class LLMJudge(Oracle):
    """A chat model that prefers A or B, asked through the ``openai`` client (OpenAI or any compatible server)."""

    kind = "llm"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        template: str | Template = "sentiment",
        task: str | None = None,
        temperature: float = 0.05,
        max_tokens: int = 128,
        concurrency: int = 4,
        timeout: float = 60.0,
        max_retries: int = 5,
        max_invalid_retries: int = 2,
        structured: str = "auto",
        logprobs: bool = True,
        backoff: float = 1.0,
        backoff_max: float = 30.0,
    ):
        if structured not in ("auto", "json", "text"):
            raise OracleError(f"oracle.structured: unknown '{structured}' (auto, json or text)")
        key = os.environ.get(api_key_env, "")
        if not key:
            if not _is_local(base_url):
                where = base_url or "api.openai.com"
                raise OracleError(
                    f"oracle.api_key_env: environment variable {api_key_env} is not set (the LLM judge at {where} needs an API key)"
                )
            key = "sk-no-key-required"  # local servers ignore it; the client insists on one
        from openai import OpenAI

        self._client = OpenAI(api_key=key, base_url=base_url, timeout=timeout, max_retries=0)
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.template = template if isinstance(template, Template) else load_template(template, task)
        self.temperature = float(temperature)
        self.max_tokens = int(max_tokens)
        self.concurrency = max(1, int(concurrency))
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_invalid_retries = int(max_invalid_retries)
        self.structured = structured
        self.backoff = float(backoff)
        self.backoff_max = float(backoff_max)
        self._mode = "text" if structured == "text" else "json_schema"
        self._logprobs = bool(logprobs)
        self._state = threading.Lock()
        self._probe = threading.Lock()  # until one request succeeds, requests go one at a time
        self._settled = structured == "text" and not logprobs
        self._rng = random.Random()
        self._sent: dict[Comparison, str] = {}  # prompt variant of the request that produced each pending verdict

    @classmethod
    def from_config(cls, cfg: Any, task: str) -> LLMJudge:
        """Build from an ``OracleConfig`` (the ``oracle`` section) and the data task (picks the template for ``auto``)."""
        return cls(
            cfg.model,
            base_url=cfg.base_url,
            api_key_env=cfg.api_key_env,
            template=cfg.template,
            task=task,
            temperature=cfg.temperature,
            max_tokens=cfg.max_tokens,
            concurrency=cfg.concurrency,
            timeout=cfg.timeout,
            max_retries=cfg.max_retries,
            max_invalid_retries=cfg.max_invalid_retries,
            structured=cfg.structured,
            logprobs=cfg.logprobs,
        )

    def _base_identity(self) -> str:
        return (
            f"llm|model={self.model}|base_url={self.base_url or 'openai'}|template={self.template.name}@{self.template.digest}"
            f"|temperature={self.temperature:g}|max_tokens={self.max_tokens}"
        )

    def identity_for(self, variant: str) -> str:
        """The cache identity of answers to the ``json`` or ``text`` prompt variant."""
        if variant not in PROMPT_VARIANTS:
            raise ValueError(f"prompt variant must be one of {PROMPT_VARIANTS}, got {variant!r}")
        return f"{self._base_identity()}|prompt={variant}"

    @property
    def identity(self) -> str:
        """Identity of the prompt variant the judge sends now (auto: json until the server rejects JSON output)."""
        return self.identity_for(prompt_variant(self._mode))

    def cache_identities(self) -> list[str]:
        """json / text: that variant only. auto: the variant in use first, then the other (both are auto's answers).

        Then the identities written before the variant was recorded (``structured=<setting>``): a json or
        text judge's old answers are unambiguous; old auto answers (either variant) serve only an auto judge.
        """
        now = prompt_variant(self._mode)
        variants = [now] if self.structured != "auto" else [now, *(v for v in PROMPT_VARIANTS if v != now)]
        legacy = [self.structured] if self.structured != "auto" else ["auto", "json", "text"]
        return [self.identity_for(v) for v in variants] + [f"{self._base_identity()}|structured={x}" for x in legacy]

    def record_identity(self, c: Comparison) -> str:
        """Identity of the prompt variant the request that answered ``c`` really used."""
        with self._state:
            variant = self._sent.pop(c, None)
        return self.identity if variant is None else self.identity_for(variant)

    @property
    def mode(self) -> str:
        """The structured mode in use now: json_schema, json_object or text (auto moves down once per rejection)."""
        return self._mode

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
            raise OracleError(self._scrub(f"LLM judge {self.model}: {type(error).__name__}: {error}")) from None

    def close(self) -> None:
        self._client.close()

    # ------------------------------------------------------------------ one comparison
    def _ask(self, c: Comparison, abort: threading.Event) -> Verdict:
        attempts = tokens_in = tokens_out = 0
        text = ""
        for _ in range(self.max_invalid_retries + 1):
            resp, n, mode = self._create(self.template.messages(c), abort)
            attempts += n
            usage = getattr(resp, "usage", None)
            tokens_in += int(getattr(usage, "prompt_tokens", 0) or 0)
            tokens_out += int(getattr(usage, "completion_tokens", 0) or 0)
            choice0 = resp.choices[0]
            text = self._scrub(choice0.message.content or "")
            choice, pos = parse_choice(text)
            if choice is not None:
                p_a = choice_probability(choice0.logprobs, text, pos, choice) if getattr(choice0, "logprobs", None) else None
                self._mark_sent(c, mode)
                return Verdict(choice=choice, raw=text, p_a=p_a, tokens_in=tokens_in, tokens_out=tokens_out, attempts=attempts)
        self._mark_sent(c, mode)
        return Verdict(choice=None, raw=text, tokens_in=tokens_in, tokens_out=tokens_out, attempts=attempts)

    def _mark_sent(self, c: Comparison, mode: str) -> None:
        """Remember the prompt variant of the request whose answer is ``c``'s verdict, for ``record_identity``."""
        with self._state:
            self._sent[c] = prompt_variant(mode)

    def _request(self, messages: list[dict[str, str]], mode: str, logprobs: bool) -> dict[str, Any]:
        kw: dict[str, Any] = {"model": self.model, "messages": messages, "temperature": self.temperature, "max_tokens": self.max_tokens}
        if mode != "text":
            kw["messages"] = [dict(m) for m in messages]
            kw["messages"][-1]["content"] += JSON_HINT
            if mode == "json_schema":
                kw["response_format"] = {"type": "json_schema", "json_schema": {"name": "preference", "strict": True, "schema": SCHEMA}}
            else:  # OpenAI's JSON mode; llama.cpp servers also honour the schema here
                kw["response_format"] = {"type": "json_object", "schema": SCHEMA}
        if logprobs:
            kw["logprobs"] = True
            kw["top_logprobs"] = 5
        return kw

    def _create(self, messages: list[dict[str, str]], abort: threading.Event) -> tuple[Any, int, str]:
        """One chat completion with our own retries; returns (response, requests sent, structured mode of the one answered).

        Until the server has accepted one request, requests are sent one at a time, so a
        server that rejects response_format or logprobs is probed once, not once per thread.
        """
        if not self._settled:
            with self._probe:
                if not self._settled:
                    out = self._create_unlocked(messages, abort)
                    self._settled = True
                    return out
        return self._create_unlocked(messages, abort)

    def _create_unlocked(self, messages: list[dict[str, str]], abort: threading.Event) -> tuple[Any, int, str]:
        import openai

        sent = 0
        transport_failures = 0
        while True:
            if abort.is_set():
                raise OracleError(f"LLM judge {self.model}: stopped because another request failed")
            mode, logprobs = self._mode, self._logprobs
            sent += 1
            try:
                resp = self._client.chat.completions.create(**self._request(messages, mode, logprobs))
                if not getattr(resp, "choices", None) or not hasattr(resp.choices[0], "message"):
                    raise ValueError("the response has no choices")
                return resp, sent, mode
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
                    raise OracleError(self._describe(e, "rejected the request", sent)) from None
                err: Exception = e
            except (openai.RateLimitError, openai.APITimeoutError, openai.APIConnectionError, openai.APIResponseValidationError) as e:
                err = e
            except openai.APIStatusError as e:
                if e.status_code in (408, 409) or e.status_code >= 500:
                    err = e
                else:  # 401/403/404 and friends: retrying cannot help
                    raise OracleError(self._describe(e, "refused", sent)) from None
            except (ValueError, TypeError, AttributeError, KeyError) as e:  # a 200 whose body is not a completion
                err = e
            transport_failures += 1
            if transport_failures > self.max_retries or abort.is_set():
                why = "gave up" if not abort.is_set() else "stopped (another request failed)"
                raise OracleError(self._describe(err, why, sent)) from None
            self._sleep(transport_failures, err, abort)

    def _step_down(self, mode: str) -> None:
        with self._state:
            if self._mode != mode:
                return  # another thread already moved on
            nxt = LADDER[LADDER.index(mode) + 1]
            if nxt == "text" and self.structured == "json":
                raise OracleError(
                    f"LLM judge {self.model}: the server rejects response_format (JSON output); set oracle.structured=text or auto"
                )
            self._mode = nxt

    def _sleep(self, failures: int, err: Exception, abort: threading.Event) -> None:
        delay = min(self.backoff_max, self.backoff * 2 ** (failures - 1))
        retry_after = getattr(getattr(err, "response", None), "headers", {}) or {}
        try:
            delay = max(delay, min(self.backoff_max, float(retry_after.get("retry-after", 0))))
        except (TypeError, ValueError):
            pass
        with self._state:
            jitter = self._rng.uniform(0, delay / 2)
        abort.wait(delay + jitter)

    def _describe(self, err: Exception, what: str, sent: int) -> str:
        status = getattr(err, "status_code", None)
        detail = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        kind = f"HTTP {status}" if status else type(err).__name__
        where = self.base_url or "api.openai.com"
        return self._scrub(f"LLM judge {self.model} at {where} {what} after {sent} request(s): {kind} {detail}".rstrip())

    def _scrub(self, s: str) -> str:
        key = self._client.api_key
        return s.replace(key, "***") if key and len(key) >= 8 else s


__all__ = ["LLMJudge", "Template", "choice_probability", "load_template", "parse_choice", "parse_template"]
