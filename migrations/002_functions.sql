-- Every read and write of the service is one of these functions, so the direct Postgres adapter and the
-- Supabase (PostgREST) adapter run exactly the same SQL, each call in one transaction.

CREATE OR REPLACE FUNCTION instancia_sofia.upsert_sender(
    p_buzon text, p_phone_number_id text, p_access_token text, p_messages_per_second integer DEFAULT NULL)
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.instancias_inputs AS s (buzon, phone_number_id, access_token, messages_per_second)
    VALUES (p_buzon, p_phone_number_id, p_access_token, p_messages_per_second)
    ON CONFLICT (buzon) DO UPDATE
        SET phone_number_id = EXCLUDED.phone_number_id,
            access_token = EXCLUDED.access_token,
            messages_per_second = EXCLUDED.messages_per_second,
            updated_at = now()
    RETURNING jsonb_build_object('buzon', s.buzon, 'phone_number_id', s.phone_number_id,
                                 'messages_per_second', s.messages_per_second);
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.get_sender(p_buzon text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object('buzon', buzon, 'phone_number_id', phone_number_id, 'access_token', access_token,
                              'messages_per_second', messages_per_second)
    FROM instancia_sofia.instancias_inputs WHERE buzon = p_buzon;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.list_senders()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object('buzon', buzon, 'phone_number_id', phone_number_id,
                                                 'messages_per_second', messages_per_second) ORDER BY buzon), '[]')
    FROM instancia_sofia.instancias_inputs;
$$;

-- Stores a campaign and its recipients in one transaction; a repeated idempotency key returns the first one.
CREATE OR REPLACE FUNCTION instancia_sofia.create_campaign(p_campaign jsonb, p_leads jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_key text := p_campaign->>'idempotency_key';
    v_base text := p_campaign->>'id';
    v_id text;
    v_total integer := jsonb_array_length(p_leads);
    v_existing record;
    v_suffix integer := 1;
BEGIN
    LOOP
        IF v_key IS NOT NULL THEN
            SELECT id, total INTO v_existing FROM instancia_sofia.campaigns WHERE idempotency_key = v_key;
            IF FOUND THEN
                RETURN jsonb_build_object('id', v_existing.id, 'total', v_existing.total, 'created', false);
            END IF;
        END IF;
        v_id := CASE WHEN v_suffix = 1 THEN v_base ELSE v_base || '-' || v_suffix END;
        BEGIN
            INSERT INTO instancia_sofia.campaigns
                (id, title, template, language, buzon, named_params, total, batch_size, chunk_size,
                 idempotency_key, rejected_rows)
            VALUES (v_id, p_campaign->>'title', p_campaign->>'template', p_campaign->>'language',
                    p_campaign->>'buzon', COALESCE((p_campaign->>'named_params')::boolean, false), v_total,
                    (p_campaign->>'batch_size')::integer, (p_campaign->>'chunk_size')::integer, v_key,
                    COALESCE(p_campaign->'rejected_rows', '[]'::jsonb));
            EXIT;
        EXCEPTION WHEN unique_violation THEN
            -- Either the readable id is taken (try the next suffix) or a concurrent upload with the same
            -- idempotency key committed first (the next loop turn returns it).
            v_suffix := v_suffix + 1;
        END;
    END LOOP;
    INSERT INTO instancia_sofia.leads_activos (campaign_id, seq, phone, parameters)
    SELECT v_id, t.ord, t.e->>'phone', COALESCE(t.e->'parameters', '[]'::jsonb)
    FROM jsonb_array_elements(p_leads) WITH ORDINALITY AS t(e, ord);
    RETURN jsonb_build_object('id', v_id, 'total', v_total, 'created', true);
END;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.delete_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH d AS (DELETE FROM instancia_sofia.campaigns WHERE id = p_campaign_id RETURNING 1)
    SELECT jsonb_build_object('deleted', count(*) > 0) FROM d;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.campaign_json(c instancia_sofia.campaigns)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(c) - 'rejected_rows' - 'idempotency_key'
           || jsonb_build_object('rejected_count', jsonb_array_length(c.rejected_rows));
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.get_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT instancia_sofia.campaign_json(c) FROM instancia_sofia.campaigns c WHERE c.id = p_campaign_id;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.list_campaigns(p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'campaigns', COALESCE((
            SELECT jsonb_agg(instancia_sofia.campaign_json(c) ORDER BY c.created_at DESC, c.id)
            FROM (SELECT * FROM instancia_sofia.campaigns ORDER BY created_at DESC, id
                  LIMIT p_limit OFFSET p_offset) c), '[]'::jsonb),
        'total', (SELECT count(*) FROM instancia_sofia.campaigns));
$$;

-- Claims the pending recipients of one chunk so that no other task can send them.
CREATE OR REPLACE FUNCTION instancia_sofia.claim_messages(p_campaign_id text, p_seq_from integer, p_seq_to integer)
RETURNS jsonb LANGUAGE sql AS $$
    WITH claimed AS (
        UPDATE instancia_sofia.leads_activos
        SET status = 'sending', attempts = attempts + 1, claimed_at = now(), updated_at = now()
        WHERE campaign_id = p_campaign_id AND seq BETWEEN p_seq_from AND p_seq_to AND status = 'pending'
        RETURNING id, seq, phone, parameters, attempts)
    SELECT COALESCE(jsonb_agg(jsonb_build_object('id', id, 'seq', seq, 'phone', phone,
                                                 'parameters', parameters, 'attempts', attempts) ORDER BY seq),
                    '[]'::jsonb)
    FROM claimed;
$$;

-- Applies send outcomes to claimed rows only, so a repeated call changes nothing; returns what moved.
CREATE OR REPLACE FUNCTION instancia_sofia.record_outcomes(p_outcomes jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    WITH o AS (
        SELECT * FROM jsonb_to_recordset(p_outcomes)
            AS x(id bigint, status text, wamid text, error_code integer, error_detail text)),
    moved AS (
        UPDATE instancia_sofia.leads_activos l
        SET status = o.status,
            wamid = COALESCE(o.wamid, l.wamid),
            error_code = o.error_code,
            error_detail = o.error_detail,
            sent_at = CASE WHEN o.status = 'sent' THEN now() ELSE l.sent_at END,
            updated_at = now()
        FROM o
        WHERE l.id = o.id AND l.status = 'sending'
        RETURNING o.status)
    SELECT COALESCE(jsonb_object_agg(status, n), '{}'::jsonb)
    FROM (SELECT status, count(*) AS n FROM moved GROUP BY status) s;
$$;

-- Moves a campaign to a new status when the transition makes sense; returns whether it moved.
CREATE OR REPLACE FUNCTION instancia_sofia.set_campaign_status(
    p_campaign_id text, p_status text, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_from text[] := CASE p_status
        WHEN 'running' THEN ARRAY['queued', 'paused']
        WHEN 'paused' THEN ARRAY['queued', 'running']
        WHEN 'cancelled' THEN ARRAY['queued', 'running', 'paused']
        WHEN 'completed' THEN ARRAY['queued', 'running']
        WHEN 'failed' THEN ARRAY['queued', 'running', 'paused']
        ELSE ARRAY[]::text[] END;
    v_status text;
BEGIN
    UPDATE instancia_sofia.campaigns
    SET status = p_status,
        status_reason = p_reason,
        started_at = CASE WHEN p_status = 'running' THEN COALESCE(started_at, now()) ELSE started_at END,
        finished_at = CASE WHEN p_status IN ('cancelled', 'completed', 'failed') THEN now() ELSE finished_at END,
        updated_at = now()
    WHERE id = p_campaign_id AND status = ANY (v_from)
    RETURNING status INTO v_status;
    IF FOUND THEN
        RETURN jsonb_build_object('changed', true, 'status', v_status);
    END IF;
    SELECT status INTO v_status FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    RETURN jsonb_build_object('changed', false, 'status', v_status);
END;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.cancel_pending(p_campaign_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH c AS (
        UPDATE instancia_sofia.leads_activos SET status = 'cancelled', updated_at = now()
        WHERE campaign_id = p_campaign_id AND status = 'pending' RETURNING 1)
    SELECT jsonb_build_object('cancelled', count(*)) FROM c;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.campaign_counts(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'sending', count(*) FILTER (WHERE status = 'sending'),
        'sent', count(*) FILTER (WHERE status = 'sent'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'cancelled', count(*) FILTER (WHERE status = 'cancelled'),
        'unknown', count(*) FILTER (WHERE status = 'unknown'))
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.pending_batches(p_campaign_id text, p_batch_size integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(b ORDER BY b), '[]'::jsonb)
    FROM (SELECT DISTINCT (seq - 1) / p_batch_size + 1 AS b
          FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND status = 'pending') s;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.ping()
RETURNS jsonb LANGUAGE sql STABLE AS $$ SELECT 'true'::jsonb; $$;
