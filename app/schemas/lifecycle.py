"""Account lifecycle shapes: email verification and password reset."""

from __future__ import annotations

from app.schemas.accounts import Password, PresentedEmail
from app.schemas.common import Input
from app.schemas.text import Text

#: A link token as presented: bounded, never syntax-checked (a wrong one is a 400).
LinkToken = Text(min_length=1, max_length=128)


class VerifyEmailIn(Input, kw_only=True):
    token: LinkToken


class ResetRequestIn(Input, kw_only=True):
    email: PresentedEmail


class ResetPasswordIn(Input, kw_only=True):
    token: LinkToken
    new_password: Password
