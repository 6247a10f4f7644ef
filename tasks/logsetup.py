"""Log format operators know, with phone numbers and access tokens masked before anything is written."""

from __future__ import annotations

import json
import logging
import re
import time

_TOKEN = re.compile(r"(Bearer\s+|access_token[\"'=:\s]+)[A-Za-z0-9._\-]+", re.IGNORECASE)
_PHONE = re.compile(r"(?<![\w.])\+?(\d{4,})(\d{4})(?!\d)")
DATE_FORMAT = "%Y-%m-%d %H:%M:%S"


def mask(text: str) -> str:
    """Hide tokens entirely and keep only the last four digits of anything that looks like a phone number."""
    text = _TOKEN.sub(lambda m: m.group(1) + "***", text)
    return _PHONE.sub(lambda m: "*" * len(m.group(1)) + m.group(2), text)


class RedactingFilter(logging.Filter):
    """Masks every part of a record that passes through a handler: message, traceback and stack.

    A traceback is rendered here (and cached in `exc_text`, which every formatter reuses), because the
    exception's text is where a database error quotes the row it choked on, whole phone number included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Replace the record's message, traceback and stack with their masked renderings."""
        message = record.getMessage()
        masked = mask(message)
        if masked != message:
            record.msg, record.args = masked, None
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask(record.exc_text)
        if record.stack_info:
            record.stack_info = mask(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """Masks what it writes, for the handlers that format records the filter has not seen."""

    def formatException(self, ei) -> str:
        """The traceback, masked."""
        return mask(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        """The stack, masked."""
        return mask(super().formatStack(stack_info))

    def formatMessage(self, record: logging.LogRecord) -> str:
        """The message line, masked."""
        return mask(super().formatMessage(record))


_PLAIN = logging.Formatter()


# Context a log call may pass in `extra`, copied into the JSON object when present.
CONTEXT_FIELDS = ("campaign", "batch", "phone", "worker")


class JsonFormatter(RedactingFormatter):
    """One JSON object per line: time, level, instance, logger, message, and the call's context."""

    def __init__(self, instance_id: str):
        super().__init__()
        self.instance_id = instance_id

    def format(self, record: logging.LogRecord) -> str:
        """The record as one masked JSON line."""
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "instance": self.instance_id,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = mask(str(value)) if name == "phone" else value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = mask(record.exc_text)
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(instance_id: str, log_format: str = "text") -> logging.Formatter:
    """`[instance-1] 2026-01-08 10:30:10 - message`, or with LOG_FORMAT=json one JSON object per line."""
    if log_format == "json":
        return JsonFormatter(instance_id)
    return RedactingFormatter(f"[{instance_id}] %(asctime)s - %(message)s", datefmt=DATE_FORMAT)


def configure_handlers(logger: logging.Logger, instance_id: str, log_format: str = "text") -> None:
    """Give every handler of `logger` our format and the masking filter."""
    for handler in logger.handlers:
        handler.setFormatter(formatter(instance_id, log_format))
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(RedactingFilter())
