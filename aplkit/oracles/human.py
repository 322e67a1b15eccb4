"""A human oracle for notebooks: queue the questions, answer them in a panel, the loop goes on.

``HumanOracle.judge_iter`` writes every comparison it has no answer for to a queue file in the
run folder. In JupyterLab (a kernel whose front end can answer ``input()``) it then shows a
``LabelPanel`` in the running cell and waits, handling the panel's clicks and keys with
``jupyter_ui_poll`` while the cell is busy, and hands each answer to the loop as it is given.
Elsewhere — ``aplkit run``, papermill, a sweep — nothing could answer, so it raises
``AwaitingHumanLabels``; ``LabelPanel(run_dir)`` in any notebook then shows the queue and writes
each answer to the run's ledger, and re-running the loop finds them there.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from aplkit.oracles.base import Oracle, OracleError
from aplkit.oracles.ledger import Ledger, ledger_key
from aplkit.records import Comparison, Verdict
from aplkit.runfolder import QUEUE, RunFolder, read_jsonl, write_jsonl

QUEUE_FILE = QUEUE
KEYS = {"a": "A", "b": "B", "t": "tie", "s": "skip"}
#: fixed heights, so a long completion scrolls inside its box and the buttons never move
PROMPT_HEIGHT = "5.5em"
TEXT_HEIGHT = "15em"


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


def drop_from_queue(path: str | Path, key: str) -> None:
    """Remove one answered item, re-reading the file so items another writer queued meanwhile stay."""
    write_queue(path, [r for r in read_queue(path) if r["key"] != key])


def find_run_dir(run_dir: str | Path, queue_file: str = QUEUE_FILE) -> Path:
    """The absolute run folder holding ``queue_file``: a relative path is tried from the working
    directory, then from ``aplkit.notebook.project_dir()`` (a kernel starts in the notebook's own
    folder). Nothing is created; a missing queue is a FileNotFoundError naming the absolute paths."""
    from aplkit.notebook import project_dir

    p = Path(run_dir).expanduser()
    tried = [p.resolve()] if p.is_absolute() else list(dict.fromkeys([(Path.cwd() / p).resolve(), (project_dir() / p).resolve()]))
    for d in tried:
        if (d / queue_file).is_file():
            return d
    where = " nor ".join(str(d / queue_file) for d in tried)
    raise FileNotFoundError(
        f"no labelling queue: there is no {where}. Run the loop with oracle.kind=human on that run folder first "
        "(it queues the comparisons), or pass the run folder's absolute path"
    )


def _interactive_kernel() -> bool:
    """True in a Jupyter kernel whose front end lets the user type (JupyterLab); papermill and nbclient send allow_stdin=False."""
    try:
        import jupyter_ui_poll  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    kernel = getattr(get_ipython(), "kernel", None)
    return bool(getattr(kernel, "_allow_stdin", False))


class HumanOracle(Oracle):
    """Queues unanswered comparisons in ``queue_path`` (normally ``<run>/human_queue.jsonl``), then waits
    for them in a panel (``wait``: True, False, or None = only in an interactive Jupyter kernel) or stops the loop."""

    kind = "human"

    def __init__(self, name: str = "human", queue_path: str | Path = QUEUE_FILE, wait: bool | None = None):
        self.name = name
        self.queue_path = Path(queue_path)
        self.wait = wait

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
        if not (_interactive_kernel() if self.wait is None else self.wait):
            raise AwaitingHumanLabels(len(queue), self.queue_path)
        yield from self._wait_in_cell(items)

    def _wait_in_cell(self, items: Sequence[Comparison]) -> Iterator[tuple[int, Verdict]]:
        """Show a panel over these items and yield each answer as it is given (the caller records it
        in the ledger), then drop it from the queue. An interrupted kernel keeps every answer yielded."""
        from IPython.display import display
        from jupyter_ui_poll import ui_events

        index = {ledger_key(self.identity, c): i for i, c in enumerate(items)}
        rows = [r for r in read_queue(self.queue_path) if r["key"] in index]
        given: list[tuple[dict[str, Any], Verdict]] = []
        panel = LabelPanel.over(rows, record=lambda row, v: given.append((row, v)), run_dir=self.queue_path.parent)
        display(panel)
        left = len(rows)
        with ui_events() as poll:
            while left:
                poll(20)
                while given:
                    row, v = given.pop(0)
                    yield index[row["key"]], v  # the loop records it before asking for the next
                    drop_from_queue(self.queue_path, row["key"])
                    left -= 1
                time.sleep(0.05)
        panel.note = f"All {len(rows)} answered; the loop goes on (this panel is finished)."
        panel._refresh()


class LabelPanel:
    """An ipywidgets panel over a run's human queue: progress, prompt, A beside B, buttons A / B / tie / skip.

    Keys a, b, t, s work while the pointer is over the panel (ipyevents; the key never reaches
    JupyterLab, so it inserts no cell). Every answer is recorded in the run's ledger — the file the
    loop reads, as the run folder names it from the run's ``oracle.cache`` — and then removed from
    the queue, so closing or reloading the page loses nothing: run the cell again to go on.
    Skip leaves an item queued for later.
    """

    def __init__(self, run_dir: str | Path, queue_file: str = QUEUE_FILE):
        run = RunFolder(find_run_dir(run_dir, queue_file))  # raises before anything is created
        self.ledger: Ledger | None = Ledger(run.ledger_path())
        ledger = self.ledger
        # an answer recorded just before a crash may still be queued: the ledger wins
        rows = [r for r in read_queue(run / queue_file) if ledger.lookup(r["oracle"], Comparison(r["prompt"], r["a"], r["b"])) is None]
        self._setup(run.path, run / queue_file, rows, self._record_in_ledger)

    @classmethod
    def over(cls, rows: Sequence[dict[str, Any]], record: Callable[[dict[str, Any], Verdict], None], run_dir: Path) -> LabelPanel:
        """A panel over given queue rows that hands each answer to ``record`` (the waiting oracle) instead of a ledger."""
        panel = cls.__new__(cls)
        panel.ledger = None
        panel._setup(run_dir, None, list(rows), record)
        return panel

    def _setup(self, run_dir: Path, queue_path: Path | None, rows: list[dict[str, Any]], record: Callable) -> None:
        self.run_dir = run_dir
        self.queue_path = queue_path
        self.queue = rows
        self._record = record
        self.pos = 0  # index into the queue of the item on show
        self.done = 0
        self.note = ""  # feedback on the last action
        self._w: dict[str, Any] | None = None

    def _record_in_ledger(self, row: dict[str, Any], v: Verdict) -> None:
        assert self.ledger is not None and self.queue_path is not None
        self.ledger.record(row["oracle"], Comparison(row["prompt"], row["a"], row["b"]), v, purpose="human")
        drop_from_queue(self.queue_path, row["key"])

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
        self._record(item, Verdict(choice=choice, raw=f"human: {choice}"))
        del self.queue[self.pos]
        self.done += 1
        if self.pos >= len(self.queue):
            self.pos = 0
        self.note = f"Saved: {'tie' if choice == 'tie' else choice + ' is better'}."
        self._refresh()

    def skip(self) -> None:
        """Show the next item; this one stays queued. Said so when there is no other item to show."""
        if not self.queue:
            self.note = "Nothing to skip: the queue is empty."
        elif len(self.queue) == 1:
            self.note = "Skip: this is the only item left, so it is shown again (it stays queued until answered)."
        else:
            wrapped = self.pos + 1 == len(self.queue)
            self.pos = (self.pos + 1) % len(self.queue)
            self.note = "Skipped; back to the first item still queued." if wrapped else "Skipped; it stays queued for later."
        self._refresh()

    def key(self, k: str) -> None:
        """Keyboard shortcut: a, b, t (tie) or s (skip); anything else is ignored."""
        choice = KEYS.get(k.strip().lower()[-1:] if k.strip() else "")
        if choice == "skip":
            self.skip()
        elif choice is not None:
            self.answer(choice)

    # ------------------------------------------------------------------ widgets
    def _on_key(self, event: dict[str, Any]) -> None:
        if event.get("type") == "keydown" and not (event.get("ctrlKey") or event.get("metaKey") or event.get("altKey")):
            self.key(str(event.get("key", "")))

    @property
    def widget(self) -> Any:
        """The panel (built on first use; needs ipywidgets and ipyevents)."""
        if self._w is None:
            import ipywidgets as w
            from ipyevents import Event

            buttons = {
                "A": w.Button(description="A is better (a)", button_style="info"),
                "B": w.Button(description="B is better (b)", button_style="info"),
                "tie": w.Button(description="Tie (t)"),
                "skip": w.Button(description="Skip (s)"),
            }
            for name, b in buttons.items():
                b.on_click(lambda _b, name=name: self.skip() if name == "skip" else self.answer(name))

            def text_box(height: str) -> Any:
                return w.HTML(layout=w.Layout(height=height, overflow="auto", border="1px solid #ccc", padding="2px 6px", flex="1 1 0"))

            self._w = {
                "status": w.HTML(),
                "progress": w.IntProgress(min=0, layout=w.Layout(width="240px")),
                "prompt": w.HTML(layout=w.Layout(max_height=PROMPT_HEIGHT, overflow="auto")),
                "a": text_box(TEXT_HEIGHT),
                "b": text_box(TEXT_HEIGHT),
                "note": w.HTML(),
                **buttons,
            }
            head = w.HBox([self._w["progress"], self._w["status"]], layout=w.Layout(align_items="center"))
            pair = w.HBox([self._w["a"], self._w["b"]], layout=w.Layout(width="100%", grid_gap="8px"))
            row = w.HBox(list(buttons.values()))
            box = w.VBox([head, self._w["prompt"], pair, row, self._w["note"]], layout=w.Layout(max_width="1100px"))
            box.add_class("aplkit-label-panel")
            events = Event(source=box, watched_events=["keydown"], prevent_default_action=True)
            events.on_dom_event(self._on_key)
            self._w["box"], self._w["events"] = box, events
            self._refresh()
        return self._w["box"]

    def _refresh(self) -> None:
        if self._w is None:
            return
        item = self.current
        hint = " · keys a b t s while the pointer is over this panel" if item is not None else ""
        self._w["status"].value = f"<b>{html.escape(self.status())}</b>{hint}"
        self._w["progress"].max = max(1, self.done + self.remaining)
        self._w["progress"].value = self.done
        for name, label in (("prompt", "Prompt"), ("a", "A"), ("b", "B")):
            text = "" if item is None else html.escape(item[name])
            self._w[name].value = "" if item is None else f"<b>{label}:</b> <span style='white-space: pre-wrap'>{text}</span>"
        for name in ("A", "B", "tie", "skip"):
            self._w[name].disabled = item is None
        self._w["note"].value = html.escape(self.note)

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()


__all__ = ["AwaitingHumanLabels", "HumanOracle", "LabelPanel", "drop_from_queue", "find_run_dir", "read_queue"]
