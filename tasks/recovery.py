"""The periodic sweeper: repairs what crashes leave behind, idempotently, so it may run anywhere and often."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from tasks import keys, texts
from tasks.heartbeat import dead_workers, forget_worker
from tasks.pipeline import CampaignNotFound, Pipeline
from tasks.sending import decode_answer
from tasks.state import LiveState
from tasks.store.base import Store, StoreUnavailable
from tasks.vocabulary import CampaignStatus, Outcome, RecipientStatus
from tasks.webhooks import WebhookInbox

log = logging.getLogger("tasks.recovery")

# Campaigns whose batches may still be in flight (a paused, waiting or cancelled one hands claimed messages back).
_MOVING = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.WAITING, CampaignStatus.CANCELLED)


class Sweeper:
    """One pass over open campaigns: recover dead workers' claims, requeue stale batches, finish or dispatch.

    - Claims of a worker that stopped beating: what WhatsApp told us settles them first (the answers the
      worker left in Redis, then the status notifications in the store); of the rest, messages it was
      requesting become unknown (never resent blindly) and the others go back to pending. If Redis lost
      the worker's marks (its sentinel is gone), every unsettled claim may have been sent: unknown.
    - Claims older than `stuck_claim_s` even though their worker lives (its chunk could not record them)
      are treated the same way.
    - Notification bodies a dead worker took and had not applied go back to the inbox, and a drain is
      scheduled whenever bodies wait (the task that should drain them may have died with its worker).
    - A batch in flight for more than `stale_batch_s` with nothing of it being sent goes back to the
      queue (its chord may never join when a chunk died with its worker). Sending it again is safe: every
      message is claimed atomically.
    """

    def __init__(
        self,
        store: Store,
        state: LiveState,
        pipeline: Pipeline,
        inbox: WebhookInbox,
        schedule_webhooks: Callable[[], None],
        *,
        owner: str,
        heartbeat_ttl_s: int,
        stale_batch_s: int,
        stuck_claim_s: int,
    ):
        self.store = store
        self.state = state
        self.pipeline = pipeline
        self.inbox = inbox
        self.schedule_webhooks = schedule_webhooks
        self.owner = owner
        self.heartbeat_ttl_s = heartbeat_ttl_s
        self.stale_batch_s = stale_batch_s
        self.stuck_claim_s = stuck_claim_s

    def sweep(self) -> dict:
        """Repair every open campaign once; skipped while another sweeper holds the lock."""
        redis = self.state.redis
        redis.set(keys.SWEEP_LAST_PASS, redis.time()[0])  # beat runs: estado-sistema reports when it last did
        if not redis.set(keys.SWEEP_LOCK, self.owner, nx=True, ex=max(30, self.stale_batch_s)):
            return {"skipped": True}
        report = {"unknown": 0, "released": 0, "settled": 0, "requeued_batches": 0, "campaigns": 0}
        try:
            report["deferred_released"] = sum(self.pipeline.release_deferred().values())
            campaigns = set(self.store.open_campaigns()) | self.state.active_campaigns()
            owners = {campaign_id: self.store.claim_owners(campaign_id) for campaign_id in campaigns}
            takers = set(self.inbox.takers())
            claimers = {o for found in owners.values() for o in found}
            dead = dead_workers(redis, self.heartbeat_ttl_s, claimers | takers)
            for owner in takers & dead:
                log.warning(texts.LOG_WEBHOOKS_RETURNED, owner, self.inbox.put_back(owner))
            if self.inbox.size():
                # Notifications wait: their drain task may have died with a worker (its flag still set).
                self.schedule_webhooks()
            for campaign_id in sorted(campaigns):
                try:
                    self._sweep_campaign(campaign_id, owners[campaign_id], dead, report)
                except CampaignNotFound:
                    self.state.forget_campaign(campaign_id)
                report["campaigns"] += 1
            for owner in dead:
                forget_worker(redis, owner)
        finally:
            redis.delete(keys.SWEEP_LOCK)
        return report

    def guarded_sweep(self) -> dict:
        """A pass of `sweep` that ends at once, with a warning, while the database is away.

        Every repair needs the database; waiting for it would hold the sweep lock and a worker's slot while
        passes pile up behind it. The next pass, SWEEP_INTERVAL_S later, finds it back.
        """
        if not self.store.ping():
            log.warning(texts.LOG_SWEEP_NO_DATABASE, "ping")
            return {"skipped": True, "database": False}
        try:
            return self.sweep()
        except StoreUnavailable as exc:  # it went away during the pass, which is safe to cut short anywhere
            log.warning(texts.LOG_SWEEP_NO_DATABASE, exc)
            return {"skipped": True, "database": False}

    def _sweep_campaign(self, campaign_id: str, owners: dict[str, int], dead: set[str], report: dict) -> None:
        """Repair one campaign."""
        fields = self.pipeline.ensure_live_state(campaign_id)
        attempts = None
        for owner, age in owners.items():
            if owner in dead:
                older_than = 0
            elif age > self.stuck_claim_s:
                older_than = self.stuck_claim_s
            else:
                continue
            if attempts is None:
                attempts = self.state.attempts(campaign_id)
            self._recover(campaign_id, owner, older_than, *attempts, report)
        if fields.get("status") in _MOVING:
            now = int(time.time())
            old = [
                b for b, since in self.state.in_flight_since(campaign_id).items() if now - since > self.stale_batch_s
            ]
            if old:
                busy = set(self.store.sending_batches(campaign_id, int(fields["batch_size"])))
                for batch_no in old:
                    if batch_no not in busy:
                        self.state.batch_done(campaign_id, batch_no, requeue=True)
                        report["requeued_batches"] += 1
                        context = {"campaign": campaign_id, "batch": batch_no}
                        log.warning(texts.LOG_STALE_BATCH, campaign_id, batch_no, extra=context)
        self.pipeline.settle(campaign_id)

    def _recover(
        self, campaign_id: str, owner: str, older_than: int, marks: set[int], trusted: set[str], report: dict
    ) -> None:
        """Settle one worker's claims in a campaign: its answers first, then its marks (if they survived)."""
        kept = self.state.answers(campaign_id, owner)
        answered: list[Outcome] = [decode_answer(message_id, text, owner) for message_id, text in kept.items()]
        settled = 0
        if answered:
            moved = self.pipeline.record_outcomes(campaign_id, answered)  # only rows it still claims move
            settled += sum(n for status, n in moved.items() if status != RecipientStatus.PENDING)
        marks_survived = owner in trusted
        claims = self.store.recover_claims(campaign_id, owner, sorted(marks) if marks_survived else None, older_than)
        if not marks_survived and claims["unknown"]:
            log.warning(texts.LOG_REDIS_LOST_MARKS, campaign_id, owner, claims["unknown"])
        if any(claims[k] for k in ("unknown", "pending", "sent", "failed")):
            settled_now = (RecipientStatus.UNKNOWN, RecipientStatus.SENT, RecipientStatus.FAILED)
            self.state.add_counts(campaign_id, {k: claims[k] for k in settled_now})
            self.state.add_errors(campaign_id, claims.get("errors") or {})
            settled += claims["sent"] + claims["failed"]
            report["unknown"] += claims["unknown"]
            report["released"] += claims["pending"]
            report["settled"] += settled
            log.warning(
                texts.LOG_DEAD_WORKER_CLAIMS,
                campaign_id,
                owner,
                claims["unknown"],
                claims["pending"],
                settled,
                extra={"campaign": campaign_id, "worker": owner},
            )
        self.state.end_sends(campaign_id, claims.get("ids") or [], {owner})  # their marks and answers have served
        if not older_than:
            self.state.forget_owner(campaign_id, owner)
