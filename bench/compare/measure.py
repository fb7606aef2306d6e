"""One measured run: wrk on CPU1 against a server, the worker's CPU and RSS.

wrk's runner and parser are bench/http_workers.py's; this adds the worker's
resident memory and lets the caller say which process is the worker.
"""

import os
import subprocess

from bench.http_workers import cpu_seconds, parse_wrk


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def wrk(url: str, seconds: float, connections: int, options=(), script_args=()) -> dict:
    command = ["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s",
               "--timeout", "5s", "--latency", *options]
    done = subprocess.run([*command, url, *script_args], capture_output=True, text=True,
                          check=False)
    if done.returncode:
        raise RuntimeError(f"wrk exited {done.returncode}: {done.stderr.strip()}")
    return parse_wrk(done.stdout)


class WorkerGone(RuntimeError):
    """The measured worker exited during the run (gunicorn's max_requests recycled it), so
    its CPU per request cannot be read."""


def run(pid: int, url: str, seconds: float, connections: int, options=(), script_args=(),
        warmup: float = 2, probe=None) -> dict:
    """Warm up, then one bounded run; the worker's CPU µs per request and RSS after it.

    ``probe()``, when given, is sampled right before and after the bounded
    run (``result["probe"] = (before, after)``). Raises :class:`WorkerGone`
    when the worker did not live through it.
    """
    if warmup:
        wrk(url, warmup, connections, options, script_args)
    probed = probe() if probe is not None else None
    try:
        before = cpu_seconds(pid)
        result = wrk(url, seconds, connections, options, script_args)
        result["cpu_us"] = (cpu_seconds(pid) - before) / max(result["requests"], 1) * 1e6
    except FileNotFoundError:
        raise WorkerGone(pid) from None
    if not alive(pid):
        raise WorkerGone(pid)
    result["rss_mb"] = rss_mb(pid)
    result["errors"] = result["non_2xx"] + result["socket_errors"]
    if probe is not None:
        result["probe"] = (probed, probe())
    return result


def alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")
