"""Independent training runs at once: a small dependency-ordered job runner for multi-core CPUs.

Why: one small-model training run at batch 16 keeps about one core busy (its matrices are too small
to spread well over more threads), so on an N-core machine the independent runs of an experiment
(e.g. the ablation's four student fine-tunings) finish sooner side by side than one after another
with N threads each. Every job runs in a process of its own (spawned, so no torch/OpenMP state is
forked) with `threads` torch threads; a job starts when the jobs it needs have finished, and gets
their results. Each run is seeded by step and resumable on its own, so its result does not depend
on which jobs ran beside it. With one worker the jobs run in this process, in the order given.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from tqdm import tqdm

log = logging.getLogger("minivln.jobs")


@dataclass(frozen=True)
class Job:
    """fn(*args, **kwargs, **{key: result of job `needs[key]`}) -> result.

    fn, args and kwargs must pickle (module-level functions or methods of picklable objects)."""

    name: str
    fn: Callable[..., Any]
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    needs: dict[str, str] = field(default_factory=dict)   # keyword -> name of the job whose result it takes


def _worker_init(threads: int, level: int) -> None:
    torch.set_num_threads(threads)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")  # as the CLI's


def _call(job: Job, needed: dict[str, Any]) -> Any:
    return job.fn(*job.args, **job.kwargs, **needed)


def _needed(job: Job, results: dict[str, Any]) -> dict[str, Any]:
    return {key: results[name] for key, name in job.needs.items()}


def _check(jobs: list[Job], done: dict[str, Any]) -> None:
    """Raise ValueError on a repeated name or a dependency that no earlier job (or `done`) provides;
    listing each job after what it needs also rules out cycles."""
    seen = set(done)
    for job in jobs:
        if job.name in seen:
            raise ValueError(f"job {job.name!r} is listed twice")
        missing = sorted(n for n in job.needs.values() if n not in seen)
        if missing:
            raise ValueError(f"job {job.name!r} needs {missing}, which no earlier job provides")
        seen.add(job.name)


def run_jobs(jobs: list[Job], workers: int = 1, threads: int = 1, progress: bool = True,
             done: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run every job once its needs are done, at most `workers` at a time; returns {name: result}
    (including `done`: results known beforehand, e.g. a checkpoint the caller gives).

    workers 1: in this process, in list order (torch threads unchanged). More: spawned processes with
    `threads` torch threads each; ready jobs start in list order. The first failure is raised once
    the jobs already running finish (their checkpoints stay valid for a rerun); jobs not started yet
    are dropped."""
    results: dict[str, Any] = dict(done or {})
    _check(jobs, results)
    if workers <= 1:
        for job in jobs:
            results[job.name] = _call(job, _needed(job, results))
        return results
    bar = tqdm(total=len(jobs), desc="runs", unit="run", disable=not progress, dynamic_ncols=True)
    pending = list(jobs)
    running: dict[Future, Job] = {}
    failure: BaseException | None = None
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_worker_init,
                             initargs=(threads, logging.getLogger().getEffectiveLevel())) as pool:
        while pending or running:
            if failure is None:
                ready = [j for j in pending if all(n in results for n in j.needs.values())]
                for job in ready[: workers - len(running)]:
                    pending.remove(job)
                    log.info("starting %s", job.name)
                    running[pool.submit(_call, job, _needed(job, results))] = job
            if not running:
                break
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                job = running.pop(future)
                try:
                    results[job.name] = future.result()
                except BaseException as error:  # noqa: BLE001 - re-raised below, after the others finish
                    log.error("job %s failed: %s", job.name, error)
                    failure = failure or error
                    continue
                bar.update(1)
                bar.set_postfix_str(job.name)
                log.info("finished %s", job.name)
    bar.close()
    if failure is not None:
        raise failure
    return results
