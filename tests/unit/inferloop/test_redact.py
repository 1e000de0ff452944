from __future__ import annotations

import logging
import uuid

import pytest

from inferloop.redact import MASK, redact_secrets
from inferloop.settings import Settings


def test_secrets_are_masked_in_every_log_record(caplog: pytest.LogCaptureFixture) -> None:
    secret = "s3cr3t-" + uuid.uuid4().hex
    settings = Settings(kafka={"security_protocol": "SASL_SSL", "sasl_username": "u", "sasl_password": secret})  # type: ignore[arg-type]
    assert settings.secret_values() == [secret]
    redact_secrets(settings.secret_values())
    log = logging.getLogger("some.library")
    with caplog.at_level(logging.DEBUG):
        log.debug("config: %s", {"sasl_plain_password": secret, "user": "u"})
        log.warning(f"inline {secret} twice {secret}")
        log.info("nothing secret here: %d", 42)
    messages = [r.getMessage() for r in caplog.records]
    assert all(secret not in m for m in messages)
    assert messages[0] == f"config: {{'sasl_plain_password': '{MASK}', 'user': 'u'}}"
    assert messages[1] == f"inline {MASK} twice {MASK}"
    assert messages[2] == "nothing secret here: 42"
