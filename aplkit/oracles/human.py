"""A human oracle for notebooks: queue the questions, answer them in a panel, re-run the loop.

A Jupyter cell that blocks cannot receive widget clicks, so the oracle never waits:
``HumanOracle.judge_iter`` writes every comparison it has no answer for to a queue
file in the run folder and raises ``AwaitingHumanLabels``. ``LabelPanel(run_dir)``
shows the queue one comparison at a time and writes each answer to the run's ledger
under the oracle's identity the moment it is given. Re-running the loop then finds
every answer in the ledger (``label_pairs`` never asks the oracle for those) and goes on.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.ledger import Ledger, ledger_key
from aplkit.records import Comparison, Verdict
from aplkit.runfolder import QUEUE, RunFolder, read_jsonl, write_jsonl

QUEUE_FILE = QUEUE


class AwaitingHumanLabels(OracleError):
    """Comparisons are waiting in the queue; label them in the panel and run again."""

    def __init__(self, n: int, queue_path: Path):
        self.n = n
        self.queue_path = queue_path
        super().__init__(
            f"{n} comparison(s) await a human label in {queue_path}: open aplkit.oracles.human.LabelPanel('{queue_path.parent}'), "
            "label them, then run again (labels already given are kept)"
        )


def read_queue(path: str | Path) -> list[dict[str, Any]]:
    return list(read_jsonl(path))


def write_queue(path: str | Path, rows: Sequence[dict[str, Any]]) -> None:
    """Replace the queue atomically, so the panel and the loop never see a half-written file."""
    write_jsonl(path, rows)


class HumanOracle(Oracle):
    """Puts unanswered comparisons in ``queue_path`` (normally ``<run>/human_queue.jsonl``) and stops the loop."""

    kind = "human"

    def __init__(self, name: str = "human", queue_path: str | Path = QUEUE_FILE):
        self.name = name
        self.queue_path = Path(queue_path)

    @property
    def identity(self) -> str:
        return f"human|{self.name}"

    def judge(self, items: Sequence[Comparison]) -> list[Verdict]:
        return [v for _, v in sorted(self.judge_iter(items), key=lambda t: t[0])]

    def judge_iter(self, items: Sequence[Comparison]) -> Iterator[tuple[int, Verdict]]:
        if not items:
            return
        queue = read_queue(self.queue_path)
        known = {r["key"] for r in queue}
        for c in items:
            key = ledger_key(self.identity, c)
            if key not in known:
                known.add(key)
                queue.append({"key": key, "oracle": self.identity, "prompt": c.prompt, "a": c.a, "b": c.b})
        self.queue_path.parent.mkdir(parents=True, exist_ok=True)
        write_queue(self.queue_path, queue)
        raise AwaitingHumanLabels(len(queue), self.queue_path)
        yield  # pragma: no cover - makes this a generator, so nothing runs before the caller iterates


class LabelPanel:
    """An ipywidgets panel over a run's human queue: prompt, A, B, buttons A / B / tie / skip, keys a b t s.

    Every answer is recorded in the run's ledger — the file the loop reads, as the run folder
    names it from the run's ``oracle.cache`` — and removed from the queue at once, so closing
    the notebook loses nothing. Skip leaves an item queued for later.
    """

    def __init__(self, run_dir: str | Path, queue_file: str = QUEUE_FILE):
        run = RunFolder(run_dir)
        self.run_dir = run.path
        self.queue_path = run / queue_file
        self.ledger = Ledger(run.ledger_path())
        # an answer recorded just before a crash may still be queued: the ledger wins
        self.queue = [
            r for r in read_queue(self.queue_path) if self.ledger.lookup(r["oracle"], Comparison(r["prompt"], r["a"], r["b"])) is None
        ]
        self.pos = 0  # index into the queue of the item on show
        self.done = 0
        self._w: dict[str, Any] | None = None

    # ------------------------------------------------------------------ logic (headless)
    @property
    def current(self) -> dict[str, Any] | None:
        return self.queue[self.pos] if self.queue else None

    @property
    def remaining(self) -> int:
        return len(self.queue)

    def status(self) -> str:
        if not self.queue:
            return f"Queue empty: {self.done} labelled here. Re-run the loop; it resumes and finds these labels."
        return f"Item {self.pos + 1} of {len(self.queue)} left · {self.done} labelled here"

    def answer(self, choice: str) -> None:
        """Record A, B or tie for the item on show, drop it from the queue, show the next."""
        if choice not in ("A", "B", "tie"):
            raise ValueError(f"choice must be A, B or tie, got {choice!r}")
        item = self.current
        if item is None:
            return
        c = Comparison(item["prompt"], item["a"], item["b"])
        self.ledger.record(item["oracle"], c, Verdict(choice=choice, raw=f"human: {choice}"), purpose="human")
        del self.queue[self.pos]
        write_queue(self.queue_path, self.queue)
        self.done += 1
        if self.pos >= len(self.queue):
            self.pos = 0
        self._refresh()

    def skip(self) -> None:
        if self.queue:
            self.pos = (self.pos + 1) % len(self.queue)
        self._refresh()

    def key(self, k: str) -> None:
        """Keyboard shortcut: a, b, t (tie) or s (skip); anything else is ignored."""
        k = k.strip().lower()[-1:] if k.strip() else ""
        if k in ("a", "b"):
            self.answer(k.upper())
        elif k == "t":
            self.answer("tie")
        elif k == "s":
            self.skip()

    # ------------------------------------------------------------------ widgets
    def _on_a(self, _btn: Any = None) -> None:
        self.answer("A")

    def _on_b(self, _btn: Any = None) -> None:
        self.answer("B")

    def _on_tie(self, _btn: Any = None) -> None:
        self.answer("tie")

    def _on_skip(self, _btn: Any = None) -> None:
        self.skip()

    def _on_key(self, change: dict[str, Any]) -> None:
        value = change.get("new") or ""
        if value and self._w is not None:
            self._w["keys"].value = ""  # re-entrant observe sees "" and does nothing
            self.key(value)

    @property
    def widget(self) -> Any:
        """The panel (built on first use; needs ipywidgets)."""
        if self._w is None:
            import ipywidgets as w

            buttons = {
                "A": w.Button(description="A is better", button_style="info"),
                "B": w.Button(description="B is better", button_style="info"),
                "tie": w.Button(description="Tie"),
                "skip": w.Button(description="Skip"),
            }
            buttons["A"].on_click(self._on_a)
            buttons["B"].on_click(self._on_b)
            buttons["tie"].on_click(self._on_tie)
            buttons["skip"].on_click(self._on_skip)
            keys = w.Text(placeholder="type a / b / t / s here", layout=w.Layout(width="220px"))
            keys.observe(self._on_key, names="value")
            self._w = {"status": w.HTML(), "prompt": w.HTML(), "a": w.HTML(), "b": w.HTML(), "keys": keys, **buttons}
            box = w.HBox([buttons["A"], buttons["B"], buttons["tie"], buttons["skip"], keys])
            self._w["box"] = w.VBox([self._w["status"], self._w["prompt"], self._w["a"], self._w["b"], box])
            self._refresh()
        return self._w["box"]

    def _refresh(self) -> None:
        if self._w is None:
            return
        import html

        item = self.current
        self._w["status"].value = f"<b>{html.escape(self.status())}</b>"
        for name in ("prompt", "a", "b"):
            text = "" if item is None else html.escape(item[name])
            label = {"prompt": "Prompt", "a": "A", "b": "B"}[name]
            self._w[name].value = "" if item is None else f"<p><b>{label}:</b> <span style='white-space: pre-wrap'>{text}</span></p>"
        for name in ("A", "B", "tie", "skip"):
            self._w[name].disabled = item is None

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def close(self) -> None:
        self.ledger.close()


__all__ = ["AwaitingHumanLabels", "HumanOracle", "LabelPanel", "read_queue"]
