"""Property tests: the two JWT twins and PyJWT agree on mutated tokens.

Tokens are signed by PyJWT, then maybe mutated (a character flipped, cut,
re-padded, segments swapped, the ``alg`` changed). The pure and the compiled
twin must agree on everything: the verdict, the refusal reason and the
claims. PyJWT must agree on accept/refuse wherever the two designs overlap;
each place where PyJWT is knowingly laxer or stricter is excluded from that
comparison, with the reason, in ``pyjwt_comparable``. Last, hand-rendered
JSON objects, some with a member named twice, must be refused alike.

This file is apart from test_jwt_twins.py so a build without hypothesis can
skip it.
"""

import base64
import datetime
import hmac
import json
from unittest import mock

import jwt as pyjwt
import pytest
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

from hotpath import _jwt_py
from hotpath._jwt_errors import InvalidTokenError
from tests.support import twins

_jwt_c = twins.compiled("jwt")
needs_compiled = pytest.mark.skipif(_jwt_c is None, reason=twins.NOT_BUILT.format("jwt"))

KEY = bytes(range(100, 132))
ISSUER = "peregrine"
AUDIENCE = "peregrine:access"
TYP = "at+jwt"
NOW = 1_700_000_000
TIME_CLAIMS = ("exp", "nbf", "iat")
REGISTERED = ("exp", "nbf", "iat", "iss", "aud", "sub", "jti")
FORBIDDEN_HEADERS = ("crit", "jku", "x5u", "jwk", "x5c")
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

PROPERTY_SETTINGS = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# Lone surrogates are excluded: json.dumps escapes them and json.loads
# (PyJWT) takes them back, msgspec refuses them. Our issuer never signs one.
text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=6,
)
near_times = st.integers(NOW - 90, NOW + 90)
DROP = object()
# Claims start valid; then up to two of them get an odd value or are dropped.
ODD_CLAIMS = {
    "exp": st.one_of(
        near_times,
        near_times.map(lambda t: t + 0.5),
        st.booleans(),
        near_times.map(str),
        st.none(),
    ),
    "iss": st.sampled_from(["other", ""]),  # PyJWT signs a str iss only
    "aud": st.sampled_from(["other", ["other"], [], [AUDIENCE, 7], {"a": AUDIENCE}]),
    "sub": st.sampled_from([42, None, ["user-42"]]),
}
ODD_CLAIMS["nbf"] = ODD_CLAIMS["iat"] = ODD_CLAIMS["exp"]
valid_claims = st.fixed_dictionaries(
    {
        "exp": st.integers(NOW - 60, NOW + 300),
        "iss": st.just(ISSUER),
        "aud": st.sampled_from([AUDIENCE, [AUDIENCE], ["other", AUDIENCE]]),
        "sub": st.sampled_from(["user-42", ""]),
    },
    optional={"nbf": near_times, "iat": near_times},
)
claim_changes = st.lists(st.sampled_from(sorted(ODD_CLAIMS)), max_size=2, unique=True).flatmap(
    lambda names: st.fixed_dictionaries({n: ODD_CLAIMS[n] | st.just(DROP) for n in names})
)
extra_claims = st.dictionaries(
    text.filter(lambda k: k not in REGISTERED), json_values, max_size=3
)
claims = st.builds(
    lambda valid, changes, extra: {
        name: value
        for name, value in {**valid, **changes, **extra}.items()
        if value is not DROP
    },
    valid_claims,
    claim_changes,
    extra_claims,
)
headers = st.fixed_dictionaries(
    {"typ": st.sampled_from([TYP, TYP, TYP, "JWT", None])},
    optional={
        "kid": text,
        "cty": text,
        "jku": st.just("https://attacker.example/keys"),
    },
)


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def resign_with_alg(token, alg):
    """Give the token another ``alg`` and a valid HS256 MAC over it."""
    header_b64, payload_b64, _ = token.split(".")
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=="))
    if alg is None:
        header.pop("alg")
    else:
        header["alg"] = alg
    signing_input = f"{b64(json.dumps(header).encode())}.{payload_b64}"
    return f"{signing_input}.{b64(hmac.digest(KEY, signing_input.encode(), 'sha256'))}"


@st.composite
def mutated(draw, token):
    """Return ``(kind, token)``: the token, maybe changed in one way."""
    if draw(st.booleans()):
        return "none", token
    kind = draw(
        st.sampled_from(
            ["flip", "cut", "insert", "repad", "swap", "alg", "segments"]
        )
    )
    parts = token.split(".")
    # Aim at one segment: positions near 0 would otherwise dominate.
    index = draw(st.integers(0, 2))
    start = sum(len(part) + 1 for part in parts[:index])
    position = start + draw(st.integers(0, max(len(parts[index]) - 1, 0)))
    char = draw(st.sampled_from(ALPHABET + ".=+/ \n!é"))
    if kind == "flip":
        token = token[:position] + char + token[position + 1 :]
    elif kind == "cut":
        token = token[:position]
    elif kind == "insert":
        token = token[:position] + char + token[position:]
    elif kind == "repad":
        parts[index] += draw(st.sampled_from(["=", "==", "==="]))
        token = ".".join(parts)
    elif kind == "swap":
        i, j = draw(st.sampled_from([(0, 1), (1, 2), (0, 2)]))
        parts[i], parts[j] = parts[j], parts[i]
        token = ".".join(parts)
    elif kind == "alg":
        alg = draw(st.sampled_from(["none", "NONE", "HS512", "RS256", "hs256", None]))
        token = resign_with_alg(token, alg)
    elif kind == "segments":
        token = draw(st.sampled_from([".".join(parts[:2]), f"{token}.{parts[2]}"]))
    return kind, token


def outcome(twin, token, **options):
    """What ``verify`` did: ``("ok", claims)`` or ``("refused", reason)``."""
    try:
        return "ok", twin.verify(token, KEY, **options)
    except InvalidTokenError as ex:
        return "refused", ex.reason


class _FrozenDatetime(datetime.datetime):
    """Stands in for ``datetime`` in PyJWT so it checks times at ``at``."""

    at = 0

    @classmethod
    def now(cls, tz=None):
        return datetime.datetime.fromtimestamp(cls.at, tz)


def pyjwt_outcome(token, now, leeway):
    """PyJWT's verdict with the same checks; ``None`` when it refuses."""
    _FrozenDatetime.at = now
    try:
        with mock.patch.object(pyjwt.api_jwt, "datetime", _FrozenDatetime):
            result = pyjwt.decode(
                token,
                KEY,
                algorithms=["HS256"],
                audience=AUDIENCE,
                issuer=ISSUER,
                leeway=leeway,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
    except pyjwt.PyJWTError:
        return None
    # PyJWT does not check typ (RFC 8725 §3.11); do it as the app would.
    return result if pyjwt.get_unverified_header(token).get("typ") == TYP else None


def pyjwt_comparable(kind, token, header, payload, now, leeway):
    """Whether the token is in the domain where PyJWT and we must agree."""
    if kind == "repad":
        # PyJWT 2.15 takes '=' padding (pyjwt#1211, for AWS ALB tokens);
        # RFC 7515 §2 omits it and we refuse it.
        return False
        return False  # PyJWT has no length cap; we refuse before parsing.
    if any(name in header for name in FORBIDDEN_HEADERS):
        return False  # PyJWT ignores jku/x5u/jwk/x5c; we refuse them.
    for name in TIME_CLAIMS:
        if name in payload:
            value = payload[name]
            # PyJWT int()s times: it takes "123" and True, and truncates
            # 1.5; we take JSON numbers only and compare them exactly.
            if type(value) is not int:
                return False
    # PyJWT expires at exp == now - leeway; we allow up to exp + leeway.
    return payload.get("exp") != now - leeway


times = st.tuples(st.integers(NOW - 60, NOW + 60), st.sampled_from([0, 1, 30]))


@PROPERTY_SETTINGS
@given(
    claims=st.builds(lambda valid, extra: {**valid, **extra}, valid_claims, extra_claims),
    kid=st.none() | text,
    leeway=st.sampled_from([0, 1, 30]),
)
def test_twins_and_pyjwt_accept_the_same_valid_tokens(claims, kid, leeway):
    header = {"typ": TYP} if kid is None else {"typ": TYP, "kid": kid}
    token = pyjwt.encode(claims, KEY, algorithm="HS256", headers=header)
    # The last second before exp + leeway: every time claim is good there,
    # and PyJWT's exp edge (now == exp + leeway) is one second away.
    now = claims["exp"] + leeway - 1
    assume(max(claims.get("nbf", 0), claims.get("iat", 0)) <= now + leeway)
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": now, "leeway": leeway}
    assert outcome(_jwt_py, token, **options) == ("ok", claims)
    if _jwt_c is not None:
        assert outcome(_jwt_c, token, **options) == ("ok", claims)
    assert pyjwt_outcome(token, now, leeway) == claims


@PROPERTY_SETTINGS
@given(claims=claims, header=headers, data=st.data(), clock=times)
def test_twins_and_pyjwt_agree_on_mutated_tokens(claims, header, data, clock):
    now, leeway = clock
    signed = pyjwt.encode(claims, KEY, algorithm="HS256", headers=header)
    kind, token = data.draw(mutated(signed), label="mutation")
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": now, "leeway": leeway}

    expected = outcome(_jwt_py, token, **options)
    event(f"{kind}: {expected[0] if expected[0] == 'ok' else expected[1]}")
    if _jwt_c is not None:
        assert outcome(_jwt_c, token, **options) == expected
    if kind == "none":
        assert expected[0] == "ok" or expected[1] not in ("malformed", "bad_signature")

    if pyjwt_comparable(kind, token, header, claims, now, leeway):
        by_pyjwt = pyjwt_outcome(token, now, leeway)
        if expected[0] == "ok":
            assert by_pyjwt == expected[1]
        else:
            assert by_pyjwt is None, expected[1]


@needs_compiled
@PROPERTY_SETTINGS
@given(
    claims=claims,
    kid=st.one_of(st.none(), text, st.integers()),
    table=st.dictionaries(text, st.sampled_from([KEY, bytes(32), KEY * 2]), max_size=3),
)
def test_twins_agree_on_key_tables(claims, kid, table):
    header = {"alg": "HS256", "typ": TYP}
    if kid is not None:
        header["kid"] = kid
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    token = f"{signing_input}.{b64(hmac.digest(KEY, signing_input.encode(), 'sha256'))}"
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": NOW}
    assert outcome(_jwt_c, token, **options) == outcome(_jwt_py, token, **options)


@needs_compiled
@PROPERTY_SETTINGS
@given(token=st.one_of(st.text(max_size=5000), st.binary(max_size=5000)))
def test_twins_refuse_arbitrary_input_alike(token):
    # Fuzz: any input is refused with the same reason, never a crash.
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": NOW}
    expected = outcome(_jwt_py, token, **options)
    assert expected[0] == "refused"
    assert outcome(_jwt_c, token, **options) == expected


@needs_compiled
@PROPERTY_SETTINGS
@given(
segments=st.lists(st.text(ALPHABET, max_size=60), min_size=3, max_size=3))
def test_twins_agree_on_base64url_edge_cases(segments):
    # Well-formed shapes with every trailing character: exercises the
    # canonical-bits and decoding paths rather than the alphabet check.
    token = ".".join(segments)
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": NOW}
    assert outcome(_jwt_c, token, **options) == outcome(_jwt_py, token, **options)


# ------------------------------------------------------ duplicate members

# Few names, so members collide often; with quotes, backslashes, commas,
# braces and non-ASCII to trip up a scanner of the JSON text.
member_names = st.sampled_from(["role", "x", "é", "😀", 'a"b', "a\\", "r,le", "{[", ""])
tricky_text = st.text(
    st.sampled_from(',{}[]":\\ aé😀\n') | st.characters(exclude_categories=("Cs",)), max_size=6
)
member_values = st.recursive(
    st.none() | st.booleans() | st.integers() | tricky_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_text, inner, max_size=3),
    max_leaves=5,
)
# Raw nested objects with a duplicate, and what msgspec makes of them.
NESTED_DUPLICATES = [
    ('{"a":1,"a":2}', {"a": 2}),
    ('[{"k":",","k":"}"}]', [{"k": "}"}]),
]
blank = st.sampled_from(["", "", " ", "\n", "\t", "\r\n  "])


@st.composite
def json_key(draw, name):
    """``name`` as a JSON string, each character maybe a \\u escape."""
    out = []
    for char in name:
        if char in '"\\' or draw(st.integers(0, 3)) == 0:
            units = char.encode("utf-16-be")
            out.extend(f"\\u{units[i:i + 2].hex()}" for i in range(0, len(units), 2))
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


@st.composite
def json_object(draw, members):
    """Render ``(name, value)`` pairs as one JSON object, duplicates kept.

    A value is a JSON-able object or a ``(text, decoded)`` pair to insert
    verbatim. Returns ``(text, whether every name is distinct)``.
    """
    parts = []
    for name, value in members:
        if isinstance(value, tuple):
            text = value[0]
        else:
            text = json.dumps(value, ensure_ascii=draw(st.booleans()))
        key = draw(json_key(name))
        parts.append(f"{draw(blank)}{key}{draw(blank)}:{draw(blank)}{text}{draw(blank)}")
    text = "{" + ",".join(parts) + (draw(blank) if not parts else "") + "}"
    names = [name for name, _ in members]
    # The rendering is right: the standard library reads the same names.
    assert [name for name, _ in json.loads(text, object_pairs_hook=list)] == names
    return text.encode(), len(set(names)) == len(names)


@st.composite
def with_duplicates(draw, base, max_extras, repeat_one):
    """``base`` members plus extras, and maybe one of them again."""
    extras = draw(
        st.lists(
            st.tuples(member_names, member_values | st.sampled_from(NESTED_DUPLICATES)),
            max_size=max_extras,
        )
    )
    members = base + extras
    if draw(repeat_one):
        name, value = draw(st.sampled_from(members))
        value = draw(st.just(value) | member_values)  # the same value or not
        members.insert(draw(st.integers(0, len(members))), (name, value))
    draw(st.randoms()).shuffle(members)
    return members


def decoded_values(members):
    return [(name, value[1] if isinstance(value, tuple) else value) for name, value in members]


@PROPERTY_SETTINGS
@given(data=st.data())
def test_twins_refuse_duplicate_members_alike(data):
    # The payload is only read once the header passes: fewer header clashes.
    header_members = data.draw(
        with_duplicates([("alg", "HS256"), ("typ", TYP)], 2, st.sampled_from([True] + [False] * 3)),
        label="header",
    )
    claim_members = data.draw(
        with_duplicates(
            [("iss", ISSUER), ("aud", AUDIENCE), ("sub", "user-42"), ("exp", NOW + 60)],
            4,
            st.booleans(),
        ),
        label="claims",
    )
    header_text, header_distinct = data.draw(json_object(header_members))
    payload_text, claims_distinct = data.draw(json_object(claim_members))
    signing_input = f"{b64(header_text)}.{b64(payload_text)}"
    token = f"{signing_input}.{b64(hmac.digest(KEY, signing_input.encode(), 'sha256'))}"
    assume(len(token) <= _jwt_py.MAX_TOKEN_LENGTH)

    if not header_distinct:
        expected = ("refused", "bad_header")
    elif not claims_distinct:
        expected = ("refused", "bad_payload")
    else:
        expected = ("ok", dict(decoded_values(claim_members)))
    event(expected[0] if expected[0] == "ok" else expected[1])
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": NOW}
    assert outcome(_jwt_py, token, **options) == expected
    if _jwt_c is not None:
        assert outcome(_jwt_c, token, **options) == expected
