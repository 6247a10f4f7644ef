"""Opt-outs and the per-user marketing limit: what WhatsApp's notifications and send answers say about a user.

Three things put a number on the suppression list (migrations/functions/optouts.sql): a send answered 131050
(or a failed status notification with that code), a `user_preferences` notification (marketing_messages:
stop; a later resume lifts it) and an inbound text that is an opt-out word (BAJA, STOP...). A send answered
131049 (per-user marketing limit) is not a failure yet: the recipient is deferred and sent once more after
MARKETING_LIMIT_RETRY_H.
"""

from __future__ import annotations

import re
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field

from tasks import texts
from tasks.config import Settings
from tasks.store.base import ClaimedMessage
from tasks.vocabulary import Outcome, RecipientStatus

MARKETING_LIMIT = 131049  # per-user marketing limit: wait at least 24 h
OPTED_OUT = 131050  # the user stopped marketing messages
ALL_BUZONES = "*"  # the buzón of a suppression that holds for every buzón

_SPACES = re.compile(r"\s+")


def _is_padding(char: str) -> bool:
    """Spaces and punctuation around a reply ("¡BAJA!", "stop.") do not change what it means."""
    return char.isspace() or unicodedata.category(char)[0] in "PS"


def normalize_reply(text: str) -> str:
    """A reply as it is compared with the opt-out words: no accents, upper case, single spaces, trimmed."""
    decomposed = unicodedata.normalize("NFKD", text)
    bare = "".join(c for c in decomposed if not unicodedata.combining(c))
    start, end = 0, len(bare)
    while start < end and _is_padding(bare[start]):
        start += 1
    while end > start and _is_padding(bare[end - 1]):
        end -= 1
    return _SPACES.sub(" ", bare[start:end].upper())


def _keywords(words: Iterable[str]) -> frozenset[str]:
    """The opt-out words as replies are compared with them."""
    return frozenset(normalize_reply(w) for w in words)


@dataclass(frozen=True)
class OptOutPolicy:
    """Where automatic opt-outs go, which replies are opt-outs, and how long a 131049 recipient waits."""

    all_buzones: bool = False  # OPTOUT_SCOPE=global
    keywords: frozenset[str] = field(default_factory=lambda: _keywords(Settings().optout_keywords))
    marketing_retry_s: float = 24 * 3600.0  # 0: a 131049 fails at once

    @classmethod
    def from_settings(cls, s: Settings) -> OptOutPolicy:
        """The policy the settings describe."""
        return cls(
            all_buzones=s.optout_scope == "global",
            keywords=_keywords(s.optout_keywords),
            marketing_retry_s=s.marketing_limit_retry_h * 3600.0,
        )

    def suppression_buzon(self, buzon: str) -> str:
        """The buzón whose list an automatic opt-out seen through `buzon` joins."""
        return ALL_BUZONES if self.all_buzones else buzon

    def is_optout_reply(self, text: object) -> bool:
        """Whether a whole inbound text is one of the opt-out words."""
        return isinstance(text, str) and len(text) <= 200 and normalize_reply(text) in self.keywords


def _phone(value: object) -> str | None:
    """A wa_id as the store keeps phones: E.164 digits without '+'."""
    if not isinstance(value, str):
        return None
    digits = value.strip().removeprefix("+")
    return digits if digits.isdigit() and 5 <= len(digits) <= 15 else None


def _timestamp(value: object) -> int:
    """A notification's Unix timestamp (now when it has none)."""
    try:
        return int(value)  # type: ignore[call-overload]  # None and junk land in the except
    except (TypeError, ValueError):
        return int(time.time())


def optouts_of(body: dict, policy: OptOutPolicy) -> list[dict]:
    """The opt-out events of a notification, for Store.apply_optouts: marketing preference changes and
    inbound opt-out replies (other changes and ordinary replies are ignored)."""
    found = []
    for entry in body.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            if not isinstance(value, dict):
                continue
            pnid = (value.get("metadata") or {}).get("phone_number_id")
            for pref in value.get("user_preferences") or []:
                if not isinstance(pref, dict) or pref.get("category") != "marketing_messages":
                    continue
                action, phone = pref.get("value"), _phone(pref.get("wa_id"))
                if action in ("stop", "resume") and phone:
                    found.append(
                        {
                            "phone_number_id": pnid,
                            "phone": phone,
                            "action": action,
                            "ts": _timestamp(pref.get("timestamp")),
                            "source": "user_preferences",
                            "detail": str(pref.get("detail") or "")[:200] or None,
                        }
                    )
            for status in value.get("statuses") or []:
                # A message accepted, then reported failed because the user stopped marketing messages.
                if not isinstance(status, dict) or status.get("status") != "failed":
                    continue
                error = (status.get("errors") or [{}])[0] or {}
                phone = _phone(status.get("recipient_id"))
                if isinstance(error, dict) and error.get("code") == OPTED_OUT and phone:
                    found.append(
                        {
                            "phone_number_id": pnid,
                            "phone": phone,
                            "action": "stop",
                            "ts": _timestamp(status.get("timestamp")),
                            "source": "send_error",
                            "detail": str(error.get("title") or error.get("message") or "")[:200] or None,
                        }
                    )
            for message in value.get("messages") or []:
                if not isinstance(message, dict) or message.get("type") != "text":
                    continue
                text, phone = (message.get("text") or {}).get("body"), _phone(message.get("from"))
                if phone and policy.is_optout_reply(text):
                    found.append(
                        {
                            "phone_number_id": pnid,
                            "phone": phone,
                            "action": "stop",
                            "ts": _timestamp(message.get("timestamp")),
                            "source": "keyword",
                            "detail": str(text).strip()[:200],
                        }
                    )
    return found


def limited_of(body: dict) -> list[str]:
    """The wamids a notification reports failed for the per-user marketing limit (131049)."""
    found = []
    for entry in body.get("entry") or []:
        for change in (entry.get("changes") or []) if isinstance(entry, dict) else []:
            value = change.get("value") if isinstance(change, dict) else None
            for status in (value.get("statuses") or []) if isinstance(value, dict) else []:
                if not isinstance(status, dict) or status.get("status") != "failed":
                    continue
                error = (status.get("errors") or [{}])[0] or {}
                wamid = status.get("id")
                if isinstance(error, dict) and error.get("code") == MARKETING_LIMIT and isinstance(wamid, str):
                    found.append(wamid)
    return found


def skipped_outcomes(claimed: Iterable[ClaimedMessage], owner: str) -> list[Outcome]:
    """The outcomes of claimed recipients whose number opted out: suppressed, never requested."""
    return [
        {
            "id": m.id,
            "status": RecipientStatus.SUPPRESSED,
            "retries": 0,
            "error_detail": texts.SUPPRESSED_AT_SEND,
            "owner": owner,
        }
        for m in claimed
        if m.suppressed
    ]


def settle_refusal(outcome: Outcome, buzon: str, policy: OptOutPolicy) -> Outcome:
    """Turn a recipient's failure into what 131050 and 131049 call for: the number joins the suppression list
    (with the failure, in one store call), or the recipient is deferred until it may be sent again."""
    code = outcome.get("error_code")
    if code == OPTED_OUT:
        outcome["suppress_for"] = policy.suppression_buzon(buzon)
    elif code == MARKETING_LIMIT and policy.marketing_retry_s > 0:
        outcome["status"] = RecipientStatus.DEFERRED
        outcome["retry_at"] = time.time() + policy.marketing_retry_s
    return outcome
