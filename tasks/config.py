"""Typed settings read from the environment (and an optional .env file) in one place."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, fields
from urllib.parse import urlparse


class ConfigError(ValueError):
    """A configuration variable holds a value the service cannot run with."""


@dataclass(frozen=True)
class Settings:
    """Every setting the web API, the workers and the CLI read, with its environment name."""

    api_whatsapp_url: str = "https://graph.facebook.com"
    whatsapp_api_version: str = "v23.0"
    batch_size: int = 250
    chunk_size: int = 250
    max_concurrent_batches: int = 5
    intervalo_envio_ms: int = 0
    whatsapp_mps: int = 80
    max_retries: int = 5
    http_timeout_s: float = 15.0
    supabase_url: str | None = None
    supabase_key: str | None = None
    database_url: str | None = None
    database_connect_timeout_s: int = 5
    database_statement_timeout_s: int = 30
    database_retry_s: float = 60.0
    redis_url: str = "redis://localhost:6379/0"
    debug: bool = False
    instance_id: str = "instance-1"
    log_format: str = "text"  # LOG_FORMAT: text (the operators' line) or json (one object per line)
    max_csv_size_mb: int = 50
    max_json_body_mb: int = 5
    max_messages_per_campaign: int = 100_000
    max_param_length: int = 1024
    default_region: str = "VE"
    credentials_cache_s: float = 30.0
    max_error_rate: float = 0.5
    error_rate_window: int = 200
    chunk_deadline_s: float = 60.0
    sweep_interval_s: float = 10.0
    stale_batch_s: int = 30
    stuck_claim_s: int = 300
    worker_heartbeat_ttl_s: int = 15
    whatsapp_verify_token: str | None = None
    whatsapp_app_secret: str | None = None
    webhook_max_body_kb: int = 2048
    webhook_receiver_port: int = 5001  # WEBHOOK_RECEIVER_PORT: `python -m webapi.receiver` listens here
    webhook_batch_max: int = 500  # WEBHOOK_BATCH_MAX: notification bodies a drain applies in one store call
    # WEBHOOK_GATHER_MS: a drain that finds fewer than a full batch waiting lets this long pass since its last
    # take before the next one, so a steady stream is applied in few large batches (0: take at once).
    webhook_gather_ms: int = 500
    cors_origins: tuple[str, ...] = ()
    supabase_jwt_secret: str | None = None
    supabase_anon_key: str | None = None
    jwks_cache_s: float = 600.0
    api_key_cache_s: float = 2.0  # how long an API process trusts a key or a user's role it looked up (0: never)
    default_role: str = "viewer"
    auth_disabled: bool = False
    rate_limit_uploads: str = "10/minute"
    rate_limit_actions: str = "60/minute"
    rate_limit_reads: str | None = None
    metrics_token: str | None = None
    metrics_port: int = 0
    # Scheduling, quiet hours and portfolio limits (see tasks/scheduling.py and tasks/portfolio.py).
    send_window: str = ""  # SEND_WINDOW: a campaign's default horario_envio, e.g. 08:00-20:00; empty: always
    default_time_zone: str = "America/Caracas"  # DEFAULT_TIME_ZONE: zona_horaria when a campaign gives none
    scheduler_interval_s: float = 1.0  # SCHEDULER_INTERVAL_S: how often beat starts the campaigns that are due
    max_schedule_days: int = 90  # MAX_SCHEDULE_DAYS: how far ahead programar_para may be
    # MESSAGING_LIMIT_TIERS: the daily limits a portfolio may have (0 stands for unlimited).
    messaging_limit_tiers: tuple[int, ...] = (250, 2000, 10000, 100000, 0)
    messaging_limit_window_s: int = 86400  # MESSAGING_LIMIT_WINDOW_S: the moving window of the count
    template_cache_s: float = 60.0  # TEMPLATE_CACHE_S: how long a template listing is reused (0: never)
    template_check_timeout_s: float = 5.0  # TEMPLATE_CHECK_TIMEOUT_S: wait for the Graph API's listing
    # PAUSE_ON_LOW_QUALITY: a number whose quality drops to the lowest rating has its campaigns paused.
    pause_on_low_quality: bool = True
    # RATE_CARD_FILE: prices per message by category and country calling code (CSV or JSON; docs/rate-card.csv).
    rate_card_file: str | None = None
    # Opt-outs: whose suppression list an automatic opt-out joins ("buzon": the buzón it came from; "global":
    # every buzón), and the inbound replies that mean "stop" (compared without accents, case or spaces).
    optout_scope: str = "buzon"
    optout_keywords: tuple[str, ...] = ("BAJA", "STOP", "NO", "CANCELAR", "DESUSCRIBIR", "UNSUBSCRIBE")
    # Hours a recipient refused for the per-user marketing limit (131049) waits before its one retry; 0 fails it.
    marketing_limit_retry_h: float = 24.0

    @property
    def max_csv_bytes(self) -> int:
        """The upload size limit in bytes."""
        return self.max_csv_size_mb * 1024 * 1024

    @property
    def max_json_body_bytes(self) -> int:
        """The JSON body size limit in bytes (a parsed JSON body takes ~17 times its size in memory)."""
        return self.max_json_body_mb * 1024 * 1024


def _positive_int(name: str, raw: str, minimum: int = 1) -> int:
    """Parse a whole number no smaller than `minimum`, naming the variable when it is not one."""
    try:
        value = int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a whole number; set it to a number such as {minimum or 1}") from None
    if value < minimum:
        raise ConfigError(f"{name}={value} must be at least {minimum}")
    return value


def _positive_float(name: str, raw: str) -> float:
    """Parse a positive number of seconds, naming the variable when it is not one."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value <= 0:
        raise ConfigError(f"{name}={value} must be greater than 0")
    return value


def _non_negative_float(name: str, raw: str) -> float:
    """Parse a number of seconds that may be 0, naming the variable when it is not one."""
    try:
        value = float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None
    if value < 0:
        raise ConfigError(f"{name}={value} must be 0 or more")
    return value


def _bool(name: str, raw: str) -> bool:
    """Parse the usual spellings of true and false."""
    text = raw.strip().lower()
    if text in {"1", "true", "yes", "on", "si", "sí"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; use true or false")


def _url(name: str, raw: str, schemes: set[str]) -> str:
    """Check that a URL has one of the expected schemes and a host (or a path for unix sockets)."""
    value = raw.strip()
    parsed = urlparse(value)
    if parsed.scheme not in schemes or not (parsed.netloc or (parsed.scheme == "unix" and parsed.path)):
        expected = " or ".join(sorted(f"{s}://" for s in schemes))
        raise ConfigError(f"{name}={raw!r} is not a valid URL; it must start with {expected} and name a host")
    return value.rstrip("/") if parsed.scheme in {"http", "https"} else value


#: Values DEFAULT_ROLE accepts: a role, or "none" to refuse signed-in users who were given no role.
ROLE_CHOICES = ("viewer", "operator", "admin", "none")

_PARSERS = {
    "api_whatsapp_url": lambda n, v: _url(n, v, {"http", "https"}),
    "whatsapp_api_version": lambda n, v: _version(n, v),
    "batch_size": lambda n, v: _positive_int(n, v),
    "chunk_size": lambda n, v: _positive_int(n, v),
    "max_concurrent_batches": lambda n, v: _positive_int(n, v),
    "intervalo_envio_ms": lambda n, v: _positive_int(n, v, minimum=0),
    "whatsapp_mps": lambda n, v: _positive_int(n, v),
    "max_retries": lambda n, v: _positive_int(n, v, minimum=0),
    "http_timeout_s": _positive_float,
    "supabase_url": lambda n, v: _url(n, v, {"http", "https"}),
    "supabase_key": lambda n, v: v.strip(),
    "database_url": lambda n, v: _url(n, v, {"postgres", "postgresql"}),
    "database_connect_timeout_s": lambda n, v: _positive_int(n, v, minimum=2),
    "database_statement_timeout_s": lambda n, v: _positive_int(n, v, minimum=0),
    "database_retry_s": lambda n, v: _non_negative_float(n, v),
    "redis_url": lambda n, v: _url(n, v, {"redis", "rediss", "unix"}),
    "debug": _bool,
    "instance_id": lambda n, v: v.strip() or "instance-1",
    "log_format": lambda n, v: _choice(n, v.strip().lower(), ("text", "json")),
    "max_csv_size_mb": lambda n, v: _positive_int(n, v),
    "max_json_body_mb": lambda n, v: _positive_int(n, v),
    "max_messages_per_campaign": lambda n, v: _positive_int(n, v),
    "max_param_length": lambda n, v: _positive_int(n, v),
    "default_region": lambda n, v: _region(n, v),
    "credentials_cache_s": _positive_float,
    "max_error_rate": lambda n, v: _fraction(n, v),
    "error_rate_window": lambda n, v: _positive_int(n, v),
    "chunk_deadline_s": _positive_float,
    "sweep_interval_s": _positive_float,
    "stale_batch_s": lambda n, v: _positive_int(n, v),
    "stuck_claim_s": lambda n, v: _positive_int(n, v),
    "worker_heartbeat_ttl_s": lambda n, v: _positive_int(n, v, minimum=3),
    "whatsapp_verify_token": lambda n, v: v.strip() or None,
    "whatsapp_app_secret": lambda n, v: v.strip() or None,
    "webhook_max_body_kb": lambda n, v: _positive_int(n, v),
    "webhook_receiver_port": lambda n, v: _port(n, v),
    "webhook_batch_max": lambda n, v: _positive_int(n, v),
    "webhook_gather_ms": lambda n, v: _positive_int(n, v, minimum=0),
    "cors_origins": lambda n, v: _origins(n, v),
    "supabase_jwt_secret": lambda n, v: v.strip() or None,
    "supabase_anon_key": lambda n, v: v.strip() or None,
    "jwks_cache_s": _positive_float,
    "api_key_cache_s": _non_negative_float,
    "default_role": lambda n, v: _choice(n, v, ROLE_CHOICES),
    "auth_disabled": _bool,
    "rate_limit_uploads": lambda n, v: _rate(n, v),
    "rate_limit_actions": lambda n, v: _rate(n, v),
    "rate_limit_reads": lambda n, v: _rate(n, v) if v.strip() else None,
    "metrics_token": lambda n, v: v.strip() or None,
    "metrics_port": lambda n, v: _port(n, v),
    "send_window": lambda n, v: _send_window(n, v),
    "default_time_zone": lambda n, v: _time_zone(n, v),
    "scheduler_interval_s": _positive_float,
    "max_schedule_days": lambda n, v: _positive_int(n, v),
    "messaging_limit_tiers": lambda n, v: _tiers(n, v),
    "messaging_limit_window_s": lambda n, v: _positive_int(n, v, minimum=60),
    "template_cache_s": _non_negative_float,
    "template_check_timeout_s": _positive_float,
    "pause_on_low_quality": _bool,
    "rate_card_file": lambda n, v: v.strip() or None,
    "optout_scope": lambda n, v: _choice(n, v, ("buzon", "global")),
    "optout_keywords": lambda n, v: _keywords(n, v),
    "marketing_limit_retry_h": lambda n, v: _non_negative_float(n, v),
}


def _send_window(name: str, raw: str) -> str:
    """A sending window like 08:00-20:00 (or empty for always)."""
    from tasks.scheduling import SendWindow

    try:
        window = SendWindow.parse(raw)
    except ValueError:
        raise ConfigError(
            f"{name}={raw!r} is not a sending window; write it like 08:00-20:00, or leave it empty"
        ) from None
    return window.text if window else ""


def _time_zone(name: str, raw: str) -> str:
    """An IANA time zone name such as America/Caracas."""
    from tasks.scheduling import zone

    try:
        return zone(raw.strip()).key
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an IANA time zone such as America/Caracas") from None


def _tiers(name: str, raw: str) -> tuple[int, ...]:
    """Daily limits separated by commas; 'unlimited' (or 0) is the tier without a limit."""
    tiers = []
    for item in (part.strip().lower() for part in raw.split(",")):
        if not item:
            continue
        if item in ("unlimited", "ilimitado", "0", "-1"):
            tiers.append(0)
            continue
        tiers.append(_positive_int(name, item))
    if not tiers:
        raise ConfigError(f"{name} is empty; list the tiers like 250,2000,10000,100000,unlimited")
    return tuple(tiers)


def _keywords(name: str, raw: str) -> tuple[str, ...]:
    """A comma-separated list of words or short phrases, at least one."""
    words = tuple(w.strip() for w in raw.split(",") if w.strip())
    if not words:
        raise ConfigError(f"{name} is empty; list the opt-out words separated by commas, such as BAJA,STOP")
    return words


def _port(name: str, raw: str) -> int:
    """A TCP port, or 0 for none."""
    value = _positive_int(name, raw, minimum=0)
    if value > 65535:
        raise ConfigError(f"{name}={value} is not a TCP port; use 1-65535, or 0 to turn it off")
    return value


def _origins(name: str, raw: str) -> tuple[str, ...]:
    """Parse a comma-separated list of web origins such as https://app.example.com (no paths, no "*")."""
    origins = []
    for item in (part.strip().rstrip("/") for part in raw.split(",")):
        if not item:
            continue
        parsed = urlparse(item)
        if item == "*" or parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.path:
            raise ConfigError(
                f"{name}: {item!r} is not an origin; list the front end's origins like "
                'https://app.example.com, separated by commas ("*" is not accepted)'
            )
        origins.append(f"{parsed.scheme}://{parsed.netloc.lower()}")
    return tuple(origins)


def _choice(name: str, raw: str, choices: tuple[str, ...]) -> str:
    """Accept one of a few words."""
    value = raw.strip().lower()
    if value not in choices:
        raise ConfigError(f"{name}={raw!r} must be one of: {', '.join(choices)}")
    return value


def _rate(name: str, raw: str) -> str:
    """Accept a rate limit written like 10/minute or 100 per hour (flask-limiter's notation)."""
    from limits import parse_many

    value = raw.strip()
    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a rate limit; write it like 10/minute or 100/hour") from None
    return value


def _fraction(name: str, raw: str) -> float:
    """Parse a share between 0 and 1 (a value like 30 is read as 30%)."""
    try:
        value = float(raw.strip().rstrip("%"))
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number; write a share such as 0.5") from None
    if value > 1:
        value /= 100
    if not 0 < value <= 1:
        raise ConfigError(f"{name}={raw!r} must be a share between 0 and 1 (1 turns the check off)")
    return value


def _version(name: str, raw: str) -> str:
    """Accept Graph API versions written like v23.0."""
    value = raw.strip()
    if not re.fullmatch(r"v\d+\.\d+", value):
        raise ConfigError(f"{name}={raw!r} is not a Graph API version; write it like v23.0")
    return value


def _region(name: str, raw: str) -> str:
    """Accept two-letter ISO country codes such as VE or CO."""
    value = raw.strip().upper()
    if not re.fullmatch(r"[A-Z]{2}", value):
        raise ConfigError(f"{name}={raw!r} is not a two-letter country code such as VE")
    return value


def load_settings(environ: dict[str, str] | None = None, *, dotenv: bool = True) -> Settings:
    """Build the settings from `environ` (the process environment by default), failing on the first bad value."""
    if environ is None:
        if dotenv:
            from dotenv import load_dotenv

            load_dotenv(override=False)
        environ = dict(os.environ)
    values = {}
    for field in fields(Settings):
        name = field.name.upper()
        raw = environ.get(name)
        if raw is None or (raw.strip() == "" and field.default is None):
            continue
        values[field.name] = _PARSERS[field.name](name, raw)
    settings = Settings(**values)
    if settings.supabase_url and not settings.supabase_key and not settings.database_url:
        raise ConfigError("SUPABASE_URL is set but SUPABASE_KEY is empty; set the service key of the project")
    return settings
