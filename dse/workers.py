"""``search.workers=N``: N processes on this machine, each its own ask/tell loop on the run's study.

The parent creates (or resumes) the study, measures the unquantised baseline once, starts the workers
(``spawn``: a fresh interpreter each, no inherited torch state) and shows the study's progress; the workers
coordinate through the storage alone (:mod:`dse.coordination`), exactly as workers on other machines do. When
they are done the parent writes the run's tables, plots and exports. Torch's threads are split: with
``accuracy.threads=0`` each worker gets ``cores // N`` (at least 1), and the BLAS/OpenMP pools follow.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from tqdm import tqdm

from dse.accuracy_store import store_for
from dse.config import Config, ConfigError
from dse.coordination import StorageLost, quota_done
from dse.coupling import problem_for
from dse.samplers import make_sampler
from dse.stopping import StopRequest
from dse.storage import make_storage
from dse.study import LoopResult, attach, optimise, study_size, worker_seed
from dse.systems import make_system

log = logging.getLogger(__name__)

EXIT_STORAGE = 3  # a worker that lost the storage
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True)
class WorkerReport:
    index: int
    asked: int
    failed: int
    interrupted: int | None = None
    error: str | None = None  # the storage was lost
    config_error: str | None = None
    measured: int = 0  # accuracy keys this worker measured


def threads_per_worker(threads: int, workers: int, cores: int | None = None) -> int:
    """``accuracy.threads`` for each of ``workers`` processes (0 = split this machine's cores)."""
    return threads if threads > 0 else max(1, (cores or os.cpu_count() or 1) // workers)


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables while child processes start (they inherit them), then restore."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def worker_main(cfg: Config, run_dir: str, target: str, index: int, reports: Any) -> None:
    """One worker process: join the study and run the ask/tell loop until the study is complete. ``reports``:
    the sending end of a pipe to the parent (one per worker: a pipe has no lock that a worker killed with -9
    could leave held)."""

    logging.basicConfig(level=logging.INFO, format=f"[worker {index}] %(levelname)s %(name)s: %(message)s")
    tqdm.set_lock(threading.RLock())  # not tqdm's default multiprocessing lock: a worker killed with -9 leaks it
    try:
        system = make_system(cfg)
        problem, provider = problem_for(cfg, system, store_for(target, cfg.search.accuracy_lease_s))
        storage = make_storage(cfg.search, Path(run_dir))
        sampler = make_sampler(cfg.search.sampler, worker_seed(cfg.search, index), cfg.system.space)
        study = attach(cfg, storage, problem, sampler, "worker")
        result = optimise(study, cfg, system, problem, target, progress=False)
    except StorageLost as exc:
        log.error("%s", exc)
        reports.send(WorkerReport(index, 0, 0, error=str(exc)))
        sys.exit(EXIT_STORAGE)
    except ConfigError as exc:  # e.g. the study changed under it: the parent says so once
        reports.send(WorkerReport(index, 0, 0, config_error=str(exc)))
        sys.exit(2)
    except KeyboardInterrupt:  # Ctrl-C before the loop had installed its handler
        sys.exit(128 + signal.SIGINT)
    measured = provider.oracle.measured if provider is not None else 0
    reports.send(WorkerReport(index, result.n_asked, result.n_failed, result.interrupted, measured=measured))


def run_workers(cfg: Config, run_dir: Path, target: str, study: optuna.Study) -> LoopResult:
    """Start ``search.workers`` processes on the study, wait for them, and return the loop result of all."""
    n = cfg.search.workers
    threads = threads_per_worker(cfg.accuracy.threads, n)
    child = dataclasses.replace(cfg, accuracy=dataclasses.replace(cfg.accuracy, threads=threads))
    ctx = multiprocessing.get_context("spawn")
    pipes = [ctx.Pipe(duplex=False) for _ in range(n)]
    start = time.monotonic()
    procs = [ctx.Process(target=worker_main, args=(child, str(run_dir), target, i, pipes[i][1]),
                         name=f"tide-worker-{i}") for i in range(n)]
    with _environment({k: str(threads) for k in THREAD_VARIABLES}):
        for p in procs:
            p.start()
    for _, sender in pipes:
        sender.close()  # the parent keeps only the receiving ends
    log.info("%d workers on study %r (pids %s), %d torch thread(s) each", n, cfg.search.study_name,
             [p.pid for p in procs], threads)
    n_total = study_size(cfg.search, study)
    stop = StopRequest()
    forwarded = False
    bar = tqdm(total=n_total, desc=f"search[{cfg.search.sampler_name}] x{n}", unit="trial",
               disable=not cfg.search.progress)
    try:
        with stop.installed():
            while sum([p.is_alive() for p in procs]):  # every one polled: a dead worker is collected at once
                if stop.signum is not None and not forwarded:  # SIGTERM to the parent: the workers stop too
                    for p in procs:
                        if p.is_alive() and p.pid is not None:
                            os.kill(p.pid, stop.signum)
                    forwarded = True
                time.sleep(0.5)
                with contextlib.suppress(Exception):  # progress only: a storage error is the workers' to report
                    bar.n = min(n_total, quota_done(study.get_trials(deepcopy=False)))
                    bar.refresh()
    finally:
        bar.close()
        for p in procs:
            p.join()
    got: list[WorkerReport] = []
    for receiver, _ in pipes:
        with contextlib.suppress(EOFError, OSError):  # a worker killed with -9 sent nothing
            if receiver.poll():
                got.append(receiver.recv())
        receiver.close()
    lost = [r for r in got if r.error]
    if lost:
        raise StorageLost(lost[0].error)
    refused = [r for r in got if r.config_error]
    if refused:
        raise ConfigError(refused[0].config_error)
    for i, p in enumerate(procs):
        if p.exitcode and p.exitcode < 0 and stop.signum is None:
            log.warning("worker %d (pid %s) was killed (%s); its trial is failed and retried by the others",
                        i, p.pid, signal.Signals(-p.exitcode).name)
        elif p.exitcode:
            log.warning("worker %d (pid %s) exited with status %s", i, p.pid, p.exitcode)
    interrupted = stop.signum or next((r.interrupted for r in got if r.interrupted), None)
    done = quota_done(study.get_trials(deepcopy=False))
    timed_out = cfg.search.timeout is not None and time.monotonic() - start >= cfg.search.timeout
    if done < n_total and interrupted is None and not timed_out:  # every worker stopped early (killed, crashed)
        log.error("the study has %d of %d trials: the workers stopped before it was complete; continue it with "
                  "search.resume=true", done, n_total)
    return LoopResult(n_asked=sum(r.asked for r in got), n_failed=sum(r.failed for r in got),
                      wall_s=time.monotonic() - start, interrupted=interrupted, measured=sum(r.measured for r in got),
                      stopped_at=stop.at if stop.at is not None else time.monotonic() if interrupted else None)
