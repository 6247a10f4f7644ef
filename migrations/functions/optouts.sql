-- Opt-outs (the suppression list) and the recipients deferred by the per-user marketing limit (131049).
-- A suppression's buzón is '*' when it holds for every buzón (OPTOUT_SCOPE=global).

-- One audit entry for an opt-out change that no HTTP request made (a webhook or a send answer).
CREATE OR REPLACE FUNCTION instancia_sofia.audit_optout(
    p_action text, p_buzon text, p_phone text, p_source text, p_campaign_id text, p_detail text)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.audit_log (actor, actor_kind, action, campaign_id, buzon, status_code, outcome, details)
    VALUES ('whatsapp', 'whatsapp', p_action, p_campaign_id, p_buzon, 0, 'ok',
            jsonb_strip_nulls(jsonb_build_object('telefono', p_phone, 'origen', p_source, 'detalle', p_detail)));
$$;

-- Moves one (buzón, phone) to `p_active` as of `p_at`, unless the row already holds a newer event (WhatsApp's
-- notifications come in any order). Returns whether the opt-out was switched on or off by this event.
CREATE OR REPLACE FUNCTION instancia_sofia.set_suppression(
    p_buzon text, p_phone text, p_active boolean, p_source text, p_reason text, p_at timestamptz,
    p_campaign_id text, p_actor text)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    v_old record;
BEGIN
    INSERT INTO instancia_sofia.suppressions (buzon, phone, active, source, reason, event_at, campaign_id, actor)
    VALUES (p_buzon, p_phone, p_active, p_source, p_reason, p_at, p_campaign_id, p_actor)
    ON CONFLICT (buzon, phone) DO NOTHING;
    IF FOUND THEN
        -- A first "resume" is kept too (inactive): it makes an older "stop" that arrives later harmless.
        RETURN p_active;
    END IF;
    SELECT active, event_at INTO v_old FROM instancia_sofia.suppressions
    WHERE buzon = p_buzon AND phone = p_phone FOR UPDATE;
    IF v_old.event_at > p_at THEN
        RETURN false;  -- older news than what the row holds
    END IF;
    IF v_old.active = p_active THEN
        UPDATE instancia_sofia.suppressions SET event_at = p_at, updated_at = now()
        WHERE buzon = p_buzon AND phone = p_phone;
        RETURN false;
    END IF;
    UPDATE instancia_sofia.suppressions
    SET active = p_active, source = p_source, reason = p_reason, event_at = p_at, campaign_id = p_campaign_id,
        actor = p_actor, updated_at = now()
    WHERE buzon = p_buzon AND phone = p_phone;
    RETURN true;
END;
$$;

-- Applies opt-out events from webhooks, oldest first: [{phone_number_id, phone, action: stop|resume, ts,
-- source: user_preferences|keyword, detail}]. With p_all the opt-out holds for every buzón ('*'); otherwise
-- for the buzones of that phone_number_id. Every change is audited. Returns {changed, ignored, unmatched}.
CREATE OR REPLACE FUNCTION instancia_sofia.apply_optouts(p_events jsonb, p_all boolean)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    e record;
    v_buzones text[];
    v_buzon text;
    v_changed integer := 0;
    v_ignored integer := 0;
    v_unmatched integer := 0;
BEGIN
    FOR e IN
        SELECT * FROM jsonb_to_recordset(p_events)
            AS x(phone_number_id text, phone text, action text, ts bigint, source text, detail text)
        WHERE x.phone IS NOT NULL AND x.action IN ('stop', 'resume')
        ORDER BY x.ts
    LOOP
        IF p_all THEN
            v_buzones := ARRAY['*'];
        ELSE
            SELECT array_agg(buzon ORDER BY buzon) INTO v_buzones
            FROM instancia_sofia.instancias_inputs WHERE phone_number_id = e.phone_number_id;
        END IF;
        IF v_buzones IS NULL THEN
            v_unmatched := v_unmatched + 1;
            CONTINUE;
        END IF;
        FOREACH v_buzon IN ARRAY v_buzones LOOP
            IF instancia_sofia.set_suppression(v_buzon, e.phone, e.action = 'stop', e.source, e.detail,
                                              to_timestamp(COALESCE(e.ts, extract(epoch FROM now())::bigint)),
                                              NULL, 'whatsapp') THEN
                v_changed := v_changed + 1;
                PERFORM instancia_sofia.audit_optout(
                    CASE WHEN e.action = 'stop' THEN 'optout.add' ELSE 'optout.lift' END,
                    v_buzon, e.phone, e.source, NULL, e.detail);
            ELSE
                v_ignored := v_ignored + 1;
            END IF;
        END LOOP;
    END LOOP;
    RETURN jsonb_build_object('changed', v_changed, 'ignored', v_ignored, 'unmatched', v_unmatched);
END;
$$;

-- An operator's opt-out, as of now. Returns {added: whether it was not in force yet}.
CREATE OR REPLACE FUNCTION instancia_sofia.add_suppression(p_buzon text, p_phone text, p_reason text, p_actor text)
RETURNS jsonb LANGUAGE sql AS $$
    SELECT jsonb_build_object('added', instancia_sofia.set_suppression(
        p_buzon, p_phone, true, 'manual', p_reason,
        greatest(now(), COALESCE((SELECT event_at FROM instancia_sofia.suppressions
                                  WHERE buzon = p_buzon AND phone = p_phone), now())),
        NULL, p_actor));
$$;

-- An operator lifts the opt-outs of a phone: of one buzón (or '*'), or with p_buzon NULL of every buzón the
-- caller may act on (p_buzones NULL: all, '*' included). Returns {lifted: [buzones]}.
CREATE OR REPLACE FUNCTION instancia_sofia.lift_suppression(
    p_phone text, p_buzon text, p_buzones text[], p_actor text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH lifted AS (
        UPDATE instancia_sofia.suppressions
        SET active = false, source = 'manual', reason = NULL, event_at = greatest(event_at, now()),
            campaign_id = NULL, actor = p_actor, updated_at = now()
        WHERE phone = p_phone AND active
          AND (p_buzon IS NULL OR buzon = p_buzon)
          AND (p_buzones IS NULL OR buzon = ANY (p_buzones))
        RETURNING buzon)
    SELECT jsonb_build_object('lifted', COALESCE((SELECT jsonb_agg(buzon ORDER BY buzon) FROM lifted), '[]'::jsonb));
$$;

-- A page of the opt-outs in force, newest first: those of the given buzones and those for every buzón
-- (p_buzones NULL: all), optionally of one buzón or one phone, with the count of all that match.
CREATE OR REPLACE FUNCTION instancia_sofia.list_suppressions(
    p_buzones text[], p_buzon text, p_phone text, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH matching AS (
        SELECT * FROM instancia_sofia.suppressions
        WHERE active
          AND (p_buzones IS NULL OR buzon = '*' OR buzon = ANY (p_buzones))
          AND (p_buzon IS NULL OR buzon = p_buzon)
          AND (p_phone IS NULL OR phone = p_phone))
    SELECT jsonb_build_object(
        'entries', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('buzon', buzon, 'phone', phone, 'source', source, 'reason', reason,
                                                'since', event_at, 'campaign_id', campaign_id, 'actor', actor)
                             ORDER BY updated_at DESC, phone, buzon)
            FROM (SELECT * FROM matching ORDER BY updated_at DESC, phone, buzon LIMIT p_limit OFFSET p_offset) m),
            '[]'::jsonb),
        'total', (SELECT count(*) FROM matching));
$$;

-- The phones a campaign of this buzón must not send to (its own opt-outs and those for every buzón).
CREATE OR REPLACE FUNCTION instancia_sofia.suppressed_phones(p_buzon text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(DISTINCT phone), '[]'::jsonb)
    FROM instancia_sofia.suppressions WHERE active AND buzon IN (p_buzon, '*');
$$;

-- Deferred recipients whose time has come, of running campaigns, go back to pending (once: a second 131049
-- fails them, see record_outcomes). Returns {campaign_id: how many}.
CREATE OR REPLACE FUNCTION instancia_sofia.release_deferred(p_limit integer)
RETURNS jsonb LANGUAGE sql AS $$
    WITH due AS (
        SELECT l.id FROM instancia_sofia.leads_activos l
        JOIN instancia_sofia.campaigns c ON c.id = l.campaign_id AND c.status = 'running'
        WHERE l.status = 'deferred' AND l.deferred_until <= now()
        ORDER BY l.deferred_until, l.id LIMIT p_limit
        FOR UPDATE OF l SKIP LOCKED),
    moved AS (
        UPDATE instancia_sofia.leads_activos l
        -- A message that was accepted and then reported failed is a new message now: its old delivery news
        -- must not decide the new one's outcome (record_outcomes lets a 'failed' notification win).
        SET status = 'pending', error_code = NULL, error_detail = NULL, wamid = NULL, delivery_status = NULL,
            delivered_at = NULL, read_at = NULL, updated_at = now()
        FROM due WHERE l.id = due.id AND l.status = 'deferred'
        RETURNING l.campaign_id)
    SELECT COALESCE(jsonb_object_agg(campaign_id, n), '{}'::jsonb)
    FROM (SELECT campaign_id, count(*) AS n FROM moved GROUP BY campaign_id) s;
$$;

-- How many of a campaign's recipients wait as deferred, and when the first of them may be sent again.
CREATE OR REPLACE FUNCTION instancia_sofia.deferred_summary(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('deferred', count(*), 'next_at', min(deferred_until))
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id AND status = 'deferred';
$$;

-- Messages WhatsApp accepted and then reported failed for the per-user marketing limit (a failed status with
-- 131049, already applied by apply_statuses): each becomes deferred until p_retry_at (Unix seconds), once, in
-- campaigns that retry them. Returns {campaign_id: how many}.
CREATE OR REPLACE FUNCTION instancia_sofia.defer_reported(p_wamids text[], p_retry_at double precision)
RETURNS jsonb LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE instancia_sofia.leads_activos l
        SET status = 'deferred', deferred_until = to_timestamp(p_retry_at), deferrals = l.deferrals + 1,
            updated_at = now()
        FROM instancia_sofia.campaigns c
        WHERE l.wamid = ANY (p_wamids) AND c.id = l.campaign_id AND c.retry_deferred
          AND c.status IN ('running', 'paused', 'completed')
          AND l.status = 'failed' AND l.error_code = 131049 AND l.deferrals = 0
        RETURNING l.campaign_id)
    SELECT COALESCE(jsonb_object_agg(campaign_id, n), '{}'::jsonb)
    FROM (SELECT campaign_id, count(*) AS n FROM moved GROUP BY campaign_id) s;
$$;
