-- Campaigns that start later or wait (a schedule, quiet hours, a portfolio's daily limit), and the business
-- portfolios whose messaging limit every buzón of theirs shares.

-- 'scheduled': stored, starts at resume_at. 'waiting': started, holds until resume_at (outside its sending
-- window, or its portfolio's daily budget used up), then continues by itself.
ALTER TABLE instancia_sofia.campaigns DROP CONSTRAINT IF EXISTS campaigns_status_check;
ALTER TABLE instancia_sofia.campaigns ADD CONSTRAINT campaigns_status_check
    CHECK (status IN ('queued', 'scheduled', 'running', 'waiting', 'paused', 'cancelled', 'completed', 'failed'));
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS scheduled_for timestamptz;
-- The IANA zone that programar_para without an offset and the sending window are read in.
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS time_zone text NOT NULL DEFAULT 'America/Caracas';
-- 'HH:MM-HH:MM' (seconds allowed), or '' for always.
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS send_window text NOT NULL DEFAULT '';
-- When a scheduled or waiting campaign is due to (re)start; NULL in every other status.
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS resume_at timestamptz;
CREATE INDEX IF NOT EXISTS campaigns_due_idx ON instancia_sofia.campaigns (resume_at)
    WHERE status IN ('scheduled', 'waiting');

-- A business portfolio: its messaging limit (unique recipients per moving 24 h; NULL is unlimited) and the
-- WhatsApp Business Accounts whose business_capability_update notifications speak for it.
CREATE TABLE IF NOT EXISTS instancia_sofia.portfolios (
    id              text PRIMARY KEY,
    messaging_limit integer CHECK (messaging_limit IS NULL OR messaging_limit > 0),
    waba_ids        text[] NOT NULL DEFAULT '{}',
    limit_source    text NOT NULL DEFAULT 'operator',
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE instancia_sofia.instancias_inputs
    ADD COLUMN IF NOT EXISTS portfolio_id text REFERENCES instancia_sofia.portfolios (id);
