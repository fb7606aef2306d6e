"""The development mail catcher of ``services up``: mail lands in .run/mail/ as .eml files."""

from __future__ import annotations

import email
import email.policy

from app.config import Config
from app.mail.catcher import MailCatcher
from app.manage.services import LocalStack
from tests.support.api import new_user
from tests.support.smtp import link_token
from tests.support.waiting import wait_until
from tests.support.webhooks import FAST, DeliveryWorker


def test_a_queued_mail_lands_as_a_readable_eml_file(client, db, base_env, tmp_path):
    catcher = MailCatcher(tmp_path / "run")
    catcher.start()
    worker = DeliveryWorker({**base_env, **FAST,
                             "PEREGRINE_SMTP_URL": f"smtp://127.0.0.1:{catcher.port}"},
                            tmp_path / "deliver.log")
    try:
        assert catcher.running()
        assert catcher.describe() == f"caught on 127.0.0.1:{catcher.port} into {catcher.folder}"
        worker.start()
        user = new_user(client)
        assert client.simulate_post("/v1/auth/email/verify-request",
                                    headers=user["headers"]).status_code == 202
        [path] = wait_until(lambda: list(catcher.folder.glob("*.eml")), timeout=15)
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        assert message["To"] == user["email"]
        token = link_token(message)
        assert client.simulate_post("/v1/auth/email/verify",
                                    json={"token": token}).status_code == 200
        assert not list(catcher.folder.glob(".*.part"))  # written whole, then renamed
        assert worker.stop() == 0  # SIGTERM stops the mail loop with the webhook loop
    finally:
        worker.stop()
        catcher.stop()
    assert not catcher.running()
    assert catcher.describe() == "stopped"


def test_the_development_environment_carries_a_valid_data_key_and_smtp_url(tmp_path, base_env):
    stack = LocalStack(tmp_path / "stack")
    stack.root.mkdir()
    env = stack.environment()  # what `services up` prints, nothing started
    assert stack.environment()["PEREGRINE_DATA_KEY"] == env["PEREGRINE_DATA_KEY"]  # kept
    assert (stack.root / "data-key").stat().st_mode & 0o077 == 0
    config = Config.from_env({**base_env, "PEREGRINE_DATA_KEY": env["PEREGRINE_DATA_KEY"],
                              "PEREGRINE_SMTP_URL": env["PEREGRINE_SMTP_URL"]})
    assert config.data_key == env["PEREGRINE_DATA_KEY"].encode()
    assert config.mail.smtp_url.startswith("smtp://127.0.0.1:")
