"""Load shapes: a step ramp to find the knee, a spike, and a soak.

Each is picked by adding its file to the suite's ``-f``, e.g.
``-f locustfiles/mixed.py,locustfiles/shapes/step.py`` (locustfiles/shapes/
holds one file per shape). A shape replaces ``--users``, ``--spawn-rate`` and
``--run-time``; its knobs come from the environment so that one command line
works on a laptop and on a cluster:

step   BENCH_STEP_USERS (10) more users every BENCH_STEP_S (30) s, for
       BENCH_STEPS (10) steps. At the end the log and the verdict list each
       step: users, offered tasks/s (users x BENCH_USER_RATE), achieved
       req/s and req/s per user, p95, failures. The knee is the first step
       whose req/s per user falls below 90 % of the best earlier step's, or
       whose p95 is above BENCH_P95_MS: the service's capacity is the step
       before. Steps much longer than the ramp (the default 30 s) keep the
       first, login-heavy seconds from skewing a step.
spike  BENCH_BASE_USERS (10) for BENCH_SPIKE_AT_S (30) s, then
       BENCH_SPIKE_USERS (100) all at once for BENCH_SPIKE_S (30) s, then
       back to the base for BENCH_RECOVER_S (60) s: does it recover?
soak   BENCH_SOAK_USERS (50) for BENCH_SOAK_S (3600) s, reached in
       BENCH_SOAK_RAMP_S (60) s: leaks, pool exhaustion, token expiry
       (signed-in users refresh their tokens along the way).
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

from itertools import pairwise

from locust import LoadTestShape

from common import settings
from common.settings import number


class StepRamp(LoadTestShape):
    step_users = number("BENCH_STEP_USERS", 10, int)
    step_s = number("BENCH_STEP_S", 30.0)
    steps = number("BENCH_STEPS", 10, int)

    def __init__(self):
        super().__init__()
        self._marks = []  # (step, users, run time, a copy of the total at its start)

    def tick(self):
        run_time = self.get_run_time()
        step = int(run_time // self.step_s)
        if step >= self.steps:
            self._mark(self.steps, run_time)
            return None
        self._mark(step, run_time)
        users = (step + 1) * self.step_users
        return users, max(self.step_users, 1)  # each step reached within a second

    def reset_time(self):
        super().reset_time()
        self._marks = []

    def _mark(self, step, run_time):
        if self._marks and self._marks[-1][0] == step:
            return
        if not self._marks:
            # The first tick comes before locust clears the statistics of a
            # previous run (web UI): the first step starts from zero.
            snapshot = (0, 0, {})
        else:
            total = self.runner.stats.total
            snapshot = (total.num_requests, total.num_failures, dict(total.response_times))
        self._marks.append((step, (step + 1) * self.step_users, run_time, *snapshot))

    def report(self):
        """One row per step (the first second of each includes its ramp); the step
        a stopped run was in counts up to the stop."""
        marks = list(self._marks)
        if marks and marks[-1][0] < self.steps:
            total = self.runner.stats.total
            marks.append((self.steps, 0, self.get_run_time(), total.num_requests,
                          total.num_failures, dict(total.response_times)))
        rows = []
        for start, end in pairwise(marks):
            step, users, began, requests, failures, times = start
            seconds = end[2] - began
            done = end[3] - requests
            histogram = {ms: n - times.get(ms, 0) for ms, n in end[5].items()
                         if n - times.get(ms, 0) > 0}
            achieved = done / seconds if seconds else 0.0
            rows.append({
                "step": step + 1, "users": users,
                "offered_tasks_per_s": round(users * settings.USER_RATE, 1),
                "achieved_rps": round(achieved, 1),
                "rps_per_user": round(achieved / users, 2),
                "p95_ms": _percentile(histogram, 0.95),
                "failures": end[4] - failures,
            })
        return {"shape": "step", "steps": rows, "knee_step": _knee(rows)}


class Spike(LoadTestShape):
    base_users = number("BENCH_BASE_USERS", 10, int)
    spike_users = number("BENCH_SPIKE_USERS", 100, int)
    spike_at_s = number("BENCH_SPIKE_AT_S", 30.0)
    spike_s = number("BENCH_SPIKE_S", 30.0)
    recover_s = number("BENCH_RECOVER_S", 60.0)

    def tick(self):
        run_time = self.get_run_time()
        if run_time < self.spike_at_s:
            return self.base_users, self.base_users
        if run_time < self.spike_at_s + self.spike_s:
            return self.spike_users, self.spike_users  # all at once: that is the spike
        if run_time < self.spike_at_s + self.spike_s + self.recover_s:
            return self.base_users, self.spike_users
        return None

    def report(self):
        return {"shape": "spike"}


class Soak(LoadTestShape):
    users = number("BENCH_SOAK_USERS", 50, int)
    soak_s = number("BENCH_SOAK_S", 3600.0)
    ramp_s = number("BENCH_SOAK_RAMP_S", 60.0)

    def tick(self):
        if self.get_run_time() >= self.soak_s:
            return None
        return self.users, max(self.users / max(self.ramp_s, 1), 1)

    def report(self):
        return {"shape": "soak"}


def _knee(rows):
    """The first step where more users stopped buying throughput, or p95 broke its budget.

    Requests per user, not against users x rate: a task may make more than
    one request (an admin's write and its re-read), so only the service's
    answer rate tells when it stops keeping up.
    """
    best = 0.0
    for row in rows:
        if best and row["rps_per_user"] < 0.9 * best:
            return row["step"]
        if (row["p95_ms"] or 0) > settings.P95_MS * settings.BUDGET_FACTOR:
            return row["step"]
        best = max(best, row["rps_per_user"])
    return None


def _percentile(histogram, fraction):
    """The response time (ms) below which ``fraction`` of the requests fell."""
    count = sum(histogram.values())
    if not count:
        return None
    seen = 0
    for ms in sorted(histogram):
        seen += histogram[ms]
        if seen >= fraction * count:
            return ms
    return None
