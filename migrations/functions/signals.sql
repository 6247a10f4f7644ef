-- What WhatsApp's notifications say about templates, sender numbers and accounts (see 014_account_signals.sql).

-- Records one batch of notifications, in one call, oldest first; each kind keeps only its latest news per
-- subject. A repeat (Meta re-sends what was not answered fast) or an older notification changes nothing and
-- pauses nothing, so a campaign an operator resumed is not paused again by the same notification.
-- Signals are {kind, ...}:
--   number:   {phone_number_id, display, waba_id}            which display digits a sender number has
--   template: {template, language, template_id, event, reason, ts}
--   quality:  {subject (display digits), event, detail, waba_id, ts, pause}
--   alert / account: {subject, event, detail, waba_id, ts}
-- Returns {"recorded": n, "pause": [{campaign_id, kind, event, subject, template, language, ts}]}: the campaigns
-- of a template now PAUSED or DISABLED, and of a number whose quality signal asks for a pause, that are still
-- running, queued, scheduled or waiting (the caller pauses them through the pipeline).
CREATE OR REPLACE FUNCTION instancia_sofia.apply_signals(p_signals jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    s record;
    v_at timestamptz;
    v_latest boolean;
    v_recorded integer := 0;
    v_pause jsonb := '[]'::jsonb;
    v_open text[] := ARRAY['running', 'queued', 'scheduled', 'waiting'];
BEGIN
    FOR s IN
        SELECT * FROM jsonb_to_recordset(p_signals)
            AS x(kind text, phone_number_id text, display text, waba_id text, template text, language text,
                 template_id text, event text, reason text, subject text, detail jsonb, ts bigint, pause boolean)
        ORDER BY CASE WHEN kind = 'number' THEN 0 ELSE 1 END, ts
    LOOP
        v_at := to_timestamp(COALESCE(s.ts, extract(epoch FROM now())::bigint));
        IF s.kind = 'number' THEN
            INSERT INTO instancia_sofia.sender_numbers AS n (phone_number_id, display_phone_number, waba_id)
            VALUES (s.phone_number_id, s.display, s.waba_id)
            ON CONFLICT (phone_number_id) DO UPDATE
                SET display_phone_number = EXCLUDED.display_phone_number,
                    waba_id = COALESCE(EXCLUDED.waba_id, n.waba_id), updated_at = now()
                WHERE (n.display_phone_number, n.waba_id) IS DISTINCT FROM (EXCLUDED.display_phone_number,
                                                                             COALESCE(EXCLUDED.waba_id, n.waba_id));
            CONTINUE;
        ELSIF s.kind = 'template' THEN
            INSERT INTO instancia_sofia.template_statuses AS t (template, language, template_id, status, reason, event_at)
            VALUES (s.template, COALESCE(s.language, ''), s.template_id, s.event, s.reason, v_at)
            ON CONFLICT (template, language) DO UPDATE
                SET template_id = COALESCE(EXCLUDED.template_id, t.template_id), status = EXCLUDED.status,
                    reason = EXCLUDED.reason, event_at = EXCLUDED.event_at, updated_at = now()
                WHERE t.event_at < EXCLUDED.event_at
                   OR (t.event_at = EXCLUDED.event_at AND t.status IS DISTINCT FROM EXCLUDED.status);
            v_latest := FOUND;
            IF v_latest AND s.event IN ('PAUSED', 'DISABLED') THEN
                v_pause := v_pause || COALESCE((
                    SELECT jsonb_agg(jsonb_build_object('campaign_id', c.id, 'kind', 'template', 'event', s.event,
                                                        'template', c.template, 'language', c.language, 'ts', s.ts))
                    FROM instancia_sofia.campaigns c
                    WHERE c.template = s.template AND (COALESCE(s.language, '') = '' OR c.language = s.language)
                      AND c.status = ANY (v_open)), '[]'::jsonb);
            END IF;
        ELSE
            INSERT INTO instancia_sofia.whatsapp_signals AS w (kind, subject, event, detail, waba_id, event_at)
            VALUES (s.kind, s.subject, s.event, COALESCE(s.detail, '{}'::jsonb), s.waba_id, v_at)
            ON CONFLICT (kind, subject) DO UPDATE
                SET event = EXCLUDED.event, detail = EXCLUDED.detail,
                    waba_id = COALESCE(EXCLUDED.waba_id, w.waba_id), event_at = EXCLUDED.event_at, updated_at = now()
                WHERE w.event_at < EXCLUDED.event_at
                   OR (w.event_at = EXCLUDED.event_at AND w.event IS DISTINCT FROM EXCLUDED.event);
            v_latest := FOUND;
            IF v_latest AND s.kind = 'quality' AND s.pause THEN
                v_pause := v_pause || COALESCE((
                    SELECT jsonb_agg(jsonb_build_object('campaign_id', c.id, 'kind', 'quality', 'event', s.event,
                                                        'subject', s.subject, 'ts', s.ts))
                    FROM instancia_sofia.campaigns c
                    JOIN instancia_sofia.instancias_inputs i ON i.buzon = c.buzon
                    JOIN instancia_sofia.sender_numbers n ON n.phone_number_id = i.phone_number_id
                    WHERE n.display_phone_number = s.subject AND c.status = ANY (v_open)), '[]'::jsonb);
            END IF;
        END IF;
        IF v_latest THEN
            v_recorded := v_recorded + 1;
        END IF;
    END LOOP;
    RETURN jsonb_build_object('recorded', v_recorded, 'pause', v_pause);
END;
$$;

-- The latest known status of a template in a language (or in no language in particular), or null.
CREATE OR REPLACE FUNCTION instancia_sofia.template_status(p_template text, p_language text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('template', template, 'language', language, 'template_id', template_id,
                              'status', status, 'reason', reason, 'event_at', event_at)
    FROM instancia_sofia.template_statuses
    WHERE template = p_template AND language IN (COALESCE(p_language, ''), '')
    ORDER BY event_at DESC LIMIT 1;
$$;

-- One notification of whatsapp_signals as the API shows it.
CREATE OR REPLACE FUNCTION instancia_sofia.signal_json(w instancia_sofia.whatsapp_signals)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN w.kind IS NULL THEN NULL ELSE
        jsonb_build_object('evento', w.event, 'detalle', w.detail, 'waba_id', w.waba_id, 'fecha', w.event_at) END;
$$;

-- What estado-sistema shows of WhatsApp's notifications: per buzón its number's quality, last alert and
-- account event; the templates whose status WhatsApp reported; and alerts about the account as a whole.
CREATE OR REPLACE FUNCTION instancia_sofia.signals_overview()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'buzones', COALESCE((
            SELECT jsonb_agg(jsonb_build_object(
                       'buzon', i.buzon,
                       'phone_number_id', i.phone_number_id,
                       'display_phone_number', n.display_phone_number,
                       'calidad', (SELECT instancia_sofia.signal_json(w) FROM instancia_sofia.whatsapp_signals w
                                   WHERE w.kind = 'quality' AND w.subject = n.display_phone_number),
                       'alerta', (SELECT instancia_sofia.signal_json(w) FROM instancia_sofia.whatsapp_signals w
                                  WHERE w.kind = 'alert' AND w.subject IN (i.phone_number_id, n.display_phone_number)
                                  ORDER BY w.event_at DESC LIMIT 1),
                       'cuenta', (SELECT instancia_sofia.signal_json(w) FROM instancia_sofia.whatsapp_signals w
                                  WHERE w.kind = 'account' AND w.subject = n.display_phone_number))
                   ORDER BY i.buzon)
            FROM instancia_sofia.instancias_inputs i
            LEFT JOIN instancia_sofia.sender_numbers n ON n.phone_number_id = i.phone_number_id), '[]'::jsonb),
        'plantillas', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('plantilla', t.template, 'idioma', NULLIF(t.language, ''),
                                                'template_id', t.template_id, 'estado', t.status,
                                                'motivo', t.reason, 'fecha', t.event_at) ORDER BY t.event_at DESC)
            FROM (SELECT * FROM instancia_sofia.template_statuses ORDER BY event_at DESC LIMIT 50) t), '[]'::jsonb),
        'cuentas', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('tipo', w.kind, 'id', w.subject, 'evento', w.event,
                                                'detalle', w.detail, 'waba_id', w.waba_id, 'fecha', w.event_at)
                             ORDER BY w.event_at DESC)
            FROM (SELECT * FROM instancia_sofia.whatsapp_signals s
                  WHERE s.kind IN ('alert', 'account')
                    AND NOT EXISTS (SELECT 1 FROM instancia_sofia.sender_numbers n
                                    WHERE s.subject IN (n.phone_number_id, n.display_phone_number))
                  ORDER BY s.event_at DESC LIMIT 20) w), '[]'::jsonb));
$$;
