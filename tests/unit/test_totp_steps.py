"""Which TOTP codes app/mfa.py accepts: the window, replays, the recovery code form."""

from __future__ import annotations

import pyotp

from app import mfa

SECRET = pyotp.random_base32()
NOW = 1_800_000_015.0  # inside step 60_000_000
STEP = int(NOW // 30)


def code(step: int) -> str:
    return pyotp.TOTP(SECRET).generate_otp(step)


def test_the_current_step_and_one_either_side_are_accepted():
    for offset in (-1, 0, 1):
        assert mfa.matching_step(SECRET, code(STEP + offset), None, NOW) == STEP + offset
    for offset in (-2, 2):
        assert mfa.matching_step(SECRET, code(STEP + offset), None, NOW) is None


def test_a_step_at_or_before_the_last_used_one_is_refused():
    assert mfa.matching_step(SECRET, code(STEP), STEP, NOW) is None
    assert mfa.matching_step(SECRET, code(STEP - 1), STEP - 1, NOW) is None
    assert mfa.matching_step(SECRET, code(STEP + 1), STEP, NOW) == STEP + 1


def test_only_six_ascii_digits_are_codes():
    assert mfa.matching_step(SECRET, f"{code(STEP)[:3]} {code(STEP)[3:]}", None, NOW) == STEP
    for bad in ("", "12345", "1234567", "abcdef", "١٢٣٤٥٦"):
        assert mfa.matching_step(SECRET, bad, None, NOW) is None


def test_recovery_codes_are_80_bits_and_forgiving_in_form():
    codes = {mfa.new_recovery_code() for _ in range(200)}
    assert len(codes) == 200
    sample = codes.pop()
    assert len(sample) == 19 and sample.count("-") == 3
    assert mfa.recovery_hash(sample) == mfa.recovery_hash(sample.upper().replace("-", " "))
    assert mfa.recovery_hash(sample) != mfa.recovery_hash(mfa.new_recovery_code())
