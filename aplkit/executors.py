"""Where a sweep's runs execute: threads on this machine, or one task per run on a Ray cluster.

The sweep (:func:`aplkit.sweep.run_sweep`) keeps the guarantees — every config validated before
anything starts, complete runs skipped, one summary — and an executor only places the runs that
are left. Each executor calls the grid's ``cell`` where a run lands (:func:`aplkit.sweep.run_cell`, a papermill
kernel, or :class:`aplkit.sweep.InProcessCell`, the run in the worker's own process), which never raises for a
failing run and appends to the run folder's ``sweep.log``, so a failure stays one run's failure and a second
invocation resumes whatever did not finish, whichever executor ran it.

Ray (``pip install 'aplkit[ray]'``) runs on the cluster at ``address``: ``local`` starts one on
127.0.0.1 for this sweep, ``auto`` joins the one ``ray start`` began on this node, ``ray://host:10001``
connects a client. The workers must see the run folders, the config and the sweep's working folder
at the same paths (a shared filesystem, as on SLURM) and run from an environment with aplkit installed
(or a checkout: its folder is put on the workers' ``PYTHONPATH``).

GPUs: on one machine each local job gets a GPU of its own (its kernel sees only that one, as
``CUDA_VISIBLE_DEVICES``), and more jobs than GPUs is refused; on Ray each task reserves one. An API
judge's rate limit is shared by every run on a machine (``aplkit.oracles.llm.ratelimit``); Ray tasks
are told how many nodes split it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import re
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aplkit.config import ConfigError
from aplkit.models import SHARE_ENV
from aplkit.progress import ProgressWatcher

if TYPE_CHECKING:
    from aplkit.sweep import Run, Sweep


@dataclass
class Ended:
    """How one attempt at a run ended, as its cell reports it: done unless it failed, did not start, or stopped."""

    error: str | None = None  # one line; the traceback is in the run folder's log
    seconds: float = 0.0
    skipped: str | None = None  # a line saying why it did not start (another process holds its folder, no time left)
    stopped: str | None = None  # why it stopped after a finished step; the grid stops with it and the same call continues
    result: Any = None  # what an in-process run returned

    @property
    def done(self) -> bool:
        return self.error is None and self.skipped is None and self.stopped is None


#: (run, how it ended), as each run ends
Outcome = tuple["Run", Ended]
#: what runs one cell where it lands: (run, sweep, cwd, where) → how it ended
Cell = Callable[["Run", "Sweep", str, str], Ended]
EXECUTORS = ("local", "ray")
#: read by the runs where they execute (the offline rules, caches); API keys are not passed: set them on the nodes
PASS_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "APLKIT_CACHE", "XDG_CACHE_HOME")
RAY_HINT = "the ray package is not installed; install the extra: pip install 'aplkit[ray]'"


class Executor(ABC):
    """Places a sweep's remaining runs; ``check``/``check_runs`` raise ConfigError before any run starts."""

    name: str
    #: whether several runs at once share this process (threads): a cell whose runs need a process each refuses it
    shares_process: bool = False

    def check(self) -> None:  # noqa: B027 - an optional hook
        """The executor's own settings (one-line ConfigError naming the option)."""

    def check_runs(self, runs: list[Run]) -> None:  # noqa: B027 - an optional hook
        """What the runs ask of this executor (e.g. a GPU), before any of them starts."""

    @abstractmethod
    def describe(self) -> str:
        """Where the runs go, for the sweep's first line."""

    @abstractmethod
    def map(self, runs: list[Run], sweep: Sweep, cell: Cell) -> Iterator[Outcome]:
        """Execute every run once with ``cell`` and yield each outcome as it ends; a failing run is an outcome, not an exception."""


def gpu_count() -> int:
    """CUDA devices this process sees (0 without CUDA or torch)."""
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def gpu_ids(count: int) -> list[str]:
    """The ``CUDA_VISIBLE_DEVICES`` value of each of the ``count`` GPUs this process sees (its own list, if it was given one)."""
    given = [g.strip() for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    return (given or [str(i) for i in range(count)])[:count]


def kernel_manager_with(env: dict[str, str]) -> type:
    """A papermill kernel manager whose kernels start with ``env`` on top of this process's environment (their stderr
    filtered as ``aplkit.progress.quiet_kernel_manager``'s)."""
    from aplkit.progress import quiet_kernel_manager

    class EnvKernelManager(quiet_kernel_manager()):
        async def start_kernel(self, **kw: Any) -> None:
            kw["env"] = {**os.environ, **kw.get("env", {}), **env}
            await super().start_kernel(**kw)

    return EnvKernelManager


class LocalExecutor(Executor):
    """``jobs`` runs at a time in threads on this machine, each kernel with a share of the cores and, for a
    GPU run of a sweep with several jobs, a GPU of its own; one job runs them one after the other in the calling
    thread, each starting only once the last one's outcome is handled; a line whenever a run's step or phase
    changes (``aplkit.progress``)."""

    name = "local"

    def __init__(self, jobs: int = 1) -> None:
        self.jobs = jobs
        self.gpus: list[str] = []  # handed out one per running GPU job; empty: none handed out

    @property
    def shares_process(self) -> bool:
        return isinstance(self.jobs, int) and self.jobs > 1

    def check(self) -> None:
        if not isinstance(self.jobs, int) or self.jobs < 1:
            raise ConfigError(f"--jobs: must be >= 1, got {self.jobs}")

    def check_runs(self, runs: list[Run]) -> None:
        """With several jobs, GPU runs (``model.device`` cuda, or auto on a machine with GPUs) need a GPU each."""
        self.gpus = []
        wants = [r for r in runs if r.device.startswith("cuda") or r.device == "auto"]
        if self.jobs == 1 or not wants:
            return
        n = gpu_count()
        if n == 0:
            return  # auto runs use the CPU; a cuda run stops in its kernel, naming model.device
        pinned = next((r for r in wants if r.device.startswith("cuda:")), None)
        if pinned is not None:
            raise ConfigError(
                f"--jobs {self.jobs}: run {pinned.label} pins model.device={pinned.device}, so every job would share that GPU; "
                "use model.device=cuda (each job then gets a GPU of its own) or --jobs 1"
            )
        if min(self.jobs, len(wants)) > n:
            raise ConfigError(
                f"--jobs {self.jobs}: this machine has {n} GPU(s) and each job of a run with model.device={wants[0].device} "
                f"takes one; use --jobs {n} or fewer (or model.device=cpu)"
            )
        self.gpus = gpu_ids(n)

    def describe(self) -> str:
        gpus = f", one GPU each of {','.join(self.gpus)}" if self.gpus else ""
        return f"this machine with {self.jobs} job(s){gpus}"

    def map(self, runs: list[Run], sweep: Sweep, cell: Cell) -> Iterator[Outcome]:
        n, cwd = len(runs), str(Path.cwd())
        share = CoreShare(self.jobs, n) if runs and self.jobs > 1 and "OMP_NUM_THREADS" not in os.environ else None
        free: queue.SimpleQueue[str] = queue.SimpleQueue()
        for g in self.gpus:
            free.put(g)

        watch = ProgressWatcher()

        def go(k: int, r: Run) -> Outcome:
            print(f"[{k}/{n}] start {r.label} ({r.status()})", flush=True)
            watch.begin(r)
            gpu = free.get() if self.gpus and (r.device == "auto" or r.device.startswith("cuda")) else None
            try:
                if gpu is None:
                    return r, cell(r, sweep, cwd, f"local job {k}/{n}")
                placed = dataclasses.replace(r, env={**r.env, "CUDA_VISIBLE_DEVICES": gpu})
                return r, cell(placed, sweep, cwd, f"local job {k}/{n} on GPU {gpu}")
            finally:
                watch.end(r)
                if gpu is not None:
                    free.put(gpu)
                if share:
                    share.ended()

        if self.jobs == 1:  # here, so a stopped grid (or Ctrl-C) starts nothing more and leaves no thread running
            with watch:
                for k, r in enumerate(runs, 1):
                    yield go(k, r)
            return
        with share or contextlib.nullcontext(), watch, ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [pool.submit(go, k, r) for k, r in enumerate(runs, 1)]
            try:
                for f in as_completed(futures):
                    yield f.result()
            finally:  # a grid that stopped early: the runs not started yet never start
                for f in futures:
                    f.cancel()


class CoreShare:
    """The machine's cores split among the runs still going, so the last run is not left on one core.

    Runs of unequal length (random acquisition is cheaper than certainty) would otherwise end with
    one kernel on one thread while the other cores idle. Kernels start with ``OMP_NUM_THREADS`` =
    cores // jobs and re-read the file named by ``APLKIT_CORE_SHARE`` between phases
    (:func:`follow_core_share`); as runs end, the file gives the rest more threads. A user who set
    ``OMP_NUM_THREADS`` keeps it: the executor then shares nothing.
    """

    def __init__(self, jobs: int, runs: int) -> None:
        self.jobs, self.left, self.cores = jobs, runs, os.cpu_count() or 1
        self.lock = threading.Lock()
        fd, self.path = tempfile.mkstemp(prefix="aplkit-cores-", suffix=".txt")
        os.close(fd)

    def threads(self) -> int:
        return max(1, self.cores // max(1, min(self.jobs, self.left)))

    def write(self) -> None:
        tmp = f"{self.path}.tmp"
        Path(tmp).write_text(str(self.threads()))
        os.replace(tmp, self.path)  # a run never reads half a number

    def __enter__(self) -> CoreShare:  # kernels inherit both variables when they start
        self.write()
        os.environ["OMP_NUM_THREADS"] = str(self.threads())
        os.environ[SHARE_ENV] = self.path
        return self

    def ended(self) -> None:
        with self.lock:
            self.left -= 1
            self.write()

    def __exit__(self, *exc: object) -> None:
        os.environ.pop("OMP_NUM_THREADS", None)
        os.environ.pop(SHARE_ENV, None)
        Path(self.path).unlink(missing_ok=True)


def _ray_cell(cell: Cell, run: Run, sweep: Sweep, cwd: str, where: str) -> Ended:
    """The Ray task: the same attempt as a local job, on whichever node Ray picked."""
    return cell(run, sweep, cwd, where)


def one_line(e: BaseException) -> str:
    """A failed run in one line: the notebook's exception (papermill), Ray's or the launcher's."""
    ename, evalue = getattr(e, "ename", None), getattr(e, "evalue", None)
    if ename:
        return f"{ename}: {str(evalue).splitlines()[0] if evalue else ''}".strip()
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


class RayExecutor(Executor):
    """One Ray task per run, with ``cpus_per_task`` CPUs and ``gpus_per_task`` GPUs reserved for it.

    ``gpus_per_task`` None: 1 for a run whose ``model.device`` is cuda, or auto on a cluster with GPUs
    (what auto means on one machine), else 0 — and then the task sees no GPU. A task that fails is not
    retried by Ray: the next ``aplkit sweep`` resumes it from its checkpoint.
    """

    name = "ray"

    def __init__(
        self, address: str | None = None, cpus_per_task: float = 1, gpus_per_task: float | None = None, num_cpus: int | None = None
    ) -> None:
        self.address = address
        self.cpus_per_task = cpus_per_task
        self.gpus_per_task = gpus_per_task
        self.num_cpus = num_cpus  # a cluster started here (address local): its CPUs, default all of this machine's
        self.cluster_gpus = 0.0  # GPUs on the cluster's largest node, known once connected
        self.cluster_nodes = 1  # live nodes, known once connected: an API judge's rate limit is split across them

    def check(self) -> None:
        if not self.cpus_per_task > 0:
            raise ConfigError(f"--cpus-per-task: must be > 0, got {self.cpus_per_task}")
        if self.gpus_per_task is not None and not self.gpus_per_task >= 0:
            raise ConfigError(f"--gpus-per-task: must be >= 0, got {self.gpus_per_task}")
        _import_ray()

    def gpus(self, run: Run) -> float:
        if self.gpus_per_task is not None:
            return self.gpus_per_task
        return 1.0 if run.device.startswith("cuda") or (run.device == "auto" and self.cluster_gpus > 0) else 0.0

    def check_runs(self, runs: list[Run]) -> None:
        for r in runs:
            g, m = self.gpus(r), re.fullmatch(r"cuda:(\d+)", r.device)
            if r.device.startswith("cuda") and g == 0:
                raise ConfigError(f"run {r.label}: model.device={r.device} needs a GPU but --gpus-per-task is 0")
            if m and int(m.group(1)) >= max(1, int(g)):
                raise ConfigError(
                    f"run {r.label}: model.device={r.device}: a Ray task sees only the {g:g} GPU(s) it reserves, "
                    "numbered from cuda:0; use model.device=cuda"
                )

    def describe(self) -> str:
        gpus = "1 GPU for cuda or auto runs if it has GPUs" if self.gpus_per_task is None else f"{self.gpus_per_task:g} GPU(s)"
        return f"Ray at {self._address()} ({self.cpus_per_task:g} CPU(s) and {gpus} per task)"

    def _address(self) -> str:
        return self.address or os.environ.get("RAY_ADDRESS") or "local"

    def env(self, run: Run) -> dict[str, str]:
        """The task's environment: this sweep's import path, threads and offline rules; no GPU unless reserved."""
        import aplkit

        paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
        root = str(Path(aplkit.__file__).resolve().parent.parent)
        if "site-packages" not in root and root not in paths:  # a checkout: the workers import this aplkit
            paths.insert(0, root)
        env = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        env |= {
            "RAY_USAGE_STATS_ENABLED": "0",
            "TOKENIZERS_PARALLELISM": "false",
            "OMP_NUM_THREADS": str(max(1, int(self.cpus_per_task))),
        }
        if paths:
            env["PYTHONPATH"] = os.pathsep.join(paths)
        if self.cluster_nodes > 1:  # each node keeps its own rate-limit file: each takes its share of the limit
            from aplkit.oracles.llm.ratelimit import NODES_ENV

            env[NODES_ENV] = str(self.cluster_nodes)
        if self.gpus(run) == 0:
            env["CUDA_VISIBLE_DEVICES"] = ""  # Ray sets it only for tasks that reserve a GPU
        return env

    def _connect(self, ray: Any) -> bool:
        """Join or start the cluster; True when this sweep did, and so disconnects (or stops it) at the end."""
        if ray.is_initialized():  # a notebook or a test already connected this process
            return False
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # a cluster started here inherits it: no usage report
        address = self._address()
        kw: dict[str, Any] = {}
        if address == "local":  # on the loopback interface, without the dashboard: nothing listens outside this machine
            kw = {"num_cpus": self.num_cpus, "include_dashboard": False, "_node_ip_address": "127.0.0.1"}
        try:
            ray.init(address=address, **kw)
        except Exception as e:  # noqa: BLE001 - no cluster there, a refused client, a bad address: one line
            raise ConfigError(f"--address {address}: cannot start or reach a Ray cluster ({one_line(e)})") from None
        return True

    def _check_cluster(self, ray: Any, runs: list[Run]) -> None:
        """A task that fits on no node would wait forever: say so before submitting anything."""
        nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
        self.cluster_nodes = max(1, len(nodes))
        cpus = max((n.get("CPU", 0) for n in nodes), default=0)
        gpus = self.cluster_gpus = max((n.get("GPU", 0) for n in nodes), default=0)
        if self.cpus_per_task > cpus:
            raise ConfigError(
                f"--cpus-per-task {self.cpus_per_task:g}: the largest node of the Ray cluster at {self._address()} has {cpus:g} CPUs"
            )
        need = max((self.gpus(r) for r in runs), default=0)
        if need > gpus:
            raise ConfigError(
                f"--gpus-per-task {need:g}: the largest node of the Ray cluster at {self._address()} has {gpus:g} GPUs "
                "(runs with model.device=cuda reserve one; set model.device=cpu or --gpus-per-task 0 for CPU runs)"
            )

    def map(self, runs: list[Run], sweep: Sweep, cell: Cell) -> Iterator[Outcome]:
        if not runs:
            return
        ray = _import_ray()
        started = self._connect(ray)
        pending: dict[Any, tuple[Run, float]] = {}
        try:
            self._check_cluster(ray, runs)
            task = ray.remote(_ray_cell)
            cwd, n = str(Path.cwd()), len(runs)
            for k, r in enumerate(runs, 1):
                opts = {"num_cpus": self.cpus_per_task, "num_gpus": self.gpus(r), "max_retries": 0, "name": f"aplkit {r.label}"}
                ref = task.options(runtime_env={"env_vars": self.env(r)}, **opts).remote(cell, r, sweep, cwd, f"ray task {k}/{n}")
                pending[ref] = (r, time.perf_counter())
                print(f"[{k}/{n}] queued {r.label} ({r.status()})", flush=True)
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    r, t0 = pending.pop(ref)
                    try:
                        ended = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 - the worker died (node lost, killed for memory): this run failed
                        ended = Ended(one_line(e), time.perf_counter() - t0)
                    yield r, ended
        finally:
            for ref in pending:  # interrupted: stop what is still running (KeyboardInterrupt in the task)
                ray.cancel(ref)
            if started:
                ray.shutdown()


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise ConfigError(f"--executor ray: {RAY_HINT}") from None
    return ray


def make_executor(name: str, jobs: int | None = None, **ray_options: Any) -> Executor:
    """The executor ``aplkit sweep --executor NAME`` asks for; options of the other one are an error."""
    if name == "local":
        given = [f"--{k.replace('_', '-')}" for k, v in ray_options.items() if v is not None]
        if given:
            raise ConfigError(f"{given[0]}: applies to --executor ray only")
        return LocalExecutor(1 if jobs is None else jobs)
    if name == "ray":
        if jobs is not None:
            raise ConfigError("--jobs: applies to --executor local; Ray runs as many at once as the cluster has CPUs/GPUs for")
        return RayExecutor(**{k: v for k, v in ray_options.items() if v is not None})
    raise ConfigError(f"--executor: unknown executor {name!r} (known: {', '.join(EXECUTORS)})")


__all__ = [
    "EXECUTORS",
    "Ended",
    "Executor",
    "LocalExecutor",
    "RayExecutor",
    "gpu_count",
    "gpu_ids",
    "kernel_manager_with",
    "make_executor",
    "one_line",
]
