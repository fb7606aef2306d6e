"""``python -m app deliver``: the process that sends webhook deliveries.

Written here rather than taken from a queue library: procrastinate's worker
needs an asynchronous connector (psycopg 3 or aiopg; its psycopg2 connector
can only enqueue) and pgqueuer drives asyncpg, psqlpy or psycopg 3, both on
asyncio. This service is psycopg2 under gevent, and neither could enqueue in
the psycopg2 transaction of the order or product change, which is the whole
point of an outbox; an asyncio loop inside a gevent process fights it. The
queue is two statements (app/queries/webhooks.py) and this loop.

Any number of these processes may run, on any hosts. What each guarantees:

- At least once: a delivery is claimed with ``FOR UPDATE SKIP LOCKED`` and
  a lease (``PEREGRINE_WEBHOOK_LEASE``) in one autocommit statement; the
  attempt runs outside any transaction (no lock is held over the network)
  and its outcome is written afterwards. A worker that dies in between
  leaves the row leased; when the lease runs out another worker claims it
  again and the endpoint gets the event a second time, with the same
  ``webhook-id``. Nothing is lost, and receivers deduplicate on that id.
- Never twice at the same time: a row is claimable only once its lease has
  run out, and an attempt is cut off after ``PEREGRINE_WEBHOOK_TIMEOUT``,
  which the configuration keeps under half the lease. An attempt that
  could not start early enough in its lease is not made (the row will be
  claimed again). An outcome is recorded only under the claim that made it
  (``attempts`` is the token), so a late one cannot overwrite a newer one.
- A lost NOTIFY delays, never loses: LISTEN only wakes the loop early; it
  also claims every ``PEREGRINE_WEBHOOK_POLL_INTERVAL`` seconds, and after
  the listening connection comes back.
- NOTIFYs are coalesced (a session sends at most one per
  ``NOTIFY_WINDOW``, and none while another transaction is about to send
  one: app/migrations/0009_coalesced_webhook_notify.sql), so the worker
  claims once more a window after each notification it hears and after it
  starts listening: an event whose NOTIFY was skipped is still picked up
  within about a window, not a poll interval.
- Retries: exponential backoff with full jitter, or the endpoint's
  ``Retry-After``, for ``PEREGRINE_WEBHOOK_RETRY_FOR`` (24 h by default),
  then the delivery is dead. 410 Gone makes it dead at once and disables
  the subscription, so nothing more is sent there until an admin re-enables
  it.
- No ordering: deliveries run concurrently and retries overtake, so events
  may arrive in any order; each carries ``created_at`` and the full resource.
"""

from __future__ import annotations

import logging
import signal
import time
from datetime import timedelta

import gevent
import gevent.event
import gevent.pool
import gevent.select
import msgspec
import psycopg2
import urllib3.exceptions

from app.config import WebhookSettings
from app.errors import Unavailable
from app.event_wait import wait_for
from app.media import encoder
from app.queries import events as event_queries
from app.queries import webhooks as q
from app.schemas.webhooks import EventBody
from app.webhooks import schedule, signing, targets, transport

log = logging.getLogger(__name__)

#: Longest wait before the listening connection is tried again.
_RECONNECT_MAX = 30.0
#: After a wake-up, how long the worker lets more commits arrive before it
#: claims: under a burst of orders one claim takes a batch, not one row each.
_GATHER = 0.02
#: How long a transaction may still run between recording its event and
#: committing, on top of the NOTIFY window, before the follow-up claim.
_COMMIT_SLACK = 0.05
#: What the subscription says after its endpoint answered 410.
GONE_REASON = "the endpoint answered 410 Gone"
#: Columns are bounded; an excerpt never is longer than this.
_ERROR_CHARS = 300


class _AttemptTimedOut(Exception):
    pass


class Outcome(msgspec.Struct, frozen=True):
    succeeded: bool = False
    dead: bool = False
    status: int | None = None
    error: str | None = None
    retry_after: float | None = None


def event_body(job: q.Job) -> bytes:
    """The exact bytes sent (and signed): the same on every attempt."""
    return encoder.encode(EventBody(id=job.event_id, type=job.event_type,
                                    created_at=job.event_created_at,
                                    data=msgspec.Raw(job.data.encode())))


class Worker:
    """Claims due deliveries and sends them, ``settings.concurrency`` at a time."""

    def __init__(self, pool, dsn: str, settings: WebhookSettings, metrics):
        self._pool = pool
        self._dsn = dsn
        self._settings = settings
        self._metrics = metrics
        self._lease = timedelta(seconds=settings.lease)
        self._retry_for = timedelta(seconds=settings.retry_for)
        self._wake = gevent.event.Event()
        # When a claim is due because a notification (or the start of
        # listening) may have been followed by commits whose NOTIFY was skipped.
        self._follow_up_at = 0.0
        self._stopping = gevent.event.Event()
        self._attempts = gevent.pool.Pool(settings.concurrency)

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def run(self) -> None:
        listener = gevent.spawn(self._listen)
        poll = self._settings.poll_interval
        next_report = 0.0
        try:
            while not self._stopping.is_set():
                self._wake.clear()  # before claiming: a NOTIFY from now on wakes the wait
                try:
                    asked, claimed = self._claim()
                    if time.monotonic() >= next_report:
                        self._report()
                        next_report = time.monotonic() + max(poll, 1.0)
                except (psycopg2.Error, Unavailable) as ex:
                    log.warning("webhook deliveries could not be claimed: %s", ex)
                    wait_for(self._stopping, poll)
                    continue
                if asked and claimed == asked:
                    gevent.sleep(0)  # a full batch: more may be due now
                    continue
                follow_up = self._follow_up_at - time.monotonic()
                if wait_for(self._wake, min(poll, follow_up) if follow_up > 0 else poll):
                    gevent.sleep(_GATHER)
        finally:
            # Attempts in flight finish (each is bounded by the timeout) and
            # record their outcome; anything cut off is redone after its lease.
            self._attempts.join(timeout=self._settings.timeout + 5)
            listener.kill()

    # -- claiming -------------------------------------------------------------

    def _claim(self) -> tuple[int, int]:
        free = self._attempts.free_count()
        if free == 0:
            return 0, 0  # a finishing attempt sets the wake event
        # Taken before the claim: the lease may have started any time after this.
        claimed_at = time.monotonic()
        with self._pool.connection() as conn, conn.cursor() as cur:
            jobs = q.claim(cur, free, self._lease)
        for job in jobs:
            self._attempts.spawn(self._deliver, job, claimed_at)
        return free, len(jobs)

    def _report(self) -> None:
        with self._pool.connection() as conn, conn.cursor() as cur:
            depth, oldest, dead = q.queue_gauges(cur)
        self._metrics.gauge("webhooks.queue.depth", depth)
        self._metrics.gauge("webhooks.queue.oldest_age_s", round(oldest, 3))
        self._metrics.gauge("webhooks.dead_letters", dead)

    # -- one delivery ---------------------------------------------------------

    def _deliver(self, job: q.Job, claimed_at: float) -> None:
        try:
            if time.monotonic() - claimed_at > self._settings.lease - self._settings.timeout:
                # Too late in the lease to finish before it runs out: another
                # worker may claim it while we send. Leave it to the lease.
                self._metrics.incr("webhooks.delivery.skipped_late")
                return
            started = time.monotonic()
            outcome = self._attempt(job)
            self._metrics.timing("webhooks.delivery.ms", (time.monotonic() - started) * 1000)
            self._record(job, outcome)
        except Exception:
            log.exception("webhook delivery %s failed unexpectedly; it is retried after its lease",
                          job.delivery_id)
        finally:
            self._wake.set()  # a free slot: claim more

    def _attempt(self, job: q.Job) -> Outcome:
        settings = self._settings
        body = event_body(job)
        headers = signing.headers(job.secrets, job.event_id, body)
        try:
            with gevent.Timeout(settings.timeout, _AttemptTimedOut):
                target = targets.parse(job.url, allow_http=settings.allow_http)
                address = targets.resolve(target, allow_private=settings.allow_private)
                answer = transport.post(target, address, body, headers, settings.timeout)
        except _AttemptTimedOut:
            return Outcome(error=f"no answer within {settings.timeout:g} s")
        except targets.TargetRefused as ex:
            return Outcome(error=f"target refused: {ex}")
        except (OSError, urllib3.exceptions.HTTPError) as ex:
            return Outcome(error=f"{type(ex).__name__}: {ex}")
        if 200 <= answer.status < 300:
            return Outcome(succeeded=True, status=answer.status)
        if answer.status == 410:
            return Outcome(dead=True, status=410, error=answer.excerpt or "410 Gone")
        if 300 <= answer.status < 400:
            error = f"redirect not followed (Location: {answer.location})"
        else:
            error = answer.excerpt or f"HTTP {answer.status}"
        return Outcome(status=answer.status, error=error,
                       retry_after=schedule.retry_after(answer.retry_after))

    def _record(self, job: q.Job, outcome: Outcome) -> None:
        settings = self._settings
        delay = 0.0
        if not (outcome.succeeded or outcome.dead):
            delay = schedule.next_delay(job.attempts, outcome.retry_after,
                                        base=settings.retry_base, cap=settings.retry_max_delay,
                                        longest=settings.retry_for)
        error = transport.excerpt(outcome.error.encode(), _ERROR_CHARS) if outcome.error else None
        gone = outcome.dead and outcome.status == 410
        # One autocommit statement, unless the subscription is disabled with it.
        scope = self._pool.transaction if gone else self._pool.connection
        with scope() as conn, conn.cursor() as cur:
            status = q.finish(cur, job, succeeded=outcome.succeeded, dead=outcome.dead,
                              delay=timedelta(seconds=delay), retry_for=self._retry_for,
                              status=outcome.status, error=error)
            if status is not None and gone:
                q.disable(cur, job.subscription_id, GONE_REASON)
        if status is None:
            self._metrics.incr("webhooks.delivery.claim_lost")
            log.warning("webhook delivery %s: the lease ran out before its outcome was recorded",
                        job.delivery_id)
            return
        self._metrics.incr(f"webhooks.delivery.{status}")
        if status == "dead":
            log.warning("webhook delivery %s of event %s to %s is dead: %s",
                        job.delivery_id, job.event_id, job.url, error)

    # -- waking ---------------------------------------------------------------

    def _heard(self) -> None:
        """Claim now, and again once the sessions' NOTIFY window has passed."""
        self._follow_up_at = (time.monotonic() + event_queries.NOTIFY_WINDOW
                              + _COMMIT_SLACK)
        self._wake.set()

    def _listen(self) -> None:
        """LISTEN for new deliveries; reconnect with backoff, polling meanwhile."""
        pause = 0.5
        while not self._stopping.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self._dsn, application_name="peregrine-deliver-listen",
                                        connect_timeout=10, keepalives=1, keepalives_idle=10,
                                        keepalives_interval=5, keepalives_count=3)
                conn.autocommit = True
                with conn.cursor() as cur:
                    cur.execute(f"LISTEN {event_queries.CHANNEL}")
                self._heard()  # anything committed while we were not listening
                log.info("delivering webhooks: listening on %s, polling every %g s",
                         event_queries.CHANNEL, self._settings.poll_interval)
                pause = 0.5
                while not self._stopping.is_set():
                    gevent.select.select([conn], [], [], 30)
                    conn.poll()
                    if conn.notifies:
                        conn.notifies.clear()
                        self._heard()
            except (psycopg2.Error, OSError) as ex:
                log.warning("webhook notifications unavailable (polling every %g s): %s",
                            self._settings.poll_interval, ex)
            finally:
                if conn is not None:
                    conn.close()
            wait_for(self._stopping, pause)
            pause = min(pause * 2, _RECONNECT_MAX)


def serve(config) -> None:
    """Run a worker until SIGTERM or SIGINT (gevent must be patched already)."""
    from psycogreen.gevent import patch_psycopg

    from app import flushing, logs
    from app import metrics as metrics_module
    from app.db import Pool

    patch_psycopg()
    logs.configure(config.log_level)
    metrics = metrics_module.create(config.statsd_addr)
    settings = config.webhooks
    pool = Pool(config.database_url, size=settings.concurrency + 6, timeout=10.0,
                application_name="peregrine-deliver", metrics=metrics)
    worker = Worker(pool, config.database_url, settings, metrics)
    # Mail shares the process and the pool; without PEREGRINE_SMTP_URL it waits queued.
    mailer = _mail_sender(pool, config, metrics)
    stop = worker.stop if mailer is None else _stop_both(worker, mailer)
    for signum in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(signum, stop)
    flushing.start(0.25)
    mailing = gevent.spawn(mailer.run) if mailer is not None else None
    try:
        worker.run()
        if mailing is not None:
            mailing.join()
    finally:
        log.info("webhook worker stopped")
        pool.close()
        flushing.flush_all()


def _mail_sender(pool, config, metrics):
    from app.mail.sender import MailSender

    if config.mail.smtp_url is None:
        log.warning("PEREGRINE_SMTP_URL is not set: mail stays queued until it is")
        return None
    return MailSender(pool, config.mail, config.webhooks, metrics)


def _stop_both(worker, mailer):
    def stop():
        worker.stop()
        mailer.stop()

    return stop
