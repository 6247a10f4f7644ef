"""Campaign control: start, dispatch batches, record finished batches, pause, resume, cancel, fail."""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from tasks import texts
from tasks.config import Settings
from tasks.queue import TaskQueue
from tasks.scheduling import CampaignClock, local_text
from tasks.state import LiveState
from tasks.store.base import Store
from tasks.vocabulary import (
    BLOCKING_TEMPLATE_STATUSES,
    FINAL_CAMPAIGN_STATUSES,
    SETTLED_RECIPIENT_STATUSES,
    TIMED_CAMPAIGN_STATUSES,
    CampaignStatus,
    ChunkReport,
    Outcome,
    RecipientStatus,
)

log = logging.getLogger("tasks.pipeline")


# Why a campaign waits: outside its sending window, or its portfolio's daily budget is used up.
WAIT_WINDOW = "window"
WAIT_BUDGET = "budget"


class CampaignNotFound(LookupError):
    """No campaign has that id."""


class InvalidTransition(ValueError):
    """The campaign's status does not allow the requested action."""


def batch_count(total: int, batch_size: int) -> int:
    """How many batches a campaign of `total` messages has."""
    return math.ceil(total / batch_size)


def chunk_count(total: int, batch_size: int, chunk_size: int, batch_no: int) -> int:
    """How many chunk tasks make up batch `batch_no` (1-based)."""
    in_batch = min(batch_size, total - (batch_no - 1) * batch_size)
    return math.ceil(in_batch / chunk_size)


def chunk_range(total: int, batch_size: int, chunk_size: int, batch_no: int, chunk_no: int) -> tuple[int, int]:
    """The first and last recipient seq of chunk `chunk_no` (0-based) of batch `batch_no` (1-based)."""
    first = (batch_no - 1) * batch_size + chunk_no * chunk_size + 1
    last = min(first + chunk_size - 1, batch_no * batch_size, total)
    return first, last


def _now() -> str:
    """The current UTC time in ISO format."""
    return datetime.now(UTC).isoformat()


@dataclass(frozen=True)
class PipelinePolicy:
    """How many batches a campaign keeps in flight, and when its failures pause it."""

    max_concurrent_batches: int = 5
    default_mps: int = 80
    max_error_rate: float = 1.0  # 1 turns the automatic pause off
    error_rate_window: int = 200

    @classmethod
    def from_settings(cls, s: Settings) -> PipelinePolicy:
        """The policy the settings describe."""
        return cls(s.max_concurrent_batches, s.whatsapp_mps, s.max_error_rate, s.error_rate_window)


class Pipeline:
    """Moves campaigns through their life; batches reach the workers through `queue`."""

    def __init__(self, store: Store, state: LiveState, queue: TaskQueue, policy: PipelinePolicy):
        self.store = store
        self.state = state
        self.queue = queue
        self.max_concurrent_batches = policy.max_concurrent_batches
        self.default_mps = policy.default_mps
        self.max_error_rate = policy.max_error_rate
        self.error_rate_window = policy.error_rate_window

    def max_in_flight(self, buzon: str, batch_size: int) -> int:
        """Batches to keep in flight: about two seconds of the number's rate, within MAX_CONCURRENT_BATCHES.

        Claiming far more than the number can send soon would only queue those messages behind the
        shared limiter, and a later campaign on the same number would wait behind them.
        """
        sender = self.store.get_sender(buzon)
        mps = (sender.messages_per_second if sender else None) or self.default_mps
        return max(1, min(self.max_concurrent_batches, math.ceil(mps * 2 / batch_size)))

    # --- reading ---------------------------------------------------------------------------------

    def campaign(self, campaign_id: str) -> dict:
        """The campaign's stored row, or CampaignNotFound."""
        row = self.store.get_campaign(campaign_id)
        if row is None:
            raise CampaignNotFound(campaign_id)
        return row

    def ensure_live_state(self, campaign_id: str) -> dict[str, str]:
        """The campaign's Redis fields, rebuilt from the store when Redis lost them."""
        fields = self.state.fields(campaign_id)
        if fields:
            return fields
        row = self.campaign(campaign_id)
        counts = {**self.store.campaign_counts(campaign_id), **self.store.delivery_counts(campaign_id)}
        batches = (
            []
            if row["status"] in FINAL_CAMPAIGN_STATUSES
            else self.store.pending_batches(campaign_id, row["batch_size"])
        )
        self.state.init_campaign(
            row,
            batches,
            counts,
            self.store.failure_breakdown(campaign_id),
            self.max_in_flight(row["buzon"], row["batch_size"]),
        )
        return self.state.fields(campaign_id)

    # --- starting and dispatching ----------------------------------------------------------------

    def start(self, campaign_id: str) -> None:
        """Put a stored campaign in Redis, mark it running and dispatch its first batches."""
        row = self.campaign(campaign_id)
        batches = list(range(1, batch_count(row["total"], row["batch_size"]) + 1))
        self.state.init_campaign(row, batches, max_in_flight=self.max_in_flight(row["buzon"], row["batch_size"]))
        if row["status"] == CampaignStatus.SCHEDULED:
            return  # beat's scheduler starts it at its time (wake)
        self._set_status(campaign_id, CampaignStatus.RUNNING)
        if not self.hold_if_closed(campaign_id):
            self.dispatch(campaign_id)

    # --- scheduled and waiting campaigns ---------------------------------------------------------

    def hold_if_closed(self, campaign_id: str) -> bool:
        """Make a campaign that has just been (re)started wait when its sending window is closed now."""
        clock = CampaignClock.of(self.state.fields(campaign_id))
        until = clock.closed_until()
        if until is None:
            return False
        self.wait(campaign_id, clock.waiting_reason(until), until)
        return True

    def wait(self, campaign_id: str, reason: str, until: datetime, kind: str = WAIT_WINDOW) -> bool:
        """Hold a started campaign until `until`: it hands out nothing, chunks in flight hand theirs back (as
        for a pause), and beat's scheduler starts it again then. Returns whether the status changed.

        With kind WAIT_BUDGET (its portfolio's daily limit) the messages already given a place still go out.
        """
        self.ensure_live_state(campaign_id)
        result = self.store.wait_campaign(campaign_id, reason, until.isoformat())
        if result["status"] is None:
            raise CampaignNotFound(campaign_id)
        if result["changed"]:
            stamps = {"resume_at": until.isoformat(), "wait_kind": kind}
            self._publish(campaign_id, CampaignStatus.WAITING, reason, result, **stamps)
            log.info(texts.LOG_WAITING, campaign_id, reason, extra={"campaign": campaign_id})
        return bool(result["changed"])

    def wake(self, campaign_id: str) -> bool:
        """Start a scheduled or waiting campaign whose time has come; False when another caller did (or it
        is not due), so two schedulers running at once start it once."""
        fields = self.ensure_live_state(campaign_id)
        result = self.store.wake_campaign(campaign_id)
        if not result["changed"]:
            return False
        self._publish(campaign_id, CampaignStatus.RUNNING, None, result)
        log.info(texts.LOG_WOKEN, campaign_id, result.get("from"), extra={"campaign": campaign_id})
        if not self.hold_if_closed(campaign_id):
            self.state.requeue(campaign_id, self.store.pending_batches(campaign_id, int(fields["batch_size"])))
            self.settle(campaign_id)
        return True

    def wake_due(self) -> list[str]:
        """Start every scheduled or waiting campaign whose time has come (beat, every SCHEDULER_INTERVAL_S)."""
        woken = []
        for campaign_id in self.store.due_campaigns():
            try:
                if self.wake(campaign_id):
                    woken.append(campaign_id)
            except CampaignNotFound:
                continue
        return woken

    def reschedule(self, campaign_id: str, at: datetime) -> str:
        """Move the start of a campaign that is still scheduled; returns the new `motivo`."""
        fields = self.ensure_live_state(campaign_id)
        reason = texts.SCHEDULED_FOR.format(at=local_text(at, CampaignClock.of(fields).tz))
        result = self.store.reschedule_campaign(campaign_id, at.isoformat(), reason)
        if result["status"] is None:
            raise CampaignNotFound(campaign_id)
        if not result["changed"]:
            raise InvalidTransition(texts.RESCHEDULE_NOT_SCHEDULED.format(status=result["status"]))
        self._publish(
            campaign_id,
            CampaignStatus.SCHEDULED,
            reason,
            result,
            scheduled_for=at.isoformat(),
            resume_at=at.isoformat(),
        )
        return reason

    def dispatch(self, campaign_id: str) -> int:
        """Send chords for queued batches while fewer than the allowed number are in flight."""
        fields = self.state.fields(campaign_id)
        total, batch_size, chunk_size = (int(fields[k]) for k in ("total", "batch_size", "chunk_size"))
        sent = 0
        while (batch_no := self.state.next_batch(campaign_id, self.max_concurrent_batches)) is not None:
            try:
                self.queue.enqueue_batch(campaign_id, batch_no, chunk_count(total, batch_size, chunk_size, batch_no))
            except Exception:
                # Hand the batch back so the next dispatch (or resume) finds it.
                self.state.batch_done(campaign_id, batch_no, requeue=True)
                raise
            sent += 1
        return sent

    def finish_batch(self, campaign_id: str, batch_no: int, reports: list[ChunkReport]) -> None:
        """Chord callback: the batch's chunks have recorded their outcomes; log the batch, check its failure
        rate, then requeue it if it handed messages back and complete the campaign or dispatch more."""
        reports = [r for r in reports if r]
        sent, failed = sum(r["sent"] for r in reports), sum(r["failed"] for r in reports)
        if sent or failed:
            fields = self.state.fields(campaign_id)
            if fields:
                batches = batch_count(int(fields["total"]), int(fields["batch_size"]))
                log.info(
                    texts.LOG_BATCH_DONE,
                    batch_no,
                    batches,
                    sent,
                    sent + failed,
                    failed,
                    campaign_id,
                    extra={"campaign": campaign_id, "batch": batch_no},
                )
            self._check_error_rate(campaign_id, failed, sent + failed)
        handed_back = sum(r["handed_back"] for r in reports)
        self.state.batch_done(campaign_id, batch_no, requeue=handed_back > 0)
        self.settle(campaign_id)

    def record_outcomes(self, campaign_id: str, outcomes: list[Outcome]) -> dict[str, int]:
        """Write outcomes (a chunk's, or those a dead worker left) in one bulk call; returns what moved.

        Outcomes apply only to rows still claimed by the worker that reports them, so a repeated call (or
        one for rows recovery has already settled) moves and counts nothing.
        """
        if not outcomes:
            return {}
        if any(o["status"] == RecipientStatus.PENDING for o in outcomes) and (
            self.state.status(campaign_id) == CampaignStatus.CANCELLED
        ):
            for outcome in outcomes:
                if outcome["status"] == RecipientStatus.PENDING:
                    outcome["status"] = RecipientStatus.CANCELLED
        result = self.store.record_outcomes(outcomes)
        # The send marks stay until the outcome is in the store: a worker that dies in between leaves
        # its messages marked, so recovery never sends them again.
        self.state.end_sends(campaign_id, [o["id"] for o in outcomes], {o["owner"] for o in outcomes if o.get("owner")})
        moved = result["moved"]
        counts = {k: v for k, v in moved.items() if k != RecipientStatus.PENDING}
        if moved:
            counts["retries"] = sum(o.get("retries", 0) for o in outcomes)
        if result.get("held"):
            counts["held"] = result["held"]  # sent, but WhatsApp holds them (template pacing)
        self.state.add_counts(campaign_id, counts)
        self.state.add_errors(campaign_id, result["errors"])
        return moved

    def _check_error_rate(self, campaign_id: str, failed: int, processed: int) -> None:
        """Pause the campaign when too many of its recent sends failed (MAX_ERROR_RATE)."""
        if self.max_error_rate >= 1:
            return
        failed_recent, processed_recent = self.state.error_window(
            campaign_id, failed, processed, self.error_rate_window
        )
        if processed_recent >= self.error_rate_window and failed_recent / processed_recent > self.max_error_rate:
            reason = texts.PAUSE_ERROR_RATE.format(
                failed=failed_recent,
                processed=processed_recent,
                share=failed_recent / processed_recent,
                limit=self.max_error_rate,
            )
            try:
                self.pause(campaign_id, reason)
            except InvalidTransition:
                pass

    def settle(self, campaign_id: str) -> str | None:
        """Complete a campaign with nothing left to send, or keep it moving; returns its status."""
        fields = self.state.fields(campaign_id)
        status = fields.get("status")
        if status != CampaignStatus.RUNNING:
            return status
        done = sum(int(fields.get(k, 0)) for k in SETTLED_RECIPIENT_STATUSES)
        if done >= int(fields["total"]) or (
            self.state.queued(campaign_id) == 0 and self.state.in_flight(campaign_id) == 0
        ):
            counts = self.store.campaign_counts(campaign_id)
            if counts["pending"] == 0 and counts["sending"] == 0 and counts.get(RecipientStatus.DEFERRED):
                self._wait_for_deferred(campaign_id)
                return status
            if counts["pending"] == 0 and counts["sending"] == 0:
                # The store is exact; Redis may have missed increments around a crash.
                self.state.set_counts(
                    campaign_id, {k: counts[k] for k in (*SETTLED_RECIPIENT_STATUSES, RecipientStatus.DEFERRED)}
                )
                self._set_status(campaign_id, CampaignStatus.COMPLETED)
                log.info(
                    texts.LOG_COMPLETED, campaign_id, counts["sent"], counts["failed"], extra={"campaign": campaign_id}
                )
                return CampaignStatus.COMPLETED
            if self.state.in_flight(campaign_id) == 0 and self.state.queued(campaign_id) == 0:
                # Messages are pending but nothing will send them: rebuild the queue from the store.
                self.state.requeue(campaign_id, self.store.pending_batches(campaign_id, int(fields["batch_size"])))
        self.dispatch(campaign_id)
        return status

    def _wait_for_deferred(self, campaign_id: str) -> None:
        """Everything else is settled: the campaign runs on, saying it waits for its deferred recipients."""
        summary = self.store.deferred_summary(campaign_id)
        next_at = datetime.fromisoformat(summary["next_at"]).astimezone(UTC)
        reason = texts.WAITING_DEFERRED.format(count=summary["deferred"], at=next_at.strftime("%Y-%m-%d %H:%M:%S"))
        self.state.set_counts(campaign_id, {RecipientStatus.DEFERRED: summary["deferred"]})
        self.state.set_reason(campaign_id, reason)

    def keep_open(self, campaign_ids: list[str]) -> None:
        """Campaigns that got deferred recipients after they completed run again until those are settled."""
        for campaign_id in campaign_ids:
            if self.ensure_live_state(campaign_id).get("status") == CampaignStatus.COMPLETED:
                self._set_status(campaign_id, CampaignStatus.RUNNING)
            self.settle(campaign_id)

    def release_deferred(self) -> dict[str, int]:
        """Send again the deferred recipients whose time has come (the sweeper calls this); per campaign."""
        released = self.store.release_deferred()
        for campaign_id, count in released.items():
            if self.state.exists(campaign_id):
                self.state.add_counts(campaign_id, {RecipientStatus.DEFERRED: -count})
                self.state.set_reason(campaign_id, "")
            fields = self.ensure_live_state(campaign_id)  # a rebuild counts from the store, release included
            self.state.requeue(campaign_id, self.store.pending_batches(campaign_id, int(fields["batch_size"])))
            log.info(texts.LOG_DEFERRED_RELEASED, campaign_id, count, extra={"campaign": campaign_id})
            self.settle(campaign_id)
        return released

    # --- operator and error actions --------------------------------------------------------------

    def _set_status(self, campaign_id: str, status: str, reason: str | None = None) -> dict:
        """Change the status in the store (the authority) and then in Redis."""
        result = self.store.set_campaign_status(campaign_id, status, reason)
        if result["status"] is None:
            raise CampaignNotFound(campaign_id)
        if result["changed"]:
            self._publish(campaign_id, status, reason, result)
        return result

    def _publish(self, campaign_id: str, status: str, reason: str | None, result: dict, **stamps: str) -> None:
        """Write to Redis a status change the store accepted (as `result`'s version), with its stamps."""
        if status in FINAL_CAMPAIGN_STATUSES:
            stamps["finished_at"] = _now()
        if status not in TIMED_CAMPAIGN_STATUSES:
            stamps["resume_at"] = ""  # the store cleared it with the change
        if status == CampaignStatus.RUNNING:
            stamps["resumed_at"] = repr(time.time())
            if not self.state.fields(campaign_id).get("started_at"):
                stamps["started_at"] = _now()
        self.state.set_status(campaign_id, status, reason, int(result.get("version") or 0), **stamps)

    def pause(self, campaign_id: str, reason: str | None = None, *, unless_resumed_after: float | None = None) -> str:
        """Stop handing out messages; chunks in flight hand theirs back.

        With `unless_resumed_after`, a campaign (re)started after that moment is left running: the pause
        comes from an answer older than the operator's resume.
        """
        fields = self.ensure_live_state(campaign_id)
        if unless_resumed_after is not None and float(fields.get("resumed_at") or 0) > unless_resumed_after:
            raise InvalidTransition(texts.CANNOT_ACT.format(status=fields.get("status"), action="pausar"))
        result = self._set_status(campaign_id, CampaignStatus.PAUSED, reason)
        if not result["changed"]:
            raise InvalidTransition(texts.CANNOT_ACT.format(status=result["status"], action="pausar"))
        if reason:
            log.warning(texts.LOG_PAUSED, campaign_id, reason, extra={"campaign": campaign_id})
        return CampaignStatus.PAUSED

    def resume(self, campaign_id: str) -> str:
        """Continue a paused campaign where it stopped."""
        fields = self.ensure_live_state(campaign_id)
        current = self.campaign(campaign_id)["status"]
        if current not in (CampaignStatus.PAUSED, CampaignStatus.QUEUED, CampaignStatus.WAITING):
            raise InvalidTransition(texts.CANNOT_ACT.format(status=current, action="reanudar"))
        self._check_template(fields["template"], fields["language"])
        result = self._set_status(campaign_id, CampaignStatus.RUNNING)
        if not result["changed"]:
            raise InvalidTransition(texts.CANNOT_ACT.format(status=result["status"], action="reanudar"))
        if self.hold_if_closed(campaign_id):
            return CampaignStatus.WAITING
        self.state.requeue(campaign_id, self.store.pending_batches(campaign_id, int(fields["batch_size"])))
        return self.settle(campaign_id) or CampaignStatus.RUNNING

    def _check_template(self, template: str, language: str) -> None:
        """Refuse to resume while WhatsApp reports the campaign's template paused or disabled."""
        current = self.store.template_status(template, language)
        if current and current.get("status") in BLOCKING_TEMPLATE_STATUSES:
            raise InvalidTransition(
                texts.RESUME_TEMPLATE_BLOCKED.format(
                    template=template,
                    language=language,
                    status=texts.TEMPLATE_STATUS_NAMES[current["status"]],
                    since=str(current.get("event_at") or "")[:19].replace("T", " "),
                )
            )

    def cancel(self, campaign_id: str) -> int:
        """Stop the campaign for good and mark what was not sent as cancelled; returns how many."""
        self.ensure_live_state(campaign_id)
        result = self._set_status(campaign_id, CampaignStatus.CANCELLED, texts.CANCELLED_BY_OPERATOR)
        if not result["changed"]:
            raise InvalidTransition(texts.CANNOT_ACT.format(status=result["status"], action="cancelar"))
        cancelled = self.store.cancel_pending(campaign_id)  # deferred recipients too
        self.state.add_counts(campaign_id, {RecipientStatus.CANCELLED: cancelled})
        self.state.set_counts(campaign_id, {RecipientStatus.DEFERRED: 0})
        return cancelled

    def retry(self, campaign_id: str, statuses: list[str]) -> dict[str, int]:
        """Send again the recipients left unknown and/or failed; reopens a finished campaign."""
        fields = self.ensure_live_state(campaign_id)
        if fields.get("status") == CampaignStatus.CANCELLED:
            raise InvalidTransition(texts.RETRY_CANCELLED)
        self._check_template(fields["template"], fields["language"])
        moved = self.store.requeue_recipients(campaign_id, statuses)
        if not moved:
            raise InvalidTransition(texts.RETRY_NOTHING.format(statuses=" o ".join(statuses)))
        self.state.add_counts(campaign_id, {status: -n for status, n in moved.items()})
        if RecipientStatus.FAILED in moved:
            self.state.init_errors(campaign_id, self.store.failure_breakdown(campaign_id))
        if fields.get("status") != CampaignStatus.RUNNING:
            self._set_status(campaign_id, CampaignStatus.RUNNING)
            if self.hold_if_closed(campaign_id):
                log.info(texts.LOG_RETRIED, campaign_id, sum(moved.values()))
                return moved
        self.state.requeue(campaign_id, self.store.pending_batches(campaign_id, int(fields["batch_size"])))
        self.settle(campaign_id)
        log.info(texts.LOG_RETRIED, campaign_id, sum(moved.values()))
        return moved

    def fail(self, campaign_id: str, reason: str) -> None:
        """Stop a campaign that cannot succeed (for example a template that does not exist)."""
        result = self._set_status(campaign_id, CampaignStatus.FAILED, reason)
        if result["changed"]:
            log.error(texts.LOG_STOPPED, campaign_id, reason)
