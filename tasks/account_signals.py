"""Meta's warnings: template status, number quality and account notifications, and what they make us do.

The webhook drain hands every notification body to `signals_of` beside `statuses_of`; what it finds is
recorded in one store call per batch of bodies (`AccountSignals.apply`), which also names the campaigns to
pause: those of a template WhatsApp paused or disabled, and those of a number whose quality dropped to the
lowest rating.

Which quality notification pauses: `phone_number_quality_update` reports a number's quality moving with
`event` FLAGGED (the rating fell to low, Meta's red), UNFLAGGED, DOWNGRADE or UPGRADE (its messaging limit
moved). FLAGGED is the webhook's own word for "the lowest rating", so it pauses; so does a notification that
carries the rating itself (`quality_rating`, `new_quality_score`, `current_quality_rating`) as RED or LOW.
A DOWNGRADE only lowers the limit and does not pause (the daily limit handles that). PAUSE_ON_LOW_QUALITY=false
turns the pause off; the notification is still recorded and shown.

Quality and account notifications name a number by its display digits only, so the drain learns each sender
number's display digits from the metadata of its status notifications (sent once per process and number).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from tasks import texts
from tasks.pipeline import CampaignNotFound, InvalidTransition, Pipeline
from tasks.store.base import Store

log = logging.getLogger("tasks.account_signals")

TEMPLATE_STATUS = "message_template_status_update"
QUALITY = "phone_number_quality_update"
ALERTS = "account_alerts"
ACCOUNT = "account_update"
_FIELDS = frozenset({TEMPLATE_STATUS, QUALITY, ALERTS, ACCOUNT})
_LOWEST_QUALITY = frozenset({"RED", "LOW"})
_RATING_FIELDS = ("quality_rating", "new_quality_score", "current_quality_rating")
# Text fields are cut to this length: a notification is data from outside.
_MAX_TEXT = 300


def _text(value: Any, limit: int = _MAX_TEXT) -> str | None:
    """A notification's value as bounded text, or None when absent."""
    if value is None or isinstance(value, (dict, list)):
        return None
    return str(value)[:limit] or None


def _digits(value: Any) -> str | None:
    """A phone number as digits only ("+1 555-0100" -> "15550100")."""
    text = str(value or "")
    if text.isdigit():  # as Meta usually writes it: no need to go through it character by character
        return text
    digits = "".join(ch for ch in text if ch.isdigit())
    return digits or None


def _detail(value: dict, skip: tuple[str, ...]) -> dict:
    """The notification's other fields, bounded, for the operator to read."""
    detail: dict[str, Any] = {}
    for key, item in list(value.items())[:20]:
        if key in skip:
            continue
        if isinstance(item, dict):
            detail[str(key)[:60]] = {str(k)[:60]: _text(v) for k, v in list(item.items())[:20]}
        else:
            detail[str(key)[:60]] = _text(item)
    return detail


def _timestamp(entry: dict, value: dict) -> int:
    """When the notification happened: its `timestamp`, else the entry's `time`, else now."""
    for raw in (value.get("timestamp"), entry.get("time")):
        if isinstance(raw, (int, str)) and not isinstance(raw, bool):
            try:
                return int(raw)
            except ValueError:
                continue
    return int(time.time())


def template_pause_reason(item: dict) -> str:
    """The `motivo` of a campaign paused because its template is PAUSED or DISABLED (an apply_signals item)."""
    text = texts.PAUSE_TEMPLATE_DISABLED if item["event"] == "DISABLED" else texts.PAUSE_TEMPLATE_PAUSED
    return text.format(template=item["template"], language=item["language"])


def is_lowest_quality(value: dict) -> bool:
    """Whether a phone_number_quality_update says the number's quality is at the lowest rating."""
    if str(value.get("event") or "").upper() == "FLAGGED":
        return True
    return any(str(value.get(name) or "").upper() in _LOWEST_QUALITY for name in _RATING_FIELDS)


def signals_of(body: dict, known_numbers: dict[str, tuple[str, str | None]], pause_on_low_quality: bool) -> list[dict]:
    """The signals apply_signals takes from one notification body.

    A status notification yields at most a `number` signal, and only the first time this process sees that
    sender number with those display digits (`known_numbers` is the process's memory of them); any other
    field of the Cloud API's messages webhook yields nothing.
    """
    found: list[dict] = []
    for entry in body.get("entry") or []:
        if not isinstance(entry, dict):
            continue
        waba_id = _text(entry.get("id"), 64)
        for change in entry.get("changes") or []:
            if not isinstance(change, dict):
                continue
            field = change.get("field")
            value = change.get("value")
            if not isinstance(value, dict):
                continue
            if field == "messages" or field is None:
                metadata = value.get("metadata")
                if isinstance(metadata, dict):
                    number = _text(metadata.get("phone_number_id"), 64)
                    display = _digits(metadata.get("display_phone_number"))
                    if number and display and known_numbers.get(number) != (display, waba_id):
                        found.append(
                            {"kind": "number", "phone_number_id": number, "display": display, "waba_id": waba_id}
                        )
                continue
            if field not in _FIELDS:
                continue
            ts = _timestamp(entry, value)
            if field == TEMPLATE_STATUS:
                name = _text(value.get("message_template_name"), 512)
                event = _text(value.get("event"), 40)
                if name and event:
                    found.append(
                        {
                            "kind": "template",
                            "template": name,
                            "language": _text(value.get("message_template_language"), 20) or "",
                            "template_id": _text(value.get("message_template_id"), 64),
                            "event": event.upper(),
                            "reason": _text(value.get("reason")),
                            "ts": ts,
                        }
                    )
            elif field == QUALITY:
                subject = _digits(value.get("display_phone_number"))
                if subject:
                    found.append(
                        {
                            "kind": "quality",
                            "subject": subject,
                            "event": _text(value.get("event"), 40),
                            "detail": _detail(value, ("display_phone_number", "event")),
                            "waba_id": waba_id,
                            "ts": ts,
                            "pause": pause_on_low_quality and is_lowest_quality(value),
                        }
                    )
            elif field == ALERTS:
                raw_info = value.get("alert_info")
                info: dict = raw_info if isinstance(raw_info, dict) else {}
                subject = _text(value.get("entity_id"), 64) or waba_id
                if subject:
                    found.append(
                        {
                            "kind": "alert",
                            "subject": subject,
                            "event": _text(info.get("alert_type"), 80) or _text(info.get("alert_severity"), 40),
                            "detail": {"entity_type": _text(value.get("entity_type"), 40), **_detail(info, ())},
                            "waba_id": waba_id,
                            "ts": ts,
                        }
                    )
            else:  # account_update: about one number when it names one, else about the account
                subject = _digits(value.get("phone_number")) or waba_id
                if subject:
                    found.append(
                        {
                            "kind": "account",
                            "subject": subject,
                            "event": _text(value.get("event"), 80),
                            "detail": _detail(value, ("phone_number", "event")),
                            "waba_id": waba_id,
                            "ts": ts,
                        }
                    )
    return found


class AccountSignals:
    """Records a batch's signals in one store call and pauses the campaigns they name."""

    def __init__(self, store: Store, pipeline: Pipeline, pause_on_low_quality: bool = True):
        self.store = store
        self.pipeline = pipeline
        self.pause_on_low_quality = pause_on_low_quality
        # phone_number_id -> (display digits, WABA id) already recorded by this process.
        self.known_numbers: dict[str, tuple[str, str | None]] = {}

    def parse(self, body: dict) -> list[dict]:
        """The signals of one notification body (cheap for status notifications: a field check)."""
        return signals_of(body, self.known_numbers, self.pause_on_low_quality)

    def apply(self, signals: list[dict]) -> dict:
        """Record the signals, then pause the campaigns they name; returns {recorded, paused}."""
        if not signals:
            return {"recorded": 0, "paused": 0}
        # A batch of a number's first status notifications names it once per body: once is enough.
        numbers = {s["phone_number_id"]: s for s in signals if s["kind"] == "number"}
        signals = [s for s in signals if s["kind"] != "number"] + list(numbers.values())
        result = self.store.apply_signals(signals)
        for signal in signals:
            if signal["kind"] == "number":
                self.known_numbers[signal["phone_number_id"]] = (signal["display"], signal["waba_id"])
        paused = 0
        for item in result.get("pause") or []:
            if self._pause(item):
                paused += 1
        return {"recorded": result.get("recorded", 0), "paused": paused}

    def _pause(self, item: dict) -> bool:
        """Pause one campaign for the notification that names it (only news does: repeats name none)."""
        if item["kind"] == "template":
            reason = template_pause_reason(item)
            what = f"{item['template']}/{item['language']}"
        else:
            reason = texts.PAUSE_LOW_QUALITY.format(number=item["subject"], event=item["event"])
            what = item["subject"]
        try:
            self.pipeline.pause(item["campaign_id"], reason)
        except (InvalidTransition, CampaignNotFound):
            return False  # already paused or finished
        log.warning(texts.LOG_SIGNAL_PAUSED, item["campaign_id"], item["event"], what)
        return True
