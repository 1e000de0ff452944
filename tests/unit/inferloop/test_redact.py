from __future__ import annotations

import io
import logging
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from inferloop.errors import ConfigurationError
from inferloop.redact import MASK, key_file_secrets, redact_secrets
from inferloop.settings import Settings, load_settings


@pytest.mark.security
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


@pytest.mark.security
def test_exception_text_and_stacks_are_masked_whoever_formats_them(caplog: pytest.LogCaptureFixture) -> None:
    """An exception whose text holds the secret, logged with its traceback and stack: the handler's formatter
    prints the masked text (the record carries it already formatted)."""
    secret = "exc-" + uuid.uuid4().hex
    redact_secrets([secret])
    log = logging.getLogger("another.library")
    with caplog.at_level(logging.DEBUG):
        try:
            raise ValueError(f"could not log in with {secret}")
        except ValueError:
            log.exception("login failed", stack_info=True)
    formatted = logging.Formatter("%(message)s").format(caplog.records[-1])
    assert "ValueError: could not log in with " + MASK in formatted  # the traceback was printed, masked
    assert "Stack (most recent call last)" in formatted
    assert secret not in formatted and secret not in caplog.text


@pytest.mark.security
def test_a_crash_traceback_and_prints_are_masked_on_the_process_streams() -> None:
    """A process that registered a secret, prints it to both streams and dies of an uncaught exception holding
    it: the interpreter's own traceback and the prints show the mask, never the secret."""
    secret = "crash-" + uuid.uuid4().hex
    program = (
        "import sys\n"
        "from inferloop.redact import redact_secrets\n"
        f"redact_secrets([{secret!r}])\n"
        f"print('out', {secret!r}); sys.stderr.write('err ' + {secret!r} + '\\n')\n"
        f"raise RuntimeError('boom ' + {secret!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "Traceback" in result.stderr, result.stderr
    assert f"RuntimeError: boom {MASK}" in result.stderr and f"err {MASK}" in result.stderr
    assert result.stdout == f"out {MASK}\n"
    assert secret not in result.stdout + result.stderr


@pytest.mark.security
def test_a_settings_error_names_the_variable_and_never_shows_a_value() -> None:
    """Pydantic would print the input (the whole group, password included); the error names the variable."""
    secret = "pw-" + uuid.uuid4().hex
    with pytest.raises(ConfigurationError) as caught:
        load_settings(kafka={"sasl_username": "u", "sasl_password": secret, "port": "not-a-port"})
    message = str(caught.value)
    assert "INFERLOOP_KAFKA__PORT: Input should be a valid integer" in message
    with pytest.raises(ConfigurationError) as caught:  # the group's own check, which pydantic reports with the input
        load_settings(kafka={"sasl_username": "u", "sasl_password": secret})
    message += str(caught.value)
    assert "INFERLOOP_KAFKA: SASL credentials are set but" in message
    assert secret not in message and secret[3:9] not in message and "not-a-port" not in message


@pytest.mark.security
def test_a_private_keys_contents_are_masked_line_by_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A key file's PEM body lines are registered as secrets: a library that logs the key shows only masks."""
    body = [uuid.uuid4().hex + uuid.uuid4().hex for _ in range(3)]
    key = tmp_path / "client.key"
    key.write_text("-----BEGIN PRIVATE KEY-----\n" + "\n".join(body) + "\n-----END PRIVATE KEY-----\n")
    assert key_file_secrets([key, None, tmp_path / "missing.key"]) == body
    redact_secrets(key_file_secrets([key]))
    with caplog.at_level(logging.DEBUG):
        logging.getLogger("tls.library").debug("loaded key:\n%s", key.read_text())
    assert all(line not in caplog.text for line in body) and MASK in caplog.text


@pytest.mark.security
@pytest.mark.parametrize(
    "pasted",
    [
        "-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----",  # a PEM
        "{body}" * 5,  # one line too long to be a file name: the OS refuses it (ENAMETOOLONG)
        "{body}",  # one base64 line of a short key: could be a file name, still not shown
    ],
    ids=["pem", "too-long-for-a-path", "base64-line"],
)
def test_a_key_pasted_where_its_path_belongs_is_not_repeated_in_the_error(tmp_path: Path, pasted: str) -> None:
    """A private key's contents in the key-file variable: the settings error says which setting is wrong and
    never shows its value (nor does a traceback: the OS's refusal of a too-long name is caught)."""
    body = "MIIE" + "".join(uuid.uuid4().hex for _ in range(4))  # 132 characters of key-like text
    cert = tmp_path / "client.crt"
    cert.write_text("certificate")
    with pytest.raises(ConfigurationError) as caught:
        load_settings(
            kafka={"security_protocol": "SSL", "ssl_certfile": str(cert), "ssl_keyfile": pasted.format(body=body)}
        )
    message = str(caught.value)
    assert "INFERLOOP_KAFKA: INFERLOOP_KAFKA__SSL_KEYFILE names no file (its value is not shown" in message
    assert body[:6] not in message and body[-6:] not in message and "BEGIN" not in message


@pytest.mark.security
def test_escaped_forms_of_a_secret_are_masked_and_faust_s_formatter_prints_the_masked_record() -> None:
    """A password with a backslash, quotes, a space and a non-ASCII letter, logged inside a dict (its repr
    escapes it, as kafka-python's configuration log does) and in JSON, through the formatter faust's worker uses
    (mode's, which re-applies a record's arguments): the line is printed, masked, in every form."""
    import json

    from mode.utils.logging import ExtensionFormatter

    secret = 'a\\b"c d\u00e9-' + uuid.uuid4().hex[:8]
    redact_secrets([secret])
    log = logging.getLogger("escaping.library")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ExtensionFormatter(stream=stream, fmt="%(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        log.debug("config: %s", {"sasl_plain_password": secret})
        log.debug("json: %s", json.dumps({"password": secret}))
        log.debug("plain %s", secret)
    finally:
        log.removeHandler(handler)
    printed = stream.getvalue()
    assert "Logging error" not in printed and printed.count(MASK) == 3, printed
    for form in (secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], secret[-8:]):
        assert form not in printed
