"""The LLM judge: parsing and probabilities by hand, then for real against llama.cpp behind a fault-injecting proxy."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from aplkit.errors import ConfigError
from aplkit.oracles.base import OracleError
from aplkit.oracles.consistency import judge_consistency, wilson_interval
from aplkit.oracles.labelling import ask, label_pairs
from aplkit.oracles.ledger import Ledger
from aplkit.oracles.llm import (
    SCHEMA,
    ChatClient,
    LLMJudge,
    LLMJudgeConfig,
    Shape,
    choice_probability,
    judge_client,
    load_template,
    parse_choice,
    parse_template,
)
from aplkit.records import Comparison, Verdict
from tests.fault_proxy import FaultProxy
from tests.llama_server import llama_server  # noqa: F401 - pytest fixture

FAKE_KEY = "sk-test-4f1c9e2b7a0d4c55a1b2c3d4e5f60718"

# --------------------------------------------------------------------------- no server needed


@pytest.mark.parametrize(
    ("text", "choice"),
    [
        ("Comparison: A is warmer.\nPreferred: A", "A"),
        ("Comparison: B is kinder than A.\nPreferred: **B**", "B"),
        ('Comparison: ...\nPreferred: "B"', "B"),
        ("preferred answer: b", "B"),
        ("Both are fine.\n\nB", "B"),
        ("Review A is long. I pick **A**.", "A"),
        ('{"comparison": "A rambles, B is crisp", "preferred": "B"}', "B"),
        ('```json\n{"comparison": "x", "preferred": " a "}\n```', "A"),
        ("Comparison: A vs B\nPreferred: B\nPreferred: A", "A"),  # the last answer counts
        ('Comparison: <one-sentence comparison>\nPreferred: <"A" or "B">', None),  # the format echoed back
        ("Both reviews are positive.", None),
        ("Preferred: Apple", None),
        ("", None),
    ],
)
def test_parse_choice(text, choice):
    got, pos = parse_choice(text)
    assert got == choice
    if choice is not None:
        assert text[pos].upper() == choice


def _tok(token, logprob, top=()):
    return NS(token=token, logprob=logprob, top_logprobs=[NS(token=t, logprob=lp) for t, lp in top])


def test_choice_probability_from_top_logprobs():
    text = "Preferred: B"
    lp = NS(
        content=[
            _tok("Pre", -0.1),
            _tok("ferred", -0.1),
            _tok(":", -0.1),
            _tok(" B", math.log(0.6), [(" B", math.log(0.6)), (" A", math.log(0.3)), ("A", math.log(0.05))]),
        ]
    )
    p = choice_probability(lp, text, text.index("B"), "B")
    assert p == pytest.approx(0.35 / 0.95)  # A's two spellings summed, renormalised over A and B
    none = NS(content=[_tok("Pre", -0.1), _tok(" B", -0.01, [(" C", -0.01)])])
    assert choice_probability(none, "Pre B", 4, "B") == pytest.approx(0.0)  # only B seen: P(A) = 0
    assert choice_probability(NS(content=[_tok("x", -1.0, [("y", -1.0)])]), "x", 0, "A") is None


def test_templates_reproduce_appendix_a_and_reject_broken_files(tmp_path):
    s, t = load_template("auto", "imdb"), load_template("auto", "tldr")
    assert s.name == "sentiment" and "most positive sentiment" in s.user and s.system.startswith("You are a helpful assistant")
    assert t.name == "summary" and "Summary A: {a}" in t.user
    msgs = s.messages(Comparison("This film", " is {b} great", " is dull"))
    assert msgs[0]["role"] == "system" and "Review A: This film  is {b} great" in msgs[1]["content"]  # no second substitution
    assert msgs[1]["content"].rstrip().endswith('Preferred: <"A" or "B">')
    with pytest.raises(OracleError, match="no default template for task 'file'"):
        load_template("auto", "file")
    with pytest.raises(OracleError, match="neither a shipped template"):
        load_template(str(tmp_path / "missing.txt"))
    with pytest.raises(OracleError, match=r"no \{b\} placeholder"):
        parse_template("[user]\nPick {a}")
    own = tmp_path / "mine.txt"
    own.write_text("my judge\n[user]\n{prompt}: {a} or {b}? Preferred:")
    j = LLMJudge("m", base_url="http://127.0.0.1:9/v1", template=str(own))
    assert j.template.system == "" and j.template.messages(Comparison("p", "x", "y")) == [
        {"role": "user", "content": "p: x or y? Preferred:"}
    ]


def test_identity_covers_what_changes_the_answer(monkeypatch, tmp_path):
    monkeypatch.delenv("APLKIT_NO_SUCH_KEY", raising=False)
    base = dict(base_url="http://localhost:8000/v1", api_key_env="APLKIT_NO_SUCH_KEY")
    ids = {
        LLMJudge("m", **base).identity,
        LLMJudge("m2", **base).identity,
        LLMJudge("m", **base, temperature=0.7).identity,
        LLMJudge("m", **base, max_tokens=64).identity,
        LLMJudge("m", **base, structured="text").identity,
        LLMJudge("m", **base, template="summary").identity,
        LLMJudge("m", base_url="http://127.0.0.1:8001/v1", api_key_env="APLKIT_NO_SUCH_KEY").identity,
    }
    assert len(ids) == 7
    assert LLMJudge("m", **base).identity == LLMJudge("m", **base, concurrency=9, timeout=3).identity


def test_missing_key_is_one_line_naming_the_variable_unless_local(monkeypatch):
    monkeypatch.delenv("APLKIT_NO_SUCH_KEY", raising=False)
    cfg = NS(kind="llm", llm=LLMJudgeConfig(api_key_env="APLKIT_NO_SUCH_KEY"))  # the oracle section: its llm part
    with pytest.raises(OracleError, match="environment variable APLKIT_NO_SUCH_KEY is not set") as e:
        LLMJudge.from_config(cfg, "imdb")
    assert "\n" not in str(e.value) and str(e.value).startswith("oracle.llm.api_key_env: ")
    cfg.llm.base_url = "http://127.0.0.1:8080/v1"
    assert LLMJudge.from_config(cfg, "tldr").template.name == "summary"


def test_llm_judge_config_defaults_and_one_line_errors_naming_the_field():
    cfg = LLMJudgeConfig()
    assert (cfg.model, cfg.template, cfg.temperature, cfg.max_tokens, cfg.concurrency, cfg.structured) == (
        "gpt-4-1106-preview",
        "auto",
        0.05,
        128,
        4,
        "auto",
    )
    assert (cfg.timeout, cfg.max_retries, cfg.max_invalid_retries, cfg.backoff, cfg.backoff_max) == (60.0, 5, 2, 1.0, 30.0)
    assert cfg.problems() == [] and cfg.validate() is None
    cases = [
        ("concurrency", 0, "oracle.llm.concurrency: must be > 0, got 0"),
        ("max_retries", -1, "oracle.llm.max_retries: must be >= 0, got -1"),
        ("max_invalid_retries", -2, "oracle.llm.max_invalid_retries: must be >= 0, got -2"),
        ("max_tokens", 0, "oracle.llm.max_tokens: must be > 0, got 0"),
        ("timeout", 0.0, "oracle.llm.timeout: must be > 0, got 0.0"),
        ("temperature", -0.1, "oracle.llm.temperature: must be >= 0, got -0.1"),
        ("backoff", float("nan"), "oracle.llm.backoff: expected a finite number, got nan"),
        ("price_out", -1.0, "oracle.llm.price_out: must be >= 0, got -1.0"),
        ("concurrency", 2.5, "oracle.llm.concurrency: expected an integer, got 2.5"),
        ("structured", "yaml", "oracle.llm.structured: unknown 'yaml' (auto, json or text)"),
        ("logprobs", "yes", "oracle.llm.logprobs: expected true/false, got 'yes'"),
        ("model", "", "oracle.llm.model: must be a non-empty string, got ''"),
        ("base_url", "localhost:8080", "oracle.llm.base_url: must be an http(s) URL or null, got 'localhost:8080'"),
    ]
    for field, value, msg in cases:
        bad = dataclasses.replace(cfg, **{field: value})
        assert bad.problems() == [msg]
        with pytest.raises(ConfigError) as e:
            bad.validate()
        assert str(e.value) == msg and isinstance(e.value, ValueError)
    two = LLMJudgeConfig(concurrency=0, structured="xml")
    assert two.problems(prefix="judge") == ["judge.concurrency: must be > 0, got 0", "judge.structured: unknown 'xml' (auto, json or text)"]
    with pytest.raises(ConfigError, match=r"^judge\.concurrency: must be > 0, got 0$"):
        two.validate("judge")


def test_keyword_judge_is_the_config_with_those_fields_replaced():
    kw = dict(base_url="http://127.0.0.1:9/v1", temperature=0.7, max_tokens=64, concurrency=2)
    j = LLMJudge("m", **kw)
    assert j.config == dataclasses.replace(LLMJudgeConfig(model="m", template="sentiment"), **kw)
    from_cfg = LLMJudge(LLMJudgeConfig(model="m", template="sentiment", **kw))
    assert (
        j.identity
        == from_cfg.identity
        == (f"llm|model=m|base_url=http://127.0.0.1:9/v1|template=sentiment@{j.template.digest}|temperature=0.7|max_tokens=64|prompt=json")
    )
    assert LLMJudge(from_cfg.config, temperature=0.05).identity == LLMJudge("m", base_url=kw["base_url"], max_tokens=64).identity
    with pytest.raises(TypeError):
        LLMJudge("m", base_url=kw["base_url"], temprature=0.7)  # a misspelt setting is not silently ignored
    with pytest.raises(OracleError, match=r"oracle\.llm\.structured: unknown 'xml'"):
        LLMJudge("m", base_url=kw["base_url"], structured="xml")


class _Flaky:
    """A transport that fails with HTTP 503 (echoing the key) ``fails`` times, then answers."""

    api_key = FAKE_KEY

    def __init__(self, fails: int):
        self.fails, self.requests = fails, []
        self.chat = NS(completions=NS(create=self._create))

    def _create(self, **kw):
        import openai
        import openai._exceptions as oe

        self.requests.append(kw)
        if len(self.requests) <= self.fails:
            hx = getattr(oe, "httpx2", None) or oe.httpx
            req = hx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
            raise openai.InternalServerError(f"Error code: 503 - key {FAKE_KEY}", response=hx.Response(503, request=req), body=None)
        return NS(choices=[NS(message=NS(content="ok"), logprobs=None)], usage=None)

    def close(self):
        pass


def test_chat_client_retries_with_its_own_count_and_scrubs_the_key():
    schema = {"type": "object", "properties": {"x": {"type": "string"}}}
    flaky = _Flaky(fails=2)
    c = ChatClient("m", base_url="http://127.0.0.1:9/v1", backoff=0.0, max_retries=2, schema=schema, json_hint=" JSON!", transport=flaky)
    msgs = [{"role": "user", "content": "hi"}]
    resp, sent, mode, shape = c.complete(msgs, temperature=0.5, max_tokens=8)
    assert (sent, mode, shape, resp.choices[0].message.content) == (3, "json_schema", Shape(), "ok")
    assert flaky.requests[-1]["messages"] == [{"role": "user", "content": "hi JSON!"}] and msgs[0]["content"] == "hi"
    assert flaky.requests[-1]["response_format"]["json_schema"] == {"name": "response", "strict": True, "schema": schema}
    assert flaky.requests[-1]["logprobs"] is True and flaky.requests[-1]["temperature"] == 0.5
    c = ChatClient("m", base_url="http://127.0.0.1:9/v1", backoff=0.0, max_retries=1, structured="text", label="judge", transport=_Flaky(9))
    with pytest.raises(OracleError) as e:
        c.complete(msgs, temperature=0.5, max_tokens=8)
    assert str(e.value) == "judge m at http://127.0.0.1:9/v1 gave up after 2 request(s): HTTP 503 Error code: 503 - key ***"
    assert FAKE_KEY not in repr(c)
    j = LLMJudge(
        cfg := LLMJudgeConfig(model="m", base_url="http://127.0.0.1:9/v1", template="sentiment"), client=judge_client(cfg, _Flaky(0))
    )
    assert j.client.schema == SCHEMA and FAKE_KEY not in repr(j) + j.identity + repr(j.config)


def test_wilson_interval_by_hand():
    lo, hi = wilson_interval(9, 10)
    assert (lo, hi) == (pytest.approx(0.5958, abs=1e-4), pytest.approx(0.9821, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    lo, hi = wilson_interval(0, 5)
    assert lo == 0.0 and hi == pytest.approx(0.4345, abs=1e-4)


# --------------------------------------------------------------------------- cache key = the prompt really sent (fake server)


def _rejection(msg: str):
    import openai
    import openai._exceptions as oe

    hx = getattr(oe, "httpx2", None) or oe.httpx  # whichever httpx the installed openai is built on
    return openai.BadRequestError(
        msg, response=hx.Response(400, request=hx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")), body=None
    )


class FakeServer:
    """Stands in for the openai client: answers JSON when sent a response_format, "Preferred: A" otherwise.

    ``rejects_json(kw)`` says whether to refuse a request's response_format the way llama.cpp does (HTTP 400);
    ``on_request`` and ``before_answer`` are hooks that let a test order concurrent requests.
    """

    api_key = "sk-no-key-required"

    def __init__(self, rejects_json=lambda kw: False, before_answer=lambda kw: None, on_request=lambda kw: None):
        self.requests: list[dict] = []
        self.rejects_json = rejects_json
        self.before_answer = before_answer
        self.on_request = on_request
        self.chat = NS(completions=NS(create=self._create))
        self._lock = threading.Lock()

    def _create(self, **kw):
        with self._lock:
            self.requests.append(kw)
        self.on_request(kw)
        if "response_format" in kw and self.rejects_json(kw):
            raise _rejection("Error code: 400 - {'error': 'response_format is not supported'}")
        self.before_answer(kw)
        content = '{"comparison": "A is kinder", "preferred": "A"}' if "response_format" in kw else "Comparison: A is kinder.\nPreferred: A"
        return NS(choices=[NS(message=NS(content=content), logprobs=None)], usage=NS(prompt_tokens=100, completion_tokens=10))

    def close(self):
        pass


def fake_judge(structured: str, server: FakeServer | None = None, **kw) -> LLMJudge:
    cfg = LLMJudgeConfig(model="m", base_url="http://127.0.0.1:9/v1", template="sentiment", structured=structured, logprobs=False, **kw)
    return LLMJudge(cfg, client=judge_client(cfg, transport=server or FakeServer()))


def test_identity_names_the_prompt_variant_really_sent(tmp_path):
    as_json, as_text, auto = fake_judge("json"), fake_judge("text"), fake_judge("auto")
    assert as_json.identity != as_text.identity
    assert as_json.identity.endswith("|prompt=json") and as_text.identity.endswith("|prompt=text")
    assert auto.identity == as_json.identity  # auto sends the JSON prompt until the server refuses it
    # a server that refuses JSON output: auto falls back to the plain prompt, and records that
    server = FakeServer(rejects_json=lambda kw: True)
    auto = fake_judge("auto", server)
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        label_pairs(auto, ledger, PAIRS, seed=0)
        rows = ledger.rows()
    assert auto.mode == "text" and auto.identity == as_text.identity
    assert [("response_format" in r) for r in server.requests] == [True, True, False, False, False, False]  # schema, object, then text
    assert len(rows) == 4 and {r["oracle"] for r in rows} == {as_text.identity}
    assert all(r["raw"].startswith("Comparison:") for r in rows)  # plain-prompt answers, stored as such


def test_text_answers_serve_an_auto_judge_but_never_a_json_judge(tmp_path):
    path = tmp_path / "labels.sqlite"
    text_server = FakeServer()
    with Ledger(path) as ledger:
        first = label_pairs(fake_judge("text", text_server), ledger, PAIRS, seed=0)
    assert len(text_server.requests) == 4 and not any("response_format" in r for r in text_server.requests)

    auto_server = FakeServer()  # would accept JSON; the plain-prompt answers already paid for are auto's answers too
    with Ledger(path) as ledger:
        again = label_pairs(fake_judge("auto", auto_server), ledger, PAIRS, seed=0)
        s = ledger.stats()
    assert auto_server.requests == [] and s["calls"] == 0 and s["cache_hits"] == 4
    assert all(lab.cached for lab in again) and [lab.preferred for lab in again] == [lab.preferred for lab in first]

    json_server = FakeServer()  # pinned to the JSON prompt: the text answers are answers to another question
    with Ledger(path) as ledger:
        fresh = label_pairs(fake_judge("json", json_server), ledger, PAIRS, seed=0)
        s = ledger.stats()
        variants = sorted(r["oracle"].rsplit("|", 1)[1] for r in ledger.rows())
    assert len(json_server.requests) == 4 and all("response_format" in r for r in json_server.requests)
    assert s["calls"] == 4 and s["cache_hits"] == 0 and not any(lab.cached for lab in fresh)
    assert variants == ["prompt=json"] * 4 + ["prompt=text"] * 4


def test_answers_stored_before_the_variant_was_recorded_are_kept_where_unambiguous(tmp_path):
    j = fake_judge("auto")
    old = f"llm|model=m|base_url=http://127.0.0.1:9/v1|template=sentiment@{j.template.digest}|temperature=0.05|max_tokens=128|structured="
    c_json, c_text, c_auto = (Comparison("p", f"a {k}", f"b {k}") for k in ("json", "text", "auto"))
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        for c, setting in ((c_json, "json"), (c_text, "text"), (c_auto, "auto")):
            ledger.record(old + setting, c, Verdict("B", raw=setting))
        for structured, served in (("json", {c_json}), ("text", {c_text}), ("auto", {c_json, c_text, c_auto})):
            server = FakeServer()
            answers = ask(fake_judge(structured, server), ledger, [c_json, c_text, c_auto])
            assert {c for c, (_, cached) in zip([c_json, c_text, c_auto], answers, strict=True) if cached} == served, structured
            assert len(server.requests) == 3 - len(served)


def test_each_verdict_is_recorded_under_the_variant_of_its_own_request(tmp_path):
    """A JSON answer that arrives after another thread fell back to the plain prompt is still a JSON answer."""
    probe, slow, refused = (Comparison("p", f"a {k}", f"b {k}") for k in ("probe", "slow", "refused"))
    slow_sent, fell_back = threading.Event(), threading.Event()

    def on_request(kw):
        content = kw["messages"][-1]["content"]
        if "a slow" in content:
            slow_sent.set()  # sent with the JSON prompt: the judge has not fallen back yet
        elif "a refused" in content:
            assert slow_sent.wait(10)  # refuse JSON only once the slow request is on its way

    def rejects_json(kw):
        return "a refused" in kw["messages"][-1]["content"]

    def before_answer(kw):
        content = kw["messages"][-1]["content"]
        if "a refused" in content:
            fell_back.set()  # the judge has moved to the plain prompt by now
        elif "a slow" in content:
            assert fell_back.wait(10)  # answered in JSON, but only after the fall-back

    j = fake_judge("auto", FakeServer(rejects_json, before_answer, on_request), concurrency=2)
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        ask(j, ledger, [probe])  # settles the probe: later requests run concurrently
        ask(j, ledger, [slow, refused])
        got = {(r["a"], r["oracle"].rsplit("|", 1)[1]) for r in ledger.rows()}
    assert j.mode == "text"
    assert got == {("a probe", "prompt=json"), ("a slow", "prompt=json"), ("a refused", "prompt=text")}


# --------------------------------------------------------------------------- against llama.cpp

PAIRS = [
    ("The movie was", " wonderful, moving and beautifully acted.", " boring, ugly and far too long."),
    ("I watched this film and", " hated every minute of it.", " loved every minute of it."),
    ("This is a", " masterpiece that I will watch again.", " waste of two hours."),
    ("The plot", " made no sense at all.", " was clever and full of surprises."),
]


def judge(url: str, **kw) -> LLMJudge:
    opts = dict(base_url=url, template="sentiment", max_tokens=48, concurrency=1, timeout=30, backoff=0.02, max_retries=3)
    return LLMJudge("smollm2", **(opts | kw))


@pytest.mark.server
def test_structured_output_logprobs_and_cache(llama_server, tmp_path):  # noqa: F811
    with FaultProxy(llama_server) as proxy:
        j = judge(proxy.url)
        with Ledger(tmp_path / "labels.sqlite") as ledger:
            labels = label_pairs(j, ledger, PAIRS, seed=0)
            s = ledger.stats()
        # llama-cpp-python rejects json_schema; auto steps down to json_object once, and remembers
        assert j.mode == "json_object"
        formats = [(r["body"].get("response_format") or {}).get("type") for r in proxy.log]
        assert formats == ["json_schema"] + ["json_object"] * 4
        assert all(r["body"]["logprobs"] is True for r in proxy.log)
        assert s["calls"] == 4 and s["invalid"] == 0 and s["tokens_in"] > 4 * 150 and s["tokens_out"] > 0
        for lab, (p, y0, y1) in zip(labels, PAIRS, strict=True):
            v = lab.verdict
            assert v.choice in ("A", "B") and lab.preferred in (0, 1)
            assert v.raw.lstrip().startswith("{") and '"preferred"' in v.raw
            shown = Comparison(p, y0, y1) if lab.shown_order == "01" else Comparison(p, y1, y0)
            assert v.attempts == len(proxy.requests_for(_user_content(j, shown)))
            assert v.p_a is not None and 0.0 <= v.p_a <= 1.0
            if abs(v.p_a - 0.5) > 0.05:  # at T=0.05 the sampled choice is the likelier of the two
                assert (v.p_a > 0.5) == (v.choice == "A")
        n_before = len(proxy.log)
        with Ledger(tmp_path / "labels.sqlite") as ledger:
            again = label_pairs(judge(proxy.url), ledger, PAIRS, seed=0)
            s = ledger.stats()
        assert len(proxy.log) == n_before  # zero requests
        assert s["calls"] == 0 and s["cache_hits"] == 4 and s["total"]["calls"] == 4
        assert [lab.preferred for lab in again] == [lab.preferred for lab in labels] and all(lab.cached for lab in again)


@pytest.mark.server
def test_text_mode_unparsable_answers_are_reasked_then_invalid(llama_server, tmp_path):  # noqa: F811
    # SmolLM2-135M does not follow the "Preferred:" format when free to write: a real source of invalid answers
    with FaultProxy(llama_server) as proxy:
        j = judge(proxy.url, structured="text", max_tokens=16, max_invalid_retries=1, logprobs=False)
        verdicts = j.judge([Comparison(*PAIRS[0])])
    assert all("response_format" not in r["body"] and "logprobs" not in r["body"] for r in proxy.log)
    (v,) = verdicts
    assert v.attempts == len(proxy.log)
    if v.choice is None:
        assert v.attempts == 2 and v.p_a is None and v.tokens_out > 0
    else:  # the model happened to answer in format; then parse_choice found it in the raw text
        assert parse_choice(v.raw)[0] == v.choice


@pytest.mark.server
def test_concurrent_requests_overlap_and_map_back(llama_server):  # noqa: F811
    with FaultProxy(llama_server) as proxy:
        j = judge(proxy.url, concurrency=4)
        comps = [Comparison(p, y0, y1) for p, y0, y1 in PAIRS[:3]]
        got = dict(j.judge_iter(comps))
    assert sorted(got) == [0, 1, 2] and proxy.max_inflight >= 2  # after the one probe, the other two overlap
    keys = [r["key"] for r in proxy.log if r["fault"] is None]
    for i, c in enumerate(comps):  # each verdict came back under the index of the comparison it answers
        assert any(c.a in k and c.b in k for k in keys)
        assert got[i].choice in ("A", "B")


def _user_content(j: LLMJudge, c: Comparison) -> str:
    return j.template.messages(c)[-1]["content"] + (
        '\n\nAnswer with a JSON object {"comparison": "<one sentence>", "preferred": "A" or "B"}.'
    )


@pytest.mark.server
def test_thirty_percent_faults_complete_with_exact_retry_counts(llama_server, tmp_path):  # noqa: F811
    pairs = [(f"Review {i}: the film was", f" great fun, number {i}.", f" a dull mess, number {i}.") for i in range(6)]
    with FaultProxy(llama_server, rate=0.3, seed=1, slow_s=20.0) as proxy:
        j = judge(proxy.url, timeout=10.0, max_retries=8, max_invalid_retries=3)
        with Ledger(tmp_path / "labels.sqlite") as ledger:
            labels = label_pairs(j, ledger, pairs, seed=0)
            rows = ledger.rows()
    injected = proxy.injected
    assert sum(injected.values()) >= 3 and len(injected) >= 3  # the seeded run really injected a mix of faults
    assert len(rows) == 6 and all(r["choice"] in ("A", "B") for r in rows)
    assert all(lab.preferred in (0, 1) for lab in labels)
    for r in rows:
        sent = [x for x in proxy.log if x["key"] == _user_content(j, Comparison(r["prompt"], r["a"], r["b"]))]
        assert r["attempts"] == len(sent)  # every request the proxy saw for this comparison is counted, no more
        *retried, last = sent
        assert last["fault"] is None and last["delivered"] and parse_choice(last["answer"])[0] == r["choice"]
        for x in retried:  # each retry is explained by what happened to the request before it
            explained = (
                x["fault"] is not None  # an injected fault
                or x["body"].get("response_format", {}).get("type") == "json_schema"  # the one rejected json_schema probe
                or not x["delivered"]  # a genuine client timeout on a busy machine
                or parse_choice(x["answer"] or "")[0] is None  # a real unparsable answer, re-asked
            )
            assert explained, x
    forwarded_probes = [x for x in proxy.log if x["fault"] is None and x["body"].get("response_format", {}).get("type") == "json_schema"]
    assert len(forwarded_probes) == 1 and j.mode == "json_object"  # rejected once, remembered
    assert sum(r["attempts"] for r in rows) == len(proxy.log)


@pytest.mark.server
def test_forced_stop_keeps_labels_and_rerun_asks_only_the_rest(llama_server, tmp_path):  # noqa: F811
    pairs = [(f"Review {i}: I thought it was", f" lovely {i}.", f" awful {i}.") for i in range(4)]
    path = tmp_path / "labels.sqlite"
    with FaultProxy(llama_server, fail_after=3) as proxy:  # 1 rejected json_schema probe + 2 answers, then 503s
        j = judge(proxy.url, concurrency=2, max_retries=2)
        with Ledger(path) as ledger, pytest.raises(OracleError, match=r"gave up after \d+ request\(s\): HTTP 503") as e:
            label_pairs(j, ledger, pairs, seed=0)
        assert "\n" not in str(e.value)
        with Ledger(path) as ledger:
            kept = ledger.rows()
        answered = {x["key"] for x in proxy.log if x["fault"] is None and x["delivered"] and parse_choice(x["answer"] or "")[0]}
        assert len(kept) == 2 and {_user_content(j, Comparison(r["prompt"], r["a"], r["b"])) for r in kept} == answered

        proxy.fail_after = None  # the server is back: a rerun (same judge identity) asks only the rest
        proxy.log.clear()
        j = judge(proxy.url, concurrency=2)
        with Ledger(path) as ledger:
            labels = label_pairs(j, ledger, pairs, seed=0)
            assert ledger.stats()["cache_hits"] == 2 and ledger.stats()["calls"] == 2
        asked = {x["key"] for x in proxy.log}
    assert len(asked) == 2 and not asked & answered
    assert sum(lab.cached for lab in labels) == 2 and all(lab.preferred in (0, 1) for lab in labels)


@pytest.mark.server
def test_api_key_never_written_anywhere(llama_server, tmp_path, monkeypatch, capfd, caplog):  # noqa: F811
    monkeypatch.setenv("APLKIT_TEST_KEY", FAKE_KEY)
    caplog.set_level("DEBUG")
    messages = []
    # a hostile server that echoes the Authorization header in its answers and in its error bodies
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        with FaultProxy(llama_server, rate=0.5, faults=("500", "nonsense"), seed=3, echo_auth=True) as proxy:
            j = judge(proxy.url, api_key_env="APLKIT_TEST_KEY", max_retries=6, max_invalid_retries=4)
            messages += [repr(j), j.identity, repr(judge_consistency(j, PAIRS[:2], seed=0, ledger=ledger))]
            assert f"Bearer {FAKE_KEY}" in proxy.auth_seen  # the key really was sent
            assert proxy.injected["nonsense"] > 0 and proxy.injected["500"] > 0
        with FaultProxy(llama_server, fail_after=0, echo_auth=True) as proxy:
            j = judge(proxy.url, api_key_env="APLKIT_TEST_KEY", max_retries=1)
            with pytest.raises(OracleError) as e:
                label_pairs(j, ledger, PAIRS[2:], seed=0)
            messages.append(str(e.value))
        assert len(ledger.rows()) == 4
    out, err = capfd.readouterr()
    blobs = messages + [out, err, caplog.text] + [p.read_bytes().decode("latin-1") for p in Path(tmp_path).rglob("*") if p.is_file()]
    assert all(FAKE_KEY not in b for b in blobs)
    assert "***" in messages[-1] and "Bearer ***" in "".join(blobs)  # the echoed key was scrubbed, not silently lost


@pytest.mark.server
def test_self_consistency_of_a_real_judge(llama_server, tmp_path):  # noqa: F811
    with Ledger(tmp_path / "labels.sqlite") as ledger:
        j = judge(llama_server)
        r = judge_consistency(j, PAIRS[:2], seed=0, ledger=ledger)
        assert ledger.stats()["calls"] == 4
        again = judge_consistency(j, PAIRS[:2], seed=5, ledger=ledger)
        assert ledger.stats()["calls"] == 4  # both orders already in the ledger
        orders = {(row["a"], row["b"]) for row in ledger.rows()}
    assert orders == {(y0, y1) for _, y0, y1 in PAIRS[:2]} | {(y1, y0) for _, y0, y1 in PAIRS[:2]}
    assert r == again
    assert r["pairs"] == 2 and r["n"] + r["invalid"] + r["ties"] == 2
    assert r["agreement"] == r["agree"] / r["n"] and (r["ci_low"], r["ci_high"]) == wilson_interval(r["agree"], r["n"])
