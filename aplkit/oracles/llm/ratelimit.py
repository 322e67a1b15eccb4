"""One rate limit for every judge on this machine that talks to the same endpoint with the same key variable.

Runs of a sweep are threads, papermill kernels or Ray tasks, each with its own judge and thread pool,
while the API counts requests and tokens per key. So the limit lives in a small file under the user
cache (``cache_dir()/ratelimit/``), read and written under ``flock``: a request reserves the earliest
time it may go, and later requests queue behind it, whichever process they come from. Spacing is
even (a generic cell rate algorithm): ``requests_per_minute`` r lets one request go every 60 / r
seconds, ``tokens_per_minute`` t holds the next request back by 60 · n / t seconds after one of n
tokens (its prompt estimated at 4 characters a token, plus ``max_tokens``), so any window of W seconds
holds at most W · r / 60 + 1 requests. An HTTP 429 holds back every judge sharing the file for the
wait the server asked for.

The file is one per machine (its name includes the host name), also where the user cache is on a shared
filesystem: on a Ray cluster each node keeps its own, and the executor divides the limits by the number
of nodes (``APLKIT_RATE_NODES``). Neither the key nor anything derived from it is written.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: set by the Ray executor on its tasks: the nodes a limit is split across (each node keeps its own file)
NODES_ENV = "APLKIT_RATE_NODES"
CHARS_PER_TOKEN = 4  # a prompt's tokens, estimated before it is sent (the usage is known only after)

_locks: dict[str, threading.Lock] = {}  # flock does not order the threads of one process fairly: a lock per file first
_locks_guard = threading.Lock()


def estimate_tokens(messages: list[dict[str, str]], max_tokens: int) -> int:
    """What one request counts against a tokens-per-minute limit: its prompt, estimated, and the most it may write."""
    chars = sum(len(m.get("content") or "") for m in messages)
    return math.ceil(chars / CHARS_PER_TOKEN) + int(max_tokens)


class RateLimit:
    """A request and token limit shared through ``path`` by every process that opens the same file."""

    def __init__(self, path: str | Path, requests_per_minute: float = 0.0, tokens_per_minute: float = 0.0, nodes: int = 1):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.requests_per_minute = float(requests_per_minute) / max(1, nodes)
        self.tokens_per_minute = float(tokens_per_minute) / max(1, nodes)
        with _locks_guard:
            self._lock = _locks.setdefault(str(self.path.resolve()), threading.Lock())

    def __repr__(self) -> str:
        return (
            f"RateLimit({str(self.path)!r}, requests_per_minute={self.requests_per_minute:g}, tokens_per_minute={self.tokens_per_minute:g})"
        )

    @contextlib.contextmanager
    def _state(self) -> Iterator[dict[str, float]]:
        """The shared state, read and written back under the file's lock."""
        import fcntl

        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                raw = os.pread(fd, 4096, 0)
                try:
                    state: dict[str, Any] = json.loads(raw) if raw else {}
                except ValueError:  # a file cut short by a crash mid-write: start afresh
                    state = {}
                state = {k: float(state.get(k, 0.0)) for k in ("requests_at", "tokens_at", "hold_until")}
                yield state
                data = json.dumps(state).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
            finally:
                os.close(fd)  # releases the flock

    def reserve(self, tokens: int) -> float:
        """Reserve the next free slot for one request of ``tokens`` tokens; returns the wall time it may be sent."""
        with self._state() as s:
            now = time.time()
            start = max(now, s["hold_until"])
            if self.requests_per_minute > 0:
                start = max(start, s["requests_at"])
                s["requests_at"] = start + 60.0 / self.requests_per_minute
            if self.tokens_per_minute > 0:
                start = max(start, s["tokens_at"])
                s["tokens_at"] = start + 60.0 * tokens / self.tokens_per_minute
        return start

    def wait(self, tokens: int, abort: threading.Event) -> float:
        """Block until one request of ``tokens`` tokens may be sent (or ``abort`` is set); returns the seconds waited."""
        delay = self.reserve(tokens) - time.time()
        if delay > 0:
            abort.wait(delay)
        return max(0.0, delay)

    def hold(self, seconds: float) -> None:
        """The server answered 429: no judge sharing this limit sends anything for ``seconds``."""
        with self._state() as s:
            s["hold_until"] = max(s["hold_until"], time.time() + seconds)


def limit_path(base_url: str | None, api_key_env: str) -> Path:
    """The file shared by the judges of this machine that use ``base_url`` with the key in ``api_key_env``."""
    from aplkit.paths import cache_dir

    who = f"{base_url or 'api.openai.com'}|{api_key_env}|{socket.gethostname()}"
    return cache_dir() / "ratelimit" / f"{hashlib.sha256(who.encode()).hexdigest()[:16]}.json"


def shared_limit(base_url: str | None, api_key_env: str, requests_per_minute: float, tokens_per_minute: float) -> RateLimit:
    """The machine-wide limit for this endpoint and key variable, split across ``APLKIT_RATE_NODES`` nodes when set."""
    try:
        nodes = max(1, int(os.environ.get(NODES_ENV, "1")))
    except ValueError:
        nodes = 1
    return RateLimit(limit_path(base_url, api_key_env), requests_per_minute, tokens_per_minute, nodes)


__all__ = ["NODES_ENV", "RateLimit", "estimate_tokens", "limit_path", "shared_limit"]
