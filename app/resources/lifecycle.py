"""/v1/auth/email and /v1/auth/password: email verification and password reset."""

from __future__ import annotations

from app.auth import client_ip
from app.lifecycle import TOKEN_PER_IP, Lifecycle
from app.media import write_json
from app.operations import PUBLIC, USER, operation
from app.schemas.accounts import AccountOut
from app.schemas.lifecycle import ResetPasswordIn, ResetRequestIn, VerifyEmailIn


def lifecycle(deps) -> Lifecycle:
    return Lifecycle(deps.pool, deps.passwords, deps.limiter, deps.config.mail, deps.metrics)


class VerifyRequestResource:
    __slots__ = ("_lifecycle",)

    def __init__(self, deps):
        self._lifecycle = lifecycle(deps)

    @operation(access=USER, summary="Mail the caller a link that verifies its address (24 h)",
               status=202, errors=(429,), tag="auth")
    def on_post(self, req, resp):
        self._lifecycle.request_verification(req.context.user.id, client_ip(req))


class VerifyResource:
    __slots__ = ("_lifecycle",)

    def __init__(self, deps):
        self._lifecycle = lifecycle(deps)

    @operation(access=PUBLIC, summary="Verify an address with the token its mail carried",
               body=VerifyEmailIn, response=AccountOut, errors=(400,), tag="auth",
               address_limit=TOKEN_PER_IP)
    def on_post(self, req, resp, body: VerifyEmailIn):
        write_json(resp, self._lifecycle.verify(body.token, client_ip(req)))


class ResetRequestResource:
    __slots__ = ("_lifecycle",)

    def __init__(self, deps):
        self._lifecycle = lifecycle(deps)

    @operation(access=PUBLIC, summary="Mail a password reset link (the same answer for"
               " every address)", body=ResetRequestIn, status=202, errors=(429,), tag="auth")
    def on_post(self, req, resp, body: ResetRequestIn):
        self._lifecycle.request_reset(body.email, client_ip(req))


class ResetResource:
    __slots__ = ("_lifecycle",)

    def __init__(self, deps):
        self._lifecycle = lifecycle(deps)

    @operation(access=PUBLIC, summary="Set a new password with a reset token (once, 30 min);"
               " every session ends", body=ResetPasswordIn, status=204, errors=(400,),
               tag="auth", address_limit=TOKEN_PER_IP)
    def on_post(self, req, resp, body: ResetPasswordIn):
        self._lifecycle.reset(body.token, body.new_password, client_ip(req))
