"""Every Redis key the service uses, spelled once.

Campaign keys are used only by `tasks.state`, the one module that reads and writes a campaign's live
state; the other keys belong to the module named beside them.
"""

from __future__ import annotations

PREFIX = "wcq:"

# tasks.state: one hash per campaign and the structures around it.
CAMPAIGN = PREFIX + "campaign:"
ACTIVE_CAMPAIGNS = PREFIX + "campaigns:active"


# tasks.heartbeat: one expiring key per live worker, the workers ever seen, and those found missing.
WORKER = PREFIX + "worker:"
KNOWN_WORKERS = PREFIX + "workers:known"
SUSPECT_WORKERS = PREFIX + "workers:suspect"
# tasks.heartbeat: what each worker publishes on every beat (last beat, tasks running, messages sent).
WORKER_ACTIVITY = PREFIX + "workers:activity:"

# tasks.recovery: only one sweeper pass at a time, and when the latest pass began (read by tasks.heartbeat).
SWEEP_LOCK = PREFIX + "sweep:lock"
SWEEP_LAST_PASS = PREFIX + "sweep:last_pass"

# tasks.webhooks: verified notification bodies waiting for a worker.
WEBHOOK_INBOX = PREFIX + "webhooks:inbox"
# Set while a drain task is on its way or running; pushes that find the inbox empty ask for one only without it.
WEBHOOK_DRAIN = PREFIX + "webhooks:drain"
# tasks.webhooks: the bodies a worker has taken and not applied yet, one list per worker (a dead worker's go back).
WEBHOOK_TAKEN = PREFIX + "webhooks:taken:"

# tasks.ratelimit: the send schedule of each sender number.
RATE = PREFIX + "rate:"

# webapi.limits: flask-limiter's request counters per caller.
RATE_LIMITS = PREFIX + "limit"

# tasks.state: the run of transient failures of each sender number (an outage shows as a long run).
NUMBER_FAILURES = PREFIX + "failures:"

# tasks.portfolio: the recipients each business portfolio messaged in the moving 24 h (hashed numbers).
PORTFOLIO_RECIPIENTS = PREFIX + "portfolio:"
# webapi.templates: a WABA's listing of one template name (its items only, never the token), kept briefly.
TEMPLATES = PREFIX + "templates:"
