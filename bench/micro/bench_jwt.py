"""Micro-benchmark: µs per HS256 access-token verify, PyJWT against our twins.

    .venv/bin/python bench/micro/bench_jwt.py [--number N] [--repeat R]

Every contender verifies the same 10-claim token with the same checks
(signature, alg, exp, nbf, iat with a 30 s leeway, iss, aud, sub) and must
return the same claims before it is timed. PyJWT is not asked to check
``typ``, which it does not do itself; adding that would only slow it down,
so the speed-ups printed are conservative.

Timing is the best of R interleaved ``timeit`` runs of N calls each, with
the cyclic GC off while timing and a collection before each run. The last
line is JSON.
"""

import argparse
import gc
import json
import os
import platform
import sys
import time
import timeit

import jwt

# Run as a script from anywhere: import hotpath from this checkout.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from hotpath import _jwt_py

try:
    from hotpath import _jwt_c
except ImportError:
    _jwt_c = None

KEY = bytes(range(100, 132))
ISSUER = "peregrine"
AUDIENCE = "peregrine:access"
TYP = "at+jwt"


def make_token():
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-1234567",
        "exp": now + 900,
        "nbf": now,
        "iat": now,
        "jti": "6f1c1b5e-2d0a-4b8e-9d4f-3a2b1c0d9e8f",
        "role": "user",
        "sid": "s-7f3a9c2e41b8",
        "scope": "catalog:read orders:read orders:write",
    }
    return jwt.encode(claims, KEY, algorithm="HS256", headers={"typ": TYP}), claims


def contenders(token):
    """Yield ``(name, zero-argument callable)`` for each implementation."""
    options = {"require": ["exp", "iss", "aud", "sub"]}
    yield "pyjwt", lambda: jwt.decode(
        token,
        KEY,
        algorithms=["HS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=30,
        options=options,
    )
    twins = [("pure", _jwt_py)] + ([("cython", _jwt_c)] if _jwt_c else [])
    for name, twin in twins:
        yield name, lambda verify=twin.verify: verify(
            token, KEY, issuer=ISSUER, audience=AUDIENCE, typ=TYP, leeway=30
        )


def measure(funcs, number, repeat):
    """Return ``{name: best µs per call}`` over ``repeat`` rounds.

    Rounds interleave the contenders, so a burst of load on the machine hits
    them all rather than skewing one ratio.
    """
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeat):
        for name, func in funcs.items():
            gc.collect()
            gc.disable()
            try:
                best[name] = min(best[name], timeit.timeit(func, number=number))
            finally:
                gc.enable()
    return {name: seconds / number * 1e6 for name, seconds in best.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--number", type=int, default=20_000, help="calls per run")
    parser.add_argument("--repeat", type=int, default=9, help="runs; the best counts")
    args = parser.parse_args(argv)

    token, claims = make_token()
    print(f"token: {len(token)} chars, {len(claims)} claims; "
          f"Python {platform.python_version()}, PyJWT {jwt.__version__}")
    if _jwt_c is None:
        print("cython: hotpath/_jwt_c is not built (python setup.py build_ext --inplace)")

    funcs = dict(contenders(token))
    for name, func in funcs.items():
        if func() != claims:
            sys.exit(f"{name} returned different claims")
    results = measure(funcs, args.number, args.repeat)

    baseline = results["pyjwt"]
    for name, usec in results.items():
        print(f"{name:>7}: {usec:7.2f} µs/verify  {baseline / usec:5.1f}x vs PyJWT")
    print(json.dumps({"usec_per_verify": results, "token_chars": len(token)}))


if __name__ == "__main__":
    main()
