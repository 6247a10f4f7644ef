"""Sending one chunk of a batch: claim its recipients, pace, send concurrently, sort the outcomes."""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from dataclasses import dataclass

from tasks.errors import ErrorKind, describe
from tasks.logsetup import mask
from tasks.pipeline import Pipeline, chunk_range
from tasks.ratelimit import SendRateLimiter
from tasks.store.base import ClaimedMessage, Sender, StoreError
from tasks.whatsapp import SendResult, WhatsAppClient, template_payload

try:  # the workers run on gevent; plain Python (scripts) sends one by one
    from gevent.pool import Pool as _GreenPool
except ImportError:  # pragma: no cover
    _GreenPool = None

log = logging.getLogger("tasks.sending")

# WhatsApp asking us to slow down: wait (every worker, through the shared schedule) and try again; these
# never count against a message's retries, so a message never fails because of throughput.
_THROTTLE_PAUSE_S = {130429: 1.0, 4: 5.0, 80007: 5.0, 131057: 30.0}
_FAILURE_KEY = "wcq:failures:"
# A message is marked as being requested (and the campaign's status checked) together with the other
# messages of its chunk whose slots fall within this horizon: one Redis call for several messages.
# It is also how late a pause or cancel can be, and how early a mark may precede its request.
MARK_AHEAD_S = 0.025
# Above 100 messages/s requests leave on a grid of this step, never before their slot (see _send_one).
RELEASE_TICK_S = 0.010


class _SendMarks:
    """Marks a chunk's messages as being requested just before their slots, several per Redis call.

    The mark is what lets recovery tell a crashed worker's messages that may have gone out (unknown) from
    those that surely did not (pending); marking a message up to MARK_AHEAD_S before its request only
    moves it to the safe side. The status check that comes with it is what makes a pause take effect.
    """

    def __init__(self, state, campaign_id: str, slots: dict[int, float]):
        self.state = state
        self.campaign_id = campaign_id
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
            running = self.state.begin_sends(self.campaign_id, due)
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


class ChunkSender:
    """Sends the recipients of one chunk; every outcome is returned, never raised."""

    def __init__(self, pipeline: Pipeline, client: WhatsAppClient, limiter: SendRateLimiter, *,
                 default_mps: int, interval_ms: int, max_retries: int, credentials_ttl_s: float,
                 chunk_deadline_s: float = 60.0, backoff_base_s: float = 0.5, backoff_cap_s: float = 8.0,
                 outage_threshold: int = 20):
        self.pipeline = pipeline
        self.state = pipeline.state
        self.client = client
        self.limiter = limiter
        self.default_mps = default_mps
        self.interval_ms = interval_ms
        self.max_retries = max_retries
        self.credentials_ttl_s = credentials_ttl_s
        self.chunk_deadline_s = chunk_deadline_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.outage_threshold = outage_threshold
        self._specs: dict[str, CampaignSpec] = {}
        self._senders: dict[str, tuple[float, Sender]] = {}
        self._failing: set[str] = set()

    # --- cached reads ----------------------------------------------------------------------------

    def spec(self, campaign_id: str) -> CampaignSpec:
        """The campaign's fixed fields, read once per process."""
        spec = self._specs.get(campaign_id)
        if spec is None:
            f = self.pipeline.ensure_live_state(campaign_id)
            spec = CampaignSpec(int(f["total"]), f["buzon"], f["template"], f["language"],
                                int(f["batch_size"]), int(f["chunk_size"]))
            self._specs[campaign_id] = spec
        return spec

    def sender(self, buzon: str) -> Sender:
        """The buzón's credentials, cached briefly so a rotated token is picked up soon."""
        cached = self._senders.get(buzon)
        if cached and cached[0] > time.monotonic():
            return cached[1]
        sender = self.pipeline.store.get_sender(buzon)
        if sender is None:
            raise StoreError(f"el buzón '{buzon}' no está registrado")
        self._senders[buzon] = (time.monotonic() + self.credentials_ttl_s, sender)
        return sender

    def forget_sender(self, buzon: str) -> None:
        """Re-read the buzón's credentials next time (after a token error, someone may have fixed them)."""
        self._senders.pop(buzon, None)

    # --- sending ---------------------------------------------------------------------------------

    def send_chunk(self, campaign_id: str, batch_no: int, chunk_no: int, owner: str) -> list[dict]:
        """Claim and send one chunk for worker `owner`; returns one outcome per claimed recipient."""
        deadline = time.monotonic() + self.chunk_deadline_s
        if self.state.status(campaign_id) != "running":
            return []
        spec = self.spec(campaign_id)
        first, last = chunk_range(spec.total, spec.batch_size, spec.chunk_size, batch_no, chunk_no)
        claimed = self.pipeline.store.claim_messages(campaign_id, first, last, owner)
        if not claimed:
            return []
        try:
            sender = self.sender(spec.buzon)
        except StoreError as exc:
            self._stop(campaign_id, "paused", f"No hay credenciales para el buzón: {exc}")
            return [_outcome(m, "pending") for m in claimed]

        # One round trip books a slot for every message of the chunk on the number's shared schedule.
        slots = self.limiter.reserve_many(sender.phone_number_id, sender.messages_per_second or self.default_mps,
                                          len(claimed), self.interval_ms)
        start = time.monotonic()
        marks = _SendMarks(self.state, campaign_id, {m.id: start + wait for m, wait in zip(claimed, slots)})

        def send(item: tuple[ClaimedMessage, float]) -> dict:
            message, wait = item
            return self._send_guarded(campaign_id, spec, sender, message, deadline, start + wait, marks)

        if _GreenPool is not None and len(claimed) > 1:
            outcomes = _GreenPool(len(claimed)).map(send, zip(claimed, slots))
        else:
            outcomes = [send(item) for item in zip(claimed, slots)]
        for outcome in outcomes:
            outcome["owner"] = owner
        answered = sum(1 for o in outcomes if o["status"] in ("sent", "failed"))
        if answered:
            try:
                self.state.record_activity(campaign_id, answered)
            except Exception:  # only the live messages/s figure misses these
                pass
        return outcomes

    def _send_guarded(self, campaign_id: str, spec: CampaignSpec, sender: Sender, message: ClaimedMessage,
                      deadline: float, slot_at: float, marks: _SendMarks) -> dict:
        """Send one message; an unexpected error hands it back (or marks it unknown if it may have gone out)."""
        progress = {"requested": False, "retries": 0}
        try:
            return self._send_one(campaign_id, spec, sender, message, deadline, slot_at, marks, progress)
        except Exception as exc:
            log.warning("message %s of campaign %s interrupted by %s", message.id, campaign_id, type(exc).__name__)
            if progress["requested"]:
                return _outcome(message, "unknown", progress["retries"],
                                detail=f"error interno durante el envío ({type(exc).__name__})")
            return _outcome(message, "pending", progress["retries"])

    def _send_one(self, campaign_id: str, spec: CampaignSpec, sender: Sender, message: ClaimedMessage,
                  deadline: float, slot_at: float, marks: _SendMarks, progress: dict) -> dict:
        """Send one message at its booked slot (retries book new ones), and say what became of it."""
        mps = sender.messages_per_second or self.default_mps
        pnid = sender.phone_number_id
        # Above 100 messages/s, requests leave on a RELEASE_TICK_S grid, never before their slot: messages
        # due within the same few milliseconds wake the worker once instead of once each. Not when an
        # explicit spacing (INTERVALO_ENVIO_MS) was asked for, which the grid could shorten.
        tick = RELEASE_TICK_S if not self.interval_ms and mps * RELEASE_TICK_S > 1 else 0.0
        payload = template_payload(message.phone, spec.template, spec.language, message.parameters,
                                   callback_data=f"{campaign_id}/{message.id}")
        while True:
            if progress["retries"]:
                slot_at = time.monotonic() + self.limiter.reserve(pnid, mps, self.interval_ms)
            wait = (math.ceil(slot_at / tick) * tick if tick else slot_at) - time.monotonic()
            if time.monotonic() + wait > deadline:
                # Too late for this task: the batch goes back to the queue and a later task sends it.
                return _outcome(message, "pending", progress["retries"])
            if wait > 0:
                time.sleep(wait)
            # Checked right before the request (at most MARK_AHEAD_S earlier), so a pause or cancel
            # takes effect at once.
            if not marks.begin(message.id):
                return _outcome(message, "pending", progress["retries"])
            progress["requested"] = True
            result = self.client.send(sender, payload)
            if result.ok:
                self._note_success(pnid)
                return {"id": message.id, "status": "sent", "wamid": result.wamid, "retries": progress["retries"]}
            progress["requested"] = False
            if result.ambiguous:
                # Resending could deliver twice; the status webhook or an operator's retry settles it.
                return _outcome(message, "unknown", progress["retries"], result)
            kind = result.kind
            if kind is ErrorKind.TRANSIENT:
                progress["retries"] += 1
                if result.error_code in _THROTTLE_PAUSE_S:
                    self.limiter.penalize(pnid, _THROTTLE_PAUSE_S[result.error_code])
                    continue
                if self._note_failure(pnid) >= self.outage_threshold:
                    # Everything to this number fails: WhatsApp (or the network) is down. Wait it out
                    # without spending the message's retries; the deadline hands it back if it lasts.
                    time.sleep(self._backoff(6))
                    continue
                if progress["retries"] <= self.max_retries:
                    time.sleep(self._backoff(progress["retries"]))
                    continue
                return _outcome(message, "failed", progress["retries"] - 1, result)
            if kind is ErrorKind.CAMPAIGN:
                self._stop(campaign_id, "failed", describe(result.error_code, result.error_detail))
                return _outcome(message, "failed", progress["retries"], result)
            if kind is ErrorKind.ACCOUNT:
                self.forget_sender(spec.buzon)
                self._stop(campaign_id, "paused", describe(result.error_code, result.error_detail))
                return _outcome(message, "pending", progress["retries"], result)
            return _outcome(message, "failed", progress["retries"], result)

    def _note_failure(self, pnid: str) -> int:
        """Count a transient failure of this number across all workers; returns the current run of failures."""
        self._failing.add(pnid)
        pipe = self.state.redis.pipeline()
        pipe.incr(_FAILURE_KEY + pnid)
        pipe.expire(_FAILURE_KEY + pnid, 120)
        return int(pipe.execute()[0])

    def _note_success(self, pnid: str) -> None:
        """End the run of failures once a send works again (only a worker that saw failures pays for it)."""
        if pnid in self._failing:
            self._failing.discard(pnid)
            self.state.redis.delete(_FAILURE_KEY + pnid)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped well under the broker's visibility timeout."""
        return random.uniform(self.backoff_base_s, min(self.backoff_cap_s, self.backoff_base_s * 2 ** attempt))

    def _stop(self, campaign_id: str, status: str, reason: str) -> None:
        """Pause or fail the campaign once, whichever message noticed first."""
        try:
            if status == "failed":
                self.pipeline.fail(campaign_id, reason)
            else:
                self.pipeline.pause(campaign_id, reason)
        except Exception:  # another message already moved it; that is fine
            pass


def _outcome(message: ClaimedMessage, status: str, retries: int = 0, result: SendResult | None = None,
             detail: str | None = None) -> dict:
    """A message's outcome: failed (will not be delivered), pending (handed back unsent) or unknown."""
    outcome = {"id": message.id, "status": status, "retries": retries}
    if result is not None:
        outcome.update(error_code=result.error_code, error_detail=mask(result.error_detail or "")[:500])
    elif detail:
        outcome["error_detail"] = detail
    return outcome
