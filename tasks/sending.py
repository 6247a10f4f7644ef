"""Sending one chunk of a batch: claim its recipients, pace, send concurrently, sort the outcomes."""

from __future__ import annotations

import json
import logging
import math
import random
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import Enum

from tasks import metrics, optouts, texts
from tasks.account_signals import template_pause_reason
from tasks.config import Settings
from tasks.errors import ErrorKind, describe
from tasks.logsetup import mask
from tasks.pipeline import WAIT_BUDGET, WAIT_WINDOW, Pipeline, chunk_range
from tasks.portfolio import MessagingBudget, limit_text
from tasks.ratelimit import SendRateLimiter
from tasks.scheduling import CampaignClock, local_text
from tasks.state import LiveState
from tasks.store.base import ClaimedMessage, Sender, Store, StoreError, StoreUnavailable
from tasks.templates import PayloadBuilder
from tasks.vocabulary import CampaignStatus, ChunkReport, Outcome, RecipientStatus
from tasks.whatsapp import SendResult, WhatsAppClient

try:  # the workers run on gevent; plain Python (scripts) sends one by one
    from tasks.greenlets import runners
except ImportError:  # pragma: no cover
    runners = None  # type: ignore[assignment]

log = logging.getLogger("tasks.sending")

# WhatsApp asking us to slow down: wait (every worker, through the shared schedule) and try again; these
# never count against a message's retries, so a message never fails because of throughput.
_THROTTLE_PAUSE_S = {130429: 1.0, 4: 5.0, 80007: 5.0, 131057: 30.0}
# Refusals that say what became of the template (its status notification says the same, maybe later).
_TEMPLATE_REFUSALS = {132015: "PAUSED", 132016: "DISABLED"}
_TEMPLATE_REFUSAL_EVERY_S = 60.0
# Outcomes that count as answered sends for the live messages/s figure.
_ANSWERED = (RecipientStatus.SENT, RecipientStatus.FAILED, RecipientStatus.DEFERRED)
# A message is marked as being requested (and the campaign's status checked) together with the other
# messages of its chunk whose slots fall within this horizon: one Redis call for several messages.
# It is also how late a pause or cancel can be, and how early a mark may precede its request.
MARK_AHEAD_S = 0.025
# Observed once per attempt, in this process only (bound here: the send loop skips the attribute lookups).
_SEND_SECONDS = metrics.SEND_SECONDS
_LIMITER_WAIT = metrics.RATE_LIMITER_WAIT_SECONDS
# Above 100 messages/s requests leave on a grid of this step, never before their slot (see ChunkSender._attempt).
RELEASE_TICK_S = 0.010


class _Ledger:
    """This process's sends of one campaign whose outcomes are not in the store yet.

    `marked` are the messages marked as being requested, `answers` how the answered ones ended (kept in
    Redis with the next mark call, so recovery finds them if this worker dies). If Redis loses the marks,
    the next mark call says so and the worker marks all of them again before requesting anything else.
    """

    __slots__ = ("answers", "marked", "marked_before", "unpushed")

    def __init__(self) -> None:
        self.marked: set[int] = set()
        self.answers: dict[int, str] = {}
        self.unpushed: dict[int, str] = {}
        self.marked_before = False  # this worker's sentinel should stand beside its marks

    def answered(self, outcome: Outcome) -> None:
        """Remember how a request WhatsApp answered ended, until the store has it."""
        encoded = encode_answer(outcome)
        self.answers[outcome["id"]] = encoded
        self.unpushed[outcome["id"]] = encoded

    def take_unpushed(self) -> dict[int, str]:
        """The answers Redis does not have yet (put back with `give_back` if the call fails)."""
        taken, self.unpushed = self.unpushed, {}
        return taken

    def give_back(self, answers: dict[int, str]) -> None:
        """Answers a failed Redis call did not keep."""
        self.unpushed.update(answers)

    def recorded(self, message_ids: list[int]) -> None:
        """The store has these outcomes: nothing to recover for them any more."""
        for message_id in message_ids:
            self.marked.discard(message_id)
            self.answers.pop(message_id, None)
            self.unpushed.pop(message_id, None)


class _SendMarks:
    """Marks a chunk's messages as being requested just before their slots, several per Redis call.

    The mark is what lets recovery tell a crashed worker's messages that may have gone out (unknown) from
    those that surely did not (pending); marking a message up to MARK_AHEAD_S before its request only
    moves it to the safe side. The status check that comes with it is what makes a pause take effect.
    The same call hands Redis the answers that came back since the last one.
    """

    def __init__(self, state: LiveState, campaign_id: str, owner: str, ledger: _Ledger, slots: dict[int, float]):
        self.state = state
        self.campaign_id = campaign_id
        self.owner = owner
        self.ledger = ledger
        self.unmarked = dict(slots)  # message id -> monotonic time of its slot
        self.granted: dict[int, bool] = {}
        # Cooperative under gevent: a greenlet that finds a call in progress waits for its answer.
        self.lock = threading.Lock()

    def begin(self, message_id: int) -> bool:
        """Mark the message (with those due soon); False when the campaign no longer runs."""
        with self.lock:
            if message_id in self.granted:
                return self.granted.pop(message_id)
            horizon = time.monotonic() + MARK_AHEAD_S
            due = [m for m, at in self.unmarked.items() if at <= horizon and m != message_id]
            due.append(message_id)
            for m in due:
                self.unmarked.pop(m, None)
            ledger = self.ledger
            ledger.marked.update(due)  # before the call: if it fails, recovery still counts them as maybe sent
            answers = ledger.take_unpushed()
            try:
                result = self.state.begin_sends(self.campaign_id, due, self.owner, ledger.marked_before, answers)
                if result < 0:
                    # Redis lost this worker's marks: mark again everything it may have sent, first.
                    result = self.state.begin_sends(
                        self.campaign_id, sorted(ledger.marked), self.owner, False, dict(ledger.answers)
                    )
                    log.warning(texts.LOG_MARKS_LOST, self.campaign_id, len(ledger.marked))
            except Exception:
                ledger.give_back(answers)
                raise
            if result > 0:
                ledger.marked_before = True
            running = result > 0
            for m in due[:-1]:
                self.granted[m] = running
            return running


@dataclass(frozen=True)
class CampaignSpec:
    """The parts of a campaign a sender needs, which never change after upload."""

    total: int
    buzon: str
    template: str
    language: str
    batch_size: int
    chunk_size: int
    # The message bodies of this campaign, with its header and button components built once.
    payloads: PayloadBuilder = None  # type: ignore[assignment]  # built from template and language when not given
    clock: CampaignClock = CampaignClock.ALWAYS  # its time zone and sending window

    def __post_init__(self) -> None:
        if self.payloads is None:
            object.__setattr__(self, "payloads", PayloadBuilder(self.template, self.language))


@dataclass(frozen=True)
class SendPolicy:
    """Pacing, retries and deadlines of the send loop."""

    default_mps: int = 80  # messages/s of a number whose buzón sets none
    interval_ms: int = 0  # INTERVALO_ENVIO_MS: minimum spacing between two sends of a number
    max_retries: int = 5  # transient errors retried before a message fails
    credentials_ttl_s: float = 30.0  # how long a buzón's credentials are cached
    chunk_deadline_s: float = 60.0  # a chunk hands back what it could not send by then
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 8.0
    outage_threshold: int = 20  # this many failures in a row to one number: WhatsApp is down
    optouts: optouts.OptOutPolicy = field(default_factory=optouts.OptOutPolicy)  # what 131050 and 131049 lead to

    @classmethod
    def from_settings(cls, s: Settings) -> SendPolicy:
        """The policy the settings describe."""
        return cls(
            default_mps=s.whatsapp_mps,
            interval_ms=s.intervalo_envio_ms,
            max_retries=s.max_retries,
            credentials_ttl_s=s.credentials_cache_s,
            chunk_deadline_s=s.chunk_deadline_s,
            optouts=optouts.OptOutPolicy.from_settings(s),
        )


class Next(Enum):
    """What the send loop does after one attempt."""

    DONE = "done"  # the message has its outcome (sent, failed or unknown)
    WAIT = "wait"  # WhatsApp asked us to slow down, or is down: wait, retries not spent
    RETRY = "retry"  # a transient error: back off, spend one retry
    HAND_BACK = "hand_back"  # not sent (deadline, paused, account trouble): back to pending
    STOP = "stop"  # every message would fail the same way: stop the campaign


@dataclass(frozen=True, slots=True)
class Decision:
    """One attempt's verdict: what to do next, and the outcome or the campaign action that goes with it."""

    next: Next
    outcome: Outcome | None = None  # the message's outcome with DONE, HAND_BACK and STOP (and RETRY, once spent)
    wait_s: float = 0.0  # with WAIT
    stop_as: str | None = None  # with STOP or an account error: the campaign status to move to
    since: float = 0.0  # when the request that brought the error left (wall clock)
    reason: str | None = None
    until: datetime | None = None  # with stop_as WAITING: when the campaign may send again


@dataclass(slots=True)
class _Job:
    """One chunk's shared context: the campaign, its sender, the chunk deadline and the send marks."""

    campaign_id: str
    spec: CampaignSpec
    sender: Sender
    mps: float
    tick: float
    deadline: float
    marks: _SendMarks
    closes_at: float = math.inf  # wall clock: its sending window closes then, and nothing leaves after it
    held: bool = False  # one of its messages already made the campaign wait


class ChunkSender:
    """Sends the recipients of one chunk; every outcome is returned, never raised."""

    def __init__(
        self,
        store: Store,
        state: LiveState,
        campaigns: Pipeline,
        client: WhatsAppClient,
        limiter: SendRateLimiter,
        policy: SendPolicy,
        budget: MessagingBudget | None = None,
    ):
        self.store = store
        self.state = state
        self.campaigns = campaigns  # pause or stop a campaign, and rebuild its live state
        self.client = client
        self.limiter = limiter
        self.policy = policy
        self.budget = budget  # the portfolios' daily limits (None: not enforced)
        self._specs: dict[str, CampaignSpec] = {}
        self._senders: dict[str, tuple[float, Sender]] = {}
        self._failing: set[str] = set()
        self._ledgers: dict[tuple[str, str], _Ledger] = {}
        # (template, language) -> when this process last recorded WhatsApp refusing it (132015/132016).
        self._refused_templates: dict[tuple[str, str], float] = {}

    # --- cached reads ----------------------------------------------------------------------------

    def spec(self, campaign_id: str) -> CampaignSpec:
        """The campaign's fixed fields, read once per process."""
        spec = self._specs.get(campaign_id)
        if spec is None:
            f = self.campaigns.ensure_live_state(campaign_id)
            plan = json.loads(f["template_plan"]) if f.get("template_plan") else None
            spec = CampaignSpec(
                int(f["total"]),
                f["buzon"],
                f["template"],
                f["language"],
                int(f["batch_size"]),
                int(f["chunk_size"]),
                PayloadBuilder(f["template"], f["language"], plan),
                CampaignClock.of(f),
            )
            self._specs[campaign_id] = spec
        return spec

    def sender(self, buzon: str) -> Sender:
        """The buzón's credentials, cached briefly so a rotated token is picked up soon."""
        cached = self._senders.get(buzon)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        sender = self.store.get_sender(buzon)
        if sender is None:
            raise StoreError(texts.SENDER_NOT_REGISTERED.format(buzon=buzon))
        self._senders[buzon] = (time.monotonic() + self.policy.credentials_ttl_s, sender)
        return sender

    def forget_sender(self, buzon: str) -> None:
        """Re-read the buzón's credentials next time (after a token error, someone may have fixed them)."""
        self._senders.pop(buzon, None)

    # --- sending ---------------------------------------------------------------------------------

    def send_chunk(self, campaign_id: str, batch_no: int, chunk_no: int, owner: str) -> ChunkReport:
        """Claim, send and record one chunk for worker `owner`; the outcomes are in the store on return."""
        outcomes = self.send(campaign_id, batch_no, chunk_no, owner)
        moved = self.record(campaign_id, owner, outcomes)
        metrics.count_outcomes(outcomes)
        return {
            "claimed": len(outcomes),
            "handed_back": sum(1 for o in outcomes if o["status"] == RecipientStatus.PENDING),
            "sent": moved.get(RecipientStatus.SENT, 0),
            "failed": moved.get(RecipientStatus.FAILED, 0),
        }

    def record(self, campaign_id: str, owner: str, outcomes: list[Outcome]) -> dict[str, int]:
        """Write a chunk's outcomes to the store (returns what moved); if that fails, leave its answers
        where recovery finds them."""
        ledger = self._ledgers.get((campaign_id, owner))
        try:
            moved = self.campaigns.record_outcomes(campaign_id, outcomes)
        except Exception:
            if ledger is not None:
                try:
                    self.state.keep_answers(campaign_id, owner, ledger.take_unpushed())
                except Exception:
                    pass
            raise
        if ledger is not None:
            ledger.recorded([o["id"] for o in outcomes])
        return moved

    def send(self, campaign_id: str, batch_no: int, chunk_no: int, owner: str) -> list[Outcome]:
        """Claim and send one chunk for worker `owner`; returns one outcome per claimed recipient.

        The outcomes are not recorded yet (`send_chunk` does that): until they are, the worker's marks
        and answers in Redis are what recovery has to go on.
        """
        deadline = time.monotonic() + self.policy.chunk_deadline_s
        if self.state.status(campaign_id) != CampaignStatus.RUNNING:
            return []
        spec = self.spec(campaign_id)
        closes_at = math.inf
        if spec.clock.window is not None:
            # Outside its window the campaign waits, and nothing is claimed: the chunk sends nothing.
            now = datetime.now(UTC)
            opens = spec.clock.closed_until(now)
            if opens is not None:
                self._wait(campaign_id, spec.clock.waiting_reason(opens), opens)
                return []
            closes_at = spec.clock.closes_at(now).timestamp()  # type: ignore[union-attr]  # a window is set
        first, last = chunk_range(spec.total, spec.batch_size, spec.chunk_size, batch_no, chunk_no)
        claimed = self.store.claim_messages(campaign_id, first, last, owner)
        # Numbers that opted out since the upload are recorded as suppressed, never requested.
        skipped = optouts.skipped_outcomes(claimed, owner)
        if skipped:
            claimed = [m for m in claimed if not m.suppressed]
        if not claimed:
            return skipped
        try:
            sender = self.sender(spec.buzon)
        except StoreUnavailable:  # the database is away, which says nothing about the buzón: hand the chunk back
            return [_outcome(m, RecipientStatus.PENDING) for m in claimed] + skipped
        except StoreError as exc:
            self._stop(campaign_id, CampaignStatus.PAUSED, texts.PAUSE_NO_CREDENTIALS.format(error=exc))
            return [_outcome(m, RecipientStatus.PENDING) for m in claimed] + skipped
        claimed, over_limit, budget_wait = self._within_budget(campaign_id, spec, sender, claimed)
        over_limit += skipped  # recorded with the rest: suppressed ones, and those without a place
        if not claimed:
            if budget_wait:
                self._wait(campaign_id, *budget_wait, kind=WAIT_BUDGET)
            return over_limit

        mps = sender.messages_per_second or self.policy.default_mps
        # One round trip books a slot for every message of the chunk on the number's shared schedule.
        slots = self.limiter.reserve_many(sender.phone_number_id, mps, len(claimed), self.policy.interval_ms)
        start = time.monotonic()
        # Above 100 messages/s, requests leave on a RELEASE_TICK_S grid, never before their slot: messages
        # due within the same few milliseconds wake the worker once instead of once each. Not when an
        # explicit spacing (INTERVALO_ENVIO_MS) was asked for, which the grid could shorten.
        tick = RELEASE_TICK_S if not self.policy.interval_ms and mps * RELEASE_TICK_S > 1 else 0.0
        ledger = self._ledgers.get((campaign_id, owner))
        if ledger is None:
            ledger = self._ledgers[(campaign_id, owner)] = _Ledger()
        marks = _SendMarks(
            self.state,
            campaign_id,
            owner,
            ledger,
            {m.id: start + wait for m, wait in zip(claimed, slots, strict=True)},
        )
        job = _Job(campaign_id, spec, sender, mps, tick, deadline, marks, closes_at)

        def send(item: tuple[ClaimedMessage, float]) -> Outcome:
            message, wait = item
            outcome = self._deliver(job, message, start + wait)
            outcome["owner"] = owner
            if outcome["status"] in _ANSWERED or (
                outcome["status"] == RecipientStatus.PENDING and "error_code" in outcome
            ):
                ledger.answered(outcome)  # WhatsApp answered: recovery must not guess about this one
            return outcome

        if runners is not None and len(claimed) > 1:
            # A greenlet per message, each asleep until its slot; greenlets of earlier chunks are reused
            # (tasks/greenlets.py). The chunk ends when every message has, even if one raised.
            outcomes = runners().map(send, zip(claimed, slots, strict=True))
        else:
            outcomes = [send(item) for item in zip(claimed, slots, strict=True)]
        if self.budget is not None and sender.portfolio_id is not None and sender.messaging_limit is not None:
            requested = {o["id"] for o in outcomes if o["status"] != RecipientStatus.PENDING}
            try:
                self.budget.touch(sender.portfolio_id, [m.phone for m in claimed if m.id in requested])
            except Exception:  # their places keep the claim's time, a moment early
                pass
        if budget_wait:
            # After its own sends; other chunks' messages that hold places go out while it waits.
            self._wait(campaign_id, *budget_wait, kind=WAIT_BUDGET)
        answered = sum(1 for o in outcomes if o["status"] in _ANSWERED)
        if answered:
            try:
                self.state.record_activity(campaign_id, answered)
            except Exception:  # only the live messages/s figure misses these
                pass
        return [*outcomes, *over_limit] if over_limit else outcomes

    def _within_budget(
        self, campaign_id: str, spec: CampaignSpec, sender: Sender, claimed: list[ClaimedMessage]
    ) -> tuple[list[ClaimedMessage], list[Outcome], tuple[str, datetime] | None]:
        """Split the claimed messages into those the portfolio's daily limit lets out now and those handed
        back; with the latter, the reason and time the campaign waits for (until the oldest place frees up)."""
        if self.budget is None or sender.portfolio_id is None or sender.messaging_limit is None:
            return claimed, [], None
        try:
            reservation = self.budget.reserve(sender.portfolio_id, sender.messaging_limit, [m.phone for m in claimed])
        except Exception as exc:  # Redis or the store away: nothing is sent without a place
            log.warning("campaign %s: portfolio budget unavailable (%s)", campaign_id, type(exc).__name__)
            return [], [_outcome(m, RecipientStatus.PENDING) for m in claimed], None
        allowed = [m for m, ok in zip(claimed, reservation.granted, strict=True) if ok]
        if len(allowed) == len(claimed):
            return claimed, [], None
        until = datetime.fromtimestamp(reservation.free_at, UTC)
        reason = texts.WAIT_PORTFOLIO.format(
            portfolio=sender.portfolio_id,
            limit=limit_text(sender.messaging_limit),
            until=local_text(until, spec.clock.tz),
        )
        back = [
            _outcome(m, RecipientStatus.PENDING) for m, ok in zip(claimed, reservation.granted, strict=True) if not ok
        ]
        return allowed, back, (reason, until)

    def _wait(self, campaign_id: str, reason: str, until: datetime, kind: str = WAIT_WINDOW) -> None:
        """Make the campaign wait until `until` (whichever chunk noticed first; a failure only logs)."""
        try:
            self.campaigns.wait(campaign_id, reason, until, kind)
        except Exception as exc:
            log.warning("campaign %s could not be set waiting (%s)", campaign_id, type(exc).__name__)

    def _deliver(self, job: _Job, message: ClaimedMessage, slot_at: float) -> Outcome:
        """Send one message at its booked slot (retries book new ones) until its outcome is known."""
        body = job.spec.payloads.body(message.phone, message.parameters, f"{job.campaign_id}/{message.id}")
        resends = 0  # attempts after the first, whatever the cause (stored as the message's retries)
        spent = 0  # of those, the transient errors that count against MAX_RETRIES (throttling does not)
        while True:
            if resends:
                slot_at = time.monotonic() + self.limiter.reserve(
                    job.sender.phone_number_id, job.mps, self.policy.interval_ms
                )
            decision = self._attempt(job, message, body, slot_at, resends)
            if decision.next is Next.RETRY:
                spent += 1
                if spent > self.policy.max_retries:
                    assert decision.outcome is not None  # a RETRY carries the outcome it ends with
                    return decision.outcome
                decision = Decision(Next.WAIT, wait_s=self._backoff(spent))
            if decision.next is Next.WAIT:
                resends += 1
                time.sleep(decision.wait_s)
                continue
            if decision.stop_as == CampaignStatus.WAITING:
                assert decision.until is not None  # a wait always says until when
                self._wait(job.campaign_id, decision.reason or "", decision.until)
            elif decision.stop_as is not None:
                self._stop(job.campaign_id, decision.stop_as, decision.reason or "", decision.since)
            assert decision.outcome is not None  # every step but WAIT settles the message
            return decision.outcome

    def _attempt(self, job: _Job, message: ClaimedMessage, body: bytes, slot_at: float, retries: int) -> Decision:
        """Wait for the slot, check the campaign still runs, send once, and decide what comes next."""
        try:
            wait = (math.ceil(slot_at / job.tick) * job.tick if job.tick else slot_at) - time.monotonic()
            if time.monotonic() + wait > job.deadline:
                # Too late for this task: the batch goes back to the queue and a later task sends it.
                return Decision(Next.HAND_BACK, _outcome(message, RecipientStatus.PENDING, retries))
            if job.closes_at != math.inf and time.time() + max(wait, 0.0) >= job.closes_at:
                return self._window_closed(job, message, retries)  # its slot falls after the closing time
            _LIMITER_WAIT.observe(wait if wait > 0 else 0.0)
            if wait > 0:
                time.sleep(wait)
            # Checked right before the request (at most MARK_AHEAD_S earlier), so a pause or cancel
            # takes effect at once.
            if not job.marks.begin(message.id):
                return Decision(Next.HAND_BACK, _outcome(message, RecipientStatus.PENDING, retries))
            if job.closes_at != math.inf and time.time() >= job.closes_at:
                return self._window_closed(job, message, retries)  # the last check before the request
        except Exception as exc:
            _log_interrupted(job, message, exc)
            return Decision(Next.HAND_BACK, _outcome(message, RecipientStatus.PENDING, retries))
        requested_at = time.time()
        request_started = time.perf_counter()
        try:
            result = self.client.send(job.sender, body)
        except Exception as exc:  # the request may have gone out: never resend blindly
            _SEND_SECONDS.observe(time.perf_counter() - request_started)
            _log_interrupted(job, message, exc)
            return Decision(
                Next.DONE,
                _outcome(
                    message,
                    RecipientStatus.UNKNOWN,
                    retries,
                    detail=texts.SEND_INTERRUPTED.format(error=type(exc).__name__),
                ),
            )
        _SEND_SECONDS.observe(time.perf_counter() - request_started)
        return self._judge(job, message, result, retries, requested_at)

    def _window_closed(self, job: _Job, message: ClaimedMessage, retries: int) -> Decision:
        """The sending window closed before this message could leave: hand it back, the campaign waits."""
        outcome = _outcome(message, RecipientStatus.PENDING, retries)
        if job.held:
            return Decision(Next.HAND_BACK, outcome)
        job.held = True  # the chunk's other messages hand back without asking the store again
        clock = job.spec.clock
        opens = clock.closed_until(datetime.fromtimestamp(job.closes_at, UTC))
        assert opens is not None  # at its closing time the window is closed
        return Decision(
            Next.HAND_BACK, outcome, stop_as=CampaignStatus.WAITING, reason=clock.waiting_reason(opens), until=opens
        )

    def _judge(
        self, job: _Job, message: ClaimedMessage, result: SendResult, retries: int, requested_at: float = 0.0
    ) -> Decision:
        """Sort WhatsApp's answer into the next step of the loop."""
        pnid = job.sender.phone_number_id
        if result.ok:
            self._note_success(pnid)
            sent: Outcome = {
                "id": message.id,
                "status": RecipientStatus.SENT,
                "wamid": result.wamid or "",
                "retries": retries,
            }
            if result.message_status:
                sent["message_status"] = result.message_status[:40]
            return Decision(Next.DONE, sent)
        if result.ambiguous:
            # Resending could deliver twice; the status webhook or an operator's retry settles it.
            return Decision(Next.DONE, _outcome(message, RecipientStatus.UNKNOWN, retries, result))
        kind = result.kind
        if kind is ErrorKind.TRANSIENT:
            if result.error_code in _THROTTLE_PAUSE_S:
                metrics.THROTTLED.labels(str(result.error_code)).inc()
                # Every worker of this number waits through the shared schedule; the retry books a new slot.
                self.limiter.penalize(pnid, _THROTTLE_PAUSE_S[result.error_code])
                return Decision(Next.WAIT, wait_s=0.0)
            if self._note_failure(pnid) >= self.policy.outage_threshold:
                # Everything to this number fails: WhatsApp (or the network) is down. Wait it out without
                # spending the message's retries; the deadline hands it back if it lasts.
                return Decision(Next.WAIT, wait_s=self._backoff(6))
            # The outcome it would end with once its retries are spent.
            return Decision(Next.RETRY, _outcome(message, RecipientStatus.FAILED, retries, result))
        reason = describe(result.error_code, result.error_detail)
        if kind is ErrorKind.CAMPAIGN:
            return Decision(
                Next.STOP,
                _outcome(message, RecipientStatus.FAILED, retries, result),
                stop_as=CampaignStatus.FAILED,
                reason=reason,
            )
        if kind is ErrorKind.ACCOUNT:
            self.forget_sender(job.spec.buzon)
            if result.error_code in _TEMPLATE_REFUSALS:
                self._note_template_refused(job, result.error_code, requested_at)
            return Decision(
                Next.HAND_BACK,
                _outcome(message, RecipientStatus.PENDING, retries, result),
                stop_as=CampaignStatus.PAUSED,
                since=requested_at,
                reason=reason,
            )
        failed = _outcome(message, RecipientStatus.FAILED, retries, result)
        if result.error_code in (optouts.OPTED_OUT, optouts.MARKETING_LIMIT):
            optouts.settle_refusal(failed, job.spec.buzon, self.policy.optouts)
        return Decision(Next.DONE, failed)

    def _note_template_refused(self, job: _Job, code: int, requested_at: float) -> None:
        """Record what WhatsApp's refusal says about the campaign's template, as its notification would.

        The refusal can come before the template status notification, and a resume is refused only while
        the template is known paused or disabled. The refusal counts from the whole second before its request
        left, so a notification of the same second (an approval, say) stays the latest news.
        """
        key = (job.spec.template, job.spec.language)
        now = time.monotonic()
        if now - self._refused_templates.get(key, -math.inf) < _TEMPLATE_REFUSAL_EVERY_S:
            return  # the chunk's other refusals say the same
        self._refused_templates[key] = now
        signal = {
            "kind": "template",
            "template": job.spec.template,
            "language": job.spec.language,
            "event": _TEMPLATE_REFUSALS[code],
            "reason": texts.TEMPLATE_REFUSED_REASON.format(code=code),
            "ts": math.floor(requested_at) - 1,
        }
        try:
            recorded = self.store.apply_signals([signal])
        except StoreError as exc:  # this campaign's pause does not depend on it
            log.warning("template refusal of campaign %s not recorded (%s)", job.campaign_id, type(exc).__name__)
            return
        # Being the news now, it pauses the template's other open campaigns as the notification would have.
        for item in recorded.get("pause") or []:
            if item["campaign_id"] != job.campaign_id:
                self._stop(item["campaign_id"], CampaignStatus.PAUSED, template_pause_reason(item))

    def _note_failure(self, pnid: str) -> int:
        """Count a transient failure of this number across all workers; returns the current run of failures."""
        self._failing.add(pnid)
        return self.state.note_number_failure(pnid)

    def _note_success(self, pnid: str) -> None:
        """End the run of failures once a send works again (only a worker that saw failures pays for it)."""
        if pnid in self._failing:
            self._failing.discard(pnid)
            self.state.clear_number_failures(pnid)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped well under the broker's visibility timeout."""
        base, cap = self.policy.backoff_base_s, self.policy.backoff_cap_s
        return random.uniform(base, min(cap, base * 2**attempt))

    def _stop(self, campaign_id: str, status: str, reason: str, since: float = 0.0) -> None:
        """Pause or fail the campaign once, whichever message noticed first.

        A pause for an answer to a request that left before the operator's latest resume is dropped: the
        operator has fixed (or chosen to ignore) what that answer reports.
        """
        try:
            if status == CampaignStatus.FAILED:
                self.campaigns.fail(campaign_id, reason)
            else:
                self.campaigns.pause(campaign_id, reason, unless_resumed_after=since or None)
        except Exception:  # another message already moved it; that is fine
            pass


def _log_interrupted(job: _Job, message: ClaimedMessage, exc: Exception) -> None:
    """A send cut short by an exception (the phone is masked by the log handlers)."""
    log.warning(
        "message %s of campaign %s interrupted by %s",
        message.id,
        job.campaign_id,
        type(exc).__name__,
        extra={"campaign": job.campaign_id, "phone": message.phone},
    )


def _outcome(
    message: ClaimedMessage, status: str, retries: int = 0, result: SendResult | None = None, detail: str | None = None
) -> Outcome:
    """A message's outcome: failed (will not be delivered), pending (handed back unsent) or unknown."""
    outcome: Outcome = {"id": message.id, "status": status, "retries": retries}
    if result is not None:
        outcome["error_code"] = result.error_code
        outcome["error_detail"] = mask(result.error_detail or "")[:500]
    elif detail:
        outcome["error_detail"] = detail
    return outcome


def encode_answer(outcome: Outcome) -> str:
    """An answered outcome as kept in Redis for recovery: `retries wamid` for a send, JSON otherwise. Never
    empty and never with a line break (`LiveState.begin_sends` sends several on one line each)."""
    if outcome["status"] == RecipientStatus.SENT and "message_status" not in outcome:
        wamid = outcome.get("wamid", "")
        if "\n" not in wamid:
            return f"{outcome.get('retries', 0)} {wamid}"
    return json.dumps({k: v for k, v in outcome.items() if k not in ("id", "owner")}, separators=(",", ":"))


def decode_answer(message_id: int, text: str, owner: str) -> Outcome:
    """The outcome `encode_answer` kept, claimed by `owner`."""
    if text.startswith("{"):
        outcome: Outcome = json.loads(text)
    else:
        retries, _, wamid = text.partition(" ")
        outcome = {"status": RecipientStatus.SENT, "wamid": wamid, "retries": int(retries)}
    outcome["id"] = message_id
    outcome["owner"] = owner
    return outcome
