"""Hand one message to the SMTP server, with the standard library's smtplib.

smtplib is blocking sockets and ssl, which the delivery worker's gevent
monkey patching makes cooperative: a slow mail server holds one greenlet,
not the process. TLS (smtps, or STARTTLS when the URL asks) verifies the
server's certificate against the system's trusted ones, or ``ca_file``.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from app.mail.smtp_url import SmtpTarget


class PermanentFailure(Exception):
    """The server refused the message for good (a 5xx): retrying cannot help."""


def send(target: SmtpTarget, message: EmailMessage, timeout: float,
         *, ca_file: str | None = None) -> None:
    """Send ``message``; PermanentFailure for a 5xx refusal, OSError/SMTPException otherwise."""
    context = ssl.create_default_context(cafile=ca_file)
    if target.tls:
        client: smtplib.SMTP = smtplib.SMTP_SSL(target.host, target.port, timeout=timeout,
                                                context=context)
    else:
        client = smtplib.SMTP(target.host, target.port, timeout=timeout)
    try:
        client.ehlo()
        if target.starttls:
            # starttls() raises SMTPNotSupportedError if the server cannot:
            # nothing is sent in the clear when the URL asked for TLS.
            client.starttls(context=context)
            client.ehlo()
        if target.username is not None:
            client.login(target.username, target.password or "")
        client.send_message(message)
    except smtplib.SMTPRecipientsRefused as ex:
        codes = [code for code, _ in ex.recipients.values()]
        if all(500 <= code < 600 for code in codes):
            raise PermanentFailure(f"recipient refused ({codes[0]})") from None
        raise
    except smtplib.SMTPResponseException as ex:
        if 500 <= ex.smtp_code < 600 and not isinstance(ex, smtplib.SMTPAuthenticationError):
            raise PermanentFailure(f"refused ({ex.smtp_code})") from None
        raise
    finally:
        try:
            client.quit()
        except (smtplib.SMTPException, OSError):
            client.close()
