"""The table, the ratios and the targets (issue "Performance as deployed")."""

PEERS = ("fastapi", "granian")


def best_of(results: dict, scenario: str, kind: str):
    """The run of ``kind`` (e.g. every granian thread count) with the most req/s."""
    runs = [(name, r) for name, r in results.get(scenario, {}).items()
            if name.split("-")[0] == kind]
    return max(runs, key=lambda nr: nr[1]["rps"], default=(None, None))


def print_table(results: dict) -> None:
    print(f"\n{'scenario':9} {'server':12} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} "
          f"{'errors':>7} {'CPU us/req':>10} {'RSS MB':>7}")
    for scenario, runs in results.items():
        for name, r in runs.items():
            print(f"{scenario:9} {name:12} {r['rps']:9.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f} "
                  f"{r['errors']:7d} {r['cpu_us']:10.1f} {r['rss_mb']:7.1f}")


def print_databases(results: dict) -> None:
    """The miss path's cost on each Postgres server, per request (runs that measured it)."""
    runs = {name: r for name, r in results.get("miss", {}).items() if "databases" in r}
    if not runs:
        return
    print("\ncatalog-miss path: Postgres per request (CPU us, transactions)")
    for name, r in runs.items():
        cells = [f"{db} {c['cpu_us']:.1f} us, {c['xacts_per_req']:.2f} xacts"
                 for db, c in r["databases"].items()]
        print(f"  {name:14} {r['rps']:7.0f} req/s, worker {r['cpu_us']:.1f} us; "
              + "; ".join(cells))
    base, scaled = runs.get("peregrine"), [r for n, r in runs.items() if n != "peregrine"]
    for r in scaled:
        if base:
            primary = r["databases"]["primary"]["cpu_us"]
            was = base["databases"]["primary"]["cpu_us"]
            print(f"  with replicas: {r['rps'] / base['rps']:.2f}x req/s; primary CPU per "
                  f"request {was:.1f} -> {primary:.1f} us ({primary / was if was else 0:.2f}x)")


def ratios(results: dict) -> dict:
    """Peregrine's req/s (and CPU per request) against each peer's best run."""
    found = {}
    for scenario, runs in results.items():
        ours = runs.get("peregrine")
        if ours is None:
            continue
        for kind in PEERS:
            name, theirs = best_of(results, scenario, kind)
            if theirs is not None:
                found.setdefault(scenario, {})[kind] = {
                    "peer_run": name,
                    "rps": ours["rps"] / theirs["rps"],
                    "cpu": theirs["cpu_us"] / ours["cpu_us"],
                }
    return found


def print_ratios(found: dict) -> None:
    print("\nPeregrine vs each peer's best run (req/s ratio; CPU per request, theirs / ours)")
    for scenario, peers in found.items():
        cells = [f"{kind} ({r['peer_run']}) {r['rps']:.2f}x req/s, {r['cpu']:.2f}x CPU"
                 for kind, r in peers.items()]
        print(f"  {scenario:9} " + "; ".join(cells))


def targets(results: dict, long_run: dict | None) -> list[dict]:
    def rps(scenario, kind):
        return (best_of(results, scenario, kind)[1] or {}).get("rps")

    def ours(scenario):
        return results.get(scenario, {}).get("peregrine")

    checks = []

    def check(name, measured, goal, ok):
        checks.append({"target": name, "measured": measured, "goal": goal,
                       "pass": None if ok is None else bool(ok)})

    product, granian = ours("product"), rps("product", "granian")
    if product and granian:
        check("product read req/s >= 1.2x granian", f"{product['rps'] / granian:.2f}x",
              ">= 1.20x", product["rps"] >= 1.2 * granian)
    if product:
        check("product read p99 < 10 ms", f"{product['p99_ms']:.2f} ms", "< 10 ms",
              product["p99_ms"] < 10)
    me = ours("me")
    better = max(filter(None, (rps("me", k) for k in PEERS)), default=None)
    if me and better:
        check("/v1/users/me req/s >= 2x the better peer", f"{me['rps'] / better:.2f}x",
              ">= 2.00x", me["rps"] >= 2 * better)
    listing, granian = ours("list"), rps("list", "granian")
    if listing and granian:
        check("list page req/s >= 1.2x granian", f"{listing['rps'] / granian:.2f}x",
              ">= 1.20x", listing["rps"] >= 1.2 * granian)
    orders = ours("orders")
    if orders:
        check("POST /v1/orders >= 1,500 req/s, zero errors",
              f"{orders['rps']:.0f} req/s, {orders['errors']} errors", ">= 1500, 0",
              orders["rps"] >= 1500 and orders["errors"] == 0)
    rss = [r["rss_mb"] for runs in results.values() for n, r in runs.items() if n == "peregrine"]
    if long_run:
        rss += [long_run["rss_100k_mb"], long_run["rss_1m_mb"]]
    if rss:
        check("worker RSS <= 80 MB", f"{max(rss):.1f} MB", "<= 80 MB", max(rss) <= 80)
    if long_run:
        growth = long_run["rss_1m_mb"] / long_run["rss_100k_mb"] - 1
        check("RSS growth 100k -> 1M requests < 5%",
              f"{long_run['rss_100k_mb']:.1f} -> {long_run['rss_1m_mb']:.1f} MB "
              f"({growth * 100:+.1f}%)", "< 5%", growth < 0.05)
    else:
        check("RSS growth 100k -> 1M requests < 5%", "not measured (run with --long)",
              "< 5%", None)
    return checks


def print_targets(checks: list[dict]) -> None:
    print("\ntargets (informational)")
    for c in checks:
        verdict = {True: "PASS", False: "FAIL", None: "----"}[c["pass"]]
        print(f"  {verdict}  {c['target']:44} {c['measured']:>28}   goal {c['goal']}")
