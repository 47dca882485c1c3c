"""train.jobs: jobs run after what they need, get its results, fail loudly, and run side by side."""

from __future__ import annotations

import os
import time

import pytest

from minivln_core.train.jobs import Job, run_jobs


def _sum(*values, extra=0, left=0, right=0):
    return sum(values) + extra + left + right


def _pid_after(seconds, **_):
    time.sleep(seconds)
    return os.getpid(), time.monotonic()


def _fail(message):
    raise RuntimeError(message)


def test_jobs_get_the_results_they_need_in_this_process_with_one_worker():
    jobs = [Job("a", _sum, (1, 2)),
            Job("b", _sum, (10,), {"extra": 5}, {"left": "a"}),
            Job("c", _sum, (), {}, {"left": "a", "right": "b"})]
    results = run_jobs(jobs, workers=1, done={"given": 100})
    assert results == {"given": 100, "a": 3, "b": 18, "c": 21}


def test_results_known_beforehand_feed_jobs():
    results = run_jobs([Job("b", _sum, (1,), needs={"left": "given"})], done={"given": 100})
    assert results["b"] == 101


@pytest.mark.parametrize("jobs, message", [
    ([Job("a", _sum), Job("a", _sum)], "listed twice"),
    ([Job("b", _sum, needs={"left": "a"}), Job("a", _sum)], "needs ['a']"),
    ([Job("a", _sum, needs={"left": "nowhere"})], "needs ['nowhere']"),
])
def test_bad_plans_are_refused_before_anything_runs(jobs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run_jobs(jobs, workers=2)


def test_two_workers_run_independent_jobs_at_once_in_other_processes():
    started = time.monotonic()
    results = run_jobs([Job("a", _pid_after, (2.0,)), Job("b", _pid_after, (2.0,)),
                        Job("c", _pid_after, (0.0,), needs={"x": "a", "y": "b"})], workers=2, progress=False)
    pids = {name: r[0] for name, r in results.items()}
    assert os.getpid() not in pids.values() and pids["a"] != pids["b"]
    # Both slept at once (spawning two interpreters costs a few seconds, far less than a 2 s queue).
    assert abs(results["a"][1] - results["b"][1]) < 1.5
    assert results["c"][1] >= max(results["a"][1], results["b"][1])   # started after both finished
    assert results["c"][1] - started > 2.0


def test_a_failed_job_is_raised_and_what_needs_it_never_starts():
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run_jobs([Job("bad", _fail, ("broken on purpose",)), Job("ok", _sum, (1,)),
                  Job("after", _fail, ("must not run",), needs={"x": "bad"})], workers=2, progress=False)
    with pytest.raises(RuntimeError, match="broken on purpose"):
        run_jobs([Job("bad", _fail, ("broken on purpose",)), Job("after", _sum, needs={"left": "bad"})])
