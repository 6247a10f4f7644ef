"""Sending one chunk of a batch: claim its recipients, pace, send concurrently, sort the outcomes."""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass

from tasks.errors import ErrorKind, describe
from tasks.logsetup import mask
from tasks.pipeline import Pipeline, chunk_range
from tasks.ratelimit import SendRateLimiter
from tasks.store.base import ClaimedMessage, Sender, StoreError
from tasks.whatsapp import SendResult, WhatsAppClient, template_payload

try:  # the workers run on gevent; plain Python (unit tests, scripts) sends one by one
    from gevent.pool import Pool as _GreenPool
except ImportError:  # pragma: no cover
    _GreenPool = None

log = logging.getLogger("tasks.sending")


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
                 status_ttl_s: float = 0.25, backoff_base_s: float = 0.5, backoff_cap_s: float = 8.0):
        self.pipeline = pipeline
        self.client = client
        self.limiter = limiter
        self.default_mps = default_mps
        self.interval_ms = interval_ms
        self.max_retries = max_retries
        self.credentials_ttl_s = credentials_ttl_s
        self.status_ttl_s = status_ttl_s
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._specs: dict[str, CampaignSpec] = {}
        self._senders: dict[str, tuple[float, Sender]] = {}
        self._status: dict[str, tuple[float, str | None]] = {}

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

    def status(self, campaign_id: str) -> str | None:
        """The campaign's status, read from Redis at most every few hundred milliseconds."""
        cached = self._status.get(campaign_id)
        now = time.monotonic()
        if cached and cached[0] > now:
            return cached[1]
        status = self.pipeline.state.status(campaign_id)
        self._status[campaign_id] = (now + self.status_ttl_s, status)
        return status

    def _forget_status(self, campaign_id: str) -> None:
        """Drop the cached status after this process changed it."""
        self._status.pop(campaign_id, None)

    # --- sending ---------------------------------------------------------------------------------

    def send_chunk(self, campaign_id: str, batch_no: int, chunk_no: int) -> list[dict]:
        """Claim and send one chunk; returns one outcome per claimed recipient."""
        if self.status(campaign_id) != "running":
            return []
        spec = self.spec(campaign_id)
        first, last = chunk_range(spec.total, spec.batch_size, spec.chunk_size, batch_no, chunk_no)
        claimed = self.pipeline.store.claim_messages(campaign_id, first, last)
        if not claimed:
            return []
        try:
            sender = self.sender(spec.buzon)
        except StoreError as exc:
            self._stop(campaign_id, "paused", f"No hay credenciales para el buzón: {exc}")
            return [self._handed_back(m) for m in claimed]
        if _GreenPool is not None and len(claimed) > 1:
            outcomes = _GreenPool(len(claimed)).map(lambda m: self._send_one(campaign_id, spec, sender, m), claimed)
        else:
            outcomes = [self._send_one(campaign_id, spec, sender, m) for m in claimed]
        answered = sum(1 for o in outcomes if o["status"] != "pending")
        if answered:
            self.pipeline.state.record_activity(campaign_id, answered)
        return outcomes

    def _send_one(self, campaign_id: str, spec: CampaignSpec, sender: Sender, message: ClaimedMessage) -> dict:
        """Send one message with pacing and retries, and say what became of it."""
        mps = sender.messages_per_second or self.default_mps
        payload = template_payload(message.phone, spec.template, spec.language, message.parameters,
                                   callback_data=f"{campaign_id}/{message.id}")
        retries = 0
        while True:
            wait = self.limiter.reserve(sender.phone_number_id, mps, self.interval_ms)
            if wait > 0:
                time.sleep(wait)
            # Checked after the wait, right before the request, so a pause takes effect at once.
            if self.status(campaign_id) != "running":
                return self._handed_back(message, retries)
            result = self.client.send(sender, payload)
            if result.ok:
                return {"id": message.id, "status": "sent", "wamid": result.wamid, "retries": retries}
            kind = result.kind
            if kind is ErrorKind.TRANSIENT and retries < self.max_retries:
                retries += 1
                time.sleep(self._backoff(retries))
                continue
            if kind is ErrorKind.CAMPAIGN:
                self._stop(campaign_id, "failed", describe(result.error_code, result.error_detail))
                return self._failed(message, result, retries)
            if kind is ErrorKind.ACCOUNT:
                self._stop(campaign_id, "paused", describe(result.error_code, result.error_detail))
                return self._handed_back(message, retries, result)
            return self._failed(message, result, retries)

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with full jitter, capped well under the broker's visibility timeout."""
        return random.uniform(0, min(self.backoff_cap_s, self.backoff_base_s * 2 ** attempt))

    def _stop(self, campaign_id: str, status: str, reason: str) -> None:
        """Pause or fail the campaign once, whichever message noticed first."""
        try:
            if status == "failed":
                self.pipeline.fail(campaign_id, reason)
            else:
                self.pipeline.pause(campaign_id, reason)
        except Exception:  # another message already moved it; that is fine
            pass
        self._forget_status(campaign_id)

    @staticmethod
    def _failed(message: ClaimedMessage, result: SendResult, retries: int) -> dict:
        """The outcome of a message that will not be delivered."""
        return {"id": message.id, "status": "failed", "error_code": result.error_code,
                "error_detail": mask(result.error_detail or "")[:500], "retries": retries}

    @staticmethod
    def _handed_back(message: ClaimedMessage, retries: int = 0, result: SendResult | None = None) -> dict:
        """The outcome of a message returned unsent to the campaign (paused, cancelled, account trouble)."""
        outcome = {"id": message.id, "status": "pending", "retries": retries}
        if result is not None:
            outcome.update(error_code=result.error_code, error_detail=mask(result.error_detail or "")[:500])
        return outcome
