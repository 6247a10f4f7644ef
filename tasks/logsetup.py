"""Log format operators know, with phone numbers and access tokens masked before anything is written."""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"(Bearer\s+|access_token[\"'=:\s]+)[A-Za-z0-9._\-]+", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w.])\+?(\d{4,})(\d{4})(?!\d)")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def mask(text: str) -> str:
    """Hide tokens entirely and keep only the last four digits of anything that looks like a phone number."""
    text = _TOKEN.sub(lambda m: m.group(1) + "***", text)
    return _PHONE.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


class RedactingFilter(logging.Filter):
    """Masks the final message of every record that passes through a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message with its masked rendering."""
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def formatter(instance_id: str) -> logging.Formatter:
    """`[instance-1] 2026-01-08 10:30:10 - message`."""
    return logging.Formatter(f"[{instance_id}] %(asctime)s - %(message)s", datefmt=DATE_FORMAT)


def configure_handlers(logger: logging.Logger, instance_id: str) -> None:
    """Give every handler of `logger` our format and the masking filter."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(instance_id))
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
