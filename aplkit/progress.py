"""What a sweep shows while its notebooks run: each run's step, phase and time left, and the kernels' stderr.

A notebook under papermill prints nothing here until it ends (15–25 minutes for the demo's runs), so
the local executor watches the run folders instead: every few seconds it reads each running run's
``phase.json`` (what the loop is doing now, ``RunFolder.note_phase``) and ``steps.jsonl`` (the finished
steps and their seconds) and prints a line when the step or the phase changes, with the time left
estimated from the finished steps of this attempt's run.

A kernel's own stderr (ipykernel's log, before any cell runs) reaches this terminal through a pipe,
line by line, less ipykernel's warning that the kernel "is running over TCP without encryption": true of
every kernel jupyter_client starts on this machine (its sockets are on 127.0.0.1), said at each start,
and no concern of a sweep's reader.
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from aplkit.records import StepRow
from aplkit.runfolder import PHASE, RunFolder

if TYPE_CHECKING:
    from aplkit.sweep import Run

#: the start of ipykernel's warning about its unencrypted TCP sockets (ipykernel.kernelapp), one log line
KERNEL_TCP_WARNING = "Kernel is running over TCP without encryption."


@dataclass
class Progress:
    """One run folder's state: setting up, or ``phase`` of ``step`` of ``steps`` with ``done`` finished."""

    phase: str
    step: int | None
    done: int
    steps: int
    left_s: float | None  # estimated seconds to the end; None before this attempt has finished a step

    def line(self, label: str) -> str:
        if self.step is None:
            return f"  {label}: {self.phase} (models, data, θ0's test-set values)"
        if self.left_s is None:
            left = "time left known after a step"
        else:
            left = "under a minute left" if self.left_s < 60 else f"about {duration(self.left_s)} left"
        return f"  {label}: step {self.step}/{self.steps} {self.phase} ({self.done} done, {left})"


def duration(seconds: float) -> str:
    """A time left as a reader wants it in a progress line: 7 min, 1 h 05 min (at least 1 min)."""
    minutes = max(1, round(seconds / 60))
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def read_progress(folder: str | Path, steps: int, since: float, now: float | None = None) -> Progress | None:
    """What the run in ``folder`` (of ``steps`` steps) is doing, if it said so after ``since`` (epoch seconds).

    None when there is nothing new to say: a ``phase.json`` older than ``since`` (left by an earlier
    attempt), or a step already in ``steps.jsonl`` (committed; the next step's note follows). The time left is
    the mean seconds of the finished steps times the steps left, less the current step's age.
    """
    rf = RunFolder(folder)
    try:
        note = rf.read_json(PHASE)
    except (json.JSONDecodeError, OSError):  # replaced as we read: the next look sees it
        return None
    # ``since`` in phase.json is rounded to the millisecond: a note written in the same millisecond as
    # ``since`` may read up to half a millisecond earlier, and is still this attempt's
    if not note or note.get("since", 0) < since - 1e-3:
        return None
    now = time.time() if now is None else now
    rows = rf.read(StepRow)
    done = max((r.step for r in rows), default=0)
    if note.get("step") is not None and done >= note["step"]:
        return None
    timed = [r.seconds for r in rows if r.seconds]  # a step restored from its checkpoint has no seconds
    left = None
    if timed and note.get("step") is not None:
        age = now - (note.get("step_since") or now)
        left = max(0.0, sum(timed) / len(timed) * (steps - done) - age)
    return Progress(note["phase"], note.get("step"), done, steps, left)


class ProgressWatcher:
    """Prints a line whenever a running run's step or phase changes; its thread looks every ``every`` seconds.

    ``begin(run)`` / ``end(run)`` bracket one attempt at a run (a sweep ``Run``: label, out, steps); ``poll``
    is one look at every run, for the thread or a test.
    """

    def __init__(self, every: float = 5.0, write: Callable[[str], Any] | None = None, clock: Callable[[], float] = time.time):
        self.every, self.clock = every, clock
        self.write = write or (lambda line: print(line, flush=True))
        self.runs: dict[str, tuple[Run, float, tuple[Any, ...] | None]] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread: threading.Thread | None = None

    def begin(self, run: Run) -> None:
        with self.lock:
            self.runs[run.label] = (run, self.clock(), None)

    def end(self, run: Run) -> None:
        with self.lock:
            self.runs.pop(run.label, None)

    def poll(self) -> None:
        with self.lock:
            for label, (run, since, shown) in list(self.runs.items()):
                p = read_progress(run.out, run.steps, since, self.clock())
                if p is not None and (p.phase, p.step) != shown:
                    self.runs[label] = (run, since, (p.phase, p.step))
                    self.write(p.line(label))

    def _loop(self) -> None:
        while not self.stop.wait(self.every):
            self.poll()

    def __enter__(self) -> ProgressWatcher:
        self.stop.clear()
        self.thread = threading.Thread(target=self._loop, name="aplkit-progress", daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join()
            self.thread = None


def forward_stderr(stream: IO[bytes], out: Callable[[], IO[str]] = lambda: sys.stderr) -> None:
    """Copy a kernel's stderr to ours line by line, less ipykernel's TCP warning, until the kernel closes it."""
    with stream:
        for raw in iter(stream.readline, b""):
            line = raw.decode(errors="replace")
            if KERNEL_TCP_WARNING not in line:
                target = out()
                target.write(line)
                target.flush()


@functools.cache
def quiet_kernel_manager() -> type:
    """jupyter_client's ``AsyncKernelManager`` whose local kernels' stderr goes through ``forward_stderr``
    (papermill's ``kernel_manager_class``)."""
    from jupyter_client import AsyncKernelManager
    from jupyter_client.provisioning import LocalProvisioner

    class QuietKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd: list[str], **kw: Any) -> None:
            local = isinstance(self.provisioner, LocalProvisioner)
            if local:  # only a local process has a stderr to read
                kw["stderr"] = subprocess.PIPE
            await super()._async_launch_kernel(kernel_cmd, **kw)
            if local:
                pipe = self.provisioner.process.stderr
                threading.Thread(target=forward_stderr, args=(pipe,), name="aplkit-kernel-stderr", daemon=True).start()

    return QuietKernelManager


__all__ = ["KERNEL_TCP_WARNING", "Progress", "ProgressWatcher", "duration", "forward_stderr", "quiet_kernel_manager", "read_progress"]
