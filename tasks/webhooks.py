"""Status webhooks: the API only queues verified bodies in Redis; a task applies them to the store."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import redis

from tasks import jsoncodec, keys, metrics, portfolio
from tasks.account_signals import AccountSignals
from tasks.optouts import OptOutPolicy, limited_of, optouts_of
from tasks.state import LiveState
from tasks.store.base import Store

log = logging.getLogger("tasks.webhooks")

_STATUSES = ("sent", "delivered", "read", "failed")
# Pricing types of messages that are not charged (PMP); `billable` is deprecated, the type decides.
_FREE_TYPES = frozenset({"free_customer_service", "free_entry_point"})


# Moves up to ARGV[1] bodies from the front of the inbox to the taking worker's list, in one step: a
# worker that dies before applying them leaves them there, and the sweeper puts them back.
# An empty inbox ends the drain in the same step (its flag goes): a body pushed after that asks for the next.
_TAKE = """
local bodies = redis.call('LRANGE', KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #bodies > 0 then
  redis.call('LTRIM', KEYS[1], #bodies, -1)
  redis.call('RPUSH', KEYS[2], unpack(bodies))
else
  redis.call('DEL', KEYS[3])
end
return bodies
"""

# Appends bodies; returns 1 when a drain must be asked for: they found the inbox empty and no drain is on its
# way (while one runs it takes them with its next step). The flag outlives a lost drain task by DRAIN_FLAG_S
# at most; the sweeper asks for a drain whenever bodies wait, flag or not.
_PUSH = """
local n = redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
if n == #ARGV - 1 and redis.call('SET', KEYS[2], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 1
end
return 0
"""

#: Seconds a drain's flag lasts if its task is lost (a drain runs for at most 20 s).
DRAIN_FLAG_S = 60

# Returns a worker's taken bodies to the front of the inbox, in their order.
_GIVE_BACK = """
local bodies = redis.call('LRANGE', KEYS[2], 0, -1)
for i = #bodies, 1, -1 do redis.call('LPUSH', KEYS[1], bodies[i]) end
redis.call('DEL', KEYS[2])
return #bodies
"""


class WebhookInbox:
    """Verified notification bodies waiting in Redis for a worker, with one drain task scheduled at a time."""

    def __init__(self, client: redis.Redis):
        self.redis = client
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._push = client.register_script(_PUSH)

    def push(self, raw_body: bytes) -> bool:
        """Keep a verified notification body; True when a drain task should be scheduled now.

        One call per notification: a drain is asked for when this body found the inbox empty and no drain
        is on its way or running (a running one takes bodies until the inbox is empty, and its last, empty
        take clears its flag in the same step). So a steady stream costs one drain task at a time, not one
        per time a drain caught up. A drain task lost with its worker is made up for by the sweeper (see
        `Sweeper`) and by beat's periodic drain.
        """
        return self.push_many([raw_body])

    def push_many(self, raw_bodies: list[bytes]) -> bool:
        """Keep several verified bodies in one call, in their order; True when a drain should be scheduled."""
        return int(self._push(keys=[keys.WEBHOOK_INBOX, keys.WEBHOOK_DRAIN], args=[DRAIN_FLAG_S, *raw_bodies])) == 1

    def take(self, count: int, owner: str) -> list[str] | None:
        """Up to `count` bodies, oldest first, kept under `owner` until `applied`; None once the inbox is
        empty."""
        bodies = self._take(keys=[keys.WEBHOOK_INBOX, keys.WEBHOOK_TAKEN + owner, keys.WEBHOOK_DRAIN], args=[count])
        return bodies or None

    def applied(self, owner: str) -> None:
        """The bodies `owner` took are in the store."""
        self.redis.delete(keys.WEBHOOK_TAKEN + owner)

    def put_back(self, owner: str) -> int:
        """Return the bodies `owner` took to the front (they were not stored): nothing acknowledged is lost."""
        return int(self._give_back(keys=[keys.WEBHOOK_INBOX, keys.WEBHOOK_TAKEN + owner]))

    def takers(self) -> list[str]:
        """Workers holding bodies they took and have not applied."""
        return [k[len(keys.WEBHOOK_TAKEN) :] for k in self.redis.scan_iter(match=keys.WEBHOOK_TAKEN + "*", count=1000)]

    def size(self) -> int:
        """Bodies waiting."""
        return self.redis.llen(keys.WEBHOOK_INBOX)


def statuses_of(body: dict) -> list[dict]:
    """Flatten a notification into the statuses apply_statuses takes (other change types are ignored)."""
    found = []
    for entry in body.get("entry") or []:
        for change in entry.get("changes") or []:
            value = change.get("value") or {}
            for status in value.get("statuses") or []:
                if not isinstance(status, dict) or status.get("status") not in _STATUSES:
                    continue
                error = (status.get("errors") or [{}])[0] or {}
                try:
                    ts = int(status.get("timestamp"))  # type: ignore[arg-type]  # None lands in the except
                except (TypeError, ValueError):
                    ts = int(time.time())
                item = {
                    "wamid": status.get("id"),
                    "status": status["status"],
                    "ts": ts,
                    "callback": status.get("biz_opaque_callback_data"),
                    "error_code": error.get("code"),
                    "error_detail": (
                        (error.get("error_data") or {}).get("details") or error.get("message") or error.get("title")
                    ),
                }
                if "pricing" in status or "conversation" in status:
                    _add_pricing(item, status)
                found.append(item)
    return found


def _add_pricing(item: dict, status: dict) -> None:
    """Copy a status's pricing into what apply_statuses takes: category, type, model and whether it is charged.

    Per-message pricing (PMP) says `type` regular (charged) or free_*; `billable` is deprecated and decides
    only when there is no type. A status with only the older `conversation` object gives its origin type as
    the category and counts as billable unless that origin is a free one (service, free entry points).
    """
    pricing = status.get("pricing")
    if isinstance(pricing, dict) and isinstance(pricing.get("category"), str):
        kind = pricing.get("type")
        item["pricing_category"] = pricing["category"].lower()[:40]
        item["pricing_type"] = kind[:40] if isinstance(kind, str) else None
        item["pricing_model"] = str(pricing.get("pricing_model") or "")[:20] or None
        item["billable"] = kind not in _FREE_TYPES if isinstance(kind, str) else pricing.get("billable") is True
        return
    conversation = status.get("conversation")
    origin = conversation.get("origin") if isinstance(conversation, dict) else None
    category = origin.get("type") if isinstance(origin, dict) else None
    if isinstance(category, str) and category:
        item["pricing_category"] = category.lower()[:40]
        item["pricing_type"] = None
        item["pricing_model"] = "CBP"
        item["billable"] = category.lower() not in ("service", "free_entry_point", "referral_conversion")


class WebhookApplier:
    """Drains the inbox in batches, applies the statuses to the store and moves the campaigns' counters."""

    def __init__(
        self,
        store: Store,
        state: LiveState,
        inbox: WebhookInbox,
        owner: str,
        signals: AccountSignals | None = None,
        *,
        schedule: Callable[[], None] | None = None,
        optouts: OptOutPolicy | None = None,
        on_deferred: Callable[[list[str]], object] | None = None,
        batch_max: int = 500,
        gather_s: float = 0.0,
    ):
        self.store = store
        self.state = state
        self.inbox = inbox
        self.owner = owner  # this worker: the bodies it takes are kept under its name until applied
        self.signals = signals  # template, quality and account notifications (recorded once per batch)
        self.schedule = schedule  # asks for the next drain when this one runs out of time
        self.optouts = optouts or OptOutPolicy()  # which notifications are opt-outs, and for which buzones
        # Told which campaigns got recipients deferred by a failed status (131049), to keep them open.
        self.on_deferred = on_deferred
        # Past about 500 statuses a call costs PostgreSQL more per status, not less (docs/benchmarks.md,
        # eighth round).
        self.batch_max = batch_max
        # Under a steady stream a drain that takes at once finds only what came while it applied the last
        # batch: each take, store call and counter update then carries a few dozen statuses.
        self.gather_s = gather_s

    def process_inbox(self, max_bodies: int | None = None, budget_s: float = 20.0) -> dict:
        """Apply what is queued, for at most `budget_s` seconds, in batches of at most `max_bodies`."""
        max_bodies = max_bodies or self.batch_max
        report = {"bodies": 0, "statuses": 0, "applied": 0, "orphans": 0, "batches": 0}
        deadline = time.monotonic() + budget_s
        taken_at = None
        while time.monotonic() < deadline:
            if taken_at is not None and self.gather_s > 0:
                self._gather(taken_at, max_bodies, deadline)
            taken_at = time.monotonic()
            bodies = self.inbox.take(max_bodies, self.owner)
            if bodies is None:
                break
            statuses = []
            signals: list[dict] = []
            optouts: list[dict] = []
            limited: list[str] = []
            capabilities = []
            for raw in bodies:
                try:
                    body = jsoncodec.loads(raw)
                    statuses.extend(statuses_of(body))
                    if self.signals is not None:
                        signals.extend(self.signals.parse(body))
                    optouts.extend(optouts_of(body, self.optouts))
                    limited.extend(limited_of(body))
                    capabilities.extend(portfolio.capability_updates(body))
                except (ValueError, AttributeError, TypeError):
                    log.warning("ignored a webhook body that is not a notification")
            try:
                result = self.store.apply_statuses(statuses)
                if signals:
                    assert self.signals is not None
                    self.signals.apply(signals)
                if optouts:  # applied again with the bodies if this fails: a repeat changes nothing
                    self.store.apply_optouts(optouts, self.optouts.all_buzones)
                deferred = self._defer(limited) if limited else {}
                portfolio.apply_capability_updates(self.store, capabilities)
            except Exception:
                self.inbox.put_back(self.owner)
                raise
            self.inbox.applied(self.owner)  # stored (applying them again would change nothing)
            metrics.WEBHOOK_BODIES.inc(len(bodies))
            metrics.WEBHOOK_STATUSES.labels("applied").inc(result["applied"])
            metrics.WEBHOOK_STATUSES.labels("orphan").inc(result["orphans"])
            self._apply_deltas(result["deltas"])
            if deferred:
                self._apply_deltas({c: {"failed": -n, "deferred": n, "e:131049": -n} for c, n in deferred.items()})
                if self.on_deferred is not None:
                    self.on_deferred(sorted(deferred))
            report["batches"] += 1
            report["bodies"] += len(bodies)
            report["statuses"] += len(statuses)
            report["applied"] += result["applied"]
            report["orphans"] += result["orphans"]
        else:
            # Out of time with bodies left: this drain's flag still stands, so no push asks for the next one.
            if self.schedule is not None:
                self.schedule()
        rematched = self.store.rematch_orphans()
        metrics.WEBHOOK_STATUSES.labels("rematched").inc(rematched["applied"])
        self._apply_deltas(rematched["deltas"])
        report["applied"] += rematched["applied"]
        return report

    def _gather(self, taken_at: float, max_bodies: int, deadline: float) -> None:
        """Before the next take: wait for more bodies while some, but less than a batch, are waiting.

        An empty inbox is taken at once (the empty take ends the drain and clears its flag, so the next push
        asks for a new one), as is a full batch; the statuses are applied at most `gather_s` later.
        """
        until = min(taken_at + self.gather_s, deadline)
        waiting = self.inbox.size()
        if 0 < waiting < max_bodies and until > time.monotonic():
            time.sleep(until - time.monotonic())

    def _defer(self, wamids: list[str]) -> dict[str, int]:
        """Messages reported failed for the per-user marketing limit wait for their one retry instead (after
        apply_statuses failed them; a repeat moves nothing). Returns how many per campaign."""
        if self.optouts.marketing_retry_s <= 0:
            return {}
        return self.store.defer_reported(wamids, time.time() + self.optouts.marketing_retry_s)

    def _apply_deltas(self, deltas: dict[str, dict[str, int]]) -> None:
        """Move Redis counters by what the store changed (failures also by error code)."""
        for campaign_id, changes in deltas.items():
            counts = {k: v for k, v in changes.items() if not k.startswith("e:")}
            errors = {k[2:]: {"count": v} for k, v in changes.items() if k.startswith("e:")}
            if self.state.exists(campaign_id):
                self.state.add_counts(campaign_id, counts)
                self.state.add_errors(campaign_id, errors)
                self.state.stamp_delivery(campaign_id, bool(counts.get("delivered")), bool(counts.get("read")))
