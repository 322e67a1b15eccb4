"""The two test tiers: ``make test-fast`` runs ``-m "not slow"``, ``make test`` runs everything.

A test that starts something expensive says so with a marker (pyproject.toml lists them), and each of
those markers puts it in the slow tier. Outside its marker the expensive thing refuses to start, in
either tier, so a test that does it unmarked fails at once instead of slowing the fast tier down:

- ``model``: ``aplkit.models.convert_embedded``, which every load of the embedded SmolLM2 goes through;
- ``notebook``: ``papermill.execute_notebook``;
- ``ray``: ``ray.init``;
- ``browser``: Playwright's ``BrowserType.launch`` (Chromium);
- ``server``: the ``llama_server`` fixture, refused before it starts the llama.cpp server.

Plain ``slow`` marks the rest of the slow tier (a CLI subprocess that trains, building the wheel).
Libraries not imported yet are guarded the moment a test imports them, so guarding costs no import.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Callable, Iterator
from types import ModuleType

import pytest

# marker: (module, attribute, what a test does when it calls it)
GUARDED = {
    "model": ("aplkit.models", "convert_embedded", "loads the embedded SmolLM2 model"),
    "notebook": ("papermill", "execute_notebook", "executes a notebook with papermill"),
    "ray": ("ray", "init", "starts Ray"),
    "browser": ("playwright.sync_api", "BrowserType.launch", "launches a browser"),
}
# marker: (fixture, what a test does when it asks for it)
GUARDED_FIXTURES = {"server": ("llama_server", "starts the llama.cpp server")}
TIER_MARKERS = (*GUARDED, *GUARDED_FIXTURES)


def refusal(nodeid: str, what: str, marker: str) -> str:
    return f"{nodeid} {what}: mark it @pytest.mark.{marker} (the slow tier) or leave that out"


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Each tier marker implies ``slow``, before ``-m`` deselects."""
    for item in items:
        if any(item.get_closest_marker(m) for m in TIER_MARKERS) and not item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    for marker, (fixture, what) in GUARDED_FIXTURES.items():
        if fixture in getattr(item, "fixturenames", ()) and not item.get_closest_marker(marker):
            pytest.fail(refusal(item.nodeid, what, marker), pytrace=False)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Iterator[None]:
    """The guards stand from the item's fixture set-up to its teardown."""
    with guarded(item.nodeid, {m.name for m in item.iter_markers()}):
        return (yield)


@functools.cache
def installed(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


@contextlib.contextmanager
def guarded(nodeid: str, markers: set[str]) -> Iterator[None]:
    """Each guarded call outside ``markers`` fails the test ``nodeid``, naming the marker it needs; undone on exit."""
    mp = pytest.MonkeyPatch()
    waiting: list[_OnImport] = []
    try:
        for marker, (module, attr, what) in GUARDED.items():
            if marker in markers:
                continue
            patch = _patcher(mp, attr, refusal(nodeid, what, marker))
            if module in sys.modules:
                patch(sys.modules[module])
            elif installed(module.partition(".")[0]):
                waiting.append(_OnImport(module, patch))
                sys.meta_path.insert(0, waiting[-1])
        yield
    finally:
        for finder in waiting:
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
        mp.undo()


def _patcher(mp: pytest.MonkeyPatch, attr: str, message: str) -> Callable[[ModuleType], None]:
    """Replaces ``attr`` (dotted below the module) with a call that fails the test with ``message``."""

    def refuse(*args: object, **kwargs: object) -> None:
        pytest.fail(message, pytrace=False)  # an OutcomeException: no `except Exception` in the code under test swallows it

    def patch(module: ModuleType) -> None:
        *owner, name = attr.split(".")
        target: object = module
        for part in owner:
            target = getattr(target, part)
        mp.setattr(target, name, refuse)

    return patch


class _OnImport(importlib.abc.MetaPathFinder):
    """Runs ``then(module)`` right after ``name`` is first imported (a test importing a guarded library itself)."""

    def __init__(self, name: str, then: Callable[[ModuleType], None]) -> None:
        self.name, self.then = name, then

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            load, then = spec.loader.exec_module, self.then

            def exec_module(module: ModuleType) -> None:
                load(module)
                then(module)

            spec.loader.exec_module = exec_module
        return spec
