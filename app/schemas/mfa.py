"""Two-factor sign-in shapes: TOTP enrolment, recovery codes, the second login step."""

from __future__ import annotations

import msgspec

from app.schemas.accounts import PresentedPassword
from app.schemas.common import Input
from app.schemas.text import Text

#: A six-digit TOTP code or a recovery code, as typed (spaces and dashes allowed).
Code = Text(min_length=1, max_length=64)
MfaToken = Text(min_length=1, max_length=128)


class TotpEnrolIn(Input, kw_only=True):
    current_password: PresentedPassword


class TotpEnrolmentOut(msgspec.Struct, kw_only=True):
    secret: str  # base32, for typing into an authenticator app
    otpauth_uri: str  # the same as an otpauth:// URI, for a QR code


class TotpConfirmIn(Input, kw_only=True):
    code: Code


class RecoveryCodesOut(msgspec.Struct, kw_only=True):
    recovery_codes: list[str]


class TotpDisableIn(Input, kw_only=True):
    current_password: PresentedPassword
    code: Code


class MfaLoginIn(Input, kw_only=True):
    mfa_token: MfaToken
    code: Code
