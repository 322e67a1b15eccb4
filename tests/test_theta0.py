"""θ0's test-set values are computed once per key and shared, only for the embedded model."""

from __future__ import annotations

from aplkit import theta0
from aplkit.models import EMBEDDED, TINY


def test_same_parts_computed_once_other_parts_or_models_computed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path))
    calls = []

    def compute(v):
        def f():
            calls.append(v)
            return v

        return f

    parts = {"what": "baseline", "texts": "abc", "seed": 7}
    assert theta0.shared(EMBEDDED, parts, compute(["y1", "y2"])) == ["y1", "y2"]
    assert theta0.shared(EMBEDDED, parts, compute(["other"])) == ["y1", "y2"]  # a hit: what the first run computed
    assert theta0.shared(EMBEDDED, {**parts, "seed": 8}, compute(["s8"])) == ["s8"]
    assert theta0.shared(TINY, parts, compute(["tiny"])) == ["tiny"]  # not shared: a non-embedded model can change
    assert theta0.shared(TINY, parts, compute(["tiny2"])) == ["tiny2"]
    assert calls == [["y1", "y2"], ["s8"], ["tiny"], ["tiny2"]]


def test_a_torn_file_is_computed_again(tmp_path, monkeypatch):
    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path))
    parts = {"what": "lm_loss", "texts": "t"}
    path = theta0.cache_path(theta0.key(spec=EMBEDDED, **parts))
    path.parent.mkdir(parents=True)
    path.write_text('{"val')
    assert theta0.shared(EMBEDDED, parts, lambda: 4.25) == 4.25
    assert theta0.shared(EMBEDDED, parts, lambda: 0.0) == 4.25


def test_a_new_sampler_misses_the_cache(tmp_path, monkeypatch):
    """Completions drawn by an older sampler are not served as this one's (the draw changed with inverse-CDF sampling)."""
    import aplkit.generation

    monkeypatch.setenv("APLKIT_CACHE", str(tmp_path))
    parts = {"what": "baseline", "seed": 1}
    assert theta0.shared(EMBEDDED, parts, lambda: ["old"]) == ["old"]
    monkeypatch.setattr(aplkit.generation, "SAMPLER", "another/1")
    assert theta0.shared(EMBEDDED, parts, lambda: ["new"]) == ["new"]
