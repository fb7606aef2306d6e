"""``PEREGRINE_SMTP_URL``: where mail goes and how.

``smtp://[user:password@]host[:port]`` speaks plain SMTP (port 25 by
default), ``smtp://host:587?starttls=1`` upgrades it with STARTTLS before
anything else is said (and refuses to go on if the server cannot), and
``smtps://host[:port]`` is TLS from the first byte (port 465). Credentials
in the URL are percent-decoded. Imports nothing heavy: app/config.py
validates the URL at start with :func:`parse`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qs, unquote, urlsplit

_DEFAULT_PORTS = {"smtp": 25, "smtps": 465}
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True)
class SmtpTarget:
    host: str
    port: int
    tls: bool = False  # smtps: TLS from the start
    starttls: bool = False
    username: str | None = None
    password: str | None = field(default=None, repr=False)


def parse(url: str) -> SmtpTarget:
    """The target a URL names; ValueError (without the password) when it is malformed."""
    parts = urlsplit(url)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ValueError("must start with smtp:// or smtps://")
    try:
        port = parts.port or _DEFAULT_PORTS[parts.scheme]
    except ValueError:
        raise ValueError("the port must be 1-65535") from None
    if not parts.hostname:
        raise ValueError("names no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise ValueError("takes no path or fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    unknown = set(query) - {"starttls"}
    if unknown:
        raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    starttls = False
    if "starttls" in query:
        raw = query["starttls"][-1].lower()
        if raw not in _FLAGS:
            raise ValueError("starttls must be 1 or 0")
        starttls = _FLAGS[raw]
    if starttls and parts.scheme == "smtps":
        raise ValueError("smtps:// is TLS already; starttls is for smtp://")
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return SmtpTarget(host=parts.hostname, port=port, tls=parts.scheme == "smtps",
                      starttls=starttls, username=username, password=password)
