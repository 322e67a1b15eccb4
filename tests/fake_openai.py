"""A fake OpenAI-compatible API on 127.0.0.1 (stdlib, one thread per request) that behaves like the paid one where tests need it.

* ``GET /v1/models`` lists ``models`` (404 when ``models`` is None, as servers without the route answer);
* ``POST /v1/chat/completions`` answers "Preferred: A" or "B" (JSON when sent a response_format), chosen
  by a hash of the last message, with a fixed usage of 100 prompt and 10 completion tokens;
* ``reasoning=True`` refuses ``max_tokens`` and any ``temperature`` but 1 with HTTP 400 and OpenAI's words;
* ``limit=(n, seconds)`` answers 429 (``Retry-After``) to a request beyond n in the last ``seconds``;
* ``rate_limited=True`` answers every completion with 429; ``quota_spent=True`` with 429 ``insufficient_quota``;
* ``keys``: the bearer tokens it accepts (401 otherwise; None accepts any).

Every completion request is logged with its arrival time (``time.monotonic``), body and status.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalServer


class FakeOpenAI(LocalServer):
    def __init__(
        self,
        models: list[str] | None = ("gpt-4o", "gpt-4.1"),
        *,
        reasoning: bool = False,
        limit: tuple[int, float] | None = None,
        rate_limited: bool = False,
        quota_spent: bool = False,
        keys: set[str] | None = None,
        retry_after: float = 0.05,
    ):
        self.models = None if models is None else list(models)
        self.reasoning = reasoning
        self.limit = limit
        self.rate_limited = rate_limited
        self.quota_spent = quota_spent
        self.keys = keys
        self.retry_after = retry_after
        self.log: list[dict[str, Any]] = []
        self.model_lists = 0
        self._lock = threading.Lock()

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"api": self})

    def answered(self) -> list[dict[str, Any]]:
        return [r for r in self.log if r["status"] == 200]

    def _verdict(self, body: dict) -> tuple[int, dict, dict[str, str]]:
        """(status, JSON body, headers) for one chat request, logged."""
        now = time.monotonic()
        with self._lock:
            row = {"t": now, "body": body, "status": 200}
            self.log.append(row)
            recent = [r for r in self.log if r["status"] == 200 and self.limit and now - r["t"] < self.limit[1]]
            if self.quota_spent:
                row["status"] = 429
                err = {
                    "message": "You exceeded your current quota, please check your plan and billing details.",
                    "code": "insufficient_quota",
                }
                return 429, {"error": {**err, "type": "insufficient_quota", "param": None}}, {}
            if self.rate_limited or (self.limit and len(recent) > self.limit[0]):
                row["status"] = 429
                err = {"message": "Rate limit reached for requests", "type": "requests", "code": "rate_limit_exceeded", "param": None}
                return 429, {"error": err}, {"Retry-After": f"{self.retry_after:g}"}
        if self.reasoning and "max_tokens" in body:
            row["status"] = 400
            msg = "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead."
            return (
                400,
                {"error": {"message": msg, "type": "invalid_request_error", "param": "max_tokens", "code": "unsupported_parameter"}},
                {},
            )
        if self.reasoning and body.get("temperature", 1) != 1:
            row["status"] = 400
            msg = f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. Only the default (1) value is supported."
            return (
                400,
                {"error": {"message": msg, "type": "invalid_request_error", "param": "temperature", "code": "unsupported_value"}},
                {},
            )
        content = body["messages"][-1]["content"]
        choice = "AB"[hashlib.sha256(content.encode()).digest()[0] & 1]
        text = (
            json.dumps({"comparison": "one is kinder", "preferred": choice})
            if "response_format" in body
            else f"Comparison: ok.\nPreferred: {choice}"
        )
        return (
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "m"),
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110},
            },
            {},
        )


class _Handler(BaseHTTPRequestHandler):
    api: FakeOpenAI
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, payload: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _authorised(self) -> bool:
        keys = self.api.keys
        if keys is None or self.headers.get("Authorization", "").removeprefix("Bearer ") in keys:
            return True
        self._send(401, {"error": {"message": "Incorrect API key provided.", "type": "invalid_request_error", "code": "invalid_api_key"}})
        return False

    def do_GET(self) -> None:
        if not self._authorised():
            return
        if self.path.rstrip("/") != "/v1/models" or self.api.models is None:
            self._send(404, {"error": {"message": "not found"}})
            return
        with self.api._lock:
            self.api.model_lists += 1
        self._send(200, {"object": "list", "data": [{"id": m, "object": "model", "owned_by": "fake"} for m in self.api.models]})

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if not self._authorised():
            return
        self._send(*self.api._verdict(body))
