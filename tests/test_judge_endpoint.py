"""A paid judge's endpoint, before and while a run pays it: prices, the model check, the request shape, the shared rate limit.

Against a fake OpenAI-compatible server on 127.0.0.1 (``tests/fake_openai.py``), behind the fault-injecting
proxy where 429s are wanted; nothing here needs a network, a GPU or a model.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from aplkit.callbacks import ProgressBar
from aplkit.checks import load_config
from aplkit.config import ConfigError
from aplkit.oracles.base import OracleError
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import Ledger, open_ledger
from aplkit.oracles.llm import LLMJudge, LLMJudgeConfig, Shape, check_endpoint, judge_prices, list_price
from aplkit.oracles.llm.ratelimit import RateLimit
from aplkit.records import Comparison, Verdict
from aplkit.runfolder import RunFolder
from tests.fake_openai import FakeOpenAI
from tests.fault_proxy import FaultProxy

FAKE_KEY = "sk-test-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PAIRS = [
    ("The movie was", " wonderful and moving.", " boring and far too long."),
    ("I watched this film and", " hated every minute.", " loved every minute."),
    ("This is a", " masterpiece.", " waste of two hours."),
    ("The plot", " made no sense.", " was clever."),
]


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    """The shared rate-limit files live under the user cache: this test's own."""
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path / "cache"))


def judge_config(url: str, **kw) -> LLMJudgeConfig:
    opts = dict(model="gpt-4o", base_url=url, template="sentiment", structured="text", logprobs=False, concurrency=1, backoff=0.02)
    return LLMJudgeConfig(**(opts | kw))


# --------------------------------------------------------------------------- prices


def test_list_prices_bill_a_paid_run_and_an_unpriced_paid_endpoint_is_refused(tmp_path):
    assert list_price("gpt-4-1106-preview") == (10.0, 30.0)
    assert list_price("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # a dated snapshot: its family's price
    assert list_price("gpt-4o-2024-05-13") == (5.0, 15.0)  # a snapshot listed itself
    assert list_price("my-finetune") is None and list_price("gpt-4o-mini-turbo") is None
    paper = load_config("imdb-cpu", ["oracle.kind=llm"])  # the paper's judge on api.openai.com, no price set
    assert judge_prices(paper.oracle) == (10.0, 30.0)
    own = load_config("imdb-cpu", ["oracle.kind=llm", "oracle.llm.price_in=1", "oracle.llm.price_out=2"])
    assert judge_prices(own.oracle) == (1.0, 2.0)
    assert judge_prices(load_config("imdb-cpu-judge").oracle) == (0.0, 0.0)  # a server on this machine
    assert judge_prices(load_config("imdb-cpu", ["oracle.llm.price_in=5"]).oracle) == (0.0, 0.0)  # the offline judge
    with open_ledger(RunFolder(tmp_path / "run").ensure(), paper.oracle) as ledger:
        ledger.record("judge", Comparison("p", "a", "b"), Verdict("A", tokens_in=1000, tokens_out=100))
        assert ledger.stats()["cost_usd"] == pytest.approx(1000 * 10 / 1e6 + 100 * 30 / 1e6)  # $0.013, not $0

    unknown = ["oracle.kind=llm", "oracle.llm.model=my-finetune", "oracle.llm.base_url=https://llm.example.com/v1"]
    with pytest.raises(ConfigError) as e:
        load_config("imdb-cpu", unknown)
    assert str(e.value) == (
        "oracle.llm.model: no known price for 'my-finetune' at https://llm.example.com/v1; set oracle.llm.price_in and "
        "price_out (USD per 1M tokens) or oracle.llm.unpriced=true to run without a bill"
    )
    assert load_config("imdb-cpu", [*unknown, "oracle.llm.unpriced=true"]).oracle.llm.unpriced
    assert judge_prices(load_config("imdb-cpu", [*unknown, "oracle.llm.price_out=0.5"]).oracle) == (0.0, 0.5)
    load_config("imdb-cpu", ["oracle.kind=llm", "oracle.llm.model=my-finetune", "oracle.llm.base_url=http://127.0.0.1:8080/v1"])
    load_config("imdb-cpu", ["oracle.llm.model=my-finetune", "oracle.llm.base_url=https://llm.example.com/v1"])  # not the judge


def test_progress_line_shows_the_judge_calls_and_dollars_so_far():
    bar = ProgressBar()
    bar.on_run_start(load_config("imdb-cpu", ["oracle.kind=llm"]), Path("."), 0)
    bar.on_step(NS(step=1, eval=None, oracle={"calls": 16, "cost_usd": 0.0123}))
    assert "judge=16 calls $0.01" in str(bar.bar)
    bar.on_step(NS(step=2, eval=NS(win_rate=0.6), oracle={"calls": 48, "cost_usd": 0.5}))
    line = str(bar.bar)
    assert "win_rate=0.600" in line and "labels=32" in line and "judge=48 calls $0.50" in line
    bar.close()
    offline = ProgressBar()
    offline.on_run_start(load_config("imdb-cpu"), Path("."), 0)
    offline.on_step(NS(step=1, eval=NS(win_rate=0.5), oracle={"calls": 16, "cost_usd": 0.0}))
    assert "judge=" not in str(offline.bar) and "win_rate=0.500" in str(offline.bar)
    offline.close()


# --------------------------------------------------------------------------- before the run: key, endpoint, model


def test_the_model_is_checked_against_get_models(monkeypatch, caplog):
    with FakeOpenAI(models=["gpt-4o", "gpt-4.1"]) as api:
        check_endpoint(judge_config(api.url, model="gpt-4.1"))
        with pytest.raises(OracleError) as e:
            check_endpoint(judge_config(api.url, model="gpt-4-1106-preview"))
        assert str(e.value) == (
            f"oracle.llm.model: {api.url} does not serve 'gpt-4-1106-preview' to this key (it serves e.g. gpt-4o, gpt-4.1); "
            "the model may be retired: choose a live one with --set oracle.llm.model=NAME"
        )
        assert api.model_lists == 2 and api.log == []  # no completion was asked
    with FakeOpenAI(models=None) as api, caplog.at_level("WARNING"):  # no /models: said, and the run goes on
        check_endpoint(judge_config(api.url, model="anything"))
    assert f"{api.url} has no GET /models: oracle.llm.model=anything is not checked" in caplog.text
    monkeypatch.setenv("APLKIT_TEST_KEY", FAKE_KEY)
    with FakeOpenAI(keys={"sk-another"}) as api, pytest.raises(OracleError) as e:
        check_endpoint(judge_config(api.url, api_key_env="APLKIT_TEST_KEY"))
    assert str(e.value).startswith(f"oracle.llm.api_key_env: {api.url} refuses the key in it: ") and "HTTP 401" in str(e.value)
    assert FAKE_KEY not in str(e.value)
    monkeypatch.delenv("APLKIT_NO_SUCH_KEY", raising=False)
    with pytest.raises(OracleError, match=r"^oracle\.llm\.api_key_env: environment variable APLKIT_NO_SUCH_KEY is not set"):
        check_endpoint(judge_config("https://api.example.invalid/v1", api_key_env="APLKIT_NO_SUCH_KEY"))  # before any network


def test_aplkit_run_stops_before_the_run_folder_and_any_model(tmp_path, monkeypatch, capsys):
    import aplkit.loop
    from aplkit.cli import main

    monkeypatch.setattr(aplkit.loop, "load_models", lambda *a, **k: pytest.fail("a model was loaded"))
    out = tmp_path / "run"
    judge = ["--set", "oracle.kind=llm", "--set", "oracle.llm.model=gpt-4-1106-preview"]
    with FakeOpenAI(models=["gpt-4o"]) as api:
        rc = main(["run", "imdb-cpu", "--out", str(out), "--quiet", *judge, "--set", f"oracle.llm.base_url={api.url}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and not out.exists()
    assert err[-1].startswith(f"aplkit: error: oracle.llm.model: {api.url} does not serve 'gpt-4-1106-preview'")
    monkeypatch.delenv("APLKIT_NO_SUCH_KEY", raising=False)
    rc = main(["run", "imdb-cpu", "--out", str(out), "--quiet", *judge, "--set", "oracle.llm.api_key_env=APLKIT_NO_SUCH_KEY"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and not out.exists()
    assert err[-1].startswith("aplkit: error: oracle.llm.api_key_env: environment variable APLKIT_NO_SUCH_KEY is not set")


# --------------------------------------------------------------------------- the request shape


def test_a_reasoning_model_is_sent_what_it_accepts_and_the_ledger_says_so(tmp_path):
    path = tmp_path / "labels.sqlite"
    with FakeOpenAI(models=["o4-mini"], reasoning=True) as api:
        cfg = judge_config(api.url, model="o4-mini")
        j = LLMJudge(cfg)
        with Ledger(path) as ledger:
            labels = label_pairs(j, ledger, PAIRS, seed=0)
            rows = ledger.rows()
        assert [r["status"] for r in api.log] == [400, 400, 200, 200, 200, 200]  # each refusal once, then remembered
        first, second, *answered = (r["body"] for r in api.log)
        assert (first["max_tokens"], first["temperature"]) == (128, 0.05)
        assert "max_tokens" not in second and (second["max_completion_tokens"], second["temperature"]) == (128, 0.05)
        assert all(b["max_completion_tokens"] == 128 and "max_tokens" not in b and "temperature" not in b for b in answered)
        assert j.client.shape == Shape("max_completion_tokens", temperature=False)
        assert {r["oracle"] for r in rows} == {j.identity} and len(rows) == 4
        assert j.identity.endswith("|temperature=default|max_completion_tokens=128|prompt=text")
        assert LLMJudge(cfg).identity.endswith("|temperature=0.05|max_tokens=128|prompt=text")  # the shape sent before any refusal
        assert all(lab.preferred in (0, 1) for lab in labels)

        n = len(api.log)  # a resumed run's judge has not been refused yet: it still finds every answer
        with Ledger(path) as ledger:
            again = label_pairs(LLMJudge(cfg), ledger, PAIRS, seed=0)
            assert ledger.stats()["calls"] == 0
        assert len(api.log) == n and all(lab.cached for lab in again)

    with FakeOpenAI(models=["gpt-4o"]) as api:  # a model that takes both is sent both, as before
        j = LLMJudge(judge_config(api.url))
        j.judge([Comparison(*PAIRS[0])])
        assert [r["status"] for r in api.log] == [200] and api.log[0]["body"]["max_tokens"] == 128
        assert j.client.shape == Shape() and j.identity.endswith("|temperature=0.05|max_tokens=128|prompt=text")


class _Refuses:
    """A transport that answers every request with one HTTP 400."""

    api_key = "sk-no-key-required"

    def __init__(self, message: str):
        self.message, self.requests = message, []
        self.chat = NS(completions=NS(create=self._create))

    def _create(self, **kw):
        from tests.test_llm_judge import _rejection

        self.requests.append(kw)
        raise _rejection(self.message)

    def close(self):
        pass


def test_a_bad_temperature_value_is_not_mistaken_for_a_refused_parameter():
    from aplkit.oracles.llm import judge_client

    cfg = judge_config("http://127.0.0.1:9/v1")
    server = _Refuses("Error code: 400 - {'error': {'message': \"Invalid 'temperature': decimal above maximum value. Expected <= 2\"}}")
    with pytest.raises(OracleError, match=r"rejected the request after 1 request"):
        LLMJudge(cfg, client=judge_client(cfg, server)).judge([Comparison(*PAIRS[0])])
    assert len(server.requests) == 1 and server.requests[0]["temperature"] == 0.05


# --------------------------------------------------------------------------- rate limits


def test_429s_are_waited_out_up_to_max_wait_and_a_spent_quota_stops_at_once(tmp_path):
    with FakeOpenAI(rate_limited=True, retry_after=0.2) as api:
        j = LLMJudge(judge_config(api.url, max_wait=0.6, max_retries=0))  # no transport retry: the waits are not retries
        with Ledger(tmp_path / "a.sqlite") as ledger, pytest.raises(OracleError) as e:
            label_pairs(j, ledger, PAIRS[:1], seed=0)
        assert f"LLM judge gpt-4o at {api.url} stayed rate-limited past oracle.llm.max_wait=0.6 s of waiting after 3 request(s)" in str(
            e.value
        )
        assert "HTTP 429" in str(e.value) and "\n" not in str(e.value)
        assert len(api.log) == 3  # each wait 0.2–0.3 s (Retry-After + jitter): two fit in 0.6 s, three do not, though max_retries is 0
    with FakeOpenAI(quota_spent=True) as api:
        with Ledger(tmp_path / "b.sqlite") as ledger, pytest.raises(OracleError, match=r"refused \(the quota is spent\)"):
            label_pairs(LLMJudge(judge_config(api.url)), ledger, PAIRS[:1], seed=0)
        assert len(api.log) == 1


def test_the_limit_is_shared_through_its_file_and_a_429_holds_everyone(tmp_path):
    a, b = RateLimit(tmp_path / "l.json", requests_per_minute=600), RateLimit(tmp_path / "l.json", requests_per_minute=600)
    starts = [lim.reserve(1) for lim in (a, b, a, b)]
    assert [round(y - x, 6) for x, y in zip(starts, starts[1:], strict=False)] == [0.1, 0.1, 0.1]  # one queue, 60/600 s apart
    tokens = RateLimit(tmp_path / "t.json", tokens_per_minute=6000)
    first, second = tokens.reserve(500), tokens.reserve(10)
    assert second - first == pytest.approx(60 * 500 / 6000)  # 500 tokens hold the next request back 5 s
    held = RateLimit(tmp_path / "h.json")
    held.hold(30)
    assert RateLimit(tmp_path / "h.json").reserve(1) - held.reserve(1) == pytest.approx(0, abs=1e-3)
    import time

    assert held.reserve(1) > time.time() + 29  # unlimited, yet held back by the 429
    assert RateLimit(tmp_path / "n.json", requests_per_minute=600, nodes=4).requests_per_minute == 150


JUDGE_PROCESS = """
import sys
from aplkit.oracles.labelling import label_pairs
from aplkit.oracles.ledger import Ledger
from aplkit.oracles.llm import LLMJudge, LLMJudgeConfig
url, path, who, rpm = sys.argv[1:5]
pairs = [(f"Review {who}-{i}: the film was", f" great {i}.", f" dull {i}.") for i in range(6)]
cfg = LLMJudgeConfig(model="gpt-4o", base_url=url, template="sentiment", structured="text", logprobs=False,
                     concurrency=3, backoff=0.02, requests_per_minute=float(rpm))
with Ledger(path) as ledger:
    label_pairs(LLMJudge(cfg), ledger, pairs, seed=0)
"""


def _judges_at_once(url: str, ledger: Path, rpm: float) -> None:
    """Four judges of 6 pairs each, 3 requests in flight each: two processes and two threads of this one."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    procs = [subprocess.Popen([sys.executable, "-c", JUDGE_PROCESS, url, str(ledger), f"p{k}", str(rpm)], env=env) for k in range(2)]

    def thread(who: str) -> None:
        pairs = [(f"Review {who}-{i}: the film was", f" great {i}.", f" dull {i}.") for i in range(6)]
        cfg = judge_config(url, concurrency=3, requests_per_minute=rpm)
        with Ledger(ledger) as led:
            label_pairs(LLMJudge(cfg), led, pairs, seed=0)

    threads = [threading.Thread(target=thread, args=(f"t{k}",)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [p.wait(timeout=300) for p in procs] == [0, 0]


def _busiest(times: list[float], window: float) -> int:
    times = sorted(times)
    return max(sum(1 for u in times if t <= u < t + window) for t in times)


def test_four_judges_at_once_stay_under_the_shared_limit_and_lose_no_label(tmp_path):
    rpm, window = 300.0, 2.0  # one request every 0.2 s: at most 10 + 1 in any 2 s, whoever sends them
    with FakeOpenAI() as api, FaultProxy(api.url, rate=0.25, faults=("429",), seed=4) as proxy:
        _judges_at_once(proxy.url, tmp_path / "labels.sqlite", 0.0)  # the control: without a limit they go much faster
        unlimited = _busiest([r["t"] for r in proxy.log], window)
        proxy.log.clear()
        _judges_at_once(proxy.url, tmp_path / "limited.sqlite", rpm)
        times = [r["t"] for r in proxy.log]
        log = list(proxy.log)
    assert unlimited > window * rpm / 60 + 3
    assert _busiest(times, window) <= window * rpm / 60 + 3  # + 1 for the bound, + 2 for a busy machine delaying a send
    assert sum(r["fault"] == "429" for r in log) >= 3  # the seeded proxy really rate-limited some of them
    with Ledger(tmp_path / "limited.sqlite") as ledger:
        rows = ledger.rows()
    assert len(rows) == 24 and all(r["choice"] in ("A", "B") for r in rows)  # none lost, none invalid
    assert all(r["calls"] == 1 for r in rows)  # none paid twice
    template = LLMJudge(judge_config(proxy.url)).template
    for r in rows:  # each answer's attempts are the requests the proxy saw for it, its 429s included
        key = template.messages(Comparison(r["prompt"], r["a"], r["b"]))[-1]["content"]
        sent = [x for x in log if x["key"] == key]
        assert r["attempts"] == len(sent) and sent[-1]["fault"] is None
    assert sum(r["attempts"] for r in rows) == len(log)
