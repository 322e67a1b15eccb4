"""A fault-injecting HTTP proxy for OpenAI-compatible servers (127.0.0.1 only, stdlib, one thread per request).

Each chat-completion request is either forwarded to the upstream server or, at a
seeded rate, answered with a fault: 429, 500, a response slower than the client's
timeout, a dropped connection, a 200 whose body is not JSON ("garbage") or a
well-formed completion whose text names no choice ("nonsense"). Every request is
logged under the last user message it carried, with its arrival time (``time.monotonic``), so a
test can check retry counts per comparison against what was injected, and request rates.
"""

from __future__ import annotations

import json
import random
import select
import socket
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.local_http import LocalServer

FAULTS = ("429", "500", "slow", "drop", "garbage", "nonsense")
MAX_BODY = 1 << 20


class FaultProxy(LocalServer):
    def __init__(
        self,
        upstream: str,
        rate: float = 0.0,
        faults: tuple[str, ...] = FAULTS,
        seed: int = 0,
        slow_s: float = 5.0,
        fail_after: int | None = None,
        echo_auth: bool = False,
    ):
        self.upstream = upstream.rstrip("/")
        self.rate = rate
        self.faults = faults
        self.slow_s = slow_s
        self.fail_after = fail_after  # after this many forwarded completions every request gets a 503
        self.echo_auth = echo_auth  # a hostile server that echoes the Authorization header in its answer
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.log: list[dict[str, Any]] = []  # one row per chat request: key, fault (None: forwarded), body
        self.auth_seen: set[str] = set()
        self.forwarded = 0
        self.inflight = 0
        self.max_inflight = 0

    # ------------------------------------------------------------------ lifecycle
    def handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_Handler,), {"proxy": self})

    # ------------------------------------------------------------------ accounting
    def requests_for(self, key: str) -> list[str | None]:
        return [r["fault"] for r in self.log if r["key"] == key]

    @property
    def injected(self) -> Counter:
        return Counter(r["fault"] for r in self.log if r["fault"] is not None)

    def _decide(self, key: str, body: dict) -> tuple[str | None, dict[str, Any]]:
        with self._lock:
            if self.fail_after is not None and self.forwarded >= self.fail_after:
                fault: str | None = "503"
            elif self.rate > 0 and self._rng.random() < self.rate:
                fault = self._rng.choice(self.faults)
            else:
                fault = None
                self.forwarded += 1
            row = {"key": key, "fault": fault, "body": body, "answer": None, "delivered": None, "t": time.monotonic()}
            self.log.append(row)
            return fault, row


class _Handler(BaseHTTPRequestHandler):
    proxy: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # quiet
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/json", headers: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def _forward(self, method: str, body: bytes | None, row: dict | None = None) -> None:
        """Relay to upstream; for a logged request note the answer text and whether the client was still there."""
        req = urllib.request.Request(self.proxy.upstream + self.path.removeprefix("/v1"), data=body, method=method)
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=300) as r:
                code, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, data = e.code, e.read()
        if row is not None:
            try:
                row["answer"] = json.loads(data)["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                row["answer"] = None
        try:
            self._send(code, data)
            delivered = True
        except OSError:  # the client timed out and hung up while upstream was busy
            delivered = False
        if row is not None:
            row["delivered"] = delivered

    def do_GET(self) -> None:
        self._forward("GET", None)

    def do_POST(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self._send(413, b'{"error": {"message": "too large"}}')
            return
        raw = self.rfile.read(n)
        auth = self.headers.get("Authorization", "")
        try:
            body = json.loads(raw)
            key = body["messages"][-1]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            self._forward("POST", raw)
            return
        p = self.proxy
        with p._lock:
            p.auth_seen.add(auth)
            p.inflight += 1
            p.max_inflight = max(p.max_inflight, p.inflight)
        try:
            fault, row = p._decide(key, body)
            self._fault_or_forward(fault, raw, auth, row)
        finally:
            with p._lock:
                p.inflight -= 1

    def _fault_or_forward(self, fault: str | None, raw: bytes, auth: str, row: dict) -> None:
        p = self.proxy
        err = json.dumps({"error": {"message": f"injected fault {fault}" + (f" for {auth}" if p.echo_auth else "")}}).encode()
        if fault is None:
            if p.echo_auth:
                text = json.dumps({"comparison": f"your header was {auth}", "preferred": "A"})
                self._send(200, _completion(text))
            else:
                time.sleep(0.3)  # lets concurrent requests overlap observably, even when upstream is quick
                self._forward("POST", raw, row)
        elif fault == "429":
            self._send(429, err, headers={"Retry-After": "0"})
        elif fault in ("500", "503"):
            self._send(int(fault), err)
        elif fault == "slow":
            self._wait_for_hangup(p.slow_s)
            try:
                self._send(504, err)
            except OSError:
                pass  # the client gave up long ago
        elif fault == "drop":
            self.close_connection = True
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        elif fault == "garbage":
            self._send(200, b'{"id": "x", "choices": [{"message": ')
        elif fault == "nonsense":
            self._send(200, _completion("I like both of them equally, they are nice." + (f" {auth}" if p.echo_auth else "")))

    def _wait_for_hangup(self, limit: float) -> None:
        """Hold the answer until the client gives up (its timeout) or ``limit`` seconds pass."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.connection], [], [], 0.1)
            if ready:
                try:
                    if not self.connection.recv(1, socket.MSG_PEEK):
                        return  # EOF: the client closed the connection
                except OSError:
                    return


def _completion(text: str) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-proxy",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "proxy",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15},
        }
    ).encode()
