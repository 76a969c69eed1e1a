import logging

import pytest

from bot.logs import RedactingFilter, setup_logging
from tests.harness import API_KEY, TOKEN


def test_redaction_covers_messages_arguments_tracebacks_and_url_encoding(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging("DEBUG", [TOKEN, API_KEY])
    log = logging.getLogger("some.library")
    log.info("POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    log.warning("key=%s", API_KEY)
    log.info("download /file/bot%s/photos/1.jpg", TOKEN.replace(":", "%3A"))
    log.info("another bot's url bot987654321:XXabcdefghijklmnopqrstuvwxyz12345/getMe")
    try:
        raise RuntimeError(f"failed with Authorization: Bearer {API_KEY}")
    except RuntimeError:
        log.exception("boom")
    err = capsys.readouterr().err
    assert TOKEN not in err and API_KEY not in err
    assert TOKEN.split(":")[1] not in err
    assert "XXabcdefghijklmnopqrstuvwxyz12345" not in err
    assert err.count("<REDACTED>") >= 5
    assert "RuntimeError" in err  # the traceback itself is kept


def test_http_client_loggers_are_quiet() -> None:
    setup_logging("INFO", [TOKEN])
    assert logging.getLogger("httpx").getEffectiveLevel() == logging.WARNING
    assert logging.getLogger("httpcore").getEffectiveLevel() == logging.WARNING


def test_filter_keeps_records_and_unrelated_text() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "job %s ok", ("abc",), None)
    assert RedactingFilter([TOKEN]).filter(record)
    assert record.getMessage() == "job abc ok"
