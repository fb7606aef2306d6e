"""schemathesis against /openapi.json of the live server, from its own venv.

schemathesis is pinned in tests/abuse/requirements.txt and installed in
tests/abuse/.venv (``make abuse`` does it), never in the app's .venv. It
runs every operation but the /docs HTML page, all phases (examples,
coverage, fuzzing, stateful), every check (``--checks all``), with a bearer
header. Its NDJSON report is read back and each failed check becomes a line.

Rows:
- "responses": not_a_server_error, status_code_conformance,
  content_type_conformance, response_headers_conformance,
  response_schema_conformance: any failure fails the run.
- "other checks": the rest (ignored_auth, use_after_free, negative data
  accepted, positive data rejected, ...). Two kinds of "schema-valid
  request rejected" (ST202) are the contract, not defects, and are counted
  apart: 422s for rules a JSON Schema cannot state (a cursor the server did
  not issue, since cursors are opaque; a product id or category slug that
  names nothing; the same product on two lines of one order; products
  priced in different currencies in one order, or whose stored prices
  sum beyond what an order's total can hold; an
  Idempotency-Key reused with another body; a webhook URL the deployment
  may not call: its scheme rule is a setting, PEREGRINE_WEBHOOK_ALLOW_HTTP,
  and the public-address rule depends on DNS, so no static schema can say
  it), and the 412 of an If-Match naming no current ETag (a generated tag
  cannot match).
"""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import time
from pathlib import Path

from tests.abuse.by_contract import by_contract
from tests.abuse.common import Row, short

REPO = Path(__file__).resolve().parents[2]
ST = Path(os.environ.get("PEREGRINE_ABUSE_ST", REPO / "tests/abuse/.venv/bin/st"))
RESPONSE_CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                   "response_headers_conformance", "response_schema_conformance")


def run(port: int, label: str, token: str, root: Path, max_examples: int, max_time: int,
        seed: int | None = None) -> list[Row]:
    seed = seed if seed is not None else random.randrange(1 << 31)
    responses = Row(f"schemathesis ({label}): responses conform")
    others = Row(f"schemathesis ({label}): other checks")
    if not ST.exists():
        responses.case(False, f"{ST} is missing: run `make abuse` (it installs "
                              "tests/abuse/requirements.txt into tests/abuse/.venv)")
        return [responses]
    workdir = root / f"schemathesis-{label}"
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [str(ST), "run", f"http://127.0.0.1:{port}/openapi.json",
            "--checks", "all", "--max-examples", str(max_examples), "--max-time", str(max_time),
            "--workers", "2", "--seed", str(seed), "--request-timeout", "5",
            "--header", f"Authorization: Bearer {token}", "--exclude-path", "/docs",
            "--generation-database", "none", "--no-color", "--output-truncate", "true",
            "--report", "ndjson,json", "--report-dir", str(workdir / "report")]
    started = time.monotonic()
    log = open(workdir / "output.txt", "wb")
    proc = subprocess.run(argv, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
                          timeout=max_time + 90)
    took = time.monotonic() - started
    reports = {p.suffix: p for p in (workdir / "report").glob("*")}
    if ".json" not in reports or ".ndjson" not in reports:
        responses.case(False, f"no report (exit {proc.returncode}); see {workdir}/output.txt")
        return [responses]
    summary = json.loads(reports[".json"].read_text())
    generated = summary["test_cases"]["generated"]
    seen, contract = set(), 0
    for line in reports[".ndjson"].read_text().splitlines():
        event = json.loads(line)
        finished = event.get("ScenarioFinished")
        if not finished or "checks" not in finished["recorder"]:
            continue
        recorder = finished["recorder"]
        for case_id, checks in recorder["checks"].items():
            for check in checks:
                if check["status"] == "success":
                    continue
                failure = (check.get("failure_info") or {}).get("failure") or {}
                interaction = recorder.get("interactions", {}).get(case_id) or {}
                request = interaction.get("request") or {}
                response = interaction.get("response") or {}
                status = response.get("status_code", 0)
                content = response.get("content") or {}
                body = base64.b64decode(content["$base64"]) if "$base64" in content else \
                    (content if isinstance(content, bytes) else str(content).encode())
                if by_contract(check["name"], status, body):
                    contract += 1
                    continue
                key = (check["name"], failure.get("operation"), status)
                if key in seen:
                    continue
                seen.add(key)
                req_body = request.get("body")
                if isinstance(req_body, dict) and "$base64" in req_body:
                    req_body = base64.b64decode(req_body["$base64"]).decode("utf-8", "replace")
                ctype = (response.get("headers") or {}).get("content-type")
                text = (f"{check['name']} [{failure.get('code')}] {failure.get('operation')}: "
                        f"{request.get('method')} {request.get('uri')}"
                        + (f" body {str(req_body)[:300]}" if req_body else "")
                        + f" -> {status} {ctype} {short(body, 240)}"
                        + f" ({failure.get('title')}: {(failure.get('message') or '')[:200]})")
                (responses if check["name"] in RESPONSE_CHECKS else others).failures.append(text)
    # schemathesis' own crashes (e.g. hypothesis "Runtime Error") are the
    # tool's, not the service's: noted, with the output file, not failed.
    # Anything else it calls an error (a connection refused, a timeout) is.
    tool_errors = 0
    for error in summary.get("errors") or []:
        if error.get("title") == "Runtime Error":
            tool_errors += error.get("count", 1)
        else:
            responses.failures.append(f"schemathesis error: {json.dumps(error)[:400]}"
                                      f" (see {workdir}/output.txt)")
    responses.cases = others.cases = generated
    responses.note = f"seed {seed}, {took:.0f}s" + (
        f", {tool_errors} schemathesis-internal error(s): {workdir.name}/output.txt"
        if tool_errors else "")
    others.note = (f"{contract} by-contract rejections (cursor, unknown id/slug, duplicate "
                   "line, mixed currencies, total too large, reused Idempotency-Key, "
                   "refused webhook URL, If-Match 412, unknown email link token) apart")
    return [responses, others]
