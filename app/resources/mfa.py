"""/v1/users/me/mfa/totp and /v1/auth/login/mfa: TOTP two-factor sign-in."""

from __future__ import annotations

from app.auth import client_ip
from app.media import write_json
from app.mfa import TwoFactor
from app.operations import PUBLIC, USER, operation
from app.schemas.accounts import TokenPairOut
from app.schemas.mfa import (
    MfaLoginIn,
    RecoveryCodesOut,
    TotpConfirmIn,
    TotpDisableIn,
    TotpEnrolIn,
    TotpEnrolmentOut,
)


def two_factor(deps) -> TwoFactor:
    return TwoFactor(deps.pool, deps.passwords, deps.limiter, deps.config.data_key,
                     deps.accounts, deps.metrics)


class TotpResource:
    __slots__ = ("_mfa",)

    def __init__(self, deps):
        self._mfa = two_factor(deps)

    @operation(access=USER, summary="Start a TOTP enrolment (inactive until confirmed)",
               body=TotpEnrolIn, response=TotpEnrolmentOut, status=201,
               errors=(403, 409, 503), tag="users")
    def on_post(self, req, resp, body: TotpEnrolIn):
        write_json(resp, self._mfa.enrol(req.context.user.id, body.current_password,
                                         client_ip(req)))

    @operation(access=USER, summary="Turn two-factor sign-in off (password and a code)",
               body=TotpDisableIn, status=204, errors=(403, 409, 503), tag="users")
    def on_delete(self, req, resp, body: TotpDisableIn):
        self._mfa.disable(req.context.user.id, body.current_password, body.code, client_ip(req))


class TotpConfirmResource:
    __slots__ = ("_mfa",)

    def __init__(self, deps):
        self._mfa = two_factor(deps)

    @operation(access=USER, summary="Confirm the enrolment with a code; the recovery codes,"
               " shown this once", body=TotpConfirmIn, response=RecoveryCodesOut,
               errors=(400, 409, 503), tag="users")
    def on_post(self, req, resp, body: TotpConfirmIn):
        write_json(resp, self._mfa.confirm(req.context.user.id, body.code, client_ip(req)))


class MfaLoginResource:
    __slots__ = ("_mfa",)

    def __init__(self, deps):
        self._mfa = two_factor(deps)

    @operation(access=PUBLIC, summary="The second step of an MFA login: mfa_token and a code",
               body=MfaLoginIn, response=TokenPairOut, errors=(401, 503), tag="auth")
    def on_post(self, req, resp, body: MfaLoginIn):
        write_json(resp, self._mfa.login(body.mfa_token, body.code, client_ip(req)))
