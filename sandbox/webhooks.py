"""Extension point for the status webhooks the sandbox will send for accepted messages."""

from __future__ import annotations

from typing import Any


class StatusWebhooks:
    """Receives every accepted message; today it sends nothing.

    The planned version signs each notification with ``X-Hub-Signature-256`` (HMAC-SHA256 of the raw
    body keyed with the app secret) and posts sent/delivered/read/failed statuses, carrying the
    message's ``wamid`` and ``biz_opaque_callback_data``, to a configured URL in the background.
    """

    def message_accepted(self, record: dict[str, Any]) -> None:
        """Take note of one accepted message (the /_sandbox/messages item); must not block or await."""

    async def close(self) -> None:
        """Stop background delivery when the server shuts down."""
