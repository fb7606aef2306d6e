"""The mail half of ``python -m app deliver``: claims due mails and sends them over SMTP.

It runs beside the webhook loop in the same process and the same pool,
with the same guarantees (app/webhooks/worker.py): a mail is claimed with a
lease in one autocommit statement, sent outside any transaction, and its
outcome recorded under that claim; a worker that dies mid-send leaves the
lease to run out and the mail is sent again (at least once). Failures are
retried with backoff (app/webhooks/schedule.py); a 5xx refusal, or
app/queries/mails.MAX_ATTEMPTS failures, make a mail dead.

It polls (every PEREGRINE_WEBHOOK_POLL_INTERVAL seconds): mail is not in a
hurry the way webhooks are, and a request that queues one pays no NOTIFY.

Nothing personal is logged: not the recipient, not the body, not the
server's answer (which may quote the address); only ids and error classes.
"""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from email.utils import formatdate, make_msgid

import gevent
import gevent.event
import gevent.pool
import psycopg2

from app.config import MailSettings, WebhookSettings
from app.errors import Unavailable
from app.event_wait import wait_for
from app.mail import smtp, smtp_url, templates
from app.queries import mails as q
from app.webhooks import schedule

log = logging.getLogger(__name__)

_CONCURRENCY = 4


class MailSender:
    def __init__(self, pool, mail: MailSettings, pacing: WebhookSettings, metrics,
                 *, ca_file: str | None = None):
        assert mail.smtp_url is not None
        self._pool = pool
        self._mail = mail
        self._target = smtp_url.parse(mail.smtp_url)
        self._pacing = pacing
        self._metrics = metrics
        self._ca_file = ca_file
        # A lease outlasts an attempt (connect, TLS, send) with room to spare.
        self._lease = timedelta(seconds=max(2 * mail.timeout + 5, pacing.lease))
        self._stopping = gevent.event.Event()
        self._sends = gevent.pool.Pool(_CONCURRENCY)

    def stop(self) -> None:
        self._stopping.set()

    def run(self) -> None:
        log.info("delivering mail: to %s:%d, polling every %g s", self._target.host,
                 self._target.port, self._pacing.poll_interval)
        try:
            while not self._stopping.is_set():
                try:
                    self._claim()
                except (psycopg2.Error, Unavailable) as ex:
                    log.warning("mails could not be claimed: %s", type(ex).__name__)
                wait_for(self._stopping, self._pacing.poll_interval)
        finally:
            self._sends.join(timeout=self._mail.timeout + 5)

    def _claim(self) -> None:
        free = self._sends.free_count()
        if free == 0:
            return
        with self._pool.connection() as conn, conn.cursor() as cur:
            jobs = q.claim(cur, free, self._lease)
            waiting, dead = q.queue_gauges(cur)
        self._metrics.gauge("mail.queue.depth", waiting)
        self._metrics.gauge("mail.dead_letters", dead)
        for job in jobs:
            self._sends.spawn(self._send, job)

    def _send(self, job: q.MailJob) -> None:
        sent = dead = False
        error = None
        try:
            message = templates.render(job.template, job.params, sender=self._mail.sender,
                                       recipient=job.recipient)
            message["Date"] = formatdate(localtime=False)
            message["Message-ID"] = make_msgid(domain="peregrine")
            with gevent.Timeout(2 * self._mail.timeout + 2):
                smtp.send(self._target, message, self._mail.timeout, ca_file=self._ca_file)
            sent = True
        except smtp.PermanentFailure as ex:
            dead, error = True, str(ex)
        except (KeyError, ValueError) as ex:  # a template or its parameters are wrong
            dead, error = True, f"cannot render: {type(ex).__name__}"
        except (OSError, smtplib.SMTPException, gevent.Timeout) as ex:
            error = type(ex).__name__
        try:
            delay = 0.0 if sent or dead else schedule.backoff(
                job.attempts, self._pacing.retry_base, self._pacing.retry_max_delay)
            with self._pool.connection() as conn, conn.cursor() as cur:
                status = q.finish(cur, job, sent=sent, dead=dead,
                                  delay=timedelta(seconds=delay), error=error)
        except (psycopg2.Error, Unavailable) as ex:
            log.warning("mail %s: its outcome could not be recorded (%s); it is sent again"
                        " after its lease", job.id, type(ex).__name__)
            return
        if status is None:
            self._metrics.incr("mail.claim_lost")
            return
        self._metrics.incr(f"mail.{status}")
        if status != "sent":
            log.warning("mail %s attempt %d: %s (%s)", job.id, job.attempts, status, error)
