"""Time in a campaign's own zone: when it may start (programar_para) and when it may send (horario_envio).

A sending window is a daily span of local time, `08:00-20:00` or, across midnight, `20:00-08:00`; seconds
may be given (`08:00:00-20:00:30`), which is also how a test makes a window that closes a few seconds from
now without waiting hours. The window is read in the campaign's IANA time zone, so its opening follows that
zone's daylight-saving changes. Times are compared as aware datetimes; nothing here reads a setting.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tasks import texts

_CLOCK = r"([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?"
_WINDOW = re.compile(rf"\s*{_CLOCK}\s*-\s*{_CLOCK}\s*")


def zone(name: str) -> ZoneInfo:
    """The IANA time zone `name`, or ValueError when there is none of that name."""
    if not name or "\x00" in name or len(name) > 100:
        raise ValueError(name)
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(name) from None


def local_text(at: datetime, tz: ZoneInfo) -> str:
    """`at` as the operator reads it in the campaign's zone: 02/12/2026 08:00 (seconds only when not zero)."""
    local = at.astimezone(tz)
    return local.strftime(texts.DATETIME_FORMAT_SECONDS if local.second else texts.DATETIME_FORMAT)


def parse_start(value: str, tz: ZoneInfo) -> datetime:
    """programar_para as an aware time: ISO 8601 with an offset, or without one in the campaign's zone."""
    text = value.strip()
    try:
        at = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(texts.SCHEDULE_UNREADABLE.format(value=text[:60])) from None
    return at.replace(tzinfo=tz) if at.tzinfo is None else at


@dataclass(frozen=True)
class SendWindow:
    """The daily span of local time in which a campaign may send: [opens, closes), across midnight if needed."""

    opens: time
    closes: time

    @classmethod
    def parse(cls, text: str | None) -> SendWindow | None:
        """`HH:MM-HH:MM` (seconds allowed) as a window, None for an empty text (always open), or ValueError."""
        if text is None or not text.strip():
            return None
        match = _WINDOW.fullmatch(text)
        if not match:
            raise ValueError(texts.WINDOW_UNREADABLE.format(value=text[:40]))
        h1, m1, s1, h2, m2, s2 = match.groups()
        window = cls(time(int(h1), int(m1), int(s1 or 0)), time(int(h2), int(m2), int(s2 or 0)))
        if window.opens == window.closes:
            raise ValueError(texts.WINDOW_EMPTY.format(value=text.strip()[:40]))
        return window

    @property
    def text(self) -> str:
        """The window as stored and shown: 08:00-20:00 (with seconds when given)."""

        def clock(t: time) -> str:
            return t.strftime("%H:%M:%S" if t.second else "%H:%M")

        return f"{clock(self.opens)}-{clock(self.closes)}"

    def spans(self, around: datetime, tz: ZoneInfo) -> list[tuple[datetime, datetime]]:
        """The open spans that begin on the local day before `around`, that day and the next two."""
        day = around.astimezone(tz).date()
        spans = []
        for offset in (-1, 0, 1, 2):
            date = day + timedelta(days=offset)
            start = datetime.combine(date, self.opens, tzinfo=tz)
            end_date = date if self.closes > self.opens else date + timedelta(days=1)
            spans.append((start, datetime.combine(end_date, self.closes, tzinfo=tz)))
        return spans

    def state(self, now: datetime, tz: ZoneInfo) -> tuple[bool, datetime]:
        """Whether the window is open at `now`, and when it next closes (open) or opens (closed)."""
        spans = self.spans(now, tz)
        for start, end in spans:
            if start <= now < end:
                return True, end.astimezone(UTC)
        return False, min(start for start, _ in spans if start > now).astimezone(UTC)


@dataclass(frozen=True)
class CampaignClock:
    """A campaign's time zone and sending window (None: it may send at any time)."""

    tz: ZoneInfo
    window: SendWindow | None

    ALWAYS: ClassVar[CampaignClock]  # no window, in UTC

    @classmethod
    def of(cls, fields: dict) -> CampaignClock:
        """The clock of a campaign from its row or its live fields (time_zone, send_window)."""
        try:
            tz = zone(fields.get("time_zone") or "America/Caracas")
        except ValueError:
            tz = ZoneInfo("UTC")
        try:
            window = SendWindow.parse(fields.get("send_window") or "")
        except ValueError:  # stored by an earlier check, so this does not happen; sending at any time is not safe
            window = SendWindow(time(0), time(0, 0, 1))
        return cls(tz, window)

    def closed_until(self, now: datetime | None = None) -> datetime | None:
        """When the window opens again if it is closed now; None while it is open (or there is none)."""
        if self.window is None:
            return None
        is_open, boundary = self.window.state(now or datetime.now(UTC), self.tz)
        return None if is_open else boundary

    def closes_at(self, now: datetime | None = None) -> datetime | None:
        """When the open window closes next; None when there is no window."""
        if self.window is None:
            return None
        is_open, boundary = self.window.state(now or datetime.now(UTC), self.tz)
        return boundary if is_open else now or datetime.now(UTC)

    def waiting_reason(self, until: datetime) -> str:
        """The `motivo` of a campaign outside its window."""
        assert self.window is not None
        return texts.WAIT_WINDOW.format(window=self.window.text, zone=self.tz.key, until=local_text(until, self.tz))


CampaignClock.ALWAYS = CampaignClock(ZoneInfo("UTC"), None)
