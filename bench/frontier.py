"""The frontier study: does an acquisition rule move the best win-rate reachable at each KL from θ0 for a number of labels?

A study is a plan file (YAML), committed before its runs: the question, the preset and overrides, the strategies
(random among them, the baseline), the seeds, the label budgets evaluated after each epoch, the epochs, the T = 1
samples per test prompt that measure the KL, the KL grid, the primary endpoint (a metric at a budget), the Holm
family (and the families of strategies, each adjusted on its own: a primary comparison alone, a secondary family
at fewer seeds, ``seeds_of``) and the one look (the seed count at which it is read). ``python -m bench frontier --plan PLAN`` runs every
strategy × seed through the sweep's driver (``aplkit.sweep.run_grid``, as ``bench labels`` does) and keeps each
finished run's compact record under ``bench/results/frontier/<plan name>/`` (``--commit``: committed alone as it
lands); a recorded run is not run again. It runs only from a checkout at the plan's commit (a worktree made for the
study, ``git worktree add ../<name> <commit>``): anything else stops in one line. ``--stop-by`` (start no run expected to end
after it) and ``kill -USR1`` (pause after the current step) work as in ``bench labels``. ``--report-only`` rebuilds the
report from the records alone; it refuses to pool records of several code versions or CPUs unless
``--pool-strata``, and to read the plan before its look unless ``--interim`` (then marked as not the plan's reading).

    python -m bench frontier --plan bench/plans/NAME.yaml                 # from the pinned checkout
    python -m bench frontier --plan PLAN --shard 0/2 --commit & python -m bench frontier --plan PLAN --shard 1/2 --commit
    python -m bench frontier --plan PLAN --report-only [--pool-strata] [--interim]
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from aplkit.errors import ConfigError
from bench.provenance import ROOT, machine

RECORDS = Path("bench/results/frontier")
#: the key cells a Holm family may be declared by (``frontier.frontier_comparison``)
FAMILY_KEYS = ("task", "acquired", "strategy", "metric")


@dataclass
class Endpoint:
    """The primary endpoint: the mean over the KL grid of the frontier difference in ``metric`` at ``budget`` labels."""

    metric: str = "win_rate"
    budget: int = 0


@dataclass
class FrontierPlan:
    """A frontier study's plan (``load_plan``), every field declared before the runs."""

    name: str = ""
    commit: str = ""  # the commit the runs are made from
    question: str = ""
    config: str = "imdb-cpu"
    overrides: list[str] = field(default_factory=list)  # --set KEY=VALUE, before the plan's own settings
    strategies: list[str] = field(default_factory=lambda: ["random", "certainty"])
    seeds: str = ""  # K (0..K−1), A-B or a,b,c
    budgets: list[int] = field(default_factory=list)  # labels at which every epoch is evaluated (the waypoints)
    epochs: int = 4
    kl_samples: int = 1  # T = 1 samples per test prompt: the frontier's x-axis
    kl_grid: list[float] = field(default_factory=list)
    primary: Endpoint = field(default_factory=Endpoint)
    family: list[str] = field(default_factory=lambda: ["task", "acquired", "metric"])  # Holm over the rows sharing these
    # the strategies compared with random as separate Holm families (a primary alone, a secondary family of several);
    # [] is one family of every strategy
    families: list[list[str]] = field(default_factory=list)
    # strategy → its seeds (K, A-B or a,b,c: among ``seeds``) where it runs at fewer than the plan (a secondary family)
    seeds_of: dict[str, Any] = field(default_factory=dict)
    look: int = 0  # the one seed count at which the study is read (0: every planned seed)

    @property
    def seed_list(self) -> list[int]:
        from bench.labels import parse_seeds

        return parse_seeds(self.seeds)

    def seeds_for_strategy(self, strategy: str) -> list[int]:
        """The seeds ``strategy`` runs at: ``seeds_of``'s where it names the strategy, else the plan's."""
        from bench.labels import parse_seeds

        return parse_seeds(str(self.seeds_of[strategy])) if strategy in self.seeds_of else self.seed_list

    def groups(self) -> dict[str, str]:
        """Each strategy compared with random → the Holm family it is read in (``families``; one family when empty)."""
        others = [s for s in self.strategies if s != "random"]
        if not self.families:
            return dict.fromkeys(others, "all")
        return {s: ", ".join(f) for f in self.families for s in f}

    @property
    def reading(self) -> int:
        return self.look or len(self.seed_list)

    def settings(self) -> list[str]:
        """What the plan sets on its preset, after ``overrides``: the budgets as waypoints with per-epoch points."""
        b = ",".join(map(str, self.budgets))
        return [
            *self.overrides,
            f"name={self.name}",
            f"acquisition.budget={max(self.budgets)}",
            f"training.epochs={self.epochs}",
            f"evaluation.waypoints=[{b}]",
            f"evaluation.epoch_points=[{b}]",
            f"evaluation.kl_samples={self.kl_samples}",
        ]

    def problems(self) -> list[str]:
        """Every mistake of the plan, one line each naming the key."""
        from aplkit.results.frontier import FRONTIER_METRICS

        out = []
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", self.name):
            out.append(f"name: a folder name of letters, digits, '.', '_' or '-', got {self.name!r}")
        if not re.fullmatch(r"[0-9a-f]{7,40}", self.commit):
            out.append(f"commit: the commit the runs are made from (7–40 hex digits), got {self.commit!r}")
        if "random" not in self.strategies or len(self.strategies) < 2:
            out.append(f"strategies: random (the baseline) and at least one other, got {self.strategies}")
        try:
            seeds = self.seed_list
        except argparse.ArgumentTypeError as e:
            out.append(f"seeds: {e}")
            seeds = []
        if not self.budgets or sorted(set(self.budgets)) != self.budgets:
            out.append(f"budgets: increasing label counts, got {self.budgets}")
        if self.epochs < 2:
            out.append(f"epochs: at least 2 (one point per epoch), got {self.epochs}")
        if self.kl_samples < 1:
            out.append(f"kl_samples: at least 1 (the frontier's x-axis is the policy's KL at T = 1), got {self.kl_samples}")
        grid = self.kl_grid
        if len(grid) < 2 or any(b <= a for a, b in zip(grid, grid[1:], strict=False)) or (grid and grid[0] < 0):
            out.append(f"kl_grid: at least two increasing KL values >= 0, got {grid}")
        if self.primary.metric not in FRONTIER_METRICS:
            out.append(f"primary.metric: one of {', '.join(FRONTIER_METRICS)}, got {self.primary.metric!r}")
        if self.budgets and self.primary.budget not in self.budgets:
            out.append(f"primary.budget: one of the budgets {self.budgets}, got {self.primary.budget}")
        if not set(self.family) <= set(FAMILY_KEYS):
            out.append(f"family: key cells among {', '.join(FAMILY_KEYS)}, got {self.family}")
        others = [x for x in self.strategies if x != "random"]
        named = [x for f in self.families for x in f]
        if self.families and (sorted(named) != sorted(others) or any(not f for f in self.families)):
            out.append(f"families: each strategy but random in exactly one non-empty family, got {self.families} for {others}")
        if not isinstance(self.seeds_of, dict):
            out.append(f"seeds_of: a mapping of strategy to its seeds, got {self.seeds_of!r}")
        else:
            for strategy, spec in self.seeds_of.items():
                try:
                    own = self.seeds_for_strategy(strategy)
                except argparse.ArgumentTypeError as e:
                    out.append(f"seeds_of.{strategy}: {e}")
                    continue
                if strategy not in others:
                    out.append(f"seeds_of.{strategy}: a strategy of the plan other than random (random runs every seed), got {strategy!r}")
                elif seeds and (not set(own) <= set(seeds) or len(own) < 2):
                    out.append(f"seeds_of.{strategy}: at least 2 of the plan's seeds ({self.seeds}), got {spec!r}")
        if seeds and not 2 <= self.reading <= len(seeds):
            out.append(f"look: the one seed count the study is read at, 2..{len(seeds)}, got {self.look}")
        return out


def load_plan(path: str | Path) -> FrontierPlan:
    """A plan file, parsed with the config's parser (``aplkit.config.read_config``) and checked (``problems``): one
    ``ConfigError`` line naming the file and the key."""
    from aplkit.config import read_config

    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"{p}: no such plan file")
    try:
        plan = read_config(p, cls=FrontierPlan)
    except ConfigError as e:
        raise ConfigError(f"{p}: {e}") from None
    found = plan.problems()
    if found:
        raise ConfigError(f"{p}: {found[0]}")
    return plan


# --------------------------------------------------------------------------- a pilot's reading

#: the pilot's rule 1: the study's grid as fractions of the smallest KL every pilot frontier reaches
PILOT_GRID = (0.2, 0.4, 0.6, 0.8)
#: the pilot's rule 2: the primary difference's 95 % half-width wanted, and the seed counts allowed
PILOT_HALF_WIDTH, PILOT_SEEDS = 0.03, (9, 30)
#: the SD the powered study measured for certainty − random at 64 labels (fixed labels), stated beside rule 2's n
POWERED_SD = 0.079


def seeds_for(sd: float, half_width: float = PILOT_HALF_WIDTH, seeds: tuple[int, int] = PILOT_SEEDS) -> int:
    """The smallest n in ``seeds`` whose 95 % paired-t half-width t₀.₉₇₅,ₙ₋₁ · sd / √n is at most ``half_width``,
    else the largest n allowed."""
    from scipy import stats

    lo, hi = seeds
    return next((n for n in range(lo, hi + 1) if stats.t.ppf(0.975, n - 1) * sd / n**0.5 <= half_width), hi)


def half_width(sd: float, n: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(0.975, n - 1) * sd / n**0.5)


def pilot_reading(points, plan: FrontierPlan) -> dict[str, Any]:
    """The frontier pilot's rules 1 and 2 (docs/results.md, "The frontier: pilot") on its records' points: hi, the
    smallest over the pilot's runs of the largest KL on the primary budget's frontier; the study's grid, ``PILOT_GRID``
    × hi rounded down to 0.01 nats; the SD over seeds of the primary difference (each non-random strategy's mean
    frontier height over that grid minus random's, paired by seed); and the seeds it asks for (``seeds_for``)."""
    import math

    import pandas as pd

    from aplkit.results import frontier as F

    p = plan.primary
    reach = F.run_frontiers(points, [0.0], p.metric)
    reach = reach[reach["acquired"] == p.budget]
    hi = float(reach["reach"].min())
    grid = [math.floor(f * hi * 100 + 1e-9) / 100 for f in PILOT_GRID]
    fr = F.run_frontiers(points, grid, p.metric)
    fr = fr[fr["acquired"] == p.budget].set_index(["strategy", "seed"])["height"]
    out: dict[str, Any] = {
        "hi": hi,
        "grid": grid,
        "reach": {f"{s} seed {k}": float(r) for s, k, r in zip(reach["strategy"], reach["seed"], reach["reach"], strict=True)},
    }
    for strategy in (s for s in plan.strategies if s != "random"):
        seeds = sorted(set(fr.loc[strategy].index) & set(fr.loc["random"].index))
        diff = [float(fr.loc[(strategy, k)] - fr.loc[("random", k)]) for k in seeds]
        sd = float(pd.Series(diff).std(ddof=1)) if len(diff) > 1 else math.nan
        n = seeds_for(sd) if sd == sd else PILOT_SEEDS[1]
        out[strategy] = {
            "differences": diff,
            "sd": sd,
            "seeds": n,
            "half_width": half_width(sd, n) if sd == sd else math.nan,
            "half_width_at_powered_sd": half_width(POWERED_SD, n),
            # descriptive, no rule reads it: what the running max alone adds to the difference under one shared frontier
            "null_bias": dict(zip(("mean", "se"), F.null_bias(points, grid, p.budget, strategy, metric_field=p.metric), strict=True)),
        }
    return out


#: the pilot's rules 3 and 4: the study's seeds start here; the secondary family, at the first nine of them
STUDY_FIRST_SEED, SECONDARY, SECONDARY_SEEDS = 400, ["entropy+certainty", "bald", "d-optimal"], 9


def study_plan(reading: dict[str, Any], pilot: FrontierPlan, commit: str) -> dict[str, Any]:
    """The frontier study's plan as the pilot's rules make it from ``reading`` (``pilot_reading``), nothing chosen by
    hand: rule 1's grid, rule 2's seed count (from ``STUDY_FIRST_SEED``), rule 3's budgets, epochs and T = 1 samples
    (the pilot's own), rule 4's families (the primary comparison alone; the secondary three at the first nine
    seeds) and one look. ``commit``: the code the study runs from."""
    primary = [s for s in pilot.strategies if s != "random"]
    n = max(reading[s]["seeds"] for s in primary)
    first = STUDY_FIRST_SEED
    secondary = f"{first}-{first + SECONDARY_SEEDS - 1}"
    return {
        "name": "frontier-study",
        "commit": commit,
        "question": "does an acquisition rule raise the win-rate frontier over random's at equal KL from θ0, at 64 labels?",
        "config": pilot.config,
        "overrides": list(pilot.overrides),
        "strategies": ["random", *primary, *SECONDARY],
        "seeds": f"{first}-{first + n - 1}",
        "seeds_of": dict.fromkeys(SECONDARY, secondary),
        "budgets": list(pilot.budgets),
        "epochs": pilot.epochs,
        "kl_samples": pilot.kl_samples,
        "kl_grid": list(reading["grid"]),
        "primary": {"metric": pilot.primary.metric, "budget": pilot.primary.budget},
        "family": list(pilot.family),
        "families": [primary, list(SECONDARY)],
        "look": n,
    }


# --------------------------------------------------------------------------- pinned code


def _git(root: Path, *args: str) -> str | None:
    from aplkit.provenance import run_git

    r = run_git(root, *args)
    return r.stdout.strip() if r is not None and r.returncode == 0 else None


def pinned(commit: str, records: Path, root: Path = ROOT, plan: Path | None = None) -> str | None:
    """Why the checkout at ``root`` is not the plan's code (None: it is). It is when HEAD is ``commit``, or a
    descendant whose only changes since are the study's own records (``--commit`` adds them there) and the plan
    file itself (committed after the code it names), and no tracked file outside the records differs from HEAD."""
    head, want = _git(root, "rev-parse", "HEAD"), _git(root, "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}")
    hint = f"run it from a checkout at the plan's commit (git worktree add ../study {commit[:12]})"
    if head is None:
        return f"{root} is not a git checkout: {hint}"
    if want is None:
        return f"the plan's commit {commit} is not in this repository: {hint}"
    rel = records.resolve().relative_to(root.resolve()).as_posix() if records.resolve().is_relative_to(root.resolve()) else None
    outside = lambda paths: [p for p in paths if p and not (rel and (p == rel or p.startswith(rel + "/")))]  # noqa: E731
    own = plan.resolve().relative_to(root.resolve()).as_posix() if plan and plan.resolve().is_relative_to(root.resolve()) else None
    if head != want:
        ahead = _git(root, "merge-base", "--is-ancestor", want, head) is not None
        changed = [p for p in outside((_git(root, "diff", "--name-only", want, head) or "").splitlines()) if p != own]
        if not ahead or changed:
            return f"this checkout is at {head[:12]}, the plan runs from {want[:12]}: {hint}"
    dirty = outside((_git(root, "diff", "--name-only", "HEAD") or "").splitlines())
    if dirty:
        return f"this checkout differs from its commit ({', '.join(dirty[:3])}): the study runs from the plan's code unchanged"
    return None


def committed(path: Path) -> str | None:
    """Why the plan file is not committed as it is (None: it is): a plan is committed before its runs."""
    where = path.resolve().parent
    if _git(where, "ls-files", "--error-unmatch", path.name) is None:
        return f"{path} is not committed: commit the plan before its runs"
    if _git(where, "diff", "--quiet", "HEAD", "--", path.name) is None:
        return f"{path} differs from its commit: commit the plan before its runs (a change is an amendment, with its reason)"
    return None


# --------------------------------------------------------------------------- the command


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench frontier", description=__doc__.splitlines()[0])
    p.add_argument("--plan", required=True, help="the plan file (YAML, committed before its runs)")
    p.add_argument("--out", default=None, help="run folders (not committed; default runs/bench-frontier/<plan name>)")
    p.add_argument("--records", default=None, help="compact records, committed (default bench/results/frontier/<plan name>)")
    p.add_argument("--shard", default="0/1", help="I/N: every N-th planned run from the I-th")
    p.add_argument("--commit", action="store_true", help="git-commit each record alone as it lands")
    p.add_argument("--stop-by", default=None, metavar="TIME", help="as bench labels --stop-by (estimates from the study's own records)")
    p.add_argument("--report-only", action="store_true", help="only the report, from the records already there")
    p.add_argument("--pool-strata", action="store_true", help="pool records of several code versions or CPUs (refused otherwise)")
    p.add_argument("--interim", action="store_true", help="read before the plan's look, marked as not the plan's reading")
    p.add_argument("--pilot-reading", action="store_true", help="a pilot's rules: the study's KL grid and seed count from its records")
    p.add_argument(
        "--beta-check", action="store_true", help="a pilot's β check: the runs under <records>/beta-*/ against the preset's frontier"
    )
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help="a module that registers scorers")
    return p.parse_args(argv)


def planned_configs(plan: FrontierPlan) -> dict[tuple[str, int], Any]:
    """(strategy, seed) → the config of that run, seed-major (a partial study is balanced across strategies)."""
    from aplkit.checks import load_config
    from bench.labels import plan as order

    return {
        (s, k): load_config(plan.config, plan.settings(), strategy=s, seed=k)
        for s, k in order(plan.strategies, plan.seed_list)
        if k in plan.seeds_for_strategy(s)
    }


def main(argv: list[str] | None = None) -> int:
    from bench.labels import (
        check_no_overwrite,
        check_strategies,
        keep_record,
        parse_stop_by,
        pause_on_signal,
        record_path,
        recorded,
        shard_labels,
        study_grid,
        study_runs,
    )

    args = parse(argv or [])
    try:
        plan = load_plan(args.plan)
        check_strategies(",".join(plan.strategies), args.imports)
        configs = planned_configs(plan)
    except ConfigError as e:
        raise SystemExit(f"bench frontier: {e}") from None
    records = Path(args.records) if args.records else RECORDS / plan.name
    t0 = time.perf_counter()
    failed = False
    if not args.report_only:
        stop_by = parse_stop_by(args.stop_by)
        why = committed(Path(args.plan)) or pinned(plan.commit, records, plan=Path(args.plan))
        if why:
            raise SystemExit(f"bench frontier: {why}")
        check_no_overwrite(records, configs)
        pause_on_signal()
        out = Path(args.out or f"runs/bench-frontier/{plan.name}")
        runs = study_runs(configs, out)
        ran = study_grid(
            runs,
            shard_labels(runs, args.shard),
            out,
            lambda r: record_path(records, r.strategy, r.seed),
            recorded,
            keep_record(args.commit),
            stop_by=stop_by,
        )
        failed = bool(ran["failed"])
    if args.pilot_reading:
        return read_pilot(plan, records, configs)
    if args.beta_check:
        return beta_check(plan, records, configs)
    try:
        summary = report(plan, records, configs, args.pool_strata, args.interim)
    except BeforeLook as e:
        if args.report_only:
            raise SystemExit(f"bench frontier: {e}") from None
        print(f"no report yet: {e}")
        return 1 if failed else 0
    summary["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    (records / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(summary["markdown"])
    print(f"results → {records / 'summary.json'}")
    return 1 if failed else 0


class BeforeLook(Exception):
    """The records hold fewer paired seeds than the plan's look: the plan is not read yet."""


def read_pilot(plan: FrontierPlan, records: Path, configs: dict) -> int:
    """``--pilot-reading``: ``pilot_reading`` on every planned run recorded, printed and written to
    ``<records>/pilot-reading.json``; one line when a planned run is not recorded yet."""
    from aplkit.results import frontier as F
    from bench.archive import materialise
    from bench.labels import record_path, recorded

    missing = [f"{s} seed {k}" for (s, k), cfg in configs.items() if not recorded(record_path(records, s, k), cfg)]
    if missing:
        raise SystemExit(f"bench frontier: the pilot is read once every planned run is recorded; not yet: {', '.join(missing)}")
    with tempfile.TemporaryDirectory() as tmp:
        root = materialise([record_path(records, s, k) for s, k in configs], tmp)
        out = pilot_reading(F.frontier_points(root), plan)
    out["machine"] = machine()
    (records / "pilot-reading.json").write_text(json.dumps(out, indent=2) + "\n")
    print(f"hi = {out['hi']:.3f} nats; the study's KL grid: {out['grid']}")
    for s in (x for x in plan.strategies if x != "random"):
        r = out[s]
        print(
            f"{s} − random: SD {r['sd']:.4f} over {len(r['differences'])} seeds → {r['seeds']} seeds (half-width {r['half_width']:.3f}; "
            f"{r['half_width_at_powered_sd']:.3f} at the powered study's SD {POWERED_SD}); the running max alone under one "
            f"shared frontier: {r['null_bias']['mean']:+.4f} ± {r['null_bias']['se']:.4f} (independent redraws: a bound)"
        )
    study = ROOT / "bench" / "plans" / "frontier-study.yaml"
    if study.exists():
        print(f"{study.relative_to(ROOT)} exists: left as it is (a change to a plan is an amendment, with its reason)")
        return 0
    head = "# The frontier study's plan, made by the pilot's rules from its reading (bench/frontier.py, study_plan); commit it before its runs.\n"
    study.write_text(
        head + yaml.safe_dump(study_plan(out, plan, _git(ROOT, "rev-parse", "--short", "HEAD") or ""), sort_keys=False, allow_unicode=True)
    )
    print(
        f"the study's plan by the pilot's rules → {study.relative_to(ROOT)} (its commit: this checkout's HEAD; commit the plan before its runs)"
    )
    return 0


def beta_check(plan: FrontierPlan, records: Path, configs: dict, band: float = 0.03) -> int:
    """``--beta-check``, the pilot's rule 5: each run recorded under ``<records>/beta-<β>/`` against the frontier of the
    plan's run of the same strategy and seed (the preset's β) at the primary budget, point by point
    (``frontier.against_frontier``: on it within ± ``band``, the binomial SE at 256 test prompts; above; below;
    beyond its reach). Writes ``beta-check.json`` and ``figures/beta.{md,png}``; decides nothing in the study."""
    import pandas as pd

    from aplkit.metrics import metric
    from aplkit.results import frontier as F
    from aplkit.results.plots import plot_frontier, save
    from aplkit.results.tables import against_frontier_markdown
    from bench.archive import materialise, read_record
    from bench.labels import record_path, recorded

    found = sorted((d.name.removeprefix("beta-"), p) for d in records.glob("beta-*") if d.is_dir() for p in d.glob("*/seed*.json"))
    if not found:
        raise SystemExit(f"bench frontier: no run under {records}/beta-*/ yet (the β check's runs: docs/results.md)")
    budget, rows, parts = plan.primary.budget, [], []
    with tempfile.TemporaryDirectory() as tmp:
        for beta, path in found:
            cfg = read_record(path)["config"]
            strategy, seed = str(cfg["strategy"]), int(cfg["seed"])
            if (strategy, seed) not in configs:
                raise SystemExit(
                    f"bench frontier: {path}: {strategy} seed {seed} is not a run of the plan, so it has no frontier to be read against"
                )
            ref_path = record_path(records, strategy, seed)
            if not recorded(ref_path, configs[(strategy, seed)]):
                raise SystemExit(f"bench frontier: the β check reads {ref_path}, not recorded yet")
            preset = f"{configs[(strategy, seed)].training.beta:g}"
            ref = F.frontier_points(materialise([ref_path], Path(tmp) / "ref" / beta))
            pts = F.frontier_points(materialise([path], Path(tmp) / beta))
            ref, pts = ref[ref["acquired"] == budget], pts[pts["acquired"] == budget]
            got = F.against_frontier(pts, ref, plan.primary.metric, band=band)
            rows += [{"beta": float(beta), "reference_beta": float(preset), **r} for r in got.to_dict("records")]
            parts += [ref.assign(strategy=f"β {preset} (preset)"), pts.assign(strategy=f"β {beta}")]
    table = pd.DataFrame(rows)
    pts = pd.concat(parts, ignore_index=True).drop_duplicates(subset=["strategy", "run", "acquired", "epoch"])
    kl = F.kl_axis(pts)
    counts = "; ".join(
        f"β {b:g}: " + ", ".join(f"{n} {w}" for w, n in g["reading"].value_counts().items()) for b, g in table.groupby("beta")
    )
    md = "\n".join(
        [
            f"# The β check: {plan.name}, {budget} labels",
            "",
            f"Each point of a run made with another β against the frontier of the same strategy and seed at the preset's β "
            f"(the best {metric(plan.primary.metric).short} reachable up to each KL, linear between its points, θ0's among them): on it "
            f"within ± {band:g}, above, below, or beyond its reach (not read). Readings: {counts}.",
            "",
            against_frontier_markdown(table).rstrip("\n"),
        ]
    )
    figures = records / "figures"
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "beta.md").write_text(md + "\n", encoding="utf-8")
    save(
        plot_frontier(
            F.mean_frontiers(pts, plan.primary.metric, kl),
            F.waypoint_means(pts, plan.primary.metric, kl),
            kl,
            plan.primary.metric,
            legend="β",
        ),
        figures,
        "beta",
    )
    (records / "beta-check.json").write_text(
        json.dumps({"band": band, "points": json.loads(table.to_json(orient="records")), "machine": machine()}, indent=2) + "\n"
    )
    print(md)
    return 0


def report(plan: FrontierPlan, records: Path, configs: dict, pool_strata: bool = False, interim: bool = False) -> dict:
    """The plan's reading from its records alone (materialised into a temporary folder), written to ``records``
    (summary.json, figures/frontier.md, figures/frontier.png): one line, and nothing written, when the records span
    several strata without ``pool_strata`` or hold fewer paired seeds than the look without ``interim``."""
    from aplkit.results.compare import StrataError
    from bench.archive import materialise
    from bench.labels import record_path, recorded

    paths = [record_path(records, s, k) for (s, k), cfg in configs.items() if recorded(record_path(records, s, k), cfg)]
    if not paths:
        raise BeforeLook(f"no finished run of the plan is recorded in {records} yet")
    with tempfile.TemporaryDirectory() as tmp:
        root = materialise(paths, tmp)
        try:
            summary = summarise(plan, root, records / "figures", configs, pool_strata, interim)
        except StrataError as e:
            raise SystemExit(f"bench frontier: {records}: {e}") from None
    return {**summary, "records": [str(x) for x in paths]}


def summarise(plan: FrontierPlan, root: Path, figures: Path, configs: dict, pool_strata: bool, interim: bool) -> dict:
    """The study's tables and figure (module docstring); every number from ``aplkit.results``."""
    from aplkit import results as R
    from aplkit.metrics import metric
    from aplkit.results import frontier as F
    from aplkit.results.load import DISPLAY
    from aplkit.results.plots import plot_frontier, save

    df = R.load_runs(root)
    df = df[[(s, k) in configs for s, k in zip(df["strategy"], df["seed"], strict=True)]]
    strata = R.load_strata(root)
    present = R.check_strata(df, strata, pool_strata)
    have = set(zip(df["strategy"], df["seed"], strict=True))
    done = sorted({k for _, k in configs} - {k for s, k in configs if (s, k) not in have})  # every run planned at the seed
    if len(done) < plan.reading and not interim:
        raise BeforeLook(
            f"{len(done)} of the plan's {plan.reading} seeds have every strategy recorded; the plan is read once, "
            f"at {plan.reading} (--interim shows the tables so far, marked as not the plan's reading)"
        )
    pts = F.frontier_points(root, set(df["run"]))
    kl, grid, p = F.kl_axis(pts), plan.kl_grid, plan.primary
    groups = plan.groups()
    cmp = F.frontier_comparison(pts, grid, family=tuple(plan.family), budgets=plan.budgets, kl=kl, groups=groups)
    primary = cmp[(cmp["metric"] == p.metric) & (cmp["acquired"] == p.budget)]
    per_point = F.frontier_comparison(
        pts, grid, metrics=(p.metric,), family=tuple(plan.family), budgets=[p.budget], per_point=True, kl=kl, groups=groups
    )
    saving = F.label_saving(pts, grid, p.budget, p.metric, kl)
    heights = F.run_frontiers(pts, grid, p.metric, kl)
    # descriptive, read by no rule: what the running max alone adds to each primary difference under one shared
    # frontier (F.null_bias; binomial redraws, so only for a metric counted per test prompt)
    bias = {}
    if metric(p.metric).own_se == "binomial":
        for s in dict.fromkeys(primary["strategy"]):
            bias[s] = dict(zip(("mean", "se"), F.null_bias(pts, grid, p.budget, s, metric_field=p.metric, kl=kl), strict=True))
    bias_md = (
        [
            "What the running max alone adds under one shared frontier (descriptive; independent binomial redraws at "
            "each run's own KL and test-prompt count, so an upper bound): "
            + "; ".join(f"{DISPLAY.get(s, s)} {b['mean']:+.4f} ± {b['se']:.4f}" for s, b in bias.items())
            + "."
        ]
        if bias
        else []
    )
    strata_md = []
    if len(present) > 1:
        table, tests = R.by_stratum(heights, strata, p.budget, metric="height")
        strata_md = [
            f"Frontier height difference at {p.budget} labels in each stratum (code version · CPU), before pooling:",
            R.strata_markdown(table, tests),
        ]
    status = (
        f"Interim: {len(done)} of the plan's {plan.reading} seeds — not the plan's reading."
        if len(done) < plan.reading
        else f"The plan's reading at {plan.reading} seeds ({len(done)} recorded)."
    )
    if kl != "kl_t1":
        status += f" The records hold no KL at T = 1: the x-axis is the {metric(kl).label}."
    md = "\n\n".join(
        [
            f"# {plan.name}: {plan.question}",
            status,
            f"Primary endpoint: {metric(p.metric).label} frontier, strategy − random averaged over KL {grid[0]:g}–{grid[-1]:g} at {p.budget} labels:",
            R.frontier_markdown(primary, kl),
            *bias_md,
            *strata_md,
            "Every metric and budget (Holm within the declared family: "
            + ", ".join(plan.family)
            + ("; and within each family of strategies: " + " | ".join(", ".join(f) for f in plan.families) if plan.families else "")
            + "):",
            R.frontier_markdown(cmp, kl),
            f"At each KL of the grid ({metric(p.metric).label}, {p.budget} labels):",
            R.frontier_markdown(per_point, kl),
            f"Labels random needs at equal KL, {p.budget} labels:",
            R.label_saving_markdown(saving, kl),
        ]
    )
    figures.mkdir(parents=True, exist_ok=True)
    (figures / "frontier.md").write_text(md + "\n", encoding="utf-8")
    save(plot_frontier(F.mean_frontiers(pts, p.metric, kl), F.waypoint_means(pts, p.metric, kl), kl, p.metric), figures, "frontier")
    as_records = lambda t: json.loads(t.to_json(orient="records"))  # noqa: E731
    return {
        "plan": {k: v for k, v in vars(plan).items() if k != "primary"} | {"primary": vars(p)},
        "reading": {"seeds": done, "look": plan.reading, "interim": len(done) < plan.reading},
        "kl_axis": kl,
        "strata": present,
        "primary": as_records(primary),
        "null_bias": bias,
        "comparison": as_records(cmp),
        "per_point": as_records(per_point),
        "label_saving": as_records(saving),
        "markdown": md,
        "machine": machine(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
