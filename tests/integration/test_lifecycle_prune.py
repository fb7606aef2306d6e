"""What prune may drop of the account lifecycle: finished mails, old tokens and challenges."""

from __future__ import annotations

from datetime import timedelta

from app.queries import email_tokens, mails, mfa_challenges
from tests.support.api import new_user


def test_only_finished_old_rows_go(client, db):
    user = new_user(client)
    with db.cursor() as cur:
        for status in ("pending", "failed", "sent", "dead"):
            cur.execute("INSERT INTO mails (user_id, recipient, template, status, created_at)"
                        " VALUES (%s, 'a@x.test', 'verify_email', %s, now() - interval '8 days')",
                        (user["id"], status))
        cur.execute("INSERT INTO mails (user_id, recipient, template, status)"
                    " VALUES (%s, 'a@x.test', 'verify_email', 'sent')", (user["id"],))
        assert mails.prune(cur, timedelta(days=7)) == 2
        cur.execute("SELECT status FROM mails ORDER BY status")
        assert [row[0] for row in cur.fetchall()] == ["failed", "pending", "sent"]

        email_tokens.insert(cur, user["id"], email_tokens.VERIFY_EMAIL, "k", b"old",
                            timedelta(days=-2))
        email_tokens.insert(cur, user["id"], email_tokens.VERIFY_EMAIL, "k", b"live",
                            timedelta(hours=1))
        assert email_tokens.prune(cur) == 1
        cur.execute("SELECT token_hash FROM email_tokens")
        assert [bytes(row[0]) for row in cur.fetchall()] == [b"live"]

        cur.execute("INSERT INTO mfa_challenges (token_hash, user_id, credentials, expires_at)"
                    " VALUES ('old', %(u)s, 'c', now() - interval '2 days'),"
                    " ('new', %(u)s, 'c', now() + interval '5 minutes')", {"u": user["id"]})
        assert mfa_challenges.prune(cur) == 1
