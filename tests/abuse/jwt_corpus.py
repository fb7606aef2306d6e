"""Forged, malformed and mis-claimed access tokens against GET /v1/users/me.

Each must answer 401 with the JSON envelope and ``WWW-Authenticate: Bearer``
(one Authorization header over the server's header-field limit is answered
by the HTTP layer instead: 431, see below). A second row holds the 401s to
what the contract adds (RFC 6750 §3.1): ``error="invalid_token"`` and an
``error_description`` that tells an expired token from an invalid one.

Tokens are made with PyJWT where it can make them, by hand where it will
not (alg none, duplicate members, bad base64, forbidden headers).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import time
import uuid
import warnings

import jwt as pyjwt

from tests.abuse.common import Client, Row, describe, envelope_problem, raw, short

ISSUER, AUDIENCE, TYP = "peregrine", "peregrine:access", "at+jwt"
ATTACKER_KEY = b"attacker-key-" + b"k" * 40


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def seg(obj) -> str:
    return b64(obj if isinstance(obj, bytes) else json.dumps(obj, separators=(",", ":")).encode())


def sign(header, payload, key: bytes, digest=hashlib.sha256) -> str:
    signing_input = f"{seg(header)}.{seg(payload)}"
    mac = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(mac)}"


def claims(subject: str, role: str = "user", **over) -> dict:
    now = int(time.time())
    base = {"sub": subject, "role": role, "iat": now, "exp": now + 600, "iss": ISSUER,
            "aud": AUDIENCE, "jti": os.urandom(16).hex()}
    base.update(over)
    return {k: v for k, v in base.items() if v is not DROP}


DROP = object()
HEADER = {"alg": "HS256", "typ": TYP}


def corpus(secret: bytes, user: dict, admin: dict, deleted: dict) -> list[tuple[str, str]]:
    """``(name, Authorization header value)`` pairs, each of which must be refused."""
    uid, now = user["id"], int(time.time())
    ok = claims(uid)
    good = sign(HEADER, ok, secret)
    h, p, s = good.split(".")
    cases: list[tuple[str, str]] = []

    def add(name, token, scheme="Bearer "):
        cases.append((name, scheme + token))

    # alg
    for alg in ("none", "None", "NONE", "nOnE"):
        add(f"alg {alg}, no signature", f"{seg({'alg': alg, 'typ': TYP})}.{p}.")
        add(f"alg {alg}, HS256 signature kept",
            f"{seg({'alg': alg, 'typ': TYP})}.{p}.{s}")
    add("alg missing", sign({"typ": TYP}, ok, secret))
    add("alg null", sign({"alg": None, "typ": TYP}, ok, secret))
    add("alg [HS256]", sign({"alg": ["HS256"], "typ": TYP}, ok, secret))
    add("alg hs256 (case)", sign({"alg": "hs256", "typ": TYP}, ok, secret))
    warnings.filterwarnings("ignore", message="The HMAC key is")
    add("alg HS512 (PyJWT, server key)",
        pyjwt.encode(ok, secret, algorithm="HS512", headers={"typ": TYP}))
    add("alg HS384 (PyJWT, server key)",
        pyjwt.encode(ok, secret, algorithm="HS384", headers={"typ": TYP}))
    add("alg RS256, HMAC with the secret as public key",
        sign({"alg": "RS256", "typ": TYP}, ok, secret))
    add("alg ES256, HMAC with the secret", sign({"alg": "ES256", "typ": TYP}, ok, secret))
    add("alg PS256, HMAC with the secret", sign({"alg": "PS256", "typ": TYP}, ok, secret))
    # signature
    add("signature by another key (PyJWT)",
        pyjwt.encode(ok, ATTACKER_KEY, algorithm="HS256", headers={"typ": TYP}))
    add("signature empty", f"{h}.{p}.")
    add("signature truncated", f"{h}.{p}.{s[:-4]}")
    add("signature doubled", f"{h}.{p}.{s}{s}")
    add("signature last char flipped", f"{h}.{p}.{s[:-1]}{'A' if s[-1] != 'A' else 'Q'}")
    add("payload swapped under the signature",
        f"{h}.{seg(claims(admin['id'], 'admin'))}.{s}")
    add("two segments", f"{h}.{p}")
    add("four segments", f"{good}.{s}")
    add("JWE-shaped (5 segments)", f"{h}.{p}.{s}.{s}.{s}")
    # crit and key-selecting headers
    add("crit [exp]", sign({**HEADER, "crit": ["exp"]}, ok, secret))
    add("crit []", sign({**HEADER, "crit": []}, ok, secret))
    add("kid path traversal, empty key (/dev/null)",
        sign({**HEADER, "kid": "../../../../../../dev/null"}, ok, b""))
    add("kid SQL injection, key 'x'",
        sign({**HEADER, "kid": "x' UNION SELECT 'x' --"}, ok, b"x"))
    add("kid number (server key)", sign({**HEADER, "kid": 1}, ok, secret))
    add("kid object (server key)", sign({**HEADER, "kid": {"$ne": None}}, ok, secret))
    for name, value in (("jku", "https://attacker.example/jwks.json"),
                        ("x5u", "https://attacker.example/cert.pem"),
                        ("x5c", ["MIIBszCCAVmgAwIBAgIUQ"])):
        add(f"{name} header (server key)", sign({**HEADER, name: value}, ok, secret))
    jwk = {"kty": "oct", "k": b64(ATTACKER_KEY)}
    add("jwk header, signed with the embedded key", sign({**HEADER, "jwk": jwk}, ok, ATTACKER_KEY))
    add("jwk header (server key)", sign({**HEADER, "jwk": jwk}, ok, secret))
    # duplicate members: RFC 7515 §4 lets a parser take the last; the issuer
    # never writes duplicates, so a strict verifier refuses them outright.
    dup_h = b'{"alg":"HS256","typ":"at+jwt","alg":"none"}'
    add("duplicate alg (HS256 then none), unsigned", f"{b64(dup_h)}.{p}.")
    dup_h2 = b'{"alg":"none","typ":"at+jwt","alg":"HS256"}'
    signing = f"{b64(dup_h2)}.{p}"
    add("duplicate alg (none then HS256), server key",
        f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}")
    dup_p = json.dumps(ok)[:-1] + f',"sub":"{admin["id"]}","role":"admin"}}'
    signing = f"{h}.{b64(dup_p.encode())}"
    add("duplicate sub/role in payload, server key",
        f"{signing}.{b64(hmac.new(secret, signing.encode(), hashlib.sha256).digest())}")
    # size and encoding
    add("token over 4 KiB (server key)", sign(HEADER, claims(uid, pad="x" * 5000), secret))
    add("padded base64 (= on each segment)", ".".join(
        part + "=" * (-len(part) % 4 or 4) for part in good.split(".")))
    add("padded signature only", f"{h}.{p}.{s}=")
    std = base64.b64encode(hmac.new(secret, f"{h}.{p}".encode(), hashlib.sha256).digest()) \
        .decode().rstrip("=")
    add("signature in standard base64 (+ /)", f"{h}.{p}.{std.replace('-', '+').replace('_', '/')}"
        if ("+" in std or "/" in std) else f"{h}.{p}.{s[:5]}+/{s[7:]}")
    add("'+' and '/' for '-' and '_'", good.replace("-", "+").replace("_", "/")
        if ("-" in good or "_" in good) else f"{h}.{p}+/.{s}")
    add("tab inside the token", f"{h}.\t{p}.{s}")
    add("space inside the token", f"{h}. {p}.{s}")
    add("non-ASCII in the token", f"{h}.{p}.{s}\u00e9")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    # 43 characters carry 258 bits for 256: lenient decoders ignore the last 2.
    add("non-canonical last base64 char", f"{h}.{p}.{s[:-1]}{alphabet[alphabet.index(s[-1]) + 1]}")
    add("header not JSON", f"{b64(b'not json')}.{p}.{s}")
    add("header a JSON array", sign(["HS256"], ok, secret))
    add("payload a JSON array (server key)", sign(HEADER, [ok], secret))
    add("payload not JSON (server key)", sign(HEADER, b"garbage", secret))
    add("payload invalid UTF-8 (server key)", sign(HEADER, b'{"sub":"\xff"}', secret))
    add("payload nested 1k deep (server key)", sign(HEADER, b"[" * 1000 + b"]" * 1000, secret))
    # typ
    add("typ JWT (an ID-token-like JWT)", sign({"alg": "HS256", "typ": "JWT"}, ok, secret))
    add("typ missing", sign({"alg": "HS256"}, ok, secret))
    add("typ refresh+jwt", sign({"alg": "HS256", "typ": "refresh+jwt"}, ok, secret))
    # claims
    for name, over in (
        ("aud wrong", {"aud": "peregrine:refresh"}),
        ("aud missing", {"aud": DROP}),
        ("aud [] empty", {"aud": []}),
        ("aud array without ours", {"aud": ["other", "peregrine"]}),
        ("aud array with a non-string", {"aud": [AUDIENCE, 1]}),
        ("aud nested array", {"aud": [[AUDIENCE]]}),
        ("aud number", {"aud": 1}),
        ("iss wrong", {"iss": "attacker"}),
        ("iss missing", {"iss": DROP}),
        ("iss array", {"iss": [ISSUER]}),
        ("expired an hour ago", {"exp": now - 3600, "iat": now - 4500}),
        ("expired just past the leeway", {"exp": now - 40, "iat": now - 940}),
        ("nbf an hour ahead", {"nbf": now + 3600}),
        ("iat ten years ahead", {"iat": now + 10 * 365 * 86400}),
        ("exp missing", {"exp": DROP}),
        ("exp as string", {"exp": str(now + 600)}),
        ("exp as bool", {"exp": True}),
        ("exp null", {"exp": None}),
        ("nbf as string", {"nbf": str(now)}),
        ("iat as string", {"iat": str(now)}),
        ("sub missing", {"sub": DROP}),
        ("sub as number", {"sub": 12345}),
        ("sub empty", {"sub": ""}),
        ("sub random uuid (no such user)", {"sub": str(uuid.uuid4())}),
        ("sub not a uuid", {"sub": "not-a-uuid"}),
        ("sub SQL, role admin", {"sub": "x' OR '1'='1", "role": "admin"}),
        ("role superadmin", {"role": "superadmin"}),
        ("role missing", {"role": DROP}),
    ):
        add(f"{name} (server key)", sign(HEADER, claims(uid, **over), secret))
    # deleted accounts (the rows are gone; the tokens were minted by the server)
    add("valid token of a deleted user", deleted["user"])
    add("valid token of a deleted admin", deleted["admin"])
    # scheme
    add("scheme Basic", good, scheme="Basic ")
    add("scheme missing", good, scheme="")
    add("scheme Bearer, no token", "", scheme="Bearer ")
    add("two spaces after Bearer", good, scheme="Bearer  ")
    add("scheme Token", good, scheme="Token ")
    return cases


def run(port: int, secret: bytes, user: dict, admin: dict, deleted: dict) -> list[Row]:
    refused = Row("jwt: forged/invalid tokens -> 401 + envelope")
    rfc6750 = Row("jwt: 401 WWW-Authenticate per RFC 6750")
    client = Client(port)
    # The control: the same construction with nothing wrong is accepted.
    now_ok = sign(HEADER, claims(user["id"]), secret)
    status, _, body = client.call("GET", "/v1/users/me",
                                  headers={"Authorization": f"Bearer {now_ok}"})
    refused.case(status == 200, f"control (a hand-made valid token) -> {status} {short(body)}")
    list_aud = sign(HEADER, claims(user["id"], aud=["other", AUDIENCE]), secret)
    status, _, body = client.call("GET", "/v1/users/me",
                                  headers={"Authorization": f"Bearer {list_aud}"})
    refused.case(status == 200, f"control (aud list holding ours, RFC 7519 4.1.3) -> {status}")
    for name, value in corpus(secret, user, admin, deleted):
        try:
            status, headers, body = client.call("GET", "/v1/users/me",
                                                headers={"Authorization": value})
        except (OSError, Exception) as ex:  # noqa: BLE001 - a dropped connection is a failure
            refused.case(False, f"{name}: {type(ex).__name__}: {ex}")
            client.close()
            continue
        problem = None
        if status != 401:
            problem = f"{status} {short(body)}"
        else:
            problem = envelope_problem(status, headers, body, "unauthorized")
            www = headers.get("www-authenticate", "")
            if problem is None and not www.lower().startswith("bearer"):
                problem = f"WWW-Authenticate {www!r}"
        refused.case(problem is None, f"{name}: {problem}")
        if status == 401:
            www = headers.get("www-authenticate", "")
            expired = name.startswith("expired")
            ok = 'error="invalid_token"' in www and "error_description=" in www and (
                ("expired" in www.lower()) == expired)
            rfc6750.case(ok, f"{name}: WWW-Authenticate: {www}")
    client.close()
    # One header line of 1 MiB: over limit_request_field_size (8190), so the
    # HTTP layer must answer before the app: 431 Request Header Fields Too
    # Large (RFC 6585 §5) with the envelope, then close. 400 is tolerated (the
    # generic answer for a head it will not parse); a reset before any answer
    # is not (the client cannot tell it from a crash).
    big = Row("jwt: 1 MiB Authorization line -> 431")
    payload = (b"GET /v1/users/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer "
               + b"A" * (1 << 20) + b"\r\n\r\n")
    ex = raw(port, payload, timeout=5)
    first = ex.responses[0] if ex.responses else None
    ok = first is not None and first.status in (431, 400) and ex.closed and envelope_problem(
        first.status, first.headers, first.body) is None
    big.case(ok, f"1 MiB Authorization: {describe(ex)}")
    over = sign(HEADER, claims(user["id"], pad="x" * 6000), secret)  # ~8.1 KiB line
    payload = f"GET /v1/users/me HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {over}\r\n\r\n"
    ex = raw(port, payload.encode(), timeout=5, read_for=2)
    first = ex.responses[0] if ex.responses else None
    ok = first is not None and first.status in (401, 431) and envelope_problem(
        first.status, first.headers, first.body) is None
    big.case(ok, f"~8 KiB token: {describe(ex)}")
    return [refused, rfc6750, big]
