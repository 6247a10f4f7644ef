-- Who may call the API and what they did: API keys (only their hash), roles of Supabase users, the audit
-- log, and who created each campaign. Their functions are in functions/security.sql.

CREATE TABLE IF NOT EXISTS instancia_sofia.api_keys (
    name         text PRIMARY KEY,
    key_hash     text NOT NULL UNIQUE,
    role         text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    buzones      text[],
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_used_at timestamptz,
    revoked_at   timestamptz
);

CREATE TABLE IF NOT EXISTS instancia_sofia.api_users (
    user_id    text PRIMARY KEY,
    email      text,
    role       text NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
    buzones    text[],
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS instancia_sofia.audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    actor       text,
    actor_email text,
    actor_kind  text NOT NULL,
    action      text NOT NULL,
    campaign_id text,
    buzon       text,
    status_code integer NOT NULL,
    outcome     text NOT NULL,
    ip          text,
    user_agent  text,
    details     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON instancia_sofia.audit_log (at DESC, id DESC);
CREATE INDEX IF NOT EXISTS audit_log_campaign_idx ON instancia_sofia.audit_log (campaign_id, at DESC)
    WHERE campaign_id IS NOT NULL;

-- campaign_json() is to_jsonb(row), so the new column shows in get_campaign and list_campaigns as created_by.
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS created_by text;
CREATE INDEX IF NOT EXISTS campaigns_buzon_created_idx ON instancia_sofia.campaigns (buzon, created_at DESC);
