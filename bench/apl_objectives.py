"""DPO against a pointwise objective inside the APL loop, at equal label budgets.

The label-efficiency study (``bench/labels.py``) runs Algorithm 1 with DPO. This study runs the same plan —
same preset, ``--set`` overrides, strategies and seeds — with ``training.objective`` switched (conditional
training by default), through ``bench/labels.py``'s own plan, shards, skip-if-recorded and records, into
``bench/results/labels/<config name>-<objective>/``. Its report pairs every run with the labels study's
DPO run of the same strategy and seed, read from that study's committed records (never re-run here), at
every waypoint: objective − DPO in win-rate, KL from θ0 and LM loss (a pointwise objective may buy
win-rate with degenerate text), with t and bootstrap intervals and Holm-adjusted verdicts
(``aplkit.results.compare.paired_against``). Markdown and JSON go to the objective's records folder.

    python -m bench apl-objectives                          # conditional, random + certainty, 9 seeds, imdb-cpu
    OMP_NUM_THREADS=1 python -m bench apl-objectives --shard 0/2 & OMP_NUM_THREADS=1 python -m bench apl-objectives --shard 1/2
    python -m bench apl-objectives --objectives conditional,rwr --seeds 3
    python -m bench apl-objectives --report-only            # the tables from the records alone

Read once: an invocation that runs writes the report only when every planned run of both arms is recorded (the
one that ends first says how many are in), and ``--report-only`` before then is refused in one line unless
``--interim`` marks the tables as not the plan's reading.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from bench import labels
from bench.provenance import machine


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench apl-objectives", description=__doc__.splitlines()[0])
    p.add_argument("--config", default="imdb-cpu", help="the label-efficiency study's preset (bench labels --config)")
    p.add_argument("--objectives", default="conditional", help="registered training objectives other than dpo, comma-separated")
    p.add_argument("--strategies", default="random,certainty", help="any registered scorers, comma-separated")
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE", help="as bench labels --import")
    p.add_argument("--seeds", type=labels.parse_seeds, default=list(range(9)), help="K (seeds 0..K-1), A-B or a,b,c: the labels study's")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="as bench labels --set (both arms)")
    p.add_argument("--out", default="runs/bench-apl-objectives", help="run folders (not committed)")
    p.add_argument(
        "--records-root",
        default=str(labels.RECORDS),
        help="records of objective O go to <root>/<config name>-O; the DPO study's are read from <root>/<config name>",
    )
    p.add_argument("--dpo-records", default=None, help="the DPO study's records (default <records-root>/<config name>)")
    p.add_argument("--report-only", action="store_true", help="only pair the records already there")
    p.add_argument(
        "--interim",
        action="store_true",
        help="with --report-only: pair the records so far before every planned run is in, marked as not the plan's reading",
    )
    p.add_argument(
        "--distinct-cells",
        action="store_true",
        help="Holm over distinct hypotheses: a cell whose per-seed differences are another strategy's at that size (the "
        "first budget: certainty takes random's draw) counted once; a study declares it before its runs",
    )
    p.add_argument("--shard", default="0/1", help="I/N, as bench labels --shard")
    p.add_argument("--commit", action="store_true", help="git-commit each record alone as it lands, as bench labels --commit")
    p.add_argument(
        "--stop-by",
        default=None,
        metavar="TIME",
        help="as bench labels --stop-by (estimates from the objective's own records, else the DPO study's)",
    )
    return p.parse_args(argv)


def check_objectives(spec: str, sets: list[str]) -> list[str]:
    """The objectives to compare with DPO; one line naming the flag otherwise."""
    from aplkit.objectives import OBJECTIVES

    if any(s.split("=", 1)[0].strip() == "training.objective" for s in sets):
        raise SystemExit("--set training.objective: the objectives are --objectives, and the baseline is the DPO study's")
    names = list(dict.fromkeys(o.strip() for o in spec.split(",") if o.strip()))
    if not names:
        raise SystemExit(f"--objectives: expected registered objectives, comma-separated, got {spec!r}")
    for o in names:
        if o == "dpo":
            raise SystemExit("--objectives: dpo is the baseline (the labels study's records), not an objective to compare with it")
        if o not in OBJECTIVES:
            raise SystemExit(f"--objectives: unknown objective {o!r} (registered: {', '.join(sorted(OBJECTIVES))})")
    return names


def plan_configs(args: argparse.Namespace, strategies: list[str], objectives: list[str]) -> tuple[dict, dict[str, dict]]:
    """(the DPO study's configs, per objective its configs), keyed by (strategy, seed), all checked before any run."""
    from aplkit.errors import ConfigError

    try:
        dpo = labels.planned_configs(args, strategies)
        arms = {o: labels.planned_configs(args, strategies, (f"training.objective={o}",)) for o in objectives}
    except ConfigError as e:
        raise SystemExit(str(e)) from None
    base = next(iter(dpo.values())).training.objective
    if base != "dpo":
        raise SystemExit(f"--config: {args.config} trains with training.objective={base}; the baseline must be the DPO study's preset")
    for o, configs in arms.items():
        cfg = next(iter(configs.values()))
        if cfg.training.lora.enabled and o == "conditional":  # PreferenceObjective refuses it, but only after loading the model
            raise SystemExit(
                "training.lora.enabled: conditional training in the APL loop needs full fine-tuning (its control tokens must train)"
            )
    return dpo, arms


def main(argv: list[str] | None = None) -> int:
    args = parse(argv or [])
    strategies = labels.check_strategies(args.strategies, args.imports)
    objectives = check_objectives(args.objectives, args.set)
    dpo, arms = plan_configs(args, strategies, objectives)
    root = Path(args.records_root)
    dpo_records = Path(args.dpo_records) if args.dpo_records else labels.records_dir(root, next(iter(dpo.values())))
    records = {o: labels.records_dir(root, next(iter(c.values()))) for o, c in arms.items()}
    t0 = time.perf_counter()
    failed = False
    if not args.report_only:
        stop_by = labels.parse_stop_by(args.stop_by)
        for o, configs in arms.items():
            labels.check_no_overwrite(records[o], configs)
        labels.pause_on_signal()
        runs, mine = [], set()
        for o, configs in arms.items():  # each arm sharded as a study of its own
            arm = labels.study_runs(configs, Path(args.out), f"{o}/")
            runs += arm
            mine |= labels.shard_labels(arm, args.shard)
        ran = labels.study_grid(
            runs,
            mine,
            Path(args.out),
            lambda r: labels.record_path(records[r.config.training.objective], r.strategy, r.seed),
            labels.recorded,
            labels.keep_record(args.commit),
            name=lambda r: f"{r.config.training.objective} {r.strategy}",
            stop_by=stop_by,
            fallback=dpo_records,
        )
        if ran["stopped"]:
            return 0
        failed = bool(ran["failed"])
    early = not_yet(dpo, dpo_records, arms, records)
    if early and not args.report_only:  # the process that ends first writes no reading of part of the plan
        print(f"no report yet: {early}")
        return 1 if failed else 0
    if early and not args.interim:
        raise SystemExit(f"bench apl-objectives: {early} (--interim pairs the records so far, marked as not the plan's reading)")
    for o, configs in arms.items():
        doc = report(o, records[o], configs, dpo_records, dpo, args.distinct_cells, interim=early)
        doc["wall_seconds_this_invocation"] = round(time.perf_counter() - t0, 1)
        (records[o] / "comparison.md").parent.mkdir(parents=True, exist_ok=True)
        (records[o] / "comparison.md").write_text(doc["markdown"])
        (records[o] / "comparison.json").write_text(json.dumps(doc, indent=2, default=str))
        print(doc["markdown"])
        print(f"results → {records[o] / 'comparison.md'}, {records[o] / 'comparison.json'}")
    return 1 if failed else 0


def not_yet(dpo: dict, dpo_records: Path, arms: dict[str, dict], records: dict[str, Path]) -> str | None:
    """One line when the plan is not to be read yet: a planned run of the DPO arm or of an objective's arm has no
    record (``labels.before_reading`` per arm). None when every one is in."""
    lines = [(f"DPO: {x}" if (x := labels.before_reading(dpo, dpo_records)) else None)]
    lines += [(f"{o}: {x}" if (x := labels.before_reading(c, records[o])) else None) for o, c in arms.items()]
    return "; ".join(x for x in lines if x) or None


def _frame(paths: list[Path], configs: dict):
    """The planned runs' eval rows from their records (materialised into a temporary folder)."""
    from aplkit.results import load_runs
    from bench.archive import materialise

    with tempfile.TemporaryDirectory() as tmp:
        df = load_runs(materialise(paths, tmp))
    if not df.empty:
        df = df[[(s, k) in configs for s, k in zip(df["strategy"], df["seed"], strict=True)]]
    return df


def report(
    objective: str, records: Path, configs: dict, dpo_records: Path, dpo: dict, distinct: bool = False, interim: str | None = None
) -> dict:
    """The objective's recorded runs against the DPO study's, paired by strategy, seed and labels; ``distinct``: an
    identical cell enters the Holm family once (``paired_against``); ``interim`` (``not_yet``'s line): the pairs so
    far, marked as not the plan's reading."""
    from aplkit.results import against_markdown, paired_against

    mine = {
        key: labels.record_path(records, *key) for key, cfg in configs.items() if labels.recorded(labels.record_path(records, *key), cfg)
    }
    base = {
        key: labels.record_path(dpo_records, *key)
        for key, cfg in dpo.items()
        if labels.recorded(labels.record_path(dpo_records, *key), cfg)
    }
    paired = sorted(set(mine) & set(base), key=lambda x: (x[1], x[0]))
    waiting = sorted(set(mine) - set(base), key=lambda x: (x[1], x[0]))
    cfg = next(iter(configs.values()))
    head = (
        f"{objective} against DPO in the APL loop, {cfg.name}, M={cfg.acquisition.acquire_batch}, S={cfg.acquisition.prompt_batch}, "
        f"{cfg.evaluation.test_prompts} test prompts: {len(paired)} paired runs of {len(configs)} planned "
        f"({len(mine)} {objective} runs in {records}, {len(base)} DPO runs in {dpo_records})."
    )
    if waiting:
        head += " No DPO record yet for: " + ", ".join(f"{s} seed {k}" for s, k in waiting) + "."
    if interim:
        head = f"**Interim, not the plan's reading** ({interim}).\n\n" + head
    if distinct:
        head += " Holm over distinct cells: a cell identical to another strategy's at its size is counted once."
    frames = (_frame([mine[p] for p in paired], configs), _frame([base[p] for p in paired], dpo)) if paired else None
    cmp = paired_against(*frames, distinct=distinct) if frames else None
    table = against_markdown(cmp, objective) if cmp is not None and len(cmp) else "no paired runs recorded yet\n"
    return {
        "objective": objective,
        "baseline": "dpo",
        "config": cfg.to_dict(),
        "records": [str(mine[p]) for p in sorted(mine)],
        "dpo_records": [str(base[p]) for p in paired],
        "pairs": len(paired),
        "interim": interim,
        "comparison": json.loads(cmp.to_json(orient="records")) if cmp is not None else [],
        "markdown": head + "\n\n" + table,
        "machine": machine(),
    }


if __name__ == "__main__":
    raise SystemExit(main())
