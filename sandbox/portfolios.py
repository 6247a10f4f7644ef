"""Business portfolios in the sandbox: the daily messaging limit WhatsApp enforces, and the
business_capability_update notification it sends when a portfolio's limit changes.

Every phone number of a portfolio shares one moving-24-hour count of unique recipients. The sandbox knows no
customer-service windows, so every template message counts its recipient (as the service counts them). A
message to a new recipient once the count is full is refused with 131048, the block WhatsApp answers a
sender that goes past what it may send.
"""

from __future__ import annotations

import time
from typing import Any

import httptools

from .poster import post_signed
from .settings import SandboxSettings

#: The answer to a message beyond the portfolio's limit.
LIMIT_ERROR = 131048


class PortfolioLimits:
    """The sandbox's count of unique recipients per portfolio, and the refusals beyond each limit."""

    def __init__(self) -> None:
        self._numbers: dict[str, str] = {}
        self._limits: dict[str, int] = {}
        self._window_s = 86400.0
        self.reset()

    def use_settings(self, settings: SandboxSettings) -> None:
        """Read which number belongs to which portfolio, and each portfolio's limit (-1: unlimited)."""
        self._numbers = {number: pid for pid, spec in settings.portfolios.items() for number in spec["numbers"]}
        self._limits = {pid: int(spec["limit"]) for pid, spec in settings.portfolios.items()}
        self._window_s = settings.portfolio_window_s

    def reset(self) -> None:
        """Forget every recipient counted and every refusal."""
        self._seen: dict[str, dict[str, float]] = {}
        self.refused: dict[str, int] = {}

    def admit(self, phone_number_id: str, wa_id: str, now: float | None = None) -> int | None:
        """Count a message's recipient; the error code to answer when the portfolio's limit is reached."""
        portfolio = self._numbers.get(phone_number_id)
        if portfolio is None:
            return None
        limit = self._limits.get(portfolio, -1)
        now = time.time() if now is None else now
        seen = self._seen.setdefault(portfolio, {})
        if wa_id not in seen and limit >= 0:
            cutoff = now - self._window_s
            for recipient in [r for r, at in seen.items() if at <= cutoff]:
                del seen[recipient]
            if len(seen) >= limit:
                self.refused[portfolio] = self.refused.get(portfolio, 0) + 1
                return LIMIT_ERROR
        seen[wa_id] = now
        return None

    def to_json(self) -> dict[str, Any]:
        """Per portfolio: its limit, unique recipients counted now, and messages refused beyond it."""
        return {
            pid: {
                "limit": limit,
                "unique_recipients": len(self._seen.get(pid, {})),
                "refused": self.refused.get(pid, 0),
            }
            for pid, limit in self._limits.items()
        }


def capability_notification(waba_id: str, limit: int) -> dict[str, Any]:
    """The business_capability_update body Meta posts when a portfolio's messaging limit changes."""
    value = {
        "max_daily_conversation_per_phone": limit,
        "max_daily_conversations_per_business": limit,
        "max_phone_numbers_per_business": 20,
        "max_phone_numbers_per_waba": 20,
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": waba_id,
                "time": int(time.time()),
                "changes": [{"field": "business_capability_update", "value": value}],
            }
        ],
    }


async def post_notification(settings: SandboxSettings, body: dict[str, Any]) -> int | None:
    """POST a signed notification to webhook_url; its HTTP status, or None when webhooks are off or it failed."""
    if not settings.webhook_url:
        return None
    try:
        return await post_signed(settings, body)
    except (TimeoutError, OSError, ValueError, httptools.HttpParserError):
        return None
