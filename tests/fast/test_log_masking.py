"""Phone numbers and tokens are masked in every part of a log line: message, traceback and stack."""

from __future__ import annotations

import io
import logging
import re

import psycopg
import pytest

from tasks.logsetup import RedactingFilter, configure_handlers
from tests.conftest import make_csv

PHONE, TOKEN = "584141234567", "EAAGsecretToken123"
WHOLE_PHONE = re.compile(r"(?<!\d)58\d{10}(?!\d)")


def _fail_with_a_phone() -> None:
    """Raise the way a database error does: the failing row, phone included, in the exception's text."""
    try:
        raise ValueError(f'COPY leads_activos, line 2: "promo\t2\t{PHONE}\t[]"')
    except ValueError as exc:
        raise RuntimeError(f"database error in create_campaign with access_token={TOKEN}") from exc


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger


@pytest.mark.parametrize("own_formatter", [True, False], ids=["our formatter", "another formatter"])
def test_tracebacks_and_stacks_are_masked(own_formatter):
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    logger = _logger(f"masking-{own_formatter}", handler)
    if own_formatter:
        configure_handlers(logger, "test")
    else:
        # A handler set up by someone else (Celery's, say) keeps its format; the filter still masks.
        handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
        handler.addFilter(RedactingFilter())
    try:
        _fail_with_a_phone()
    except RuntimeError:
        logger.exception("Upload for %s failed", PHONE)
    logger.debug("where we are", stack_info=True)  # the stack quotes this line: 584141234567
    text = out.getvalue()
    assert "Traceback" in text and "Stack (most recent call last)" in text and "database error" in text
    assert "*" * 8 + "4567" in text
    assert not WHOLE_PHONE.search(text), text
    assert TOKEN not in text


def test_a_database_error_in_the_api_logs_no_whole_phone(client, app):
    """A real COPY failure (a constraint the test adds) makes PostgreSQL quote the failing row.

    Under pytest the app's logger has no handler of its own (pytest's sits on the root logger), so the test
    gives it the stream handler a served API has, equipped the way create_app equips it.
    """
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    app.logger.addHandler(handler)
    configure_handlers(app.logger, "fast")
    dsn = app.extensions["campaigns"].settings.database_url
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "ALTER TABLE instancia_sofia.leads_activos ADD CONSTRAINT refuse_one_number CHECK (phone <> '584141000002')"
        )
    try:
        data = {
            "titulo_campana": "Rota",
            "plantilla": "promo_enero",
            "buzon": "ventas",
            "archivo_csv": (io.BytesIO(make_csv(5)), "c.csv", "text/csv"),
        }
        response = client.post("/api/crear-campana", data=data, content_type="multipart/form-data")
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("ALTER TABLE instancia_sofia.leads_activos DROP CONSTRAINT refuse_one_number")
        app.logger.removeHandler(handler)
    assert response.status_code == 500 and response.json["details"] == {"error": "StoreError"}
    log = out.getvalue()
    assert "Traceback" in log and "refuse_one_number" in log and "********0002" in log, log[-3000:]
    assert not WHOLE_PHONE.search(log), WHOLE_PHONE.findall(log)


def test_log_format_json_gives_one_masked_object_per_line_with_the_call_context():
    import io
    import json
    import logging

    from tasks.logsetup import configure_handlers

    logger = logging.getLogger("wcq.test.json")
    stream = io.StringIO()
    logger.handlers = [logging.StreamHandler(stream)]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    configure_handlers(logger, "instance-7", "json")
    logger.info(
        "Batch %s/%s completado para 584141234567 (Bearer abc.def)",
        2,
        9,
        extra={"campaign": "promo", "batch": 2, "phone": "584141234567"},
    )
    logger.info("sin contexto")
    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert (first["instance"], first["campaign"], first["batch"], first["level"]) == ("instance-7", "promo", 2, "INFO")
    assert first["phone"] == "********4567" and "584141234567" not in json.dumps(first)
    assert "abc.def" not in first["message"] and first["message"].startswith("Batch 2/9 completado")
    assert second["message"] == "sin contexto" and "campaign" not in second


def test_log_format_setting_is_text_or_json():
    import pytest

    from tasks.config import ConfigError, load_settings

    assert load_settings({"LOG_FORMAT": "JSON"}, dotenv=False).log_format == "json"
    assert load_settings({}, dotenv=False).log_format == "text"
    with pytest.raises(ConfigError):
        load_settings({"LOG_FORMAT": "xml"}, dotenv=False)
