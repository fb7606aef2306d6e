"""Turn a headless run into one verdict: the exit code, and the files that agree with it.

Suites add p95 budgets with ``budget({request name: ms})``; one ``quitting``
listener (registered when this module is first imported, so a mixed run of
several suites still gets one verdict) sets the process exit code (locust's
own rule is only "any failed request → 1"). The run fails when

- the failure ratio over all requests is above BENCH_MAX_FAIL_RATIO (0.01);
- the p95 over all requests is above BENCH_P95_MS (500), or a named request's
  p95 is above its budget (request name → ms), both times BENCH_BUDGET_FACTOR;
- a read showed a product older than a write committed more than
  BENCH_CONVERGE_MS before it, or admins wrote and no read checked it
  (common/convergence.py);
- a task raised an exception (a bug in the locustfile, not in the service);
- a load generator went above 90 % CPU: its latencies are then its own
  queueing, not the service's (set BENCH_ALLOW_CPU_WARNING=1 to accept);
- nothing was requested at all.

The verdict is written as JSON (``--verdict-file``; by default next to the CSV
files, ``<csv prefix>_verdict.json``) with the request and failure counts it
was judged on. locust writes ``<prefix>_stats.csv`` from a greenlet once a
second and never after the users stop, so on its own that file misses the
last second and every request that finished during ``stop-timeout``: the
listener rewrites the CSV tables from the final statistics, the same numbers
as the verdict, the printed summary and the HTML report (saved just before).

Distributed runs are judged on the master, which holds the merged statistics.
"""

import locust  # noqa: F401  first: locust gevent-patches the standard library on import  # isort: skip

import csv
import json
import logging
import os
import tempfile

from locust import events
from locust.runners import STATE_INIT, WorkerRunner
from locust.stats import PERCENTILES_TO_REPORT, StatsCSV

from common import convergence, settings

log = logging.getLogger(__name__)

BUDGETS = {}  # request name -> p95 budget in ms, from every suite loaded


def budget(budgets):
    """Add p95 budgets (request name → ms); a name budgeted twice keeps the tighter one."""
    for name, ms in budgets.items():
        BUDGETS[name] = min(ms, BUDGETS.get(name, ms))


@events.init_command_line_parser.add_listener
def _options(parser):
    parser.add_argument("--verdict-file", default="", include_in_web_ui=False,
                        help="write the pass/fail verdict as JSON here "
                             "(default: <csv prefix>_verdict.json when --csv is set)")


def problems(environment, budgets=None):
    """Every reason to fail the run, as messages; empty when it passes."""
    budgets = BUDGETS if budgets is None else budgets
    stats, runner = environment.stats, environment.runner
    total = stats.total
    if total.num_requests == 0:
        return ["no requests were made"]
    found = []
    if total.fail_ratio > settings.MAX_FAIL_RATIO:
        found.append(f"fail ratio {total.fail_ratio:.4f} > {settings.MAX_FAIL_RATIO}")
    p95 = total.get_response_time_percentile(0.95)
    if p95 > settings.P95_MS * settings.BUDGET_FACTOR:
        found.append(f"p95 {p95:.0f} ms > {settings.P95_MS * settings.BUDGET_FACTOR:.0f} ms "
                     "(all requests)")
    for (name, method), entry in sorted(stats.entries.items()):
        limit = budgets.get(name)
        if limit is None or entry.num_requests == 0:
            continue
        limit *= settings.BUDGET_FACTOR
        p95 = entry.get_response_time_percentile(0.95)
        if p95 > limit:
            found.append(f"p95 {p95:.0f} ms > {limit:.0f} ms ({method} {name})")
    found.extend(convergence.problems())
    if runner.exceptions:
        found.append(f"{len(runner.exceptions)} kinds of exception in tasks")
    cpu_warning = runner.cpu_warning_emitted or getattr(runner, "worker_cpu_warning_emitted",
                                                        False)
    if cpu_warning and not settings.ALLOW_CPU_WARNING:
        found.append("a load generator went above 90% CPU: add processes or machines")
    return found


def verdict(environment, found):
    """The verdict as a JSON-able dict: what was judged and why it failed."""
    stats = environment.stats
    total = stats.total
    return {
        "passed": not found,
        "problems": found,
        "requests": total.num_requests,
        "failures": total.num_failures,
        "fail_ratio": round(total.fail_ratio, 6),
        "p95_ms": total.get_response_time_percentile(0.95) if total.num_requests else None,
        "entries": [
            {"method": method, "name": name, "requests": entry.num_requests,
             "failures": entry.num_failures,
             "p95_ms": entry.get_response_time_percentile(0.95) if entry.num_requests else None,
             "budget_ms": BUDGETS[name] * settings.BUDGET_FACTOR if name in BUDGETS else None}
            for (name, method), entry in sorted(stats.entries.items())
        ],
        "convergence": convergence.summary(),
        "shape": _shape_report(environment),
    }


def _shape_report(environment):
    shape = environment.shape_class
    return shape.report() if shape is not None and hasattr(shape, "report") else None


def _replace(path, write):
    """Write a file next to ``path`` and move it over: never a half-written file.

    The new inode also keeps locust's CSV greenlet, which still holds the old
    file open, from writing over the final numbers.
    """
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".", suffix=".tmp")
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as file:
        write(file)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide results from other users
    os.replace(tmp, path)


def _write_final_csv(environment, prefix):
    tables = StatsCSV(environment, PERCENTILES_TO_REPORT)
    for suffix, table in (("_stats.csv", tables.requests_csv),
                          ("_failures.csv", tables.failures_csv),
                          ("_exceptions.csv", tables.exceptions_csv)):
        _replace(prefix + suffix, lambda file, table=table: table(csv.writer(file)))


@events.quitting.add_listener
def _gate(environment, **_kwargs):
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the merged statistics
    if environment.runner.state == STATE_INIT:
        return  # the web UI was closed before any test: nothing to judge
    options = environment.parsed_options
    prefix = getattr(options, "csv_prefix", None)
    if prefix:
        _write_final_csv(environment, prefix)
    if environment.process_exit_code:
        # Already failed (e.g. the test data could not be loaded).
        found = [f"the run was stopped with exit code {environment.process_exit_code}"]
    else:
        found = problems(environment)
        environment.process_exit_code = 1 if found else 0
    for message in found:
        log.error("FAIL: %s", message)
    if not found:
        total = environment.stats.total
        log.info("PASS: %d requests, %d failures (ratio %.4f), p95 %d ms", total.num_requests,
                 total.num_failures, total.fail_ratio, total.get_response_time_percentile(0.95))
    report = _shape_report(environment)
    for row in (report or {}).get("steps", []):
        log.info("step %(step)d: %(users)d users, offered %(offered_tasks_per_s).1f tasks/s, "
                 "achieved %(achieved_rps).1f req/s (%(rps_per_user).2f per user), "
                 "p95 %(p95_ms)s ms, %(failures)d failures", row)
    if report and "knee_step" in report:
        log.info("knee: %s", f"step {report['knee_step']}" if report["knee_step"]
                 else "not reached: add steps or users per step")
    path = getattr(options, "verdict_file", "") or (f"{prefix}_verdict.json" if prefix else "")
    if path:
        _replace(path, lambda file: json.dump(verdict(environment, found), file, indent=2))
