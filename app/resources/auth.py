"""/v1/auth: register, login, refresh, logout."""

from __future__ import annotations

from app import emails
from app.auth import client_ip
from app.media import write_json
from app.operations import PUBLIC, operation
from app.ratelimit import LOGIN_PER_IP, LOGIN_PER_IP_AND_EMAIL, REGISTER_PER_IP
from app.schemas.accounts import LoginIn, RefreshIn, RegisterIn, TokenPairOut, UserOut


class RegisterResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=PUBLIC, summary="Create an account", body=RegisterIn,
               response=UserOut, status=201, errors=(409,), tag="auth",
               address_limit=REGISTER_PER_IP)
    def on_post(self, req, resp, body: RegisterIn):
        user = self._accounts.register(body)
        write_json(resp, user)
        resp.location = f"/v1/users/{user.id}"


class LoginResource:
    __slots__ = ("_accounts", "_limiter")

    def __init__(self, deps):
        self._accounts, self._limiter = deps.accounts, deps.limiter

    @operation(access=PUBLIC, summary="Exchange email and password for tokens",
               body=LoginIn, response=TokenPairOut, errors=(401,), tag="auth")
    def on_post(self, req, resp, body: LoginIn):
        # Counted after decoding: the per-address-and-email limit needs the email.
        ip = client_ip(req)
        self._limiter.hit(LOGIN_PER_IP, ip or "unknown")
        self._limiter.hit(LOGIN_PER_IP_AND_EMAIL, f"{ip}|{emails.normalize(body.email)}")
        write_json(resp, self._accounts.login(body, ip))


class RefreshResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=PUBLIC, summary="Rotate a refresh token for a new token pair",
               body=RefreshIn, response=TokenPairOut, errors=(401,), tag="auth")
    def on_post(self, req, resp, body: RefreshIn):
        write_json(resp, self._accounts.refresh(body.refresh_token, client_ip(req)))


class LogoutResource:
    __slots__ = ("_accounts",)

    def __init__(self, deps):
        self._accounts = deps.accounts

    @operation(access=PUBLIC, summary="Revoke the refresh token's whole family",
               body=RefreshIn, status=204, errors=(401,), tag="auth")
    def on_post(self, req, resp, body: RefreshIn):
        self._accounts.logout(body.refresh_token)
