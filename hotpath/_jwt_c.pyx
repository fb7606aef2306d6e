"""Verify HS256 access tokens: the compiled twin of ``hotpath._jwt_py``.

Same names, same checks in the same order, same reasons and claims; the pure
module is the spec and tests/hotpath holds the two to it. What differs is
how: the token is scanned once in C against a base64url table, segments are
decoded by a C loop, and the MAC is OpenSSL's HMAC-SHA256 from a keyed
context prepared once per key, compared with ``CRYPTO_memcmp``.
"""

# PERF: µs per verify of the bench token (413 chars, 10 claims; PyJWT takes
# 65 µs on the same box), best of 3 x 5 x 50k calls, each variant built alone:
#   this module                                         2.58
#   one-shot HMAC() instead of the keyed _Mac context   4.46  (OpenSSL 3
#       fetches the digest and keys the pads on every call)
#   EVP_MAC_CTX_dup of the keyed context per call       3.11
#   no last-header cache (_decode_header)               2.84
# What remains is mostly msgspec building the claims dict (1.1 µs) and the
# SHA-256 blocks themselves (0.8 µs).
# PERF: refusing duplicate members (_members_match), µs per verify before ->
# after, on a box where PyJWT takes 37 µs (2 shared vCPUs; runs differ by
# about ±0.06). "bench" is bench/micro/bench_jwt.py, best of 9 x 20k, run
# alternately with the old and new build; "alone" is the same calls timed
# best of 7 x 50k, both builds in one process:
#                                                       bench         alone
#   bench token: no comma in any value, so the
#       vectorised comma count settles it               2.06 -> 2.12  2.07 -> 2.01
#   scope "a,b,c": that count fails, full scan          -             2.07 -> 2.13
#   full scan always, a byte loop without memchr        -             2.07 -> 2.54
# json.loads with an object_pairs_hook would add about 7.5 µs. The header
# is checked only when it is decoded, i.e. on a miss of the header cache.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.string cimport memchr, memcmp, memcpy

import time
from collections.abc import Mapping

import msgspec

from hotpath._jwt_errors import InvalidTokenError

__all__ = ("InvalidTokenError", "verify")


cdef extern from "Python.h":
    bint PyUnicode_IS_ASCII(object text)
    void *PyUnicode_DATA(object text)


cdef extern from "openssl/crypto.h":
    int CRYPTO_memcmp(const void *a, const void *b, size_t length)


cdef extern from "openssl/params.h":
    ctypedef struct OSSL_PARAM:
        pass
    OSSL_PARAM OSSL_PARAM_construct_utf8_string(const char *key, char *buf, size_t bsize)
    OSSL_PARAM OSSL_PARAM_construct_end()


cdef extern from "openssl/evp.h":
    ctypedef struct EVP_MAC:
        pass
    ctypedef struct EVP_MAC_CTX:
        pass
    EVP_MAC *EVP_MAC_fetch(void *libctx, const char *algorithm, const char *properties)
    EVP_MAC_CTX *EVP_MAC_CTX_new(EVP_MAC *mac)
    void EVP_MAC_CTX_free(EVP_MAC_CTX *ctx)
    int EVP_MAC_init(EVP_MAC_CTX *ctx, const unsigned char *key, size_t keylen,
                     const OSSL_PARAM *params)
    int EVP_MAC_update(EVP_MAC_CTX *ctx, const unsigned char *data, size_t datalen)
    int EVP_MAC_final(EVP_MAC_CTX *ctx, unsigned char *out, size_t *outl, size_t outsize)


#: Longest token accepted, in characters; checked before anything else.
MAX_TOKEN_LENGTH = 4096
#: Shortest HMAC key accepted (RFC 7518 §3.2: at least the hash size).
MIN_KEY_LENGTH = 32

cdef enum:
    SIGNATURE_LENGTH = 32
    DOT = -2
    INVALID = -1
    # Keyed contexts kept; more distinct keys than this means a misuse, and
    # the cache then starts over rather than grow.
    MAX_CACHED_KEYS = 64
    # Longest header segment worth remembering; ours is about 40 chars.
    MAX_CACHED_HEADER = 256

cdef Py_ssize_t _MAX_TOKEN_LENGTH = MAX_TOKEN_LENGTH
cdef Py_ssize_t _MIN_KEY_LENGTH = MIN_KEY_LENGTH
# NOTE: x5c is not in RFC 8725's list but, like jwk, it embeds a key in the
# token; we never want a token to choose its own key.
cdef tuple _FORBIDDEN_HEADERS = ("crit", "jku", "x5u", "jwk", "x5c")
_decode_json = msgspec.json.decode
_time = time.time


# -------------------------------------------------------------- base64url

# Value of each byte in the base64url alphabet, DOT for '.', else INVALID.
cdef signed char _B64[256]


cdef void _init_table():
    cdef bytes alphabet = (
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    cdef int i
    for i in range(256):
        _B64[i] = INVALID
    for i in range(64):
        _B64[<unsigned char>alphabet[i]] = i
    _B64[ord(".")] = DOT


_init_table()


cdef bint _is_canonical(const unsigned char *segment, Py_ssize_t length) noexcept:
    # Same rule as the pure twin: no length of 1 mod 4, and the padding bits
    # of the last character (4 bits for 2 mod 4, 2 bits for 3) are zero.
    cdef Py_ssize_t remainder = length % 4
    if remainder == 0:
        return True
    if remainder == 1:
        return False
    return (_B64[segment[length - 1]] & (0x0F if remainder == 2 else 0x03)) == 0


cdef Py_ssize_t _decoded_length(Py_ssize_t length) noexcept:
    return (length // 4) * 3 + (length % 4) * 3 // 4


cdef void _b64decode(const unsigned char *src, Py_ssize_t length,
                     unsigned char *out) noexcept:
    # The segment was validated by _split, so every byte maps to 0..63.
    cdef Py_ssize_t i = 0
    cdef unsigned int quad
    while i + 4 <= length:
        quad = (
            (<unsigned int>_B64[src[i]] << 18) | (<unsigned int>_B64[src[i + 1]] << 12)
            | (<unsigned int>_B64[src[i + 2]] << 6) | <unsigned int>_B64[src[i + 3]]
        )
        out[0] = quad >> 16
        out[1] = (quad >> 8) & 0xFF
        out[2] = quad & 0xFF
        out += 3
        i += 4
    if length - i >= 2:
        quad = (<unsigned int>_B64[src[i]] << 18) | (<unsigned int>_B64[src[i + 1]] << 12)
        if length - i == 3:
            quad |= <unsigned int>_B64[src[i + 2]] << 6
            out[1] = (quad >> 8) & 0xFF
        out[0] = quad >> 16


cdef bytes _b64decode_bytes(const unsigned char *src, Py_ssize_t length):
    cdef bytes result = PyBytes_FromStringAndSize(NULL, _decoded_length(length))
    _b64decode(src, length, <unsigned char *>PyBytes_AS_STRING(result))
    return result


cdef bint _split(const unsigned char *data, Py_ssize_t length,
                 Py_ssize_t *first_dot, Py_ssize_t *second_dot) noexcept:
    """Find the two dots; False unless three canonical base64url segments."""
    cdef Py_ssize_t i
    cdef signed char value
    first_dot[0] = second_dot[0] = -1
    for i in range(length):
        value = _B64[data[i]]
        if value >= 0:
            continue
        if value == INVALID or second_dot[0] >= 0:
            return False
        if first_dot[0] < 0:
            first_dot[0] = i
        else:
            second_dot[0] = i
    if second_dot[0] < 0:
        return False
    return (
        _is_canonical(data, first_dot[0])
        and _is_canonical(data + first_dot[0] + 1, second_dot[0] - first_dot[0] - 1)
        and _is_canonical(data + second_dot[0] + 1, length - second_dot[0] - 1)
    )


# ------------------------------------------------------------------- HMAC

cdef EVP_MAC *_HMAC = EVP_MAC_fetch(NULL, b"HMAC", NULL)
if _HMAC == NULL:
    # The facade then loads the pure twin, which uses CPython's hmac.
    raise ImportError("OpenSSL has no HMAC implementation available")
cdef OSSL_PARAM _SHA256[2]
_SHA256[0] = OSSL_PARAM_construct_utf8_string(b"digest", b"SHA256", 0)
_SHA256[1] = OSSL_PARAM_construct_end()


cdef class _Mac:
    """An OpenSSL HMAC-SHA256 context keyed once, reused for every token.

    Keying costs two SHA-256 blocks and OpenSSL 3 fetches the digest on
    each one-shot ``HMAC()``. ``EVP_MAC_init`` with a NULL key re-initialises
    the context with the key it already has (OpenSSL's HMAC provider calls
    ``HMAC_Init_ex`` with a NULL key, which reuses the pad states), so only
    the message is hashed. The RFC 7515 A.1 known-answer test covers it.
    """

    cdef EVP_MAC_CTX *ctx

    def __cinit__(self, key):
        self.ctx = EVP_MAC_CTX_new(_HMAC)
        if self.ctx == NULL:
            raise MemoryError()
        if not EVP_MAC_init(self.ctx, <const unsigned char *>PyBytes_AS_STRING(key),
                            len(<bytes>key), _SHA256):
            raise RuntimeError("OpenSSL could not key HMAC-SHA256")

    def __dealloc__(self):
        EVP_MAC_CTX_free(self.ctx)

    cdef int digest(self, const unsigned char *data, Py_ssize_t length,
                    unsigned char *out) except -1:
        """Write HMAC-SHA256(key, data) to ``out`` (32 bytes)."""
        cdef size_t written = 0
        # NOTE: we hold the GIL from here to the end, so no other thread
        # can interleave on this shared context.
        if not (
            EVP_MAC_init(self.ctx, NULL, 0, NULL)
            and EVP_MAC_update(self.ctx, data, length)
            and EVP_MAC_final(self.ctx, out, &written, SIGNATURE_LENGTH)
            and written == SIGNATURE_LENGTH
        ):
            raise RuntimeError("OpenSSL HMAC-SHA256 failed")
        return 0


cdef dict _MACS = {}


cdef _Mac _mac_for(key):
    mac = _MACS.get(key)
    if mac is None:
        if len(_MACS) >= MAX_CACHED_KEYS:
            _MACS.clear()
        mac = _MACS[key] = _Mac(key)
    return <_Mac>mac


# ----------------------------------------------------------------- header

# The last header segment decoded, byte for byte, and its decoded dict.
# Every token from one issuer and key carries the same header, so this
# skips its base64 and JSON decoding; the dict is only read, never exposed.
cdef unsigned char _last_header[MAX_CACHED_HEADER]
cdef Py_ssize_t _last_header_length = -1
cdef dict _last_header_dict = None


cdef dict _decode_header(const unsigned char *segment, Py_ssize_t length):
    global _last_header_length, _last_header_dict
    if length == _last_header_length and memcmp(segment, _last_header, length) == 0:
        return _last_header_dict
    cdef dict header = _decode_object(segment, length, "bad_header")
    if length <= MAX_CACHED_HEADER:
        memcpy(_last_header, segment, length)
        _last_header_length = length
        _last_header_dict = header
    return header


# ----------------------------------------------------------------- verify

def verify(token, key, *, issuer, audience, typ, leeway=30, now=None):
    """Verify an HS256 JWT and return its claims; see ``hotpath._jwt_py``."""
    cdef const unsigned char *data
    cdef Py_ssize_t length, first_dot, second_dot
    cdef unsigned char signature[SIGNATURE_LENGTH]
    cdef unsigned char expected[SIGNATURE_LENGTH]

    if isinstance(key, bytes):
        _check_key(key)
    elif not isinstance(key, Mapping):
        raise TypeError("key must be bytes or a Mapping[str, bytes]")
    if isinstance(token, str):
        length = len(<str>token)
        if length > _MAX_TOKEN_LENGTH:
            raise InvalidTokenError("oversized")
        if not PyUnicode_IS_ASCII(token):
            raise InvalidTokenError("malformed")
        data = <const unsigned char *>PyUnicode_DATA(token)
    elif isinstance(token, bytes):
        length = len(<bytes>token)
        if length > _MAX_TOKEN_LENGTH:
            raise InvalidTokenError("oversized")
        data = <const unsigned char *>PyBytes_AS_STRING(token)
    else:
        raise TypeError("token must be str or bytes")

    # A non-ASCII byte maps to INVALID, so bytes tokens need no decode step.
    if not _split(data, length, &first_dot, &second_dot):
        raise InvalidTokenError("malformed")

    cdef dict header = _decode_header(data, first_dot)
    if header.get("alg") != "HS256":
        raise InvalidTokenError("bad_alg")
    if header.get("typ") != typ:
        raise InvalidTokenError("bad_typ")
    for name in _FORBIDDEN_HEADERS:
        if name in header:
            raise InvalidTokenError("forbidden_header")
    if "kid" in header and type(header["kid"]) is not str:
        raise InvalidTokenError("bad_kid")
    secret = key if isinstance(key, bytes) else _lookup_key(key, header.get("kid"))

    cdef Py_ssize_t signature_length = length - second_dot - 1
    if _decoded_length(signature_length) != SIGNATURE_LENGTH:
        raise InvalidTokenError("bad_signature")
    _b64decode(data + second_dot + 1, signature_length, signature)
    _mac_for(secret).digest(data, second_dot, expected)
    if CRYPTO_memcmp(signature, expected, SIGNATURE_LENGTH) != 0:
        raise InvalidTokenError("bad_signature")

    cdef dict claims = _decode_object(
        data + first_dot + 1, second_dot - first_dot - 1, "bad_payload"
    )
    _check_claims(claims, issuer, audience, leeway, _time() if now is None else now)
    return claims


cdef _check_key(secret):
    if not isinstance(secret, bytes):
        raise TypeError("an HMAC key must be bytes")
    if len(<bytes>secret) < _MIN_KEY_LENGTH:
        raise ValueError(f"an HMAC key must be at least {MIN_KEY_LENGTH} bytes")


cdef _lookup_key(table, kid):
    # RFC 8725 §3.10: the kid is only ever a key into our own table.
    if kid is None:
        raise InvalidTokenError("bad_kid")
    secret = table.get(kid)
    if secret is None:
        raise InvalidTokenError("unknown_kid")
    _check_key(secret)
    return secret


cdef dict _decode_object(const unsigned char *segment, Py_ssize_t length, str reason):
    cdef bytes raw = _b64decode_bytes(segment, length)
    try:
        value = _decode_json(raw)
    # NOTE: invalid UTF-8 raises UnicodeDecodeError, a ValueError like
    # msgspec.DecodeError; deep nesting raises RecursionError.
    except (ValueError, RecursionError):
        raise InvalidTokenError(reason) from None
    if type(value) is not dict:
        raise InvalidTokenError(reason)
    # A member named twice leaves the dict with fewer entries than the text
    # has members (msgspec keeps the last); see the pure twin.
    if not _members_match(<const unsigned char *>PyBytes_AS_STRING(raw), len(raw),
                          len(<dict>value)):
        raise InvalidTokenError(reason)
    return value


cdef bint _members_match(const unsigned char *text, Py_ssize_t length,
                         Py_ssize_t members) noexcept:
    """Whether the JSON object ``text`` has ``members`` members at its top level.

    ``text`` is what msgspec just decoded to a dict of ``members`` entries,
    so it is valid JSON: one object, strings closed, brackets balanced. The
    members are the commas outside strings at depth 1, plus one. First the
    commas anywhere are counted, a loop the compiler vectorises: the top
    level has at most that many plus one members and at least ``members``,
    so equality settles it for the usual token with no comma in a value.
    """
    cdef Py_ssize_t i, run, commas = 0
    cdef const unsigned char *end
    cdef int depth = 0
    cdef unsigned char c
    if members == 0:
        return True  # {} (with a member, the dict would have an entry)
    for i in range(length):
        commas += text[i] == b','
    if commas + 1 == members:
        return True
    commas = 0
    i = 0
    while i < length:
        c = text[i]
        if c == b'"':
            # Skip to the closing quote: the next one not escaped, i.e. not
            # after an odd run of backslashes (the opening quote ends a run).
            while True:
                end = <const unsigned char *>memchr(text + i + 1, b'"', length - i - 1)
                if end == NULL:
                    return False  # cannot happen in valid JSON
                i = end - text
                run = i - 1
                while text[run] == b'\\':
                    run -= 1
                if (i - 1 - run) % 2 == 0:
                    break
        elif c == b'{' or c == b'[':
            depth += 1
        elif c == b'}' or c == b']':
            depth -= 1
        elif c == b',' and depth == 1:
            commas += 1
        i += 1
    return commas + 1 == members


cdef inline bint _is_number(value):
    # msgspec decodes JSON numbers to exactly int or float; bool is excluded.
    return type(value) is int or type(value) is float


cdef _check_claims(dict claims, issuer, audience, leeway, now):
    # Python arithmetic on purpose: ints of any size compare exactly with
    # floats, as in the pure twin; a C double would round past 2**53.
    exp = claims.get("exp")
    if not _is_number(exp):
        raise InvalidTokenError("bad_exp")
    if now > exp + leeway:
        raise InvalidTokenError("expired")
    if "nbf" in claims:
        nbf = claims["nbf"]
        if not _is_number(nbf):
            raise InvalidTokenError("bad_nbf")
        if nbf > now + leeway:
            raise InvalidTokenError("not_yet_valid")
    if "iat" in claims:
        iat = claims["iat"]
        if not _is_number(iat):
            raise InvalidTokenError("bad_iat")
        if iat > now + leeway:
            raise InvalidTokenError("issued_in_future")
    iss = claims.get("iss")
    if type(iss) is not str or iss != issuer:
        raise InvalidTokenError("bad_iss")
    if not _audience_matches(claims.get("aud"), audience):
        raise InvalidTokenError("bad_aud")
    if type(claims.get("sub")) is not str:
        raise InvalidTokenError("bad_sub")


cdef bint _audience_matches(aud, audience) except -1:
    if type(aud) is str:
        return aud == audience
    # A list must hold only strings (RFC 7519 §4.1.3), as PyJWT requires too.
    if type(aud) is not list:
        return False
    for item in <list>aud:
        if type(item) is not str:
            return False
    return audience in aud
