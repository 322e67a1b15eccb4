"""A study's paired differences by stratum (code version × CPU), Pocock's boundary for several looks, and the
provenance every record carries to tell strata apart.

Expected values are worked out by hand (means, t intervals, Welch's t and Welch's ANOVA from their formulas) or
are published constants (Pocock 1977; Jennison & Turnbull, Table 2.1).
"""

from __future__ import annotations

import math
import subprocess

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from aplkit.results import compare as C
from aplkit.results.load import load_strata
from aplkit.runfolder import CODE, write_jsonl

A, B = "aaa · EPYC (avx512f)", "bbb · Xeon (avx2)"
#: certainty − random at 64 labels per seed: seeds 0–3 in stratum A, 4–7 in B, 8–10 in a third, seed 11 mixed
DIFFS = {0: 0.01, 1: 0.03, 2: -0.02, 3: 0.02, 4: 0.08, 5: 0.06, 6: 0.11, 7: 0.07, 8: -0.05, 9: 0.0, 10: -0.04, 11: 0.5}


def _study(third: bool = True) -> tuple[pd.DataFrame, dict[str, str]]:
    """eval rows (random at 0.6 on every seed) and run → stratum, as ``load_runs`` and ``load_strata`` give them."""
    rows, strata = [], {}
    for k, d in DIFFS.items():
        if k >= 8 and k <= 10 and not third:
            continue
        for s, wr in (("random", 0.6), ("certainty", 0.6 + d)):
            run = f"{s}/seed{k}"
            rows.append({"run": run, "task": "imdb", "strategy": s, "seed": k, "acquired": 64, "win_rate": wr})
            strata[run] = A if k < 4 else B if k < 8 else "ccc · EPYC (avx512f)" if k < 11 else (B if s == "certainty" else A)
    return pd.DataFrame(rows), strata


def _t_ci(x: list[float]) -> tuple[float, float]:
    x = np.array(x)
    h = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return x.mean() - h, x.mean() + h


def test_several_strata_are_refused_unless_pooling_is_asked_for():
    df, strata = _study()
    with pytest.raises(C.StrataError) as e:
        C.check_strata(df, strata)
    msg = str(e.value)
    assert "\n" not in msg and "4 strata" in msg and A in msg and B in msg and f"mixed: {B} vs {A}" in msg and "--pool-strata" in msg
    assert C.check_strata(df, strata, pool=True) == sorted([A, B, "ccc · EPYC (avx512f)", f"mixed: {B} vs {A}"])
    one = {r: A for r in strata}
    assert C.check_strata(df, one) == [A]  # one stratum: nothing to refuse
    assert C.pair_stratum(f"{A} + {B}", f"{A} + {B}") == f"mixed: {A} + {B} vs {A} + {B}"  # a run resumed across strata


def test_each_stratum_estimate_and_welch_t_between_two():
    df, strata = _study(third=False)
    table, tests = C.by_stratum(df, strata)
    t = table.set_index("stratum")
    a, b = [0.01, 0.03, -0.02, 0.02], [0.08, 0.06, 0.11, 0.07]
    assert list(t.index) == [A, B, f"mixed: {B} vs {A}"]  # in order of their first seed
    assert t.loc[A, "seeds"] == "0–3" and t.loc[A, "n"] == 4 and t.loc[A, "mean_diff"] == pytest.approx(0.01)
    assert t.loc[B, "mean_diff"] == pytest.approx(0.08) and t.loc[B, "seeds"] == "4–7"
    assert (t.loc[A, "t_low"], t.loc[A, "t_high"]) == pytest.approx(_t_ci(a))
    assert (t.loc[B, "t_low"], t.loc[B, "t_high"]) == pytest.approx(_t_ci(b))
    mixed = t.loc[f"mixed: {B} vs {A}"]
    assert mixed["n"] == 1 and mixed["mean_diff"] == pytest.approx(0.5) and not mixed["tested"] and math.isnan(mixed["t_low"])
    # Welch's t by hand: var A = 0.00046667, var B = 0.00046667, both n 4
    va, vb = np.var(a, ddof=1), np.var(b, ddof=1)
    se = math.sqrt(va / 4 + vb / 4)
    tt = (0.01 - 0.08) / se
    dof = (va / 4 + vb / 4) ** 2 / ((va / 4) ** 2 / 3 + (vb / 4) ** 2 / 3)
    (r,) = tests.itertuples()
    assert r.test == "Welch t" and r.strata == 2
    assert r.statistic == pytest.approx(tt) and r.df == pytest.approx(dof) and r.p == pytest.approx(2 * stats.t.sf(abs(tt), dof))


def test_welch_anova_for_more_than_two_strata():
    df, strata = _study()
    _, tests = C.by_stratum(df, strata)
    groups = [np.array(g) for g in ([0.01, 0.03, -0.02, 0.02], [0.08, 0.06, 0.11, 0.07], [-0.05, 0.0, -0.04])]
    # Welch (1951): weights n/s², weighted mean, F = A / B with df (k − 1, (k² − 1) / (3 Σ (1 − w/W)² / (n − 1)))
    k = 3
    w = np.array([len(g) / g.var(ddof=1) for g in groups])
    m = np.array([g.mean() for g in groups])
    mw = (w * m).sum() / w.sum()
    lam = sum((1 - wi / w.sum()) ** 2 / (len(g) - 1) for wi, g in zip(w, groups, strict=True))
    f = ((w * (m - mw) ** 2).sum() / (k - 1)) / (1 + 2 * (k - 2) / (k * k - 1) * lam)
    p = stats.f.sf(f, k - 1, (k * k - 1) / (3 * lam))
    (r,) = tests.itertuples()
    assert r.test == "Welch ANOVA F" and r.strata == 3
    assert r.statistic == pytest.approx(f) and r.p == pytest.approx(p)


def test_strata_come_from_every_start_old_rows_included(tmp_path):
    """A row that names package_hash, cpu and isa and an older row (tree, a machine block) of the same clean code and
    CPU are one stratum; a run without code.jsonl is unknown; a run resumed under other code joins both."""
    rows = {
        "random/seed0": [{"commit": "c1", "tree": "t1", "dirty": False, "machine": {"cpu": "EPYC", "isa": "avx512f", "cores": 2}}],
        "random/seed1": [{"commit": "c2", "tree": "t1", "dirty": False, "package_hash": "t1", "cpu": "EPYC", "isa": "avx512f", "cores": 2}],
        "random/seed2": [{"commit": "c3", "tree": "t1", "dirty": True}],
        "random/seed3": [],
        "random/seed4": [{"commit": "c1", "tree": "t1", "dirty": False}, {"package_hash": "t2", "cpu": "Xeon", "isa": "avx2"}],
    }
    for run, code in rows.items():
        (tmp_path / run).mkdir(parents=True)
        (tmp_path / run / "config.yaml").write_text("strategy: random\nseed: 0\n")
        if code:
            write_jsonl(tmp_path / run / CODE, code)
    assert load_strata(tmp_path) == {
        "random/seed0": "t1 · EPYC (avx512f)",
        "random/seed1": "t1 · EPYC (avx512f)",
        "random/seed2": "t1+dirty · unknown CPU",
        "random/seed3": "unknown code · unknown CPU",
        "random/seed4": "t1 · unknown CPU + t2 · Xeon (avx2)",
    }


def test_pocock_constants_for_equally_spaced_looks():
    """Pocock (1977) / Jennison & Turnbull Table 2.1, two-sided α = 0.05."""
    assert C.pocock_constant([30]) == pytest.approx(1.95996, abs=1e-4)
    for k, c in ((2, 2.178), (3, 2.289), (4, 2.361)):
        assert C.pocock_constant(list(range(10, 10 * k + 1, 10))) == pytest.approx(c, abs=1e-3)
    assert C.pocock_constant([2, 3]) == pytest.approx(C.pocock_constant([20, 30]), abs=1e-6)  # only the fractions matter


def test_pocock_constant_at_unequal_looks():
    """Looks at 20 and 30 of 30: corr(Z₁, Z₂) = √(2/3); P(|Z₁| < c, |Z₂| < c) by one-dimensional quadrature is 0.95.
    Looks at 20, 26, 30: the crossing probability of c by simulated partial sums is 0.05."""
    c = C.pocock_constant([20, 30])
    rho = math.sqrt(20 / 30)
    s = math.sqrt(1 - rho * rho)
    inside, _ = integrate.quad(
        lambda z: stats.norm.pdf(z) * (stats.norm.cdf((c - rho * z) / s) - stats.norm.cdf((-c - rho * z) / s)), -c, c
    )
    assert inside == pytest.approx(0.95, abs=2e-5)
    assert 1.96 < c < 2.178  # looks closer together than equally spaced ones cost less

    c3 = C.pocock_constant([20, 26, 30])
    rng = np.random.default_rng(1)
    inc = rng.standard_normal((2_000_000, 3)) * np.sqrt([20, 6, 4])  # sums over seeds 1–20, 21–26, 27–30
    z = np.cumsum(inc, axis=1) / np.sqrt([20, 26, 30])
    crossed = (np.abs(z) > c3).any(axis=1).mean()
    assert crossed == pytest.approx(0.05, abs=6e-4)  # 4 standard errors of the simulation
    assert c3 == pytest.approx(2.1998, abs=5e-4)


def test_looks_table_reads_the_first_seeds_at_each_look():
    d = [0.1, -0.05, 0.2, 0.0, 0.12, 0.03]
    df = pd.DataFrame(
        [
            {"run": f"{s}/seed{k}", "task": "t", "strategy": s, "seed": k, "acquired": 64, "win_rate": 0.5 + (x if s == "c" else 0)}
            for k, x in enumerate(d)
            for s in ("random", "c")
        ]
    )
    looks = C.looks_table(df, [4, 6])
    c = C.pocock_constant([4, 6])
    assert list(looks["look"]) == [4, 6]
    for r, n in zip(looks.itertuples(), (4, 6), strict=True):
        x = np.array(d[:n])
        se = x.std(ddof=1) / math.sqrt(n)
        assert r.mean_diff == pytest.approx(x.mean()) and r.se == pytest.approx(se)
        assert (r.t_low, r.t_high) == pytest.approx(_t_ci(x))
        assert (r.pocock_low, r.pocock_high) == pytest.approx((x.mean() - c * se, x.mean() + c * se))
        assert r.crossed == (abs(x.mean() / se) > c) and r.nominal == pytest.approx(2 * stats.norm.sf(c))
    assert C.looks_table(df, [8]).empty  # a look not reached yet


def test_isa_names_bf16():
    from aplkit.provenance import isa_level

    assert isa_level({"avx", "avx2", "avx512f", "avx512_bf16"}) == "avx512_bf16"
    assert isa_level({"avx", "avx2", "avx512f"}) == "avx512f"
    assert isa_level({"avx", "avx2"}) == "avx2" and isa_level(set()) is None


def test_package_hash_is_the_git_tree_of_the_files_on_disk(tmp_path):
    from aplkit.provenance import package_hash

    git = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, capture_output=True, text=True, check=True).stdout.strip()  # noqa: E731
    git("init", "-q")
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text("x = 1\n")
    (pkg / "sub" / "b.py").write_text("y = 2\n")
    (pkg / "sub.py").write_text("z = 3\n")  # sorts between "sub" the tree and "sub/…": git's order
    (pkg / "run.sh").write_text("#!/bin/sh\n")
    (pkg / "run.sh").chmod(0o755)
    (pkg / "__pycache__").mkdir()
    (tmp_path / ".gitignore").write_text("__pycache__/\n")
    (pkg / "__pycache__" / "a.cpython.pyc").write_bytes(b"\0")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    clean = git("rev-parse", "HEAD:pkg")
    assert package_hash(pkg) == clean
    assert package_hash(pkg, git_files=False) == clean  # an installed copy: every file but __pycache__
    (pkg / "a.py").write_text("x = 2\n")  # an uncommitted edit: HEAD's tree would not see it
    edited = package_hash(pkg)
    git("add", "pkg/a.py")
    assert edited != clean and edited == git("write-tree", "--prefix=pkg/")
    (pkg / "new.py").write_text("")  # a new module, not yet added
    assert package_hash(pkg) != edited


def test_every_start_row_names_commit_package_hash_cpu_and_isa(tmp_path):
    from aplkit.provenance import IMPORTED
    from aplkit.runfolder import RunFolder
    from bench.archive import export_run

    rf = RunFolder(tmp_path).ensure()
    (tmp_path / "config.yaml").write_text("strategy: random\nseed: 0\n")
    rf.note_start()
    (row,) = export_run(tmp_path)["code"]  # what a study's compact record keeps
    assert {"commit", "package_hash", "cpu", "isa", "cores"} <= set(row)
    assert row["package_hash"] == IMPORTED["package_hash"] and len(row["package_hash"]) == 40 and row["cpu"]


def test_the_report_refuses_too_and_writes_strata_md_when_pooling(tmp_path):
    from aplkit.results.report import report
    from tests.synthetic_runs import make_run

    for k in range(4):
        for s, wr in (("random", {16: 0.5, 32: 0.6}), ("certainty", {16: 0.5, 32: 0.6 + 0.02 * k})):
            run = make_run(tmp_path / "runs", s, k, wr)
            write_jsonl(run / CODE, [{"package_hash": "t1" if k < 2 else "t2", "cpu": "EPYC", "isa": "avx512f"}])
    with pytest.raises(C.StrataError):
        report(tmp_path / "runs", tmp_path / "fig")
    assert not (tmp_path / "fig").exists()
    text = report(tmp_path / "runs", tmp_path / "fig", pool_strata=True)["strata.md"].read_text()
    assert "| t1 · EPYC (avx512f) | 0, 1 | 2 | +0.010 | not tested |" in text and "| t2 · EPYC (avx512f) | 2, 3 | 2 | +0.050 |" in text
