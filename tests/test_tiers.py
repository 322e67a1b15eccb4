"""The tier guards (tests/tiers.py) in a pytest run of their own: an unmarked test that starts something expensive
fails, naming the marker; a marked one goes ahead and is in the slow tier; a test's own fake still works."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

INNER = '''
import papermill  # imported while collecting: guarded by patching it in place
import pytest


def test_unmarked_notebook():
    papermill.execute_notebook("in.ipynb", "out.ipynb")


def test_unmarked_ray():
    import ray  # imported by the test itself: guarded as the import ends

    ray.init(num_cpus=1)


def test_unmarked_model():
    from aplkit.models import load_models

    load_models("smollm2-135m")


def test_unmarked_browser():
    BrowserType = pytest.importorskip("playwright.sync_api").BrowserType

    BrowserType.launch(None)  # as p.chromium.launch() in a Playwright session


def test_unmarked_caught_anyway():
    """The refusal is no Exception: code that handles Exception (a sweep's failed run) cannot swallow it."""
    try:
        papermill.execute_notebook("in.ipynb", "out.ipynb")
    except Exception:
        pass


@pytest.fixture(scope="session")
def llama_server():
    raise RuntimeError("the server fixture ran")


def test_unmarked_server(llama_server):
    pass


def test_a_fake_of_its_own(monkeypatch):
    monkeypatch.setattr(papermill, "execute_notebook", lambda *a, **kw: "faked")
    assert papermill.execute_notebook("in.ipynb", "out.ipynb") == "faked"


@pytest.mark.server
def test_marked_server(llama_server):
    pass


@pytest.mark.notebook
@pytest.mark.ray
@pytest.mark.model
def test_marked(request):
    import ray

    import aplkit.models

    guarded = [papermill.execute_notebook, ray.init, aplkit.models.convert_embedded]
    assert [f.__module__ for f in guarded] == ["papermill.execute", "ray._private.worker", "aplkit.models"]
    assert request.node.get_closest_marker("slow")


@pytest.mark.browser
def test_marked_browser():
    BrowserType = pytest.importorskip("playwright.sync_api").BrowserType

    assert BrowserType.launch.__module__ == "playwright.sync_api._generated"
'''


def _run(pytester, monkeypatch, *args: str):
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    pytester.makepyfile(test_inner=INNER)
    return pytester.runpytest_subprocess("-p", "tests.tiers", "-p", "no:cacheprovider", "-W", "ignore", *args)


@pytest.mark.slow  # a pytest session in a subprocess
def test_unmarked_tests_fail_naming_their_marker_and_marked_ones_run(pytester, monkeypatch):
    browser = importlib.util.find_spec("playwright") is not None  # the browser extra
    res = _run(pytester, monkeypatch, "-rA")
    need = "*test_inner.py::test_{} {}: mark it @pytest.mark.{} (the slow tier) or leave that out"
    res.stdout.fnmatch_lines_random(
        [
            need.format("unmarked_notebook", "executes a notebook with papermill", "notebook"),
            need.format("unmarked_ray", "starts Ray", "ray"),
            need.format("unmarked_model", "loads the embedded SmolLM2 model", "model"),
            need.format("unmarked_caught_anyway", "executes a notebook with papermill", "notebook"),
            need.format("unmarked_server", "starts the llama.cpp server", "server"),
            *(
                [need.format("unmarked_browser", "launches a browser", "browser"), "PASSED test_inner.py::test_marked_browser"]
                if browser
                else []
            ),
            "ERROR test_inner.py::test_marked_server - RuntimeError: the server fixture ran",
            "PASSED test_inner.py::test_a_fake_of_its_own",
            "PASSED test_inner.py::test_marked",
        ]
    )
    res.assert_outcomes(failed=4 + browser, errors=2, passed=2 + browser, skipped=2 * (not browser))


def test_the_fast_tier_leaves_out_every_marked_test(pytester):
    pytester.makepyfile(test_inner=INNER)
    rec = pytester.inline_run("-p", "tests.tiers", "-m", "not slow", "--collect-only", "-W", "ignore")
    deselected = [i.name for call in rec.getcalls("pytest_deselected") for i in call.items]
    assert sorted(deselected) == ["test_marked", "test_marked_browser", "test_marked_server"]
    [finish] = rec.getcalls("pytest_collection_finish")
    assert [i.name for i in finish.session.items] == [
        "test_unmarked_notebook",
        "test_unmarked_ray",
        "test_unmarked_model",
        "test_unmarked_browser",
        "test_unmarked_caught_anyway",
        "test_unmarked_server",
        "test_a_fake_of_its_own",
    ]
