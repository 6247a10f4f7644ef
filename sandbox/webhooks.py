"""Status webhooks: signed sent/delivered/read/failed notifications for accepted messages, posted the way Meta does."""

from __future__ import annotations

import asyncio
import hashlib
import heapq
import hmac
import itertools
import json
import math
import sys
import time
from bisect import bisect_left
from collections import deque
from itertools import islice, permutations
from random import choice, random, uniform
from typing import Any

import aiohttp
import httptools
import orjson

from .poster import KeepAlivePoster
from .settings import SandboxSettings

SENT, DELIVERED, READ, FAILED = "sent", "delivered", "read", "failed"
STATUS_KINDS = (SENT, DELIVERED, READ, FAILED)

# Titles Meta gives the errors of a failed status; other codes get a generic one.
FAILURE_TITLES: dict[int, str] = {
    131000: "Something went wrong",
    131026: "Message undeliverable",
    131042: "Business eligibility payment issue",
    131047: "Re-engagement message",
    131048: "Spam rate limit hit",
    131049: "This message was not delivered to maintain healthy ecosystem engagement.",
    131050: "User has stopped marketing messages",
    131051: "Unsupported message type",
    131053: "Media upload error",
    130472: "User's number is part of an experiment",
}
_GENERIC_FAILURE = "Message failed to send"
# Retry n of a POST waits _RETRY_BASE_S * 2**(n-1): Meta backs off over hours, a test cannot wait that long.
_RETRY_BASE_S = 0.1
_CONVERSATION_S = 24 * 3600
# Every wrong order 2 or 3 statuses can be posted in; item i of a permutation is the slot of status i.
_DISORDERS = {n: [p for p in permutations(range(n)) if p != tuple(range(n))] for n in (2, 3)}
_encode_json = json.JSONEncoder(separators=(",", ":")).encode
_USER_AGENT = "facebookexternalua"


def _encode_body(body: dict) -> bytes:
    """A notification's bytes as Meta writes them: compact, anything outside ASCII escaped.

    orjson writes the same bytes as `json` for ASCII text but for DEL (which `json` escapes), about ten times
    faster; status notifications are nearly always pure ASCII, and the rest go through `json`.
    """
    try:
        raw = orjson.dumps(body)
        if raw.isascii() and b"\x7f" not in raw:
            return raw
    except TypeError:  # what orjson refuses (a lone surrogate in a client's callback data, say)
        pass
    return _encode_json(body).encode()


# A scheduled status: (due on the monotonic clock, tie-breaking sequence, status, event unix time, message).
Entry = tuple[float, int, str, int, "_Message"]


class _Message:
    """Webhook state of one accepted message: its plan, what was posted for it, and the hold that keeps its order."""

    __slots__ = (
        "busy",
        "callback_data",
        "category",
        "failure_code",
        "index",
        "out_of_order",
        "pending",
        "phone_number_id",
        "planned",
        "posted",
        "recipient_id",
        "waiting",
        "wamid",
    )

    def __init__(
        self, record: dict[str, Any], planned: tuple[str, ...], failure_code: int | None, out_of_order: bool
    ) -> None:
        """Take what the notifications need from the accepted-message record."""
        self.index: int = record["index"]
        self.wamid: str = record["wamid"]
        self.phone_number_id: str = record["phone_number_id"]
        self.recipient_id: str = record["wa_id"]
        self.callback_data: str | None = record.get("biz_opaque_callback_data")
        # Free-form text only goes out inside a service conversation; campaigns send marketing templates.
        self.category = "marketing" if record.get("type") == "template" else "service"
        self.failure_code = failure_code
        self.planned = planned
        self.out_of_order = out_of_order
        # True while one of its statuses is waiting in a batch or in a POST; later ones wait in `waiting`.
        self.busy = False
        self.waiting: list[Entry] | None = None
        # (status, event unix time, duplicate, post id, dropped) in the order the POSTs were settled.
        self.posted: list[tuple[str, int, bool, int, bool]] = []
        self.pending = len(planned)

    def to_json(self) -> dict[str, Any]:
        """Return the /_sandbox/webhooks item of this message."""
        return {
            "index": self.index,
            "wamid": self.wamid,
            "phone_number_id": self.phone_number_id,
            "recipient_id": self.recipient_id,
            "planned": list(self.planned),
            "out_of_order": self.out_of_order,
            "failure_code": self.failure_code,
            "pending": self.pending,
            "statuses": [
                {
                    "order": order,
                    "status": status,
                    "timestamp": str(timestamp),
                    "duplicate": duplicate,
                    "post": post,
                    "dropped": dropped,
                }
                for order, (status, timestamp, duplicate, post, dropped) in enumerate(self.posted, 1)
            ],
        }


class _Post:
    """One notification on its way: the exact body bytes and signature, and the statuses the body carries."""

    __slots__ = ("attempts", "body", "duplicate", "entries", "generation", "headers", "id")

    def __init__(
        self,
        post_id: int,
        body: bytes,
        headers: dict[str, str],
        entries: list[tuple[str, int, _Message]],
        generation: int,
        duplicate: bool = False,
    ) -> None:
        """Hold a built notification; retries and replays send these same bytes, as Meta does."""
        self.id = post_id
        self.body = body
        self.headers = headers
        self.entries = entries
        self.attempts = 0
        self.duplicate = duplicate
        self.generation = generation


class WebhookCounters:
    """What the webhook sender has done since the last reset."""

    __slots__ = (
        "attempts",
        "dropped",
        "duplicate_posts",
        "duplicates",
        "failures",
        "largest_batch",
        "last_error",
        "out_of_order",
        "posts",
        "retries",
        "skipped_delivered",
        "statuses",
    )

    def __init__(self) -> None:
        """Start at zero."""
        self.statuses = dict.fromkeys(STATUS_KINDS, 0)
        self.duplicates = 0
        self.posts = 0
        self.duplicate_posts = 0
        self.attempts = 0
        self.retries = 0
        self.failures = 0
        self.dropped = 0
        self.out_of_order = 0
        self.skipped_delivered = 0
        self.largest_batch = 0
        self.last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """Return the counters as the /_sandbox/webhooks shape."""
        result = {name: getattr(self, name) for name in self.__slots__}
        result["statuses"] = dict(self.statuses)
        return result


def failure_error(code: int) -> dict[str, Any]:
    """Build the errors[] item of a failed status in Meta's shape."""
    title = FAILURE_TITLES.get(code, _GENERIC_FAILURE)
    return {
        "code": code,
        "title": title,
        "message": title,
        "error_data": {"details": f"{title} (sandbox failed_statuses for this recipient)."},
    }


def conversation_id(phone_number_id: str, recipient_id: str) -> str:
    """Return a stable 32-hex conversation id for one sender and recipient, shaped like Meta's."""
    return hashlib.md5(f"{phone_number_id}:{recipient_id}".encode(), usedforsecurity=False).hexdigest()


def _report_crash(task: asyncio.Task[None]) -> None:
    """Print why the delivery loop died, since nothing awaits it and its error would otherwise go unseen."""
    if not task.cancelled() and task.exception() is not None:
        task.print_stack(file=sys.stderr)


class StatusWebhooks:
    """Plans the statuses of every accepted message and posts them, signed and batched, from one background loop.

    message_accepted() only pushes the planned statuses onto one heap; a single loop pops what is due, groups
    it into POSTs and starts at most webhook_concurrency of them at once. A message's next status waits until
    the POST carrying its previous one is settled, so statuses arrive in order unless out_of_order_share says
    otherwise.
    """

    def __init__(self) -> None:
        """Start switched off, with default settings, until the sandbox installs its own."""
        self._runner: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None
        self._poster: KeepAlivePoster | None = None  # the notification POSTs' connections (sandbox/poster.py)
        self._wake = asyncio.Event()
        # When the loop will next look at the heap on its own; an earlier new status must wake it.
        self._wake_at = math.inf
        # Number of flush() calls under way; while above 0 every scheduled status counts as due.
        self._hurry = 0
        self._closed = False
        self._generation = 0
        self._seq = itertools.count()
        self._post_ids = itertools.count(1)
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self.use_settings(SandboxSettings())
        self.reset()

    # ---- called by the sandbox --------------------------------------------------------------------------

    def use_settings(self, settings: SandboxSettings) -> None:
        """Install the options in force; statuses already planned keep their times but use the new URL and key."""
        self._settings = settings
        low, high = settings.webhook_delay_ms
        self._delay = (low / 1000.0, high / 1000.0)
        self._window = settings.webhook_batch_ms / 1000.0
        self._log_limit = settings.message_log_limit
        # Batch size, window or concurrency may have changed what the loop should do now.
        self._wake.set()

    def reset(self) -> None:
        """Forget every planned, pending and posted status and zero the counters; POSTs in flight are cancelled."""
        self._generation += 1
        for task in self._tasks:
            task.cancel()
        self._tasks = set()
        self._heap: list[Entry] = []
        self._ready: deque[Entry] = deque()
        self._retries: list[tuple[float, int, _Post]] = []
        self._replays: list[tuple[float, int, _Post]] = []
        self._tracked: dict[str, _Message] = {}
        self._order: deque[_Message] = deque()
        self._pending = 0
        self.counters = WebhookCounters()
        self._wake.set()
        self._resolve_idle()

    def message_accepted(self, record: dict[str, Any]) -> None:
        """Plan the statuses of one accepted message (the /_sandbox/messages item); must not block or await."""
        settings = self._settings
        if not settings.webhook_url or self._closed:
            return
        if self._runner is None:
            self._start()
        failure = settings.failed_statuses.get(record["wa_id"]) if settings.failed_statuses else None
        if failure:
            planned: tuple[str, ...] = (SENT, FAILED)
        elif random() < settings.delivered_share:
            if random() < settings.read_share:
                if settings.skip_delivered_share and random() < settings.skip_delivered_share:
                    planned = (SENT, READ)
                    self.counters.skipped_delivered += 1
                else:
                    planned = (SENT, DELIVERED, READ)
            else:
                planned = (SENT, DELIVERED)
        else:
            planned = (SENT,)
        count = len(planned)
        disorder = None
        if count > 1 and settings.out_of_order_share and random() < settings.out_of_order_share:
            disorder = choice(_DISORDERS[count])
            self.counters.out_of_order += 1
        message = _Message(record, planned, failure, disorder is not None)
        if message.category == "marketing" and settings.template_categories:
            message.category = settings.template_categories.get(record.get("template") or "", "marketing")
        self._track(message)

        low, high = self._delay
        offsets = list(itertools.accumulate(uniform(low, high) for _ in planned))
        now = time.monotonic()
        wall = record["received_at"]
        heap, seq = self._heap, self._seq
        if disorder is None:
            for i, status in enumerate(planned):
                heapq.heappush(heap, (now + offsets[i], next(seq), status, int(wall + offsets[i]), message))
        else:
            # The event times stay in true order; only the posting slots are shuffled. Pushing slot by slot
            # keeps the wrong order even when the delays are zero and the due times tie.
            for slot, i in enumerate(sorted(range(count), key=disorder.__getitem__)):
                heapq.heappush(heap, (now + offsets[slot], next(seq), planned[i], int(wall + offsets[i]), message))
        self._pending += count
        if self._hurry or now + offsets[0] + self._window < self._wake_at:
            self._wake.set()

    async def flush(self, timeout: float = 30.0) -> bool:
        """Make every planned status and replay due now and wait until all POSTs are settled; False on timeout.

        Retries keep their backoff: they stand for the receiver's failure, which a flush does not undo.
        """
        if self._is_idle():
            return True
        if self._runner is None:
            self._start()
        waiter = asyncio.get_running_loop().create_future()
        self._idle_waiters.append(waiter)
        self._hurry += 1
        self._wake.set()
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._hurry -= 1
            if waiter in self._idle_waiters:
                self._idle_waiters.remove(waiter)

    def page(self, *, since: int = 0, limit: int = 1000, wamid: str | None = None) -> dict[str, Any]:
        """Return the counters and the statuses posted for messages with index >= since (or for one wamid)."""
        order = self._order
        if wamid is not None:
            message = self._tracked.get(wamid)
            items = [] if message is None else [message]
            next_since = since
        else:
            start = bisect_left(order, since, key=lambda m: m.index)
            items = list(islice(order, start, start + limit))
            next_since = items[-1].index + 1 if items else max(since, order[-1].index + 1 if order else 0)
        return {
            **self.summary(),
            "total": len(order),
            "next_since": next_since,
            "messages": [message.to_json() for message in items],
        }

    def summary(self) -> dict[str, Any]:
        """Return whether webhooks are on, how many statuses are still to settle, POSTs in flight, and the counters."""
        return {
            "enabled": bool(self._settings.webhook_url),
            "pending": self._pending,
            "in_flight": len(self._tasks),
            "counters": self.counters.to_json(),
        }

    async def close(self) -> None:
        """Cancel the loop and every POST in flight and close the HTTP session; nothing pending is sent."""
        self._closed = True
        tasks = list(self._tasks)
        if self._runner is not None:
            tasks.append(self._runner)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        self._runner = None
        for waiter in self._idle_waiters:
            waiter.cancel()
        self._idle_waiters.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._poster is not None:
            await self._poster.close()
            self._poster = None

    # ---- the delivery loop ----------------------------------------------------------------------------

    def _start(self) -> None:
        """Start the delivery loop in the running event loop."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # Outside the server's loop nothing can be posted yet; the plan waits for the next call inside it.
            return
        self._runner = loop.create_task(self._run())
        self._runner.add_done_callback(_report_crash)

    async def _run(self) -> None:
        """Pop due statuses, post them in batches, and sleep until the next thing is due or something changes."""
        # One session for every POST: reused keep-alive connections matter at hundreds of POSTs per second.
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            cookie_jar=aiohttp.DummyCookieJar(),
            headers={"User-Agent": _USER_AGENT},
        )
        loop = asyncio.get_running_loop()
        while True:
            self._wake.clear()
            now = time.monotonic()
            self._collect(now)
            self._dispatch(now)
            self._resolve_idle()
            handle = None
            if len(self._tasks) >= self._settings.webhook_concurrency:
                # Only a settling POST can change anything now, so new statuses need not wake the loop.
                self._wake_at = -math.inf
            else:
                self._wake_at = self._next_wake()
                if self._wake_at < math.inf:
                    handle = loop.call_later(max(0.0, self._wake_at - time.monotonic()), self._wake.set)
            try:
                await self._wake.wait()
            finally:
                if handle is not None:
                    handle.cancel()

    def _collect(self, now: float) -> None:
        """Move due statuses from the heap into the ready queue, holding back those whose message is busy."""
        heap, ready = self._heap, self._ready
        horizon = math.inf if self._hurry else now
        while heap and heap[0][0] <= horizon:
            entry = heapq.heappop(heap)
            message = entry[4]
            if message.busy:
                if message.waiting is None:
                    message.waiting = [entry]
                else:
                    message.waiting.append(entry)
            else:
                message.busy = True
                ready.append(entry)

    def _dispatch(self, now: float) -> None:
        """Start POSTs while there are free slots: due retries and replays first, then batches of ready statuses."""
        limit = self._settings.webhook_concurrency
        tasks = self._tasks
        retries, replays = self._retries, self._replays
        while len(tasks) < limit and retries and retries[0][0] <= now:
            self._launch(heapq.heappop(retries)[2])
        while len(tasks) < limit and replays and (self._hurry or replays[0][0] <= now):
            self._launch(heapq.heappop(replays)[2])
        ready = self._ready
        batch_max = self._settings.webhook_batch_max
        while (
            len(tasks) < limit
            and ready
            and (self._hurry or len(ready) >= batch_max or ready[0][0] + self._window <= now)
        ):
            self._launch([ready.popleft() for _ in range(min(batch_max, len(ready)))])

    def _next_wake(self) -> float:
        """Return when the loop, with a free slot, has something to do next on its own."""
        wake = math.inf
        if self._ready:
            wake = self._ready[0][0] + self._window
        if self._heap:
            # Waking when the first due status has waited its window lets the others due by then join it.
            wake = min(wake, self._heap[0][0] + self._window)
        if self._retries:
            wake = min(wake, self._retries[0][0])
        if self._replays:
            wake = min(wake, self._replays[0][0])
        return wake

    def _build(self, entries: list[Entry]) -> _Post:
        """Render due statuses as one signed notification, one entry per phone_number_id."""
        settings = self._settings
        groups: dict[str, list[dict[str, Any]]] = {}
        carried: list[tuple[str, int, _Message]] = []
        for _, _, status, timestamp, message in entries:
            item: dict[str, Any] = {
                "id": message.wamid,
                "status": status,
                "timestamp": str(timestamp),
                "recipient_id": message.recipient_id,
            }
            if status == FAILED:
                item["errors"] = [failure_error(message.failure_code or 131000)]
            elif status != READ:
                # Meta reports the billing conversation with sent and delivered, not with read.
                conversation: dict[str, Any] = {"id": conversation_id(message.phone_number_id, message.recipient_id)}
                if status == SENT:
                    conversation["expiration_timestamp"] = str(timestamp + _CONVERSATION_S)
                conversation["origin"] = {"type": message.category}
                item["conversation"] = conversation
                # Per-message pricing (since July 2025): templates are charged ("regular"); a free-form reply
                # inside the customer-service window is free. `billable` is deprecated but still sent.
                free = message.category == "service"
                item["pricing"] = {
                    "billable": not free,
                    "pricing_model": "PMP",
                    "category": message.category,
                    "type": "free_customer_service" if free else "regular",
                }
            if message.callback_data is not None:
                item["biz_opaque_callback_data"] = message.callback_data
            group = groups.get(message.phone_number_id)
            if group is None:
                group = groups[message.phone_number_id] = []
            group.append(item)
            carried.append((status, timestamp, message))
        display = settings.display_phone_numbers
        body = {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": settings.waba_id,
                    "changes": [
                        {
                            "value": {
                                "messaging_product": "whatsapp",
                                "metadata": {
                                    "display_phone_number": display.get(number, number),
                                    "phone_number_id": number,
                                },
                                "statuses": statuses,
                            },
                            "field": "messages",
                        }
                    ],
                }
                for number, statuses in groups.items()
            ],
        }
        raw = _encode_body(body)
        digest = hmac.new(settings.app_secret.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"Content-Type": "application/json", "X-Hub-Signature-256": f"sha256={digest}"}
        self.counters.largest_batch = max(self.counters.largest_batch, len(entries))
        return _Post(next(self._post_ids), raw, headers, carried, self._generation)

    def _launch(self, work: _Post | list[Entry]) -> None:
        """Start one POST, of a built notification or of a batch still to render, as its own task.

        Only POSTs get tasks, never single statuses.
        """
        task = asyncio.get_running_loop().create_task(self._deliver(work))
        self._tasks.add(task)

    async def _deliver(self, work: _Post | list[Entry]) -> None:
        """Render the batch if needed, make one attempt at the POST, and settle what follows from its outcome."""
        try:
            # Rendering here rather than in the loop spreads the JSON and HMAC work of several batches over
            # separate event loop steps, so message requests are answered in between.
            post = self._build(work) if isinstance(work, list) else work
            outcome = await self._attempt(post)
        finally:
            # Removed here rather than in a done callback, so the loop sees the slot free as soon as it wakes.
            self._tasks.discard(asyncio.current_task())  # type: ignore[arg-type]
        self._finish(post, outcome)

    async def _attempt(self, post: _Post) -> bool | None:
        """POST the body once: True when answered 2xx, False on any other answer or error, None if switched off."""
        settings = self._settings
        if not settings.webhook_url or self._session is None:
            return None
        post.attempts += 1
        self.counters.attempts += 1
        if self._poster is None or self._poster.url != settings.webhook_url:
            if self._poster is not None:
                await self._poster.close()
            self._poster = KeepAlivePoster(settings.webhook_url, _USER_AGENT)
        try:
            status = await self._poster.post(post.body, post.headers, settings.webhook_timeout_s)
            if 200 <= status < 300:
                return True
            self.counters.last_error = f"HTTP {status}"
        except (TimeoutError, OSError, ValueError, httptools.HttpParserError) as exc:
            self.counters.last_error = f"{type(exc).__name__}: {exc}"
        return False

    def _finish(self, post: _Post, outcome: bool | None) -> None:
        """Record a settled POST, or schedule its retry; then let the messages it carried go on."""
        if post.generation != self._generation:
            return
        counters = self.counters
        settings = self._settings
        if outcome is False and post.attempts <= settings.webhook_retries:
            counters.retries += 1
            due = time.monotonic() + _RETRY_BASE_S * 2 ** (post.attempts - 1)
            heapq.heappush(self._retries, (due, next(self._seq), post))
            self._wake.set()
            return
        posted = outcome is True
        if posted:
            counters.posts += 1
            if post.duplicate:
                counters.duplicate_posts += 1
                counters.duplicates += len(post.entries)
        else:
            if outcome is False:
                counters.failures += 1
            counters.dropped += len(post.entries)
        for status, timestamp, message in post.entries:
            message.posted.append((status, timestamp, post.duplicate, post.id, not posted))
            if not post.duplicate:
                if posted:
                    counters.statuses[status] += 1
                message.pending -= 1
                self._pending -= 1
                self._release(message)
        if posted and not post.duplicate and settings.duplicate_share and random() < settings.duplicate_share:
            # Meta re-sends a notification it thinks went unanswered: the same bytes and signature, later.
            replay = _Post(next(self._post_ids), post.body, post.headers, post.entries, post.generation, duplicate=True)
            low, high = self._delay
            heapq.heappush(self._replays, (time.monotonic() + uniform(low, high), next(self._seq), replay))
        self._wake.set()
        self._resolve_idle()

    def _release(self, message: _Message) -> None:
        """Let a message's held-back statuses go on now that the POST with its previous one is settled."""
        message.busy = False
        waiting = message.waiting
        if waiting:
            message.waiting = None
            for entry in waiting:
                heapq.heappush(self._heap, entry)

    # ---- bookkeeping ----------------------------------------------------------------------------------

    def _track(self, message: _Message) -> None:
        """Keep a message for inspection, dropping the oldest beyond message_log_limit."""
        if len(self._order) >= self._log_limit:
            oldest = self._order.popleft()
            self._tracked.pop(oldest.wamid, None)
        self._order.append(message)
        self._tracked[message.wamid] = message

    def _is_idle(self) -> bool:
        """Tell whether nothing is planned, queued, retried, replayed or in flight."""
        return not (self._heap or self._ready or self._retries or self._replays or self._tasks)

    def _resolve_idle(self) -> None:
        """Wake the flush() calls waiting, once everything is settled."""
        if self._idle_waiters and self._is_idle():
            for waiter in self._idle_waiters:
                if not waiter.done():
                    waiter.set_result(None)
            self._idle_waiters.clear()
