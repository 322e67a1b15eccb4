"""The labels a run paid for, as a preference data set the rest of the ecosystem reads.

``export_preferences`` turns the acquired pairs of a run folder, or of every run under a sweep folder, into
the conventional layout — ``prompt``, ``chosen``, ``rejected`` as text — plus where each pair came from and
what the oracle said: ``datasets.load_dataset("parquet" | "json", data_files=...)`` loads it and TRL's
``DPOTrainer`` trains on it as it is. Ties and invalid answers are not preferences: they are left out and
counted. The rows are read by ``aplkit.results.load_acquired``, the same reader as the report's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pandas as pd

from aplkit.results.load import load_acquired

Format = Literal["parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("parquet", "jsonl")
#: the columns of an export, in order: TRL's three, then the pair's provenance and the oracle's answer
COLUMNS = (
    "prompt",
    "chosen",
    "rejected",
    "run",  # the run folder, relative to the folder exported
    "strategy",
    "seed",
    "step",  # acquisition step t (1-based)
    "index",  # position in the step's batch of M
    "prompt_id",
    "score",  # the acquisition score that ranked the pair
    "reward_chosen",  # implicit rewards r̂ = β(log πθ_t − log πθ0) when the pair was acquired
    "reward_rejected",
    "oracle",  # oracle.kind of the run
    "choice",  # the oracle's answer in display terms (A | B)
    "shown_order",  # "01": A was y0; "10": A was y1
    "oracle_p_chosen",  # the oracle's own P(chosen ≻ rejected), where it gives one
    "oracle_score_chosen",  # a scoring oracle's pointwise scores
    "oracle_score_rejected",
    "flipped",  # simulated label noise (oracle.flip_prob / sample_bt) changed the oracle's verdict
    "judgement",  # the oracle's raw answer
)


@dataclass
class Export:
    """What ``export_preferences`` wrote: the file, the pairs in it and the answers left out."""

    path: Path
    pairs: int
    ties: int
    invalid: int
    runs: int

    def line(self) -> str:
        return (
            f"wrote {self.pairs} preference pairs from {self.runs} run(s) to {self.path} "
            f"(left out: {self.ties} ties, {self.invalid} invalid answers)"
        )


def preference_table(path: str | Path) -> tuple[pd.DataFrame, int, int]:
    """(the preference pairs, ties, invalid answers) of a run folder or a folder of run folders."""
    acq = load_acquired(path)
    if acq.empty:
        raise FileNotFoundError(f"no labelled pairs under {path} (acquired.jsonl of a run folder)")
    preferred = pd.to_numeric(acq["preferred"], errors="coerce")
    ties = int((acq["choice"] == "tie").sum())
    invalid = int((preferred.isna() & (acq["choice"] != "tie")).sum())
    rows = acq[preferred.notna()].reset_index(drop=True)
    y1 = pd.to_numeric(rows["preferred"]).astype(int).eq(1)

    def pick(if_y1: str, if_y0: str) -> pd.Series:
        return rows[if_y1].where(y1, rows[if_y0])

    p_y1 = pd.to_numeric(rows["oracle_p_y1"], errors="coerce")
    table = pd.DataFrame(
        {
            "prompt": rows["prompt"],
            "chosen": pick("y1", "y0"),
            "rejected": pick("y0", "y1"),
            "run": rows["run"],
            "strategy": rows["strategy"],
            "seed": rows["seed"].astype(int),
            "step": rows["step"].astype(int),
            "index": rows["index"].astype(int),
            "prompt_id": rows["prompt_id"].astype(str),
            "score": pd.to_numeric(rows["score"], errors="coerce"),
            "reward_chosen": pd.to_numeric(pick("reward1", "reward0"), errors="coerce"),
            "reward_rejected": pd.to_numeric(pick("reward0", "reward1"), errors="coerce"),
            "oracle": rows["oracle"],
            "choice": rows["choice"],
            "shown_order": rows["shown_order"],
            "oracle_p_chosen": p_y1.where(y1, 1.0 - p_y1),
            "oracle_score_chosen": pd.to_numeric(pick("oracle_score1", "oracle_score0"), errors="coerce"),
            "oracle_score_rejected": pd.to_numeric(pick("oracle_score0", "oracle_score1"), errors="coerce"),
            "flipped": rows["flipped"].astype(bool),
            "judgement": rows["raw"].fillna("").astype(str),
        },
        columns=list(COLUMNS),
    )
    return table, ties, invalid


def default_out(path: str | Path, fmt: str = "parquet") -> Path:
    """``preferences.parquet`` (or ``.jsonl``) inside the folder exported."""
    return Path(path) / f"preferences.{fmt}"


def export_preferences(path: str | Path, out: str | Path | None = None, fmt: Format = "parquet") -> Export:
    """Write the labelled pairs of a run (or of every run under a sweep folder) as a preference data set.

    ``fmt`` is ``parquet`` or ``jsonl`` (one JSON object a line); ``out`` defaults to ``preferences.FMT`` in ``path``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format: unknown '{fmt}' (choose from {', '.join(FORMATS)})")
    table, ties, invalid = preference_table(path)
    dest = Path(out) if out is not None else default_out(path, fmt)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    if fmt == "parquet":
        table.to_parquet(tmp, index=False)
    else:
        table.to_json(tmp, orient="records", lines=True, force_ascii=False)
    tmp.replace(dest)
    return Export(dest, len(table), ties, invalid, int(table["run"].nunique()))


__all__ = ["COLUMNS", "FORMATS", "Export", "default_out", "export_preferences", "preference_table"]
