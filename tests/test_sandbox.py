"""Tests of the WhatsApp Cloud API sandbox, run as a real process and spoken to over HTTP."""

from __future__ import annotations

import json
import socket
import time
from typing import Any

import pytest
import requests

from sandbox.process import SandboxHandle, SandboxStartError, start_sandbox
from sandbox.settings import SandboxSettings, settings_from_sources

PHONE = "1000001"
TOKEN = "good-token"
OTHER_PHONE = "1000002"
OTHER_TOKEN = "other-token"
SLOW_PHONE = "1000005"
SLOW_TOKEN = "slow-token"
RECIPIENT = "584141234567"


@pytest.fixture(scope="module")
def sandbox() -> SandboxHandle:
    """One sandbox process shared by the module; each test starts from its startup options."""
    with start_sandbox(
        tokens={PHONE: TOKEN, OTHER_PHONE: OTHER_TOKEN, SLOW_PHONE: SLOW_TOKEN},
        mps={SLOW_PHONE: 5},
    ) as handle:
        yield handle


@pytest.fixture(autouse=True)
def clean(request: pytest.FixtureRequest) -> None:
    """Reset log, counters and options before every test that uses the shared sandbox."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").reset(config=True)


def template_message(
    to: str = RECIPIENT,
    name: str = "promo",
    language: str = "es",
    parameters: list[dict[str, str]] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build a template message body like the campaign sender does."""
    if parameters is None:
        parameters = [{"type": "text", "text": "Ana"}, {"type": "text", "text": "Plan 300 Mbps"}]
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "type": "template",
        "template": {
            "name": name,
            "language": {"code": language},
            "components": [{"type": "body", "parameters": parameters}],
        },
        **extra,
    }


def send(
    sandbox: SandboxHandle, body: Any = None, phone: str = PHONE, token: str | None = TOKEN, timeout: float = 5.0
) -> requests.Response:
    """POST one message to the sandbox's Cloud API endpoint."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    data = json.dumps(template_message() if body is None else body)
    headers["Content-Type"] = "application/json"
    return requests.post(sandbox.message_url(phone), data=data, headers=headers, timeout=timeout)


def error_code(response: requests.Response) -> int:
    """Check the Graph error shape and return error.code."""
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "error_data", "fbtrace_id"}
    assert error["type"] == "OAuthException"
    assert error["error_data"]["messaging_product"] == "whatsapp"
    assert error["error_data"]["details"] and error["fbtrace_id"]
    return error["code"]


@pytest.mark.parametrize("to", ["584141234567", "+584141234567"])
@pytest.mark.parametrize("version", ["v21.0", "v18.0"])
def test_success_shape(sandbox: SandboxHandle, to: str, version: str) -> None:
    """An accepted message answers 200 with contacts and a wamid, echoing the input number."""
    response = requests.post(
        sandbox.message_url(PHONE, version),
        json=template_message(to=to),
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=5,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["messaging_product"] == "whatsapp"
    assert body["contacts"] == [{"input": to, "wa_id": "584141234567"}]
    [message] = body["messages"]
    assert message["id"].startswith("wamid.") and len(message["id"]) > 20
    assert message["message_status"] == "accepted"


def test_text_message_accepted(sandbox: SandboxHandle) -> None:
    """A plain text message is accepted too, and logged with its body."""
    body = {"messaging_product": "whatsapp", "to": RECIPIENT, "type": "text", "text": {"body": "hola"}}
    assert send(sandbox, body).status_code == 200
    [logged] = sandbox.messages()
    assert (logged["type"], logged["text"], logged["template"]) == ("text", "hola", None)


@pytest.mark.parametrize("token", [None, "wrong-token", OTHER_TOKEN])
def test_bad_token_is_190(sandbox: SandboxHandle, token: str | None) -> None:
    """A missing, wrong or other number's token answers 401 with code 190."""
    response = send(sandbox, token=token)
    assert response.status_code == 401
    assert error_code(response) == 190


def test_bearer_scheme_is_case_insensitive(sandbox: SandboxHandle) -> None:
    """Graph accepts "bearer" in any case."""
    response = requests.post(
        sandbox.message_url(PHONE), json=template_message(), headers={"Authorization": f"bearer {TOKEN}"}, timeout=5
    )
    assert response.status_code == 200


def test_unknown_phone_number_id_is_100(sandbox: SandboxHandle) -> None:
    """A phone_number_id with no registered token does not exist."""
    response = send(sandbox, phone="999999")
    assert response.status_code == 400
    assert error_code(response) == 100


def _without(body: dict[str, Any], *path: str) -> dict[str, Any]:
    """Return body with the key at path removed."""
    target = body
    for key in path[:-1]:
        target = target[key]
    del target[path[-1]]
    return body


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (_without(template_message(), "messaging_product"), 131008),
        (_without(template_message(), "to"), 131008),
        (_without(template_message(), "type"), 131008),
        (_without(template_message(), "template"), 131008),
        (_without(template_message(), "template", "name"), 131008),
        (_without(template_message(), "template", "language"), 131008),
        (_without(template_message(), "template", "language", "code"), 131008),
        (template_message(parameters=[{"type": "text"}]), 131008),
        ({"messaging_product": "whatsapp", "to": RECIPIENT, "type": "text", "text": {}}, 131008),
        (template_message(messaging_product="sms"), 131009),
        (template_message(to="58 414 123"), 131009),
        (template_message(to="not-a-number"), 131009),
        (template_message(to=584141234567), 131009),
        (template_message(type="image"), 131009),
        (template_message(recipient_type="group"), 131009),
        (template_message(template="promo"), 131009),
        (template_message(parameters=[{"type": "currency", "currency": {}}]), 131009),
        (template_message(parameters=[{"type": "text", "text": 5}]), 131009),
        (template_message(biz_opaque_callback_data=7), 131009),
        ([template_message()], 131009),
        ("not json at all", 131009),
    ],
)
def test_invalid_body(sandbox: SandboxHandle, body: Any, code: int) -> None:
    """Missing fields answer 131008 and bad values 131009, with HTTP 400, and nothing is logged."""
    if body == "not json at all":
        response = requests.post(
            sandbox.message_url(PHONE), data=body, timeout=5, headers={"Authorization": f"Bearer {TOKEN}"}
        )
    else:
        response = send(sandbox, body)
    assert response.status_code == 400
    assert error_code(response) == code
    assert sandbox.messages() == []


TEMPLATES = {"promo": {"es": 2, "en": 2}, "welcome": {"es": ["first_name", "plan"]}, "bare": {"es": 0}}


@pytest.mark.parametrize(
    ("name", "language", "parameters", "expected"),
    [
        ("promo", "es", ["Ana", "Plan"], 200),
        ("bare", "es", [], 200),
        ("welcome", "es", [("plan", "300"), ("first_name", "Ana")], 200),
        ("missing", "es", ["Ana", "Plan"], 132001),
        ("promo", "pt_BR", ["Ana", "Plan"], 132001),
        ("promo", "es", ["Ana"], 132000),
        ("promo", "es", ["Ana", "Plan", "extra"], 132000),
        ("welcome", "es", [("first_name", "Ana")], 132000),
        ("welcome", "es", [("first_name", "Ana"), ("city", "Caracas")], 132000),
        ("welcome", "es", ["Ana", "Plan"], 132012),
        ("promo", "es", [("first_name", "Ana"), ("plan", "Plan")], 132012),
    ],
)
def test_templates(sandbox: SandboxHandle, name: str, language: str, parameters: list, expected: int) -> None:
    """With a catalogue configured, unknown templates answer 132001 and parameter mismatches 132000/132012."""
    sandbox.configure(templates=TEMPLATES)
    built = [
        {"type": "text", "text": p} if isinstance(p, str) else {"type": "text", "text": p[1], "parameter_name": p[0]}
        for p in parameters
    ]
    response = send(sandbox, template_message(name=name, language=language, parameters=built))
    if expected == 200:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert error_code(response) == expected


def test_any_template_without_catalogue(sandbox: SandboxHandle) -> None:
    """With no catalogue every template name, language and parameter count is accepted."""
    response = send(sandbox, template_message(name="anything", language="xx", parameters=[]))
    assert response.status_code == 200


def test_rate_limit_130429(sandbox: SandboxHandle) -> None:
    """A burst past the cap of a 5 msg/s number gets 130429 for the excess; other numbers are untouched."""
    started = time.monotonic()
    codes = [send(sandbox, phone=SLOW_PHONE, token=SLOW_TOKEN) for _ in range(20)]
    elapsed = time.monotonic() - started
    accepted = [r for r in codes if r.status_code == 200]
    limited = [r for r in codes if r.status_code != 200]
    # One second of burst is 5; a slow loop earns refill at 5 tokens/s on top.
    assert 5 <= len(accepted) <= 5 + int(elapsed * 5) + 1
    assert all(r.status_code == 400 and error_code(r) == 130429 for r in limited)
    assert send(sandbox).status_code == 200
    stats = sandbox.stats()["by_phone_number_id"][SLOW_PHONE]
    assert stats["accepted"] == len(accepted)
    assert stats["rejected"] == {"130429": len(limited)}


@pytest.mark.parametrize("code", [131026, 131049, 131050])
def test_recipient_errors(sandbox: SandboxHandle, code: int) -> None:
    """A configured recipient answers its error code; other recipients are accepted."""
    sandbox.configure(recipient_errors={"+584140000001": code})
    response = send(sandbox, template_message(to="584140000001"))
    assert response.status_code == 400
    assert error_code(response) == code
    assert send(sandbox, template_message(to="584140000002")).status_code == 200


@pytest.mark.parametrize(("code", "status"), [(132001, 400), (131048, 400), (190, 401), (131000, 500)])
def test_forced_error(sandbox: SandboxHandle, code: int, status: int) -> None:
    """A forced error hits every request of that phone number and no other."""
    sandbox.configure(forced_errors={PHONE: code})
    for _ in range(3):
        response = send(sandbox)
        assert response.status_code == status
        assert error_code(response) == code
    assert send(sandbox, phone=OTHER_PHONE, token=OTHER_TOKEN).status_code == 200
    sandbox.configure(forced_errors={})
    assert send(sandbox).status_code == 200


def test_down_switch(sandbox: SandboxHandle) -> None:
    """While down, message POSTs answer 503 at once, without latency; health still answers."""
    sandbox.configure(down=True, latency_min_ms=1000, latency_max_ms=1000)
    started = time.monotonic()
    response = send(sandbox)
    assert time.monotonic() - started < 0.6
    assert response.status_code == 503
    assert error_code(response) == 131016
    assert sandbox.health()["down"] is True
    sandbox.configure(down=False, latency_min_ms=0, latency_max_ms=0)
    assert send(sandbox).status_code == 200


def test_latency(sandbox: SandboxHandle) -> None:
    """Answers, failures included, wait a time within the configured range."""
    sandbox.configure(latency_min_ms=150, latency_max_ms=200)
    for phone, token in ((PHONE, TOKEN), (PHONE, "wrong-token")):
        started = time.monotonic()
        send(sandbox, phone=phone, token=token)
        assert 0.15 <= time.monotonic() - started < 1.0


def test_injected_5xx(sandbox: SandboxHandle) -> None:
    """With a 5xx share of 1 every request answers 500/131000 or 503/131016."""
    sandbox.configure(error_5xx_share=1.0)
    for _ in range(6):
        response = send(sandbox)
        assert (response.status_code, error_code(response)) in {(500, 131000), (503, 131016)}
    assert sandbox.messages() == []


def test_injected_timeout(sandbox: SandboxHandle) -> None:
    """A held request times out a short-timeout client; a patient one gets 504 after the hold."""
    sandbox.configure(timeout_share=1.0, timeout_hold_s=0.6)
    with pytest.raises(requests.Timeout):
        send(sandbox, timeout=0.2)
    started = time.monotonic()
    response = send(sandbox, timeout=5)
    assert response.status_code == 504
    assert time.monotonic() - started >= 0.55
    assert sandbox.messages() == []
    assert sandbox.stats()["timed_out"] == 2


def test_timeout_that_still_delivers(sandbox: SandboxHandle) -> None:
    """With timeout_accepts the message is logged although the client never sees the answer."""
    sandbox.configure(timeout_share=1.0, timeout_hold_s=0.3, timeout_accepts=True)
    assert send(sandbox).status_code == 504
    assert len(sandbox.messages()) == 1


def test_inspection_lists_exactly_the_accepted(sandbox: SandboxHandle) -> None:
    """/_sandbox/messages holds the accepted messages only, in order, with what was sent."""
    sent = []
    for index, phone, token in [(0, PHONE, TOKEN), (1, OTHER_PHONE, OTHER_TOKEN), (2, PHONE, TOKEN)]:
        body = template_message(
            to=f"+58414000000{index}",
            biz_opaque_callback_data=f"our-{index}",
            parameters=[{"type": "text", "text": f"name-{index}", "parameter_name": "first_name"}],
        )
        response = send(sandbox, body, phone=phone, token=token)
        sent.append((phone, body, response.json()["messages"][0]["id"]))
        assert send(sandbox, template_message(to="bad"), phone=phone, token=token).status_code == 400
    assert send(sandbox, token="wrong").status_code == 401

    logged = sandbox.messages()
    assert [m["index"] for m in logged] == [0, 1, 2]
    for item, (phone, body, wamid) in zip(logged, sent, strict=True):
        assert item["wamid"] == wamid
        assert item["phone_number_id"] == phone
        assert item["to"] == body["to"] and item["wa_id"] == body["to"][1:]
        assert (item["template"], item["language"]) == ("promo", "es")
        assert item["parameters"] == [
            {"text": body["template"]["components"][0]["parameters"][0]["text"], "parameter_name": "first_name"}
        ]
        assert item["biz_opaque_callback_data"] == body["biz_opaque_callback_data"]
        assert abs(item["received_at"] - time.time()) < 60

    assert [m["wamid"] for m in sandbox.messages(phone_number_id=PHONE)] == [sent[0][2], sent[2][2]]
    assert [m["wamid"] for m in sandbox.messages(since=1)] == [sent[1][2], sent[2][2]]
    page = requests.get(f"{sandbox.url}/_sandbox/messages", params={"limit": 2}, timeout=5).json()
    assert (page["total"], page["next_since"], len(page["messages"])) == (3, 2, 2)
    assert sandbox.messages(page_size=1) == logged

    stats = sandbox.stats()
    assert (stats["requests"], stats["accepted"], stats["rejected"]) == (7, 3, {"131009": 3, "190": 1})
    assert stats["by_phone_number_id"][OTHER_PHONE]["accepted"] == 1


def test_reset(sandbox: SandboxHandle) -> None:
    """Reset empties log and counters; reset(config=True) also restores the startup options."""
    sandbox.configure(down=True)
    send(sandbox)
    sandbox.reset()
    assert sandbox.config()["down"] is True
    stats = sandbox.stats()
    assert (stats["requests"], stats["accepted"], stats["rejected"], stats["by_phone_number_id"]) == (0, 0, {}, {})
    sandbox.reset(config=True)
    assert sandbox.config()["down"] is False
    assert send(sandbox).status_code == 200
    assert sandbox.messages()[0]["index"] == 0


def test_config_roundtrip_and_validation(sandbox: SandboxHandle) -> None:
    """POST /_sandbox/config changes only the keys given and refuses bad values."""
    config = sandbox.configure(latency_min_ms=50, latency_max_ms=300, default_mps=1000)
    assert (config["latency_min_ms"], config["latency_max_ms"], config["default_mps"]) == (50, 300, 1000)
    assert config["tokens"][PHONE] == TOKEN and config["port"] == sandbox.port
    for bad in (
        {"latency_min_ms": -1},
        {"error_5xx_share": 2},
        {"nope": 1},
        {"port": 1},
        {"down": "yes"},
        {"templates": {"promo": {"es": "two"}}},
        {"latency_min_ms": 10, "latency_max_ms": 5},
    ):
        with pytest.raises(ValueError):
            sandbox.configure(**bad)
    assert sandbox.config() == config
    response = requests.post(f"{sandbox.url}/_sandbox/config", data="{", timeout=5)
    assert response.status_code == 400 and "error" in response.json()


def test_settings_from_environment_and_flags(tmp_path) -> None:
    """Environment variables set options, CLI flags override them, templates load from a file."""
    templates = tmp_path / "templates.json"
    templates.write_text(json.dumps({"promo": {"es": 2}}))
    environ = {
        "SANDBOX_PORT": "9000",
        "SANDBOX_LATENCY_MS": "50-300",
        "SANDBOX_MPS": "20",
        "SANDBOX_TOKENS": "111:abc:5, 222:def",
        "SANDBOX_TEMPLATES": str(templates),
        "SANDBOX_RECIPIENT_ERRORS": "+584140000001:131026",
        "SANDBOX_DOWN": "1",
    }
    settings = settings_from_sources(["--port", "9100", "--forced-errors", "222:131048"], environ)
    assert settings == SandboxSettings(
        port=9100,
        latency_min_ms=50,
        latency_max_ms=300,
        default_mps=20,
        tokens={"111": "abc", "222": "def"},
        mps={"111": 5},
        templates={"promo": {"es": 2}},
        recipient_errors={"584140000001": 131026},
        forced_errors={"222": 131048},
        down=True,
    )
    assert settings_from_sources(["--latency-ms", "100", "--templates", '{"a": {"en": ["x"]}}'], {}).templates == {
        "a": {"en": ["x"]}
    }
    with pytest.raises(ValueError, match="SANDBOX_MPS"):
        settings_from_sources([], {"SANDBOX_MPS": "fast"})


def test_start_failure_reports_output() -> None:
    """A sandbox that cannot bind its port fails start_sandbox with the process's own explanation."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(SandboxStartError, match="cannot listen"):
            start_sandbox(port=taken.getsockname()[1])
    with pytest.raises(ValueError):
        start_sandbox(latency_min_ms="slow")
