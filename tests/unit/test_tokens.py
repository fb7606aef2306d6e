"""Access tokens: issued by PyJWT, verified by hotpath.jwt, PyJWT loaded only to issue."""

import base64
import subprocess
import sys

import jwt as pyjwt

from app import sealing, tokens

SECRET = b"s" * 32
USER = "00000000-0000-4000-8000-000000000000"


def test_a_token_carries_the_claims_and_header_pyjwt_reads_back():
    token = tokens.issue_access_token(SECRET, USER, "admin", now=1_700_000_000)
    claims = pyjwt.decode(token, SECRET, algorithms=["HS256"], audience=tokens.AUDIENCE,
                          issuer=tokens.ISSUER, options={"verify_exp": False})
    assert pyjwt.get_unverified_header(token) == {"alg": "HS256", "typ": tokens.TOKEN_TYPE}
    assert claims == {"sub": USER, "role": "admin", "iat": 1_700_000_000,
                      "exp": 1_700_000_000 + tokens.ACCESS_TTL_SECONDS, "iss": tokens.ISSUER,
                      "aud": tokens.AUDIENCE, "jti": claims["jti"]}
    assert len(claims["jti"]) == 32
    assert token == pyjwt.encode(claims, SECRET, algorithm="HS256",
                                 headers={"typ": tokens.TOKEN_TYPE})


def test_a_token_signed_with_another_secret_is_refused():
    token = tokens.issue_access_token(b"t" * 32, USER, "user")
    try:
        tokens.authenticate(SECRET, token)
    except tokens.InvalidToken:
        return
    raise AssertionError("a token under another secret was accepted")


def test_issued_tokens_verify_and_carry_their_principal():
    token = tokens.issue_access_token(SECRET, USER, "user")
    assert tokens.authenticate(SECRET, token) == tokens.Principal(USER, "user")


# A fresh interpreter: this test process has imported jwt already.
_PROBE = """
import sys
import app.factory
from app import mfa, sealing, tokens
def loaded():
    return sorted({name.split(".")[0] for name in sys.modules
                   if name == "jwt" or name.startswith(("jwt.", "cryptography."))})
secret = b"k" * 32
sealer = sealing.Sealer(b"a" * 43 + b"=")
before = loaded()
principal = tokens.authenticate(secret, tokens.issue_access_token(
    secret, "00000000-0000-4000-8000-000000000000", "user"))
print(principal.role, before, loaded())
"""


def test_pyjwt_and_cryptography_load_only_when_a_token_is_issued():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                            timeout=120, check=True)
    assert result.stdout.strip() == "user [] ['cryptography', 'jwt']"


def test_a_malformed_data_key_is_refused_when_the_sealer_is_built():
    for key in (b"short", b"!" * 44, b"a" * 40):
        try:
            sealing.Sealer(key)
        except ValueError:
            continue
        raise AssertionError(f"{key!r} was accepted as a data key")


def test_sealed_values_open_with_their_key_only():
    key = base64.urlsafe_b64encode(b"k" * 32)
    sealed = sealing.Sealer(key).seal("JBSWY3DPEHPK3PXP")
    assert sealing.Sealer(key).open(sealed) == "JBSWY3DPEHPK3PXP"
    other = sealing.Sealer(base64.urlsafe_b64encode(b"o" * 32))
    try:
        other.open(sealed)
    except sealing.SealBroken:
        return
    raise AssertionError("a value opened under another key")


def test_a_remembered_token_is_accepted_until_it_expires():
    issued = 1_700_000_000
    token = tokens.issue_access_token(SECRET, USER, "user", now=issued)
    clock = [issued + 1.0]
    authenticator = tokens.Authenticator(SECRET, clock=lambda: clock[0])
    last_valid = issued + tokens.ACCESS_TTL_SECONDS + tokens.LEEWAY_SECONDS
    assert authenticator(token) == tokens.Principal(USER, "user")
    clock[0] = last_valid  # remembered, and still within exp + leeway
    assert authenticator(token) == tokens.Principal(USER, "user")
    clock[0] = last_valid + 0.001
    for _ in range(2):  # from memory, then (forgotten) from a full check
        try:
            authenticator(token)
        except tokens.InvalidToken as ex:
            assert ex.expired
        else:
            raise AssertionError("an expired token was accepted from memory")


def test_only_the_exact_text_of_an_accepted_token_is_remembered():
    token = tokens.issue_access_token(SECRET, USER, "user")
    authenticator = tokens.Authenticator(SECRET)
    assert authenticator(token).id == USER
    header, payload, signature = token.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for forged in (f"{header}.{payload}.{flipped}", token + "x", " " + token):
        try:
            authenticator(forged)
        except tokens.InvalidToken:
            continue
        raise AssertionError(f"{forged!r} passed as the remembered token")


def test_the_memory_of_accepted_tokens_is_bounded():
    authenticator = tokens.Authenticator(SECRET, size=8)
    users = [f"00000000-0000-4000-8000-{n:012d}" for n in range(20)]
    issued = [tokens.issue_access_token(SECRET, user, "user") for user in users]
    for token, user in zip(issued, users, strict=True):
        assert authenticator(token).id == user
        assert len(authenticator._accepted) <= 8
    # Forgotten tokens still verify in full.
    assert authenticator(issued[0]).id == users[0]


def test_a_token_refused_is_refused_every_time_and_not_remembered():
    token = tokens.issue_access_token(b"t" * 32, USER, "user")
    authenticator = tokens.Authenticator(SECRET)
    for _ in range(3):
        try:
            authenticator(token)
        except tokens.InvalidToken:
            continue
        raise AssertionError("a token under another secret was accepted")
    assert not authenticator._accepted
