"""Options of the WhatsApp Cloud API sandbox, and their parsing from JSON, CLI flags and environment."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from .templates import check_entry

# Fields that shape the listening socket or the log buffer; changing them needs a restart.
STARTUP_ONLY = frozenset({"host", "port", "message_log_limit"})

TemplateSpec = dict[str, dict[str, "int | list[str] | dict[str, Any]"]]


@dataclass(frozen=True)
class SandboxSettings:
    """Every option of the sandbox; one immutable value, replaced as a whole when changed at runtime."""

    host: str = "127.0.0.1"
    port: int = 8700
    # Each answer to a message POST is delayed by a uniform random time in this range.
    latency_min_ms: float = 0.0
    latency_max_ms: float = 0.0
    # Throughput cap per phone_number_id (token bucket holding one second of burst).
    default_mps: float = 80.0
    mps: dict[str, float] = field(default_factory=dict)
    # phone_number_id -> access token; an unregistered phone_number_id answers error 100.
    tokens: dict[str, str] = field(default_factory=dict)
    # template name -> {language code -> positional parameter count, list of parameter names, or a template
    # as the Graph API lists it: {status, category, quality_score, components} (see sandbox/templates.py)}.
    # Empty means every template is accepted. The templates are listed under waba_id.
    templates: TemplateSpec = field(default_factory=dict)
    # Share (0..1) of message POSTs answered with HTTP 500/503 (codes 131000/131016).
    error_5xx_share: float = 0.0
    # Share (0..1) of message POSTs held for timeout_hold_s, then answered 504.
    timeout_share: float = 0.0
    timeout_hold_s: float = 30.0
    # A held request still delivers its message, to rehearse the duplicates a retry then causes.
    timeout_accepts: bool = False
    # recipient digits -> error code answered for that recipient (131026, 131049, 131050 ...).
    recipient_errors: dict[str, int] = field(default_factory=dict)
    # phone_number_id (or "*" for all) -> error code answered to every request of that number.
    forced_errors: dict[str, int] = field(default_factory=dict)
    # Outage switch: every message POST answers 503 at once.
    down: bool = False
    # Accepted messages kept for inspection (about 1.5 kB each); the oldest are dropped beyond this.
    # The webhook history per message is bounded by the same number.
    message_log_limit: int = 200_000
    # ---- status webhooks (off while webhook_url is empty) ----
    # Where status notifications are POSTed, e.g. http://127.0.0.1:5000/webhooks/whatsapp.
    webhook_url: str = ""
    # HMAC-SHA256 key of the X-Hub-Signature-256 header; required once webhook_url is set.
    app_secret: str = ""
    # WhatsApp Business Account id shown as entry[].id.
    waba_id: str = "102290129340398"
    # phone_number_id -> metadata.display_phone_number; a number missing here shows its phone_number_id.
    display_phone_numbers: dict[str, str] = field(default_factory=dict)
    # Probability that an accepted message is later delivered, and that a delivered one is then read.
    delivered_share: float = 0.95
    read_share: float = 0.6
    # (min, max) ms between consecutive statuses of one message; "sent" comes this long after acceptance.
    webhook_delay_ms: tuple[float, float] = (50.0, 500.0)
    # Share of messages whose statuses are posted in a wrong order (events keep their true timestamps).
    out_of_order_share: float = 0.0
    # Share of notification POSTs replayed later with the identical body and signature.
    duplicate_share: float = 0.0
    # Share of read messages whose "delivered" status is never posted.
    skip_delivered_share: float = 0.0
    # recipient digits -> error code of a "failed" status that replaces delivered/read (the send is accepted).
    failed_statuses: dict[str, int] = field(default_factory=dict)
    # Statuses due are grouped into POSTs of at most webhook_batch_max; a due status waits at most
    # webhook_batch_ms for others to join its POST.
    webhook_batch_max: int = 100
    webhook_batch_ms: float = 100.0
    # POSTs in flight at once; the statuses of one message are still posted one POST after the other.
    webhook_concurrency: int = 4
    # A POST answered non-2xx or not answered is retried this many times (after 0.1, 0.2, 0.4 s ...),
    # then its statuses are dropped.
    webhook_retries: int = 3
    webhook_timeout_s: float = 5.0
    # ---- business portfolios (sandbox/portfolios.py) ----
    # portfolio id -> {"limit": unique recipients per 24 h (-1: unlimited), "numbers": [phone_number_id, ...],
    # "waba_id": the account its business_capability_update notifications name}.
    portfolios: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The moving window of the portfolio count, in seconds (24 h; shorter only to rehearse it quickly).
    portfolio_window_s: float = 86400.0
    # ---- template pacing, template status and pricing (see sandbox/signals.py) ----
    # template name -> pricing category of its messages in status webhooks (marketing unless listed).
    template_categories: dict[str, str] = field(default_factory=dict)
    # template name, or "name:language" -> PAUSED or DISABLED: sends answer 132015 / 132016. The
    # /_sandbox/signals/template-status route keeps it in step with the notifications it posts.
    template_statuses: dict[str, str] = field(default_factory=dict)
    # recipient digits, or template name -> the send answer's message_status instead of "accepted"
    # (held_for_quality_assessment, paused): the message is still accepted and its statuses still follow.
    held_recipients: dict[str, str] = field(default_factory=dict)
    held_templates: dict[str, str] = field(default_factory=dict)

    def apply(self, changes: Mapping[str, Any], *, runtime: bool = False) -> SandboxSettings:
        """Return a copy with the given JSON-typed changes validated and applied, or raise ValueError."""
        if not isinstance(changes, Mapping):
            raise ValueError("options must be a JSON object")
        normalized: dict[str, Any] = {}
        for name, value in changes.items():
            check = _CHECKS.get(name)
            if check is None:
                raise ValueError(f"unknown option {name!r}")
            if runtime and name in STARTUP_ONLY:
                raise ValueError(f"option {name!r} can only be set at startup")
            try:
                normalized[name] = check(value)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"option {name!r}: {exc}") from None
        result = dataclasses.replace(self, **normalized)
        if result.latency_min_ms > result.latency_max_ms:
            # Setting only one bound is common; move the other one along rather than fail.
            if "latency_max_ms" in normalized and "latency_min_ms" not in normalized:
                result = dataclasses.replace(result, latency_min_ms=result.latency_max_ms)
            elif "latency_min_ms" in normalized and "latency_max_ms" not in normalized:
                result = dataclasses.replace(result, latency_max_ms=result.latency_min_ms)
            else:
                raise ValueError("latency_min_ms must not exceed latency_max_ms")
        if result.webhook_url and not result.app_secret:
            # Meta always signs; an unsigned notification would let the receiver's check go untested.
            raise ValueError("webhook_url needs app_secret (the key of X-Hub-Signature-256)")
        return result

    def to_json(self) -> dict[str, Any]:
        """Return the options as a JSON-ready dict, the shape GET /_sandbox/config answers."""
        return dataclasses.asdict(self)


def _number(value: Any, *, minimum: float = 0.0, maximum: float | None = None, strict_min: bool = False) -> float:
    """Check a JSON number within bounds and return it as a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"expected a number, got {value!r}")
    value = float(value)
    if value < minimum or (strict_min and value == minimum) or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ValueError(f"{value:g} out of range (must be {'>' if strict_min else '>='} {minimum:g}{upper})")
    return value


def _integer(value: Any, *, minimum: int, maximum: int | None = None) -> int:
    """Check a JSON integer within bounds."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{value} out of range")
    return value


def _boolean(value: Any) -> bool:
    """Check a JSON boolean."""
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


def _text(value: Any) -> str:
    """Check a non-empty string."""
    if not isinstance(value, str) or not value:
        raise TypeError(f"expected a non-empty string, got {value!r}")
    return value


def _mapping(value: Any, check_value: Callable[[Any], Any], *, key: Callable[[str], str] = str) -> dict[str, Any]:
    """Check a JSON object whose values all pass check_value; keys go through key()."""
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a JSON object, got {value!r}")
    return {key(_text(k)): check_value(v) for k, v in value.items()}


def _error_code(value: Any) -> int:
    """Check a Graph API error code."""
    return _integer(value, minimum=1)


def _digits(number: str) -> str:
    """Normalize a recipient number the way the sandbox compares them: digits only, no leading +."""
    digits = number.removeprefix("+")
    if not digits.isdigit():
        raise ValueError(f"{number!r} is not a phone number")
    return digits


def _url(value: Any) -> str:
    """Check an http(s) URL, or the empty string that switches webhooks off."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    if value:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{value!r} is not an http(s) URL")
    return value


def _secret(value: Any) -> str:
    """Check the app secret, a string that may be empty while webhooks are off."""
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _delay_range(value: Any) -> tuple[float, float]:
    """Check a delay range given as "50-500", a single number, or [min, max]; return (min, max)."""
    if isinstance(value, str):
        low, _, high = value.partition("-")
        value = [float(low), float(high)] if high else float(low)
    if isinstance(value, (list, tuple)):
        if len(value) != 2:
            raise ValueError(f"expected [min, max], got {value!r}")
        low, high = _number(value[0]), _number(value[1])
    else:
        low = high = _number(value)
    if low > high:
        raise ValueError(f"min {low:g} exceeds max {high:g}")
    return (low, high)


PRICING_CATEGORIES = ("marketing", "utility", "authentication")
TEMPLATE_BLOCKS = ("PAUSED", "DISABLED")
HELD_STATUSES = ("held_for_quality_assessment", "paused")


def _one_of(choices: tuple[str, ...]) -> Callable[[Any], str]:
    """A check that accepts one of a few words."""

    def check(value: Any) -> str:
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return check


def _templates(value: Any) -> TemplateSpec:
    """Check the template catalogue: name -> {language code -> count, names or template object}."""
    return _mapping(value, lambda languages: _mapping(languages, check_entry))


def _portfolios(value: Any) -> dict[str, dict[str, Any]]:
    """Check the portfolios: id -> {limit, numbers, waba_id}; a number belongs to one portfolio at most."""

    def one(spec: Any) -> dict[str, Any]:
        if not isinstance(spec, Mapping):
            raise TypeError(f"expected a JSON object, got {spec!r}")
        limit = _integer(spec.get("limit", -1), minimum=-1)
        if limit == 0:
            raise ValueError("limit 0 would refuse everything; use -1 for unlimited")
        numbers = spec.get("numbers") or []
        if not isinstance(numbers, list) or not all(isinstance(n, str) and n for n in numbers):
            raise TypeError("numbers must be a list of phone_number_id strings")
        return {"limit": limit, "numbers": list(numbers), "waba_id": str(spec.get("waba_id") or "")}

    portfolios = _mapping(value, one)
    owners: dict[str, str] = {}
    for pid, spec in portfolios.items():
        for number in spec["numbers"]:
            if owners.setdefault(number, pid) != pid:
                raise ValueError(f"number {number} is in two portfolios")
    return portfolios


_CHECKS: dict[str, Callable[[Any], Any]] = {
    "host": _text,
    "port": lambda v: _integer(v, minimum=0, maximum=65535),
    "latency_min_ms": _number,
    "latency_max_ms": _number,
    "default_mps": lambda v: _number(v, strict_min=True),
    "mps": lambda v: _mapping(v, lambda x: _number(x, strict_min=True)),
    "tokens": lambda v: _mapping(v, _text),
    "templates": _templates,
    "error_5xx_share": lambda v: _number(v, maximum=1.0),
    "timeout_share": lambda v: _number(v, maximum=1.0),
    "timeout_hold_s": _number,
    "timeout_accepts": _boolean,
    "recipient_errors": lambda v: _mapping(v, _error_code, key=_digits),
    "forced_errors": lambda v: _mapping(v, _error_code),
    "down": _boolean,
    "message_log_limit": lambda v: _integer(v, minimum=1),
    "webhook_url": _url,
    "app_secret": _secret,
    "waba_id": _text,
    "display_phone_numbers": lambda v: _mapping(v, lambda x: _digits(_text(x))),
    "delivered_share": lambda v: _number(v, maximum=1.0),
    "read_share": lambda v: _number(v, maximum=1.0),
    "webhook_delay_ms": _delay_range,
    "out_of_order_share": lambda v: _number(v, maximum=1.0),
    "duplicate_share": lambda v: _number(v, maximum=1.0),
    "skip_delivered_share": lambda v: _number(v, maximum=1.0),
    "failed_statuses": lambda v: _mapping(v, _error_code, key=_digits),
    # Meta's receivers must take up to 1,000 statuses per body, so no batch may be larger.
    "webhook_batch_max": lambda v: _integer(v, minimum=1, maximum=1000),
    "webhook_batch_ms": _number,
    "webhook_concurrency": lambda v: _integer(v, minimum=1, maximum=256),
    "webhook_retries": lambda v: _integer(v, minimum=0, maximum=20),
    "webhook_timeout_s": lambda v: _number(v, strict_min=True),
    "portfolios": _portfolios,
    "portfolio_window_s": lambda v: _number(v, strict_min=True),
    "template_categories": lambda v: _mapping(v, _one_of(PRICING_CATEGORIES)),
    "template_statuses": lambda v: _mapping(v, _one_of(TEMPLATE_BLOCKS)),
    "held_recipients": lambda v: _mapping(v, _one_of(HELD_STATUSES), key=_digits),
    "held_templates": lambda v: _mapping(v, _one_of(HELD_STATUSES)),
}
# Every field needs a check here, so a new option cannot slip in unvalidated.
assert set(_CHECKS) == {f.name for f in dataclasses.fields(SandboxSettings)}


# ---- text forms, for CLI flags and environment variables ----------------------------------------


def _pairs(text: str) -> list[list[str]]:
    """Split "a:b,c:d:e" into [["a", "b"], ["c", "d", "e"]], ignoring blanks."""
    return [[part.strip() for part in item.split(":")] for item in text.split(",") if item.strip()]


def parse_latency(text: str) -> dict[str, float]:
    """Parse "50-300" (a range) or "100" (fixed) milliseconds."""
    low, _, high = text.partition("-")
    low_ms = float(low)
    return {"latency_min_ms": low_ms, "latency_max_ms": float(high) if high else low_ms}


def parse_tokens(text: str) -> dict[str, dict[str, Any]]:
    """Parse "phone_number_id:token[:mps],..." into the tokens and per-number mps options."""
    tokens: dict[str, str] = {}
    mps: dict[str, float] = {}
    for parts in _pairs(text):
        if len(parts) not in (2, 3):
            raise ValueError(f"expected phone_number_id:token[:mps], got {':'.join(parts)!r}")
        tokens[parts[0]] = parts[1]
        if len(parts) == 3:
            mps[parts[0]] = float(parts[2])
    return {"tokens": tokens, "mps": mps}


def parse_codes(text: str) -> dict[str, int]:
    """Parse "key:code,..." (recipient or phone_number_id to error code)."""
    result = {}
    for parts in _pairs(text):
        if len(parts) != 2:
            raise ValueError(f"expected key:code, got {':'.join(parts)!r}")
        result[parts[0]] = int(parts[1])
    return result


def parse_names(text: str) -> dict[str, str]:
    """Parse "key:value,..." with text values (phone_number_id to display number)."""
    result = {}
    for parts in _pairs(text):
        if len(parts) != 2:
            raise ValueError(f"expected key:value, got {':'.join(parts)!r}")
        result[parts[0]] = parts[1]
    return result


def parse_json_or_file(text: str) -> Any:
    """Parse inline JSON, or else read JSON from the file at that path."""
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        return json.loads(stripped)
    with open(os.path.expanduser(stripped), encoding="utf-8") as handle:
        return json.load(handle)


def _flag(value: str) -> bool:
    """Parse an environment switch such as 1/true/yes."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected a boolean, got {value!r}")


# (CLI flag, environment variable, help, text -> dict of option changes)
_TEXT_OPTIONS: list[tuple[str, str, str, Callable[[str], dict[str, Any]]]] = [
    ("--host", "SANDBOX_HOST", "listen address (default 127.0.0.1)", lambda t: {"host": t}),
    ("--port", "SANDBOX_PORT", "listen port; 0 picks a free one (default 8700)", lambda t: {"port": int(t)}),
    ("--latency-ms", "SANDBOX_LATENCY_MS", 'answer delay, "50-300" or "100"', parse_latency),
    ("--mps", "SANDBOX_MPS", "messages/s per phone_number_id (default 80)", lambda t: {"default_mps": float(t)}),
    ("--tokens", "SANDBOX_TOKENS", '"phone_number_id:token[:mps],..."', parse_tokens),
    (
        "--templates",
        "SANDBOX_TEMPLATES",
        "template catalogue: inline JSON or a JSON file path",
        lambda t: {"templates": parse_json_or_file(t)},
    ),
    (
        "--error-5xx-share",
        "SANDBOX_ERROR_5XX_SHARE",
        "share of requests answered 500/503",
        lambda t: {"error_5xx_share": float(t)},
    ),
    (
        "--timeout-share",
        "SANDBOX_TIMEOUT_SHARE",
        "share of requests held, then answered 504",
        lambda t: {"timeout_share": float(t)},
    ),
    (
        "--timeout-hold-s",
        "SANDBOX_TIMEOUT_HOLD_S",
        "how long a timed-out request is held (default 30)",
        lambda t: {"timeout_hold_s": float(t)},
    ),
    (
        "--timeout-accepts",
        "SANDBOX_TIMEOUT_ACCEPTS",
        "timed-out requests still deliver (1/0)",
        lambda t: {"timeout_accepts": _flag(t)},
    ),
    (
        "--recipient-errors",
        "SANDBOX_RECIPIENT_ERRORS",
        '"number:code,..." e.g. "584140000001:131026"',
        lambda t: {"recipient_errors": parse_codes(t)},
    ),
    (
        "--forced-errors",
        "SANDBOX_FORCED_ERRORS",
        '"phone_number_id:code,..." ("*" for all)',
        lambda t: {"forced_errors": parse_codes(t)},
    ),
    ("--down", "SANDBOX_DOWN", "start in outage mode (1/0)", lambda t: {"down": _flag(t)}),
    (
        "--message-log-limit",
        "SANDBOX_MESSAGE_LOG_LIMIT",
        "accepted messages kept for inspection",
        lambda t: {"message_log_limit": int(t)},
    ),
    # The secret comes before the URL: each source is applied on its own, and a URL needs a secret.
    (
        "--app-secret",
        "SANDBOX_APP_SECRET",
        "HMAC key of X-Hub-Signature-256 (prefer the variable to the flag)",
        lambda t: {"app_secret": t},
    ),
    (
        "--webhook-url",
        "SANDBOX_WEBHOOK_URL",
        'status webhook receiver; "" (default) sends none',
        lambda t: {"webhook_url": t},
    ),
    ("--waba-id", "SANDBOX_WABA_ID", "WhatsApp Business Account id in entry[].id", lambda t: {"waba_id": t}),
    (
        "--display-phone-numbers",
        "SANDBOX_DISPLAY_PHONE_NUMBERS",
        '"phone_number_id:digits,..." for metadata',
        lambda t: {"display_phone_numbers": parse_names(t)},
    ),
    (
        "--delivered-share",
        "SANDBOX_DELIVERED_SHARE",
        "share of accepted messages delivered (default 0.95)",
        lambda t: {"delivered_share": float(t)},
    ),
    (
        "--read-share",
        "SANDBOX_READ_SHARE",
        "share of delivered messages read (default 0.6)",
        lambda t: {"read_share": float(t)},
    ),
    (
        "--webhook-delay-ms",
        "SANDBOX_WEBHOOK_DELAY_MS",
        'delay between statuses, "50-500" (default) or "100"',
        lambda t: {"webhook_delay_ms": t},
    ),
    (
        "--out-of-order-share",
        "SANDBOX_OUT_OF_ORDER_SHARE",
        "share of messages whose statuses come out of order",
        lambda t: {"out_of_order_share": float(t)},
    ),
    (
        "--duplicate-share",
        "SANDBOX_DUPLICATE_SHARE",
        "share of notification POSTs sent twice",
        lambda t: {"duplicate_share": float(t)},
    ),
    (
        "--skip-delivered-share",
        "SANDBOX_SKIP_DELIVERED_SHARE",
        "share of read messages with no delivered status",
        lambda t: {"skip_delivered_share": float(t)},
    ),
    (
        "--failed-statuses",
        "SANDBOX_FAILED_STATUSES",
        '"number:code,..." accepted, then a failed status',
        lambda t: {"failed_statuses": parse_codes(t)},
    ),
    (
        "--webhook-batch-max",
        "SANDBOX_WEBHOOK_BATCH_MAX",
        "most statuses per POST, 1..1000 (default 100)",
        lambda t: {"webhook_batch_max": int(t)},
    ),
    (
        "--webhook-batch-ms",
        "SANDBOX_WEBHOOK_BATCH_MS",
        "longest wait of a due status for its POST (default 100)",
        lambda t: {"webhook_batch_ms": float(t)},
    ),
    (
        "--webhook-concurrency",
        "SANDBOX_WEBHOOK_CONCURRENCY",
        "webhook POSTs in flight at once (default 4)",
        lambda t: {"webhook_concurrency": int(t)},
    ),
    (
        "--webhook-retries",
        "SANDBOX_WEBHOOK_RETRIES",
        "retries of a failed webhook POST (default 3)",
        lambda t: {"webhook_retries": int(t)},
    ),
    (
        "--webhook-timeout-s",
        "SANDBOX_WEBHOOK_TIMEOUT_S",
        "timeout of one webhook POST (default 5)",
        lambda t: {"webhook_timeout_s": float(t)},
    ),
    ("--config", "SANDBOX_CONFIG", "options as a JSON object (inline or file path), applied last", parse_json_or_file),
]


def build_parser() -> argparse.ArgumentParser:
    """Build the command-line parser; every flag also has an environment variable."""
    parser = argparse.ArgumentParser(
        prog="python -m sandbox",
        description="Local stand-in for the WhatsApp Cloud API messages endpoint.",
    )
    for flag, env_name, help_text, _ in _TEXT_OPTIONS:
        parser.add_argument(flag, metavar="VALUE", help=f"{help_text} [env {env_name}]")
    return parser


def settings_from_sources(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> SandboxSettings:
    """Build settings from defaults, then environment variables, then CLI flags (later wins)."""
    environ = os.environ if environ is None else environ
    args = vars(build_parser().parse_args(argv))
    settings = SandboxSettings()
    for flag, env_name, _, parse in _TEXT_OPTIONS:
        for source, text in ((env_name, environ.get(env_name)), (flag, args[flag[2:].replace("-", "_")])):
            if text is None:
                continue
            try:
                settings = settings.apply(parse(text))
            except (TypeError, ValueError, OSError) as exc:
                raise ValueError(f"{source}: {exc}") from None
    return settings
