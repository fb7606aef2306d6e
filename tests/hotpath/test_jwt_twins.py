"""Both JWT twins against the same cases: known answers and every refusal.

Every test runs once per twin (``py`` and ``c``) and checks the exact
``InvalidTokenError.reason``, so the twins are held to the same behaviour,
not just the same verdict.
"""

import base64
import hmac
import json
import time

import jwt as pyjwt
import pytest

from hotpath import _jwt_py
from hotpath._jwt_errors import InvalidTokenError
from tests.support import twins

TWINS = twins.params("jwt")

KEY = bytes(range(100, 132))
OTHER_KEY = bytes(range(200, 232))
ISSUER = "peregrine"
AUDIENCE = "peregrine:access"
TYP = "at+jwt"
NOW = 1_700_000_000
HEADER = {"alg": "HS256", "typ": TYP}
CLAIMS = {
    "iss": ISSUER,
    "aud": AUDIENCE,
    "sub": "user-42",
    "exp": NOW + 600,
    "iat": NOW,
    "nbf": NOW,
    "role": "user",
}

# RFC 7515 Appendix A.1: the HS256 example and its published JWK "k".
RFC7515_A1_TOKEN = (
    "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9"
    ".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
    ".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)
RFC7515_A1_KEY = base64.urlsafe_b64decode(
    "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow=="
)


@pytest.fixture(params=TWINS)
def twin(request):
    return request.param


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(value):
    """Encode a header or payload: a JSON-able value, or raw bytes as is."""
    if not isinstance(value, bytes):
        value = json.dumps(value, separators=(",", ":")).encode()
    return b64(value)


def sign(header_b64, payload_b64, key=KEY):
    signing_input = f"{header_b64}.{payload_b64}"
    mac = hmac.digest(key, signing_input.encode("ascii"), "sha256")
    return f"{signing_input}.{b64(mac)}"


def make_token(claims=CLAIMS, header=HEADER, key=KEY):
    return sign(segment(header), segment(claims), key)


def with_claims(**changes):
    """CLAIMS with ``changes`` applied; a value of ``...`` removes the claim."""
    claims = {**CLAIMS, **changes}
    return {name: value for name, value in claims.items() if value is not ...}


def with_header(**changes):
    header = {**HEADER, **changes}
    return {name: value for name, value in header.items() if value is not ...}


def check(twin, token, key=KEY, **options):
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP, "now": NOW, **options}
    return twin.verify(token, key, **options)


def reason_of(twin, token, key=KEY, **options):
    with pytest.raises(InvalidTokenError) as info:
        check(twin, token, key, **options)
    assert str(info.value) == info.value.reason
    return info.value.reason


VALID = make_token()
H, P, S = VALID.split(".")


# ---------------------------------------------------------------- accepted


def test_valid_token_returns_its_claims(twin):
    assert check(twin, VALID) == CLAIMS


def test_bytes_token_is_accepted(twin):
    assert check(twin, VALID.encode("ascii")) == CLAIMS


def test_str_and_bytes_subclasses_are_accepted(twin):
    class Token(str):
        pass

    class Key(bytes):
        pass

    assert check(twin, Token(VALID), key=Key(KEY)) == CLAIMS
    token = make_token(header=with_header(kid="k"))
    assert check(twin, token, key={"k": Key(KEY)}) == CLAIMS


def test_pyjwt_signed_token_is_accepted(twin):
    token = pyjwt.encode(CLAIMS, KEY, algorithm="HS256", headers={"typ": TYP})
    assert check(twin, token) == CLAIMS


def test_now_defaults_to_the_current_time(twin):
    current = int(time.time())
    fresh = make_token(with_claims(exp=current + 600, iat=current, nbf=current))
    stale = make_token(with_claims(exp=current - 600, iat=..., nbf=...))
    options = {"issuer": ISSUER, "audience": AUDIENCE, "typ": TYP}
    assert twin.verify(fresh, KEY, **options)["exp"] == current + 600
    with pytest.raises(InvalidTokenError, match="expired"):
        twin.verify(stale, KEY, **options)


def test_token_of_exactly_the_length_cap_is_accepted(twin):
    # Grow a filler claim until the token is exactly 4096 characters.
    for size in range(2500, 3100):
        token = make_token(with_claims(filler="x" * size))
        if len(token) == _jwt_py.MAX_TOKEN_LENGTH:
            break
    assert len(token) == 4096
    assert check(twin, token)["filler"] == "x" * size
    assert reason_of(twin, token + "A") == "oversized"


@pytest.mark.parametrize(
    ("claims", "now"),
    [
        pytest.param(with_claims(exp=NOW - 30), NOW, id="exp-at-leeway-edge"),
        pytest.param(with_claims(nbf=NOW + 30), NOW, id="nbf-at-leeway-edge"),
        pytest.param(with_claims(iat=NOW + 30), NOW, id="iat-at-leeway-edge"),
        pytest.param(with_claims(exp=NOW + 0.5), NOW + 30.5, id="float-times"),
        pytest.param(with_claims(nbf=..., iat=...), NOW, id="no-nbf-no-iat"),
        pytest.param(with_claims(aud=["other", AUDIENCE]), NOW, id="aud-list"),
        pytest.param(with_claims(sub=""), NOW, id="empty-sub-like-pyjwt"),
        pytest.param(with_claims(exp=10**30), NOW, id="huge-int-exp"),
    ],
)
def test_edge_cases_that_are_accepted(twin, claims, now):
    assert check(twin, make_token(claims), now=now) == claims


def test_leeway_is_configurable(twin):
    token = make_token(with_claims(exp=NOW - 1))
    assert reason_of(twin, token, leeway=0) == "expired"
    assert check(twin, token, leeway=1)["exp"] == NOW - 1


def test_header_extras_and_a_kid_are_allowed_with_a_single_key(twin):
    token = make_token(header=with_header(kid="2024-01", cty="x"))
    assert check(twin, token) == CLAIMS


def test_key_table_selects_the_key_by_kid(twin):
    table = {"old": OTHER_KEY, "new": KEY}
    token = make_token(header=with_header(kid="new"))
    assert check(twin, token, key=table) == CLAIMS
    assert check(twin, make_token(header=with_header(kid="old"), key=OTHER_KEY), key=table)


# ---------------------------------------------- RFC 7515 A.1 known answer


def test_rfc7515_a1_signature_verifies_and_then_the_claims_decide(twin):
    """The published HS256 example passes every check up to the claims.

    The example has ``typ: JWT``, ``iss: joe``, an ``exp`` in 2011 and no
    ``aud`` or ``sub``, so it can never be accepted as one of our access
    tokens. Checks run in a fixed order and ``aud`` comes after the
    signature, ``exp`` and ``iss``: failing on ``bad_aud`` proves those all
    passed. The tampered copies show a bad MAC fails before that.
    """
    options = {"typ": "JWT", "issuer": "joe", "audience": AUDIENCE, "now": 1300819380}
    assert reason_of(twin, RFC7515_A1_TOKEN, RFC7515_A1_KEY, **options) == "bad_aud"

    header, payload, signature = RFC7515_A1_TOKEN.split(".")
    flipped = ("B" if signature[0] == "A" else "A") + signature[1:]
    tampered = f"{header}.{payload}.{flipped}"
    assert reason_of(twin, tampered, RFC7515_A1_KEY, **options) == "bad_signature"
    wrong_key = bytes(len(RFC7515_A1_KEY))
    assert reason_of(twin, RFC7515_A1_TOKEN, wrong_key, **options) == "bad_signature"
    # Past exp + leeway the same token fails on time, not on its MAC.
    late = {**options, "now": 1300819380 + 31}
    assert reason_of(twin, RFC7515_A1_TOKEN, RFC7515_A1_KEY, **late) == "expired"


# --------------------------------------------------------------- refused


def _tampered_payload():
    other = segment(with_claims(role="admin"))
    return f"{H}.{other}.{S}"


def _flip_first(text):
    return ("B" if text[0] == "A" else "A") + text[1:]


REFUSALS = [
    # Shape and encoding.
    pytest.param("A" * 4097, "oversized", id="oversized"),
    pytest.param("é" * 4097, "oversized", id="oversized-before-decoding"),
    pytest.param(f"{H}.{P}", "malformed", id="two-segments"),
    pytest.param(f"{VALID}.{S}", "malformed", id="four-segments"),
    pytest.param("", "malformed", id="empty"),
    pytest.param(f"{H}.{P}.{S}=", "malformed", id="padded-signature"),
    pytest.param(f"{segment(HEADER)}=.{P}.{S}", "malformed", id="padded-header"),
    pytest.param(VALID.replace(".", "=.", 1), "malformed", id="padding-before-dot"),
    pytest.param(f"{H}.{P}.{S[:-1]}+", "malformed", id="plus-char"),
    pytest.param(f"{H}.{P}.{S[:-1]}/", "malformed", id="slash-char"),
    pytest.param(f"{H}.{P}.{S[:20]} {S[21:]}", "malformed", id="space"),
    pytest.param(f"{VALID}\n", "malformed", id="trailing-newline"),
    pytest.param(f" {VALID}", "malformed", id="leading-space"),
    pytest.param(f"{H}.{P}.{S[:-1]}é", "malformed", id="non-ascii"),
    pytest.param(f"{H}.{P}.{S[:-1]}!", "malformed", id="bang"),
    pytest.param(f"{H}.{P}.{S}AA", "malformed", id="length-1-mod-4"),
    # S is 43 characters: its last one carries 2 padding bits that must be 0.
    pytest.param(f"{H}.{P}.{S[:-1]}B", "malformed", id="non-canonical-bits"),
    # Header, before any MAC is computed.
    pytest.param(sign(segment([]), P), "bad_header", id="array-header"),
    pytest.param(sign(segment("HS256"), P), "bad_header", id="string-header"),
    pytest.param(sign(segment(b"{alg:HS256}"), P), "bad_header", id="invalid-json-header"),
    pytest.param(sign(segment(b'{"alg":"\xff"}'), P), "bad_header", id="invalid-utf8-header"),
    pytest.param(sign(segment(b""), P), "bad_header", id="empty-header"),
    pytest.param(sign(segment(b"[" * 1500), P), "bad_header", id="deep-header"),
    pytest.param(f"{segment(with_header(alg='none'))}.{P}.", "bad_alg", id="alg-none"),
    pytest.param(make_token(header=with_header(alg="none")), "bad_alg", id="alg-none-signed"),
    pytest.param(make_token(header=with_header(alg="NONE")), "bad_alg", id="alg-NONE"),
    pytest.param(make_token(header=with_header(alg="HS512")), "bad_alg", id="alg-HS512"),
    pytest.param(make_token(header=with_header(alg="RS256")), "bad_alg", id="alg-RS256"),
    pytest.param(make_token(header=with_header(alg="hs256")), "bad_alg", id="alg-lowercase"),
    pytest.param(make_token(header=with_header(alg=...)), "bad_alg", id="alg-missing"),
    pytest.param(make_token(header=with_header(alg=["HS256"])), "bad_alg", id="alg-list"),
    pytest.param(make_token(header=with_header(typ="JWT")), "bad_typ", id="typ-JWT"),
    pytest.param(make_token(header=with_header(typ=...)), "bad_typ", id="typ-missing"),
    pytest.param(make_token(header=with_header(typ="AT+JWT")), "bad_typ", id="typ-case"),
    pytest.param(make_token(header=with_header(jku="https://x/k")), "forbidden_header", id="jku"),
    pytest.param(make_token(header=with_header(x5u="https://x/c")), "forbidden_header", id="x5u"),
    pytest.param(make_token(header=with_header(jwk={"k": "x"})), "forbidden_header", id="jwk"),
    pytest.param(make_token(header=with_header(x5c=["MII"])), "forbidden_header", id="x5c"),
    pytest.param(make_token(header=with_header(crit=["exp"])), "forbidden_header", id="crit"),
    pytest.param(make_token(header=with_header(kid=7)), "bad_kid", id="kid-not-string"),
    pytest.param(make_token(header=with_header(kid=None)), "bad_kid", id="kid-null"),
    # Signature.
    pytest.param(_tampered_payload(), "bad_signature", id="tampered-payload"),
    pytest.param(f"{H}.{P}.{_flip_first(S)}", "bad_signature", id="tampered-signature"),
    pytest.param(f"{P}.{H}.{S}", "bad_alg", id="swapped-segments"),
    pytest.param(make_token(key=OTHER_KEY), "bad_signature", id="other-key"),
    pytest.param(f"{H}.{P}.", "bad_signature", id="empty-signature"),
    pytest.param(f"{H}.{P}.{S[:-3]}", "bad_signature", id="short-signature"),
    pytest.param(f"{H}.{P}.{b64(bytes(64))}", "bad_signature", id="long-signature"),
    # Payload, signed: only a good MAC lets these reach the claims parser.
    pytest.param(make_token([]), "bad_payload", id="array-payload"),
    pytest.param(make_token(b'{"exp":1'), "bad_payload", id="invalid-json-payload"),
    pytest.param(make_token(b'{"sub":"\xc3"}'), "bad_payload", id="invalid-utf8-payload"),
    pytest.param(make_token(b'{"exp":NaN}'), "bad_payload", id="nan-payload"),
    # Claims.
    pytest.param(make_token(with_claims(exp=NOW - 31)), "expired", id="expired"),
    pytest.param(make_token(with_claims(exp=...)), "bad_exp", id="exp-missing"),
    pytest.param(make_token(with_claims(exp=True)), "bad_exp", id="exp-bool"),
    pytest.param(make_token(with_claims(exp=str(NOW + 600))), "bad_exp", id="exp-string"),
    pytest.param(make_token(with_claims(exp=None)), "bad_exp", id="exp-null"),
    pytest.param(make_token(with_claims(nbf=NOW + 31)), "not_yet_valid", id="future-nbf"),
    pytest.param(make_token(with_claims(nbf=False)), "bad_nbf", id="nbf-bool"),
    pytest.param(make_token(with_claims(iat=NOW + 31)), "issued_in_future", id="future-iat"),
    pytest.param(make_token(with_claims(iat="0")), "bad_iat", id="iat-string"),
    pytest.param(make_token(with_claims(iss="evil")), "bad_iss", id="wrong-iss"),
    pytest.param(make_token(with_claims(iss=...)), "bad_iss", id="iss-missing"),
    pytest.param(make_token(with_claims(iss=[ISSUER])), "bad_iss", id="iss-list"),
    pytest.param(make_token(with_claims(aud="other")), "bad_aud", id="wrong-aud"),
    pytest.param(make_token(with_claims(aud=...)), "bad_aud", id="aud-missing"),
    pytest.param(make_token(with_claims(aud=["other"])), "bad_aud", id="aud-list-without-ours"),
    pytest.param(make_token(with_claims(aud=[])), "bad_aud", id="aud-empty-list"),
    pytest.param(make_token(with_claims(aud=[AUDIENCE, 1])), "bad_aud", id="aud-list-non-string"),
    pytest.param(make_token(with_claims(aud={"a": AUDIENCE})), "bad_aud", id="aud-object"),
    pytest.param(make_token(with_claims(sub=...)), "bad_sub", id="sub-missing"),
    pytest.param(make_token(with_claims(sub=42)), "bad_sub", id="sub-number"),
]


@pytest.mark.parametrize(("token", "reason"), REFUSALS)
def test_refused_with_reason(twin, token, reason):
    assert reason_of(twin, token) == reason


SHAPE_REFUSALS = [case for case in REFUSALS if case.values[1] in ("oversized", "malformed")]


@pytest.mark.parametrize(("token", "reason"), SHAPE_REFUSALS)
def test_bytes_tokens_are_refused_alike(twin, token, reason):
    assert reason_of(twin, token.encode("utf-8")) == reason


def test_non_ascii_bytes_token_is_malformed(twin):
    assert reason_of(twin, VALID.encode("ascii") + b"\xff") == "malformed"


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        pytest.param(with_header(kid="gone"), "unknown_kid", id="unknown-kid"),
        pytest.param(with_header(kid="../../etc/passwd"), "unknown_kid", id="path-kid"),
        pytest.param(HEADER, "bad_kid", id="kid-missing"),
        pytest.param(with_header(kid=["new"]), "bad_kid", id="kid-list"),
    ],
)
def test_key_table_refusals(twin, header, reason):
    assert reason_of(twin, make_token(header=header), key={"new": KEY}) == reason


def test_a_repeated_header_is_checked_on_every_call(twin):
    # The compiled twin keeps the last decoded header; it must still be
    # held to each call's typ and key.
    token = make_token(header=with_header(kid="k"))
    assert check(twin, token, key={"k": KEY}) == CLAIMS
    assert reason_of(twin, token, typ="JWT") == "bad_typ"
    assert reason_of(twin, token, key={"k": OTHER_KEY}) == "bad_signature"
    assert reason_of(twin, token, key={"other": KEY}) == "unknown_kid"
    assert check(twin, token) == CLAIMS


def test_key_table_uses_the_kid_key_only(twin):
    token = make_token(header=with_header(kid="old"))  # signed with KEY
    table = {"old": OTHER_KEY, "new": KEY}
    assert reason_of(twin, token, key=table) == "bad_signature"


# ------------------------------------------------- configuration errors


@pytest.mark.parametrize(
    ("key", "error"),
    [
        pytest.param(KEY[:31], ValueError, id="short-key"),
        pytest.param(KEY.decode("latin-1"), TypeError, id="str-key"),
        pytest.param(bytearray(KEY), TypeError, id="bytearray-key"),
        pytest.param(None, TypeError, id="no-key"),
        pytest.param({"k": KEY[:31]}, ValueError, id="short-key-in-table"),
        pytest.param({"k": "secret" * 8}, TypeError, id="str-key-in-table"),
    ],
)
def test_bad_keys_are_configuration_errors(twin, key, error):
    token = make_token(header=with_header(kid="k"))
    with pytest.raises(error) as info:
        check(twin, token, key=key)
    assert not isinstance(info.value, InvalidTokenError)


@pytest.mark.parametrize("token", [None, 42, bytearray(VALID, "ascii")])
def test_token_of_the_wrong_type_is_a_type_error(twin, token):
    with pytest.raises(TypeError):
        check(twin, token)


# ------------------------------------------------------------- contract


def test_twins_share_one_exception_class(twin):
    assert twin.InvalidTokenError is InvalidTokenError
    assert issubclass(InvalidTokenError, ValueError)


def test_pure_twin_compares_macs_with_compare_digest(monkeypatch):
    calls = []
    compare_digest = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return compare_digest(a, b)

    monkeypatch.setattr(_jwt_py.hmac, "compare_digest", spy)
    check(_jwt_py, VALID)
    assert calls == [(base64.urlsafe_b64decode(S + "="),) * 2]


# ------------------------------------------------------ duplicate members
#
# RFC 7515 §4 lets a parser refuse a member named twice or keep the last;
# msgspec keeps the last, and we refuse, as the segment's bad_* reason: the
# header before any MAC, the payload after it. Only the top level counts:
# nested objects are claim values, decoded as msgspec does (last wins).

# The header first: it is refused before the MAC, so these are unsigned.
HEADER_DUPLICATES = [
    pytest.param(b'{"alg":"none","typ":"at+jwt","alg":"HS256"}', id="alg-none-then-HS256"),
    pytest.param(b'{"alg":"HS256","typ":"at+jwt","alg":"none"}', id="alg-HS256-then-none"),
    pytest.param(b'{"alg":"HS256","typ":"at+jwt","alg":"HS256"}', id="alg-equal-values"),
    pytest.param(b'{"alg":"HS256","typ":"JWT","typ":"at+jwt"}', id="typ"),
    pytest.param(b'{"alg":"HS256","typ":"at+jwt","\\u0061lg":"HS256"}', id="escaped-alg"),
    pytest.param(b'{"alg":"HS256","typ":"at+jwt","kid":"a","kid":"a"}', id="kid"),
    pytest.param(
        b'{ "alg" : "HS256" ,\r\n "typ":"at+jwt",\t"alg"\n:"HS256" }', id="whitespace"
    ),
    pytest.param(
        b'{"alg":"HS256","typ":"at+jwt","cty":"a,b,{c}","x":[1,{"y":","}],"cty":"d"}',
        id="after-commas-in-values",
    ),
]


@pytest.mark.parametrize("header", HEADER_DUPLICATES)
def test_duplicate_header_member_is_refused_before_the_mac(twin, header):
    signed = sign(segment(header), P)
    assert reason_of(twin, signed) == "bad_header"
    assert reason_of(twin, f"{segment(header)}.{P}.{S}") == "bad_header"
    assert reason_of(twin, signed, key={"a": KEY}) == "bad_header"


PAYLOAD_DUPLICATES = [
    pytest.param(b',"role":"admin"', id="role-user-then-admin"),
    pytest.param(b',"role":"user"', id="role-equal-values"),
    pytest.param(b',"r\\u006fle":"admin"', id="escaped-role"),
    pytest.param(b',"\\u0072\\u006F\\u006C\\u0065":"user"', id="all-escaped-role"),
    pytest.param(b',"exp":1', id="exp"),
    pytest.param(b',"iss":"peregrine"', id="iss-equal"),
    pytest.param(b',"scope":"a,b,c","note":"{[,]}","role":"admin"', id="after-commas-in-strings"),
    pytest.param(b',"x":{"a":1,"b":[1,2,{"c":3}]},"role":"admin"', id="after-nested-values"),
    pytest.param(b',"x":"q\\",\\"\\\\","role":"admin"', id="after-escaped-quotes"),
    pytest.param(b' ,\n "role" : "admin" \n', id="whitespace"),
]


def payload_with(extra):
    """The payload text of CLAIMS with ``extra`` members appended verbatim."""
    return json.dumps(CLAIMS, separators=(",", ":")).encode()[:-1] + extra + b"}"


@pytest.mark.parametrize("extra", PAYLOAD_DUPLICATES)
def test_duplicate_payload_member_is_refused(twin, extra):
    token = make_token(payload_with(extra))
    assert reason_of(twin, token) == "bad_payload"
    # Only a valid MAC lets the payload be parsed at all.
    assert reason_of(twin, make_token(payload_with(extra), key=OTHER_KEY)) == "bad_signature"


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b'{"a\\"b":1,"a\\"b":2}', id="key-with-escaped-quote"),
        pytest.param(b'{"a\\\\":1,"a\\\\":2}', id="key-ending-in-backslash"),
        pytest.param('{"é":1,"\\u00e9":2}'.encode(), id="utf8-and-escaped-key"),
        pytest.param('{"😀":1,"\\ud83d\\ude00":2}'.encode(), id="surrogate-pair-key"),
        pytest.param(b'{"":1,"":2}', id="empty-key"),
        pytest.param(b'{"a":1,"a":{"a":1}}', id="object-after-scalar"),
    ],
)
def test_duplicate_keys_however_spelt_are_refused(twin, payload):
    assert reason_of(twin, make_token(payload)) == "bad_payload"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        # Nested objects are values: msgspec's last-wins stands there.
        pytest.param(b',"x":{"a":1,"a":2}', {"x": {"a": 2}}, id="nested-duplicate"),
        pytest.param(
            b',"x":[{"k":1,"k":2},{"k":3}]', {"x": [{"k": 2}, {"k": 3}]}, id="in-a-list"
        ),
        pytest.param(
            b',"scope":"a,b","note":"{\\"role\\":1,\\"role\\":2}","l":"[,]"',
            {"scope": "a,b", "note": '{"role":1,"role":2}', "l": "[,]"},
            id="commas-braces-quotes-in-strings",
        ),
        pytest.param(b',"q":"\\\\","r":"\\\\\\""', {"q": "\\", "r": '\\"'}, id="backslash-runs"),
        pytest.param(
            b',"Role":"admin","role ":"x","r\\u00f4le":"y"',
            {"Role": "admin", "role ": "x", "rôle": "y"},
            id="similar-but-distinct-keys",
        ),
        pytest.param(
            b',"n":[1,[2,[3,{}]],{"a":[]}]', {"n": [1, [2, [3, {}]], {"a": []}]}, id="deep"
        ),
    ],
)
def test_distinct_top_level_members_are_accepted(twin, extra, expected):
    assert check(twin, make_token(payload_with(extra))) == {**CLAIMS, **expected}


def test_nested_duplicates_in_the_header_are_accepted(twin):
    header = b'{"alg":"HS256","typ":"at+jwt","ext":{"a":1,"a":2},"cty":"{,}"}'
    assert check(twin, sign(segment(header), P)) == CLAIMS


def test_pretty_printed_segments_are_accepted(twin):
    header = json.dumps(HEADER, indent=2).encode()
    payload = json.dumps(with_claims(scope="a, b", aud=[AUDIENCE, "x"]), indent="\t").encode()
    token = sign(segment(header), segment(payload))
    assert check(twin, token) == with_claims(scope="a, b", aud=[AUDIENCE, "x"])


def test_empty_objects_are_not_duplicates(twin):
    assert reason_of(twin, sign(segment(b" { } "), P)) == "bad_alg"
    assert reason_of(twin, make_token(b"{}")) == "bad_exp"


def test_a_duplicate_header_is_never_served_from_the_header_cache(twin):
    # The compiled twin keeps the last header decoded; a refused one must
    # not be kept, nor a kept one stand in for a different segment.
    duplicate = sign(segment(b'{"alg":"none","typ":"at+jwt","alg":"HS256"}'), P)
    assert check(twin, VALID) == CLAIMS
    assert reason_of(twin, duplicate) == "bad_header"
    assert reason_of(twin, duplicate) == "bad_header"
    assert check(twin, VALID) == CLAIMS
    assert reason_of(twin, duplicate) == "bad_header"
