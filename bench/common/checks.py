"""Turn a headless run into pass/fail: the exit code comes from budgets.

``install(budgets)`` registers a ``quitting`` listener that sets the process
exit code (locust's own rule is only "any failed request → 1"). The run fails
when

- the failure ratio over all requests is above BENCH_MAX_FAIL_RATIO (0.01);
- the p95 over all requests is above BENCH_P95_MS (500), or a named request's
  p95 is above its budget in ``budgets`` (request name → ms);
- a task raised an exception (a bug in the locustfile, not in the service);
- a load generator went above 90 % CPU: its latencies are then its own
  queueing, not the service's (set BENCH_ALLOW_CPU_WARNING=1 to accept);
- nothing was requested at all.

Distributed runs are judged on the master, which holds the merged statistics.
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import

import logging

from locust import events
from locust.runners import WorkerRunner

from common import settings

log = logging.getLogger(__name__)


def problems(environment, budgets):
    """Every reason to fail the run, as messages; empty when it passes."""
    stats, runner = environment.stats, environment.runner
    total = stats.total
    if total.num_requests == 0:
        return ["no requests were made"]
    found = []
    if total.fail_ratio > settings.MAX_FAIL_RATIO:
        found.append(f"fail ratio {total.fail_ratio:.4f} > {settings.MAX_FAIL_RATIO}")
    p95 = total.get_response_time_percentile(0.95)
    if p95 > settings.P95_MS:
        found.append(f"p95 {p95:.0f} ms > {settings.P95_MS:.0f} ms (all requests)")
    for (name, method), entry in sorted(stats.entries.items()):
        budget = budgets.get(name)
        if budget is None or entry.num_requests == 0:
            continue
        p95 = entry.get_response_time_percentile(0.95)
        if p95 > budget:
            found.append(f"p95 {p95:.0f} ms > {budget:.0f} ms ({method} {name})")
    if runner.exceptions:
        found.append(f"{len(runner.exceptions)} kinds of exception in tasks")
    cpu_warning = runner.cpu_warning_emitted or getattr(runner, "worker_cpu_warning_emitted",
                                                        False)
    if cpu_warning and not settings.ALLOW_CPU_WARNING:
        found.append("a load generator went above 90% CPU: add processes or machines")
    return found


def install(budgets):
    """Judge the run when locust quits; ``budgets`` maps request names to p95 ms."""

    @events.quitting.add_listener
    def _gate(environment, **_kwargs):
        if isinstance(environment.runner, WorkerRunner):
            return  # the master judges the merged statistics
        if environment.process_exit_code:
            return  # already failed (e.g. the test data could not be loaded)
        found = problems(environment, budgets)
        for message in found:
            log.error("FAIL: %s", message)
        if not found:
            total = environment.stats.total
            log.info("PASS: %d requests, fail ratio %.4f, p95 %d ms", total.num_requests,
                     total.fail_ratio, total.get_response_time_percentile(0.95))
        environment.process_exit_code = 1 if found else 0
