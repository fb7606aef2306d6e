"""Mail bodies from the templates shipped in app/templates/mail/.

Each mail is three files: ``<name>.subject``, ``<name>.txt`` and
``<name>.html``, filled in with :class:`string.Template` (``$name``). The
standard library is enough for a handful of fixed mails; values are
HTML-escaped in the HTML part.
"""

from __future__ import annotations

import functools
import html
from email.message import EmailMessage
from importlib import resources
from string import Template

#: The templates that exist; app/migrations/0006 keeps names to [a-z_].
VERIFY_EMAIL = "verify_email"
RESET_PASSWORD = "reset_password"
NAMES = (VERIFY_EMAIL, RESET_PASSWORD)


@functools.cache
def _template(name: str, part: str) -> Template:
    if name not in NAMES:
        raise KeyError(f"no mail template {name!r}")
    text = (resources.files("app") / "templates" / "mail" / f"{name}.{part}").read_text(
        encoding="utf-8")
    return Template(text)


def render(name: str, params: dict[str, str], *, sender: str, recipient: str) -> EmailMessage:
    """The whole message: subject, a plain-text body and its HTML alternative."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = _template(name, "subject").substitute(params).strip()
    message.set_content(_template(name, "txt").substitute(params))
    escaped = {key: html.escape(str(value)) for key, value in params.items()}
    message.add_alternative(_template(name, "html").substitute(escaped), subtype="html")
    return message
