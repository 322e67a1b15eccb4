"""bf16 against fp32 compute on a CPU with bf16 instructions: per-phase seconds, and whether the results change.

The same plan twice — one preset, strategies, seeds — once with ``model.dtype: float32`` and once with
``bfloat16`` (autocast over fp32 master weights, ``aplkit.models``), through ``bench/labels.py``'s plan, records
and the one grid driver, into ``bench/results/dtype/<config name>-<dtype>/``. Start one process per dtype at
the same time (``--dtypes float32`` and ``--dtypes bfloat16``, each ``OMP_NUM_THREADS=1``) so both arms run
under the same load. The report pairs every bf16 run with the fp32 run of its strategy and seed at every
waypoint (``aplkit.results.compare.paired_against``: win-rate, soft win-rate, KL from θ0, LM loss), applies the
adoption rule written in docs/results.md before the runs, and sets the arms' per-phase seconds side by side. It
is read once, when every planned pair is recorded: the arm that ends first prints only the count, and
``--report-only`` before then is refused unless ``--interim`` (the tables so far, no decision).

    OMP_NUM_THREADS=1 python -m bench dtype --dtypes float32 --commit & OMP_NUM_THREADS=1 python -m bench dtype --dtypes bfloat16 --commit
    python -m bench dtype --report-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from bench import labels
from bench.provenance import machine

DTYPES = ("float32", "bfloat16")
RECORDS = Path("bench/results/dtype")
#: the adoption rule (docs/results.md, written before the runs): every paired bf16 − fp32 difference's 95 % t
#: interval of these metrics, at every waypoint, inside ±MARGIN, and the mean KL from θ0 at the last waypoint within
#: ±KL_RATIO of fp32's
RULE_METRICS = ("win_rate", "soft_win_rate")
MARGIN = 0.05
KL_RATIO = 0.15
PHASES = ("acquire_s", "label_s", "train_s", "evaluate_s", "seconds")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench dtype", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu")
    p.add_argument("--strategies", default="random")
    p.add_argument(
        "--seeds", type=labels.parse_seeds, default=list(range(100, 124)), help="K, A-B or a,b,c (default 100-123: the plan's 24 seeds)"
    )
    p.add_argument("--dtypes", default=",".join(DTYPES), help="the arms this process runs (float32, bfloat16 or both)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as bench labels --set (both arms)")
    p.add_argument("--out", default="runs/bench-dtype", help="run folders (not committed)")
    p.add_argument("--records-root", default=str(RECORDS))
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--interim", action="store_true", help="with --report-only: read before every planned pair is in, with no decision")
    p.add_argument("--commit", action="store_true", help="git-commit each record alone as it lands")
    p.add_argument("--stop-by", default=None, metavar="TIME", help="as bench labels --stop-by")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE")
    return p.parse_args(argv)


def arm_configs(args: argparse.Namespace, strategies: list[str]) -> dict[str, dict]:
    """Per dtype, the planned configs keyed by (strategy, seed), all checked before any run (one line otherwise)."""
    from aplkit.errors import ConfigError

    if any(s.split("=", 1)[0].strip() == "model.dtype" for s in args.set):
        raise SystemExit("--set model.dtype: the arms are the dtypes, float32 and bfloat16")
    try:
        return {d: labels.planned_configs(args, strategies, (f"model.dtype={d}", "model.device=cpu")) for d in DTYPES}
    except ConfigError as e:
        raise SystemExit(str(e)) from None


def records_of(root: Path, configs: dict, dtype: str) -> Path:
    return Path(root) / f"{next(iter(configs.values())).name}-{dtype}"


def main(argv: list[str] | None = None) -> int:
    args = parse(argv or [])
    strategies = labels.check_strategies(args.strategies, args.imports)
    arms = arm_configs(args, strategies)
    records = {d: records_of(Path(args.records_root), c, d) for d, c in arms.items()}
    wanted = [d.strip() for d in args.dtypes.split(",") if d.strip()]
    if not wanted or any(d not in DTYPES for d in wanted):
        raise SystemExit(f"--dtypes: choose from {', '.join(DTYPES)}, got {args.dtypes!r}")
    t0 = time.perf_counter()
    failed = False
    if not args.report_only:
        stop_by = labels.parse_stop_by(args.stop_by)
        labels.pause_on_signal()
        runs, mine = [], set()
        for d in wanted:
            labels.check_no_overwrite(records[d], arms[d])
            arm = labels.study_runs(arms[d], Path(args.out), f"{d}/")
            runs += arm
            mine |= {r.label for r in arm}
        ran = labels.study_grid(
            runs,
            mine,
            Path(args.out),
            lambda r: labels.record_path(records[r.config.model.dtype], r.strategy, r.seed),
            labels.recorded,
            labels.keep_record(args.commit),
            name=lambda r: f"{r.config.model.dtype} {r.strategy}",
            stop_by=stop_by,
        )
        if ran["stopped"]:
            return 0
        failed = bool(ran["failed"])
    early = before_reading(records, arms)
    if early and not args.report_only:  # the arm that ends first does not print a reading of part of the plan
        print(f"no comparison yet: {early}")
        return 1 if failed else 0
    if early and not args.interim:
        raise SystemExit(f"bench dtype: {early} (--interim reads the pairs so far, with no decision)")
    doc = report(records, arms, interim=early)
    doc["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
    out = Path(args.records_root) / f"{next(iter(arms['float32'].values())).name}-comparison"
    out.mkdir(parents=True, exist_ok=True)
    (out / "comparison.md").write_text(doc["markdown"])
    (out / "comparison.json").write_text(json.dumps(doc, indent=2, default=str))
    print(doc["markdown"])
    print(f"results → {out / 'comparison.md'}")
    return 1 if failed else 0


def recorded_paths(records: Path, configs: dict) -> dict:
    return {
        key: labels.record_path(records, *key) for key, cfg in configs.items() if labels.recorded(labels.record_path(records, *key), cfg)
    }


def before_reading(records: dict[str, Path], arms: dict[str, dict]) -> str | None:
    """One line when some planned pair is not recorded in both arms: the plan is read once, at all of them."""
    mine = {d: recorded_paths(records[d], arms[d]) for d in DTYPES}
    planned = len(arms["float32"])
    pairs = len(set(mine["float32"]) & set(mine["bfloat16"]))
    if pairs == planned:
        return None
    return f"{pairs} of the plan's {planned} pairs are recorded in both arms; the comparison is read once they are"


def phase_seconds(paths: list[Path]) -> dict[str, float]:
    """Mean over runs of each phase's seconds summed over a run's steps."""
    totals = {k: 0.0 for k in PHASES}
    for p in paths:
        steps = json.loads(Path(p).read_text())["steps"]
        for k in PHASES:
            totals[k] += sum(float(s.get(k) or 0.0) for s in steps)
    return {k: v / len(paths) for k, v in totals.items()} if paths else {}


def verdict(cmp, last: int) -> tuple[bool, list[str]]:
    """The adoption rule on ``paired_against``'s table (bf16 − fp32): (adopt, the reasons it fails)."""
    why = []
    for r in cmp.itertuples():
        if r.metric in RULE_METRICS and not (-MARGIN <= r.t_low and r.t_high <= MARGIN):
            why.append(f"{r.metric} at {r.acquired} labels: [{r.t_low:+.3f}, {r.t_high:+.3f}] not inside ±{MARGIN}")
    return not why, why


def kl_ratio(bf16, fp32, last: int) -> float:
    a = bf16[bf16["acquired"] == last]["kl"].astype(float).mean()
    b = fp32[fp32["acquired"] == last]["kl"].astype(float).mean()
    return a / b - 1.0


def report(records: dict[str, Path], arms: dict[str, dict], interim: str | None = None) -> dict:
    """The arms paired by strategy and seed, the adoption rule applied, the per-phase seconds side by side;
    ``interim`` (``before_reading``'s line): the tables so far, marked, with no decision."""
    from aplkit.results import against_markdown, paired_against
    from bench.apl_objectives import _frame

    mine = {d: recorded_paths(records[d], arms[d]) for d in DTYPES}
    paired = sorted(set(mine["float32"]) & set(mine["bfloat16"]), key=lambda x: (x[1], x[0]))
    cfg = next(iter(arms["float32"].values()))
    head = (
        f"bf16 against fp32 compute, {cfg.name}, {len(paired)} paired runs of {len(arms['float32'])} planned "
        f"(fp32 records: {len(mine['float32'])}, bf16: {len(mine['bfloat16'])})."
    )
    doc: dict = {"config": cfg.to_dict(), "pairs": len(paired), "machine": machine()}
    if not paired:
        doc["markdown"] = head + "\n\nno paired runs recorded yet\n"
        return doc
    fp32 = _frame([mine["float32"][p] for p in paired], arms["float32"])
    bf16 = _frame([mine["bfloat16"][p] for p in paired], arms["bfloat16"])
    metrics = ("win_rate", "soft_win_rate", "kl", "lm_loss")
    cmp = paired_against(bf16, fp32, metrics=metrics)
    last = int(max(cfg.waypoints()))
    adopt, why = verdict(cmp, last)
    ratio = kl_ratio(bf16, fp32, last)
    if abs(ratio) >= KL_RATIO:
        adopt = False
        why.append(f"mean KL from θ0 at {last} labels differs by {ratio:+.1%} (rule: under ±{KL_RATIO:.0%})")
    secs = {d: phase_seconds([mine[d][p] for p in paired]) for d in DTYPES}
    lines = ["| phase | fp32 s (mean per run) | bf16 s | fp32 ÷ bf16 |", "|---|---:|---:|---:|"]
    for k in PHASES:
        a, b = secs["float32"][k], secs["bfloat16"][k]
        lines.append(f"| {k.removesuffix('_s')} | {a:.0f} | {b:.0f} | {a / b:.2f}× |" if b else f"| {k} | {a:.0f} | {b:.0f} | n/a |")
    decision = (
        f"**No decision: interim, not the plan's reading** ({interim})"
        if interim
        else f"**{'Adopt bf16' if adopt else 'Keep fp32'}**" + ("" if adopt else ": " + "; ".join(why))
    )
    rule = (
        f"**Rule** (written before the runs): adopt bf16 if every bf16 − fp32 95 % t interval of {', '.join(RULE_METRICS)} at every "
        f"waypoint lies inside ±{MARGIN} and the mean KL from θ0 at {last} labels is within ±{KL_RATIO:.0%} of fp32's. "
        f"Mean KL ratio − 1 at {last}: {ratio:+.1%}. {decision}."
    )
    doc.update(
        comparison=json.loads(cmp.to_json(orient="records")),
        kl_ratio=ratio,
        adopt=None if interim else adopt,
        interim=interim,
        reasons=why,
        seconds=secs,
        markdown="\n\n".join([head, against_markdown(cmp, "bf16", "fp32"), rule, "\n".join(lines)]) + "\n",
    )
    return doc


if __name__ == "__main__":
    raise SystemExit(main())
