"""The store interface, shared by both adapters: every operation is one SQL function call."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SCHEMA = "instancia_sofia"


class StoreError(RuntimeError):
    """The store could not be reached or refused an operation."""


class StoreUnavailable(StoreError):
    """The database did not answer within the caller's patience: down, restarting, unreachable or too slow.

    A call that raises it was tried again meanwhile when that was safe (see RETRY_SAFE). Callers answer
    "try again later" (the API's 503) or leave the work for later (a worker's batch goes back to the queue).
    """


#: Recipients per call of the results export: a page of about 1 MB of JSON, read in a few milliseconds.
EXPORT_PAGE_SIZE = 5000

#: How long a health check waits for the database: it reports an outage, it does not ride it out.
PING_WAIT_S = 1.0

#: Functions that may run a second time after a call whose answer was lost (the connection broke mid-call):
#: reads, and writes that only move rows still in the state they expect, so a second run changes nothing
#: the first one did. A claim whose answer was lost leaves its rows claimed by the worker, which never sends
#: them; the sweeper releases them as unsent (STUCK_CLAIM_S). Every other function is tried again only when
#: it certainly did not run (no connection, or the server ended the session, which rolls the call back).
RETRY_SAFE = frozenset(
    {
        "ping",
        "get_sender",
        "list_senders",
        "upsert_sender",
        "get_campaign",
        "list_campaigns",
        "list_campaigns_in",
        "claim_messages",
        "record_outcomes",
        "claim_owners",
        "recover_claims",
        "failure_breakdown",
        "open_campaigns",
        "campaign_counts",
        "pending_batches",
        "sending_batches",
        "list_recipients",
        "export_recipients",
        "delivery_counts",
        "rematch_orphans",
        "list_api_keys",
        "use_api_key",
        "upsert_api_user",
        "get_api_user",
        "list_audit",
        "due_campaigns",
        "list_portfolios",
        "upsert_portfolio",
        "set_sender_portfolio",
        "portfolio_recent_recipients",
        "template_status",
        "signals_overview",
        "apply_optouts",
        "list_suppressions",
        "suppressed_phones",
        "release_deferred",
        "deferred_summary",
        "defer_reported",
    }
)


@dataclass(frozen=True)
class Sender:
    """A buzón's WhatsApp credentials; the token never leaves the worker that uses it."""

    buzon: str
    phone_number_id: str
    access_token: str
    messages_per_second: int | None
    portfolio_id: str | None = None  # the business portfolio whose daily messaging limit this number shares
    messaging_limit: int | None = None  # that portfolio's unique recipients per 24 h; None: unlimited
    # The WhatsApp Business Account the number belongs to; with it, uploads check their template first.
    waba_id: str | None = None

    def __repr__(self) -> str:
        return f"Sender(buzon={self.buzon!r}, phone_number_id={self.phone_number_id!r}, access_token='***')"


@dataclass(frozen=True)
class ClaimedMessage:
    """A recipient claimed for sending by one task."""

    id: int
    seq: int
    phone: str
    parameters: list | dict
    attempts: int
    suppressed: bool = False  # the number opted out: record it as suppressed, never send it


class Store:
    """Campaign persistence; subclasses only say how to call a function of the schema."""

    def _call(self, function: str, *, wait_s: float | None = None, **args: Any) -> Any:
        """Call `instancia_sofia.<function>` with named arguments and return its JSON result.

        `wait_s` bounds how long the call waits for a database that is away (the store's own patience
        otherwise); past it, StoreUnavailable.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release connections."""

    def ping(self) -> bool:
        """Tell whether the store answers, within about PING_WAIT_S."""
        try:
            return self._call("ping", wait_s=PING_WAIT_S) is True
        except Exception:
            return False

    def upsert_sender(
        self,
        buzon: str,
        phone_number_id: str,
        access_token: str,
        messages_per_second: int | None = None,
        waba_id: str | None = None,
    ) -> dict:
        """Register or replace a buzón's credentials (and its WhatsApp Business Account id, if known)."""
        return self._call(
            "upsert_sender",
            p_buzon=buzon,
            p_phone_number_id=phone_number_id,
            p_access_token=access_token,
            p_messages_per_second=messages_per_second,
            p_waba_id=waba_id,
        )

    def get_sender(self, buzon: str) -> Sender | None:
        """Read a buzón's credentials, or None when it is not registered."""
        row = self._call("get_sender", p_buzon=buzon)
        return Sender(**row) if row else None

    def list_senders(self) -> list[dict]:
        """List registered buzones without their tokens."""
        return self._call("list_senders")

    def create_campaign(self, campaign: dict, leads: Iterable[dict], finish: Callable[[], dict] | None = None) -> dict:
        """Store a campaign and its recipients atomically; returns {id, total, created}.

        `leads` may be a one-pass iterator, and an exception it raises stores nothing. Once it is exhausted,
        `finish()` gives the campaign fields known only then (`rejected_rows`). Here each call is its own
        transaction, so all recipients are read first and sent as one document to the function that runs
        the upload steps in one call; the Postgres adapter runs the same steps itself, streaming.
        """
        leads = list(leads)
        if finish is not None:
            campaign = {**campaign, **finish()}
        return self._call("create_campaign_document", p_campaign=campaign, p_recipients=leads)

    def delete_campaign(self, campaign_id: str) -> bool:
        """Remove a campaign and its recipients (used when it could not be enqueued)."""
        return self._call("delete_campaign", p_campaign_id=campaign_id)["deleted"]

    def get_campaign(self, campaign_id: str) -> dict | None:
        """Read a campaign's row, or None."""
        return self._call("get_campaign", p_campaign_id=campaign_id)

    def list_campaigns(self, limit: int, offset: int, buzones: list[str] | None = None) -> tuple[list[dict], int]:
        """List campaigns newest first (only those of `buzones` when given), with the total count."""
        if buzones is None:
            page = self._call("list_campaigns", p_limit=limit, p_offset=offset)
        else:
            page = self._call("list_campaigns_in", p_buzones=list(buzones), p_limit=limit, p_offset=offset)
        return page["campaigns"], page["total"]

    def claim_messages(self, campaign_id: str, seq_from: int, seq_to: int, owner: str) -> list[ClaimedMessage]:
        """Claim, for worker `owner`, the still pending recipients with seq in [seq_from, seq_to]."""
        rows = self._call(
            "claim_messages", p_campaign_id=campaign_id, p_seq_from=seq_from, p_seq_to=seq_to, p_owner=owner
        )
        return [ClaimedMessage(**row) for row in rows]

    def record_outcomes(self, outcomes: Sequence[Mapping[str, Any]]) -> dict:
        """Apply outcomes to claimed rows; returns {moved: {status: n}, errors: {code: {count, detail}}}."""
        if not outcomes:
            return {"moved": {}, "errors": {}}
        return self._call("record_outcomes", p_outcomes=outcomes)

    def claim_owners(self, campaign_id: str) -> dict[str, int]:
        """Workers holding claims in the campaign, with the age in seconds of each one's oldest claim."""
        return self._call("claim_owners", p_campaign_id=campaign_id)

    def recover_claims(
        self, campaign_id: str, owner: str, attempted: list[int] | None, older_than_s: int = 0
    ) -> dict[str, Any]:
        """Release `owner`'s claims: those WhatsApp reported on become sent or failed; of the rest, attempted
        ones (all when `attempted` is None) become unknown and the others pending again."""
        return self._call(
            "recover_claims",
            p_campaign_id=campaign_id,
            p_owner=owner,
            p_attempted=attempted,
            p_older_than_s=older_than_s,
        )

    def requeue_recipients(self, campaign_id: str, statuses: list[str]) -> dict[str, int]:
        """Put recipients in the given statuses (unknown, failed) back to pending; returns moved counts."""
        return self._call("requeue_recipients", p_campaign_id=campaign_id, p_states=statuses)

    def failure_breakdown(self, campaign_id: str) -> dict[str, dict]:
        """Failed recipients grouped by error code: {code: {count, detail}}."""
        return self._call("failure_breakdown", p_campaign_id=campaign_id)

    def open_campaigns(self) -> list[str]:
        """Ids of campaigns that are queued, running or paused."""
        return self._call("open_campaigns")

    def set_campaign_status(self, campaign_id: str, status: str, reason: str | None = None) -> dict:
        """Move a campaign to `status` if that transition is allowed; returns {changed, status}."""
        return self._call("set_campaign_status", p_campaign_id=campaign_id, p_status=status, p_reason=reason)

    def wait_campaign(self, campaign_id: str, reason: str, until: str) -> dict:
        """Hold a started campaign until `until` (ISO time); returns {changed, status, version}."""
        return self._call("wait_campaign", p_campaign_id=campaign_id, p_reason=reason, p_until=until)

    def wake_campaign(self, campaign_id: str) -> dict:
        """Start a scheduled or waiting campaign whose time has come; only one caller gets changed=true."""
        return self._call("wake_campaign", p_campaign_id=campaign_id)

    def due_campaigns(self) -> list[str]:
        """Ids of scheduled and waiting campaigns whose time has come."""
        return self._call("due_campaigns")

    def reschedule_campaign(self, campaign_id: str, at: str, reason: str) -> dict:
        """Move the start of a still scheduled campaign to `at` (ISO time); returns {changed, status, version}."""
        return self._call("reschedule_campaign", p_campaign_id=campaign_id, p_at=at, p_reason=reason)

    def upsert_portfolio(self, portfolio_id: str, messaging_limit: int | None, waba_ids: list[str] | None) -> dict:
        """Register or change a business portfolio (a limit of None is unlimited)."""
        return self._call("upsert_portfolio", p_id=portfolio_id, p_limit=messaging_limit, p_waba_ids=waba_ids)

    def set_sender_portfolio(self, buzon: str, portfolio_id: str | None) -> bool:
        """Put a buzón in a portfolio (None takes it out); False when the buzón is not registered."""
        return self._call("set_sender_portfolio", p_buzon=buzon, p_portfolio_id=portfolio_id)["updated"]

    def list_portfolios(self) -> list[dict]:
        """Every portfolio with its limit, accounts and buzones."""
        return self._call("list_portfolios")

    def apply_capability_updates(self, updates: list[dict]) -> dict:
        """Apply business_capability_update notifications [{waba_id, limit}]; returns {changed: [{id,
        messaging_limit}]}."""
        if not updates:
            return {"changed": []}
        return self._call("apply_capability_updates", p_updates=updates)

    def portfolio_recent_recipients(self, portfolio_id: str, window_s: int) -> list[list]:
        """[[phone, epoch seconds], ...] the portfolio's buzones messaged within the window (a Redis rebuild)."""
        return self._call("portfolio_recent_recipients", p_portfolio_id=portfolio_id, p_window_s=window_s)

    def cancel_pending(self, campaign_id: str) -> int:
        """Mark every still pending recipient cancelled; returns how many."""
        return self._call("cancel_pending", p_campaign_id=campaign_id)["cancelled"]

    def campaign_counts(self, campaign_id: str) -> dict[str, int]:
        """Count a campaign's recipients by status."""
        return self._call("campaign_counts", p_campaign_id=campaign_id)

    def pending_batches(self, campaign_id: str, batch_size: int) -> list[int]:
        """List the batch numbers that still hold pending recipients."""
        return self._call("pending_batches", p_campaign_id=campaign_id, p_batch_size=batch_size)

    def sending_batches(self, campaign_id: str, batch_size: int) -> list[int]:
        """Batch numbers with recipients being sent right now."""
        return self._call("sending_batches", p_campaign_id=campaign_id, p_batch_size=batch_size)

    def list_recipients(self, campaign_id: str, status: str | None, limit: int, offset: int) -> dict:
        """A page of recipients {recipients: [...], total: n}, optionally only those in `status`."""
        return self._call("list_recipients", p_campaign_id=campaign_id, p_status=status, p_limit=limit, p_offset=offset)

    def export_page(self, campaign_id: str, status: str | None, after_seq: int, limit: int) -> list[dict]:
        """Up to `limit` recipients with seq above `after_seq`, in seq order (times as UTC text)."""
        return self._call(
            "export_recipients", p_campaign_id=campaign_id, p_status=status, p_after_seq=after_seq, p_limit=limit
        )

    def iter_recipients(
        self, campaign_id: str, status: str | None = None, page_size: int = EXPORT_PAGE_SIZE
    ) -> Iterator[dict]:
        """Every recipient of the campaign in seq order, read a keyset page at a time: only one page is held,
        and each page is an index range scan however far into the campaign it starts."""
        return self.iter_recipients_after(campaign_id, status, 0, page_size)

    def iter_recipients_after(
        self, campaign_id: str, status: str | None, after_seq: int, page_size: int = EXPORT_PAGE_SIZE
    ) -> Iterator[dict]:
        """Like iter_recipients, from the first recipient with seq above `after_seq`."""
        while True:
            page = self.export_page(campaign_id, status, after_seq, page_size)
            full, after_seq = len(page) == page_size, page[-1]["seq"] if page else after_seq
            page.reverse()  # handed out and dropped one by one: the next page is read with this one gone
            while page:
                yield page.pop()
            if not full:
                return

    def apply_statuses(self, statuses: list[dict]) -> dict:
        """Apply webhook statuses {wamid, status, ts, callback, error_code, error_detail, and when priced
        pricing_category, pricing_type, pricing_model, billable}; returns counter deltas."""
        if not statuses:
            return {"deltas": {}, "applied": 0, "orphans": 0}
        return self._call("apply_statuses", p_statuses=statuses)

    def rematch_orphans(self) -> dict:
        """Apply stored statuses whose message has since got its wamid."""
        return self._call("rematch_orphans")

    def delivery_counts(self, campaign_id: str) -> dict:
        """Delivered, read and held counts, the latest delivered and read timestamps, and the billable messages
        as "b:<category>:<phone prefix>" counts, from the rows."""
        return self._call("delivery_counts", p_campaign_id=campaign_id)

    def apply_signals(self, signals: list[dict]) -> dict:
        """Record template, quality, alert and account notifications and the display digits of sender numbers
        (see tasks/account_signals.py); returns {recorded, pause: [{campaign_id, kind, event, ...}]}."""
        if not signals:
            return {"recorded": 0, "pause": []}
        return self._call("apply_signals", p_signals=signals)

    def template_status(self, template: str, language: str) -> dict | None:
        """The latest status WhatsApp reported for a template in a language, or None."""
        return self._call("template_status", p_template=template, p_language=language)

    def signals_overview(self) -> dict:
        """Per buzón its number's latest quality, alert and account notifications; template statuses; alerts
        about whole accounts."""
        return self._call("signals_overview")

    # --- opt-outs and deferred recipients ----------------------------------------------------------

    def apply_optouts(self, events: list[dict], all_buzones: bool) -> dict:
        """Apply opt-out events {phone_number_id, phone, action: stop|resume, ts, source, detail}, oldest first
        and never over newer ones; audited. Returns {changed, ignored, unmatched}."""
        if not events:
            return {"changed": 0, "ignored": 0, "unmatched": 0}
        return self._call("apply_optouts", p_events=events, p_all=all_buzones)

    def add_suppression(self, buzon: str, phone: str, reason: str | None, actor: str | None) -> bool:
        """An operator's opt-out of `phone` for `buzon` ("*": every buzón); False when it was in force already."""
        return self._call("add_suppression", p_buzon=buzon, p_phone=phone, p_reason=reason, p_actor=actor)["added"]

    def lift_suppression(self, phone: str, buzon: str | None, scope: list[str] | None, actor: str | None) -> list[str]:
        """Lift the opt-outs of `phone` (of one buzón, or of every buzón in `scope`); returns the buzones lifted."""
        return self._call(
            "lift_suppression",
            p_phone=phone,
            p_buzon=buzon,
            p_buzones=list(scope) if scope is not None else None,
            p_actor=actor,
        )["lifted"]

    def list_suppressions(
        self, scope: list[str] | None, buzon: str | None, phone: str | None, limit: int, offset: int
    ) -> tuple[list[dict], int]:
        """A page of the opt-outs in force that concern `scope` (None: all), newest first, with their count."""
        page = self._call(
            "list_suppressions",
            p_buzones=list(scope) if scope is not None else None,
            p_buzon=buzon,
            p_phone=phone,
            p_limit=limit,
            p_offset=offset,
        )
        return page["entries"], page["total"]

    def suppressed_phones(self, buzon: str) -> set[str]:
        """The numbers a campaign of this buzón must not send to."""
        return set(self._call("suppressed_phones", p_buzon=buzon))

    def release_deferred(self, limit: int = 10_000) -> dict[str, int]:
        """Put the deferred recipients whose time has come (of running campaigns) back to pending; per campaign."""
        return self._call("release_deferred", p_limit=limit)

    def defer_reported(self, wamids: list[str], retry_at: float) -> dict[str, int]:
        """Defer until `retry_at` the messages reported failed with 131049 (once, in campaigns that retry them);
        returns how many per campaign."""
        if not wamids:
            return {}
        return self._call("defer_reported", p_wamids=wamids, p_retry_at=retry_at)

    def deferred_summary(self, campaign_id: str) -> dict:
        """{deferred: how many wait, next_at: when the first may be sent again (ISO text, or None)}."""
        return self._call("deferred_summary", p_campaign_id=campaign_id)

    def create_api_key(self, name: str, key_hash: str, role: str, buzones: list[str] | None = None) -> dict:
        """Store a new API key by its hash; the row returned never holds the hash."""
        return self._call(
            "create_api_key",
            p_name=name,
            p_key_hash=key_hash,
            p_role=role,
            p_buzones=list(buzones) if buzones else None,
        )

    def list_api_keys(self) -> list[dict]:
        """Every API key (revoked ones too) without hashes, by name."""
        return self._call("list_api_keys")

    def revoke_api_key(self, name: str) -> bool:
        """Revoke a key; False when no active key has that name."""
        return self._call("revoke_api_key", p_name=name)["revoked"]

    def use_api_key(self, key_hash: str) -> dict | None:
        """The active key with this hash (recording its use at most once a minute), or None."""
        return self._call("use_api_key", p_key_hash=key_hash)

    def upsert_api_user(
        self, user_id: str, role: str, buzones: list[str] | None = None, email: str | None = None
    ) -> dict:
        """Give a Supabase user a role (and optionally limit it to some buzones)."""
        return self._call(
            "upsert_api_user",
            p_user_id=user_id,
            p_email=email,
            p_role=role,
            p_buzones=list(buzones) if buzones else None,
        )

    def get_api_user(self, user_id: str) -> dict | None:
        """The role row of a Supabase user, or None."""
        return self._call("get_api_user", p_user_id=user_id)

    def record_audit(self, entry: dict) -> int:
        """Append one entry to the audit log; returns its id."""
        return self._call("record_audit", p_entry=entry)["id"]

    def list_audit(
        self, campaign_id: str | None, since: str | None, until: str | None, limit: int, offset: int
    ) -> tuple[list[dict], int]:
        """A page of the audit log, newest first, optionally for one campaign and a time range [since, until)."""
        page = self._call(
            "list_audit", p_campaign_id=campaign_id, p_since=since, p_until=until, p_limit=limit, p_offset=offset
        )
        return page["entries"], page["total"]
