-- What WhatsApp says about templates, numbers and accounts, and what each message costs.

-- A send answer's messages[0].message_status when it was not "accepted" (held_for_quality_assessment,
-- paused), and the pricing the status notifications carried (the first one seen is kept).
ALTER TABLE instancia_sofia.leads_activos
    ADD COLUMN IF NOT EXISTS message_status text,
    ADD COLUMN IF NOT EXISTS pricing_category text,
    ADD COLUMN IF NOT EXISTS pricing_type text,
    ADD COLUMN IF NOT EXISTS pricing_model text,
    ADD COLUMN IF NOT EXISTS billable boolean;

-- A status kept before its message was recorded keeps its pricing for when it is matched.
ALTER TABLE instancia_sofia.webhook_orphans
    ADD COLUMN IF NOT EXISTS pricing_category text,
    ADD COLUMN IF NOT EXISTS pricing_type text,
    ADD COLUMN IF NOT EXISTS pricing_model text,
    ADD COLUMN IF NOT EXISTS billable boolean;

-- The latest known status of each template per language ('' when the notification named none), from
-- message_template_status_update notifications. Older news never replaces newer (event_at).
CREATE TABLE IF NOT EXISTS instancia_sofia.template_statuses (
    template    text NOT NULL,
    language    text NOT NULL DEFAULT '',
    template_id text,
    status      text NOT NULL,
    reason      text,
    event_at    timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (template, language)
);

-- The latest notification of each kind about one subject: 'quality' and 'account' (phone_number_quality_update,
-- account_update: the number's display digits, or the account id), 'alert' (account_alerts: the entity id).
CREATE TABLE IF NOT EXISTS instancia_sofia.whatsapp_signals (
    kind       text NOT NULL CHECK (kind IN ('quality', 'account', 'alert')),
    subject    text NOT NULL,
    event      text,
    detail     jsonb NOT NULL DEFAULT '{}'::jsonb,
    waba_id    text,
    event_at   timestamptz NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, subject)
);

-- The display number of each sender number, learned from the metadata of its notifications: quality and
-- account notifications name a number by its display digits only.
CREATE TABLE IF NOT EXISTS instancia_sofia.sender_numbers (
    phone_number_id      text PRIMARY KEY,
    display_phone_number text NOT NULL,
    waba_id              text,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS sender_numbers_display_idx ON instancia_sofia.sender_numbers (display_phone_number);
