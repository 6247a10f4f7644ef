"""Plain-function behaviour: configuration, error sorting, message payloads, ids and log masking."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tasks import jsoncodec
from tasks.config import ConfigError, load_settings
from tasks.errors import ErrorKind, classify, describe
from tasks.logsetup import mask
from tasks.pipeline import batch_count, chunk_count, chunk_range
from tasks.templates import PayloadBuilder
from tasks.whatsapp import template_payload
from webapi.campaigns import slugify


def test_defaults_match_the_documented_ones():
    s = load_settings({})
    assert (s.api_whatsapp_url, s.batch_size, s.chunk_size, s.max_concurrent_batches, s.intervalo_envio_ms) == (
        "https://graph.facebook.com",
        250,
        250,
        5,
        0,
    )
    assert (s.redis_url, s.debug, s.instance_id, s.max_csv_size_mb, s.max_messages_per_campaign, s.default_region) == (
        "redis://localhost:6379/0",
        False,
        "instance-1",
        50,
        100_000,
        "VE",
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("BATCH_SIZE", "abc"),
        ("BATCH_SIZE", "0"),
        ("MAX_CONCURRENT_BATCHES", "-1"),
        ("INTERVALO_ENVIO_MS", "x"),
        ("API_WHATSAPP_URL", "graph.facebook.com"),
        ("REDIS_URL", "localhost:6379"),
        ("DEBUG", "maybe"),
        ("DATABASE_URL", "mysql://x/y"),
        ("DEFAULT_REGION", "Venezuela"),
        ("WHATSAPP_API_VERSION", "21"),
        ("DATABASE_CONNECT_TIMEOUT_S", "1"),
        ("DATABASE_STATEMENT_TIMEOUT_S", "-5"),
        ("DATABASE_RETRY_S", "soon"),
    ],
)
def test_a_bad_value_stops_startup_naming_the_variable(name, value):
    with pytest.raises(ConfigError, match=name):
        load_settings({name: value})


def test_database_timeouts_default_to_bounded_waits():
    s = load_settings({})
    assert (s.database_connect_timeout_s, s.database_statement_timeout_s, s.database_retry_s) == (5, 30, 60.0)
    s = load_settings({"DATABASE_STATEMENT_TIMEOUT_S": "0", "DATABASE_RETRY_S": "0"})
    assert (s.database_statement_timeout_s, s.database_retry_s) == (0, 0.0)  # the server's timeout; no waiting


def test_values_are_typed():
    s = load_settings(
        {"BATCH_SIZE": " 250 ", "DEBUG": "true", "DEFAULT_REGION": "co", "API_WHATSAPP_URL": "http://127.0.0.1:8700/"}
    )
    assert (s.batch_size, s.debug, s.default_region, s.api_whatsapp_url) == (250, True, "CO", "http://127.0.0.1:8700")


@pytest.mark.parametrize(
    "code, kind",
    [
        (130429, ErrorKind.TRANSIENT),
        (131000, ErrorKind.TRANSIENT),
        (131056, ErrorKind.TRANSIENT),
        (4, ErrorKind.TRANSIENT),
        (80007, ErrorKind.TRANSIENT),
        (131057, ErrorKind.TRANSIENT),
        (131026, ErrorKind.RECIPIENT),
        (131050, ErrorKind.RECIPIENT),
        (131049, ErrorKind.RECIPIENT),
        (131008, ErrorKind.RECIPIENT),
        (131009, ErrorKind.RECIPIENT),
        (132000, ErrorKind.CAMPAIGN),
        (132001, ErrorKind.CAMPAIGN),
        (132012, ErrorKind.CAMPAIGN),
        (190, ErrorKind.ACCOUNT),
        (131048, ErrorKind.ACCOUNT),
        (132015, ErrorKind.ACCOUNT),
        (250, ErrorKind.ACCOUNT),
        (368, ErrorKind.ACCOUNT),
        (131042, ErrorKind.ACCOUNT),
    ],
)
def test_errors_are_sorted_by_code(code, kind):
    assert classify(code, 400) is kind


@pytest.mark.parametrize(
    "http_status, kind",
    [(None, ErrorKind.TRANSIENT), (502, ErrorKind.TRANSIENT), (429, ErrorKind.TRANSIENT), (400, ErrorKind.RECIPIENT)],
)
def test_errors_without_a_code_fall_back_to_transport(http_status, kind):
    assert classify(None, http_status) is kind


def test_reasons_are_spanish_sentences_with_the_code():
    assert "132001" in describe(132001) and "idioma" in describe(132001)
    assert "999" in describe(999, "algo raro")


def test_positional_and_named_template_payloads():
    positional = template_payload("584141234567", "promo", "es", ["Ana", "300"], callback_data="c/1")
    assert positional["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Ana"},
        {"type": "text", "text": "300"},
    ]
    assert positional["biz_opaque_callback_data"] == "c/1" and positional["to"] == "584141234567"
    named = template_payload("584141234567", "promo", "es_MX", {"nombre": "Ana"})
    assert named["template"]["components"][0]["parameters"] == [
        {"type": "text", "text": "Ana", "parameter_name": "nombre"}
    ]
    assert named["template"]["language"] == {"code": "es_MX"}
    assert "components" not in template_payload("1", "hello_world", "en_US", [])["template"]


_TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_VALUE = st.one_of(_TEXT, st.integers(), st.floats(allow_nan=False), st.none())


@given(
    to=st.text("0123456789+", min_size=1, max_size=15),
    template=_TEXT,
    language=_TEXT,
    parameters=st.one_of(st.lists(_VALUE, max_size=4), st.dictionaries(_TEXT, _VALUE, max_size=4)),
    callback=st.one_of(st.none(), _TEXT),
)
def test_a_plain_templates_body_is_its_payload_encoded_byte_for_byte(to, template, language, parameters, callback):
    """The body written straight to bytes is exactly what encoding the payload gives, for any text."""
    builder = PayloadBuilder(template, language)
    body = builder.body(to, parameters, callback)
    assert body == jsoncodec.dumps(builder.payload(to, parameters, callback))
    assert json.loads(body) == template_payload(to, template, language, parameters, callback)


def test_a_rich_templates_body_is_its_payload_encoded():
    plan = {"columns": ["foto"], "body_count": 1, "header": {"type": "image", "column": "foto"}}
    builder = PayloadBuilder("promo", "es", plan)
    body = builder.body("584141234567", ["Ana", "https://x.example/a.jpg"], "c/1")
    assert json.loads(body)["template"]["components"][0] == {
        "type": "header",
        "parameters": [{"type": "image", "image": {"link": "https://x.example/a.jpg"}}],
    }
    assert body == jsoncodec.dumps(builder.payload("584141234567", ["Ana", "https://x.example/a.jpg"], "c/1"))


@pytest.mark.parametrize(
    "raw",
    [
        b'{"entry":[{"id":"1","changes":[]}],"n":12.5}',
        b'{"huge":1E400}',  # beyond a double: orjson refuses it
        b'{"lone":"\\ud83d"}',  # a lone surrogate escape
        b'{"x":NaN}',
        '{"ñ":"señal"}'.encode("utf-16"),  # json reads UTF-16 with a BOM
        b'{"a":1,"a":2}',
    ],
)
def test_the_notification_paths_json_reads_exactly_what_json_reads(raw):
    assert repr(jsoncodec.loads(raw)) == repr(json.loads(raw))


@pytest.mark.parametrize("raw", [b"", b"{", b'{"a":}', b"\xff\xfe\x00", b"[1,]"])
def test_the_notification_paths_json_refuses_what_json_refuses(raw):
    with pytest.raises(ValueError):
        json.loads(raw)
    with pytest.raises(ValueError):
        jsoncodec.loads(raw)


def test_an_integer_beyond_64_bits_is_still_read_as_a_number():
    """The one difference from json: read as a float (no notification field carries such a number)."""
    assert jsoncodec.loads(b'{"big":123456789012345678901234567890}') == {"big": 1.2345678901234568e29}


def test_the_notification_paths_json_writes_what_orjson_refuses():
    for value in ({"statuses": [{"id": "wamid.1", "ts": 1764770000, "ok": True, "e": None}]}, {1: "a"}, {"n": 2**70}):
        assert json.loads(jsoncodec.dumps(value)) == json.loads(json.dumps(value))
    assert jsoncodec.dumps({"t": "Señora Peña 😀"}) == '{"t":"Señora Peña 😀"}'.encode()


def test_batches_and_chunks_cover_every_message_once():
    total, batch, chunk = 1037, 100, 20
    seen = []
    for b in range(1, batch_count(total, batch) + 1):
        for c in range(chunk_count(total, batch, chunk, b)):
            first, last = chunk_range(total, batch, chunk, b, c)
            seen.extend(range(first, last + 1))
    assert seen == list(range(1, total + 1))


@pytest.mark.parametrize(
    "title, slug", [("Promo Enero 2026!", "promo-enero-2026"), ("Ñandú  é", "nandu-e"), ("!!!", "campana")]
)
def test_campaign_ids_are_readable_slugs(title, slug):
    assert slugify(title) == slug


def test_logs_never_show_tokens_or_whole_phone_numbers():
    line = mask("Bearer EAAG123abc to 584141234567 access_token=xyz9 batch 12")
    assert "EAAG123abc" not in line and "xyz9" not in line
    assert "584141234567" not in line and "4567" in line and "batch 12" in line
