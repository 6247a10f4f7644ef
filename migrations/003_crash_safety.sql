-- Who claimed a recipient, so a dead worker's claims can be found; recovery and retry functions.
ALTER TABLE instancia_sofia.leads_activos ADD COLUMN IF NOT EXISTS claimed_by text;

DROP FUNCTION IF EXISTS instancia_sofia.claim_messages(text, integer, integer);
CREATE OR REPLACE FUNCTION instancia_sofia.claim_messages(
    p_campaign_id text, p_seq_from integer, p_seq_to integer, p_owner text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH claimed AS (
        UPDATE instancia_sofia.leads_activos
        SET status = 'sending', attempts = attempts + 1, claimed_at = now(), claimed_by = p_owner,
            updated_at = now()
        WHERE campaign_id = p_campaign_id AND seq BETWEEN p_seq_from AND p_seq_to AND status = 'pending'
        RETURNING id, seq, phone, parameters, attempts)
    SELECT COALESCE(jsonb_agg(jsonb_build_object('id', id, 'seq', seq, 'phone', phone,
                                                 'parameters', parameters, 'attempts', attempts) ORDER BY seq),
                    '[]'::jsonb)
    FROM claimed;
$$;

-- Same contract as before, plus the failures of the moved rows grouped by error code.
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
        RETURNING o.status, o.error_code, o.error_detail)
    SELECT jsonb_build_object(
        'moved', COALESCE((SELECT jsonb_object_agg(status, n)
                           FROM (SELECT status, count(*) AS n FROM moved GROUP BY status) s), '{}'::jsonb),
        'errors', COALESCE((SELECT jsonb_object_agg(code, jsonb_build_object('count', n, 'detail', detail))
                            FROM (SELECT COALESCE(error_code::text, 'network') AS code, count(*) AS n,
                                         max(error_detail) AS detail
                                  FROM moved WHERE status = 'failed' GROUP BY 1) e), '{}'::jsonb));
$$;

-- The workers that hold claims in a campaign, with their oldest claim's age in seconds.
CREATE OR REPLACE FUNCTION instancia_sofia.claim_owners(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_object_agg(COALESCE(claimed_by, ''), age), '{}'::jsonb)
    FROM (SELECT claimed_by, extract(epoch FROM now() - min(claimed_at))::integer AS age
          FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND status = 'sending'
          GROUP BY claimed_by) o;
$$;

-- Releases a dead worker's claims: rows whose request may have gone out become unknown, the rest pending.
CREATE OR REPLACE FUNCTION instancia_sofia.recover_claims(
    p_campaign_id text, p_owner text, p_attempted bigint[], p_older_than_s integer DEFAULT 0)
RETURNS jsonb LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE instancia_sofia.leads_activos
        SET status = CASE WHEN id = ANY (p_attempted) THEN 'unknown' ELSE 'pending' END,
            error_detail = CASE WHEN id = ANY (p_attempted)
                                THEN 'El worker se detuvo durante el envío; no se sabe si WhatsApp lo recibió'
                                ELSE error_detail END,
            updated_at = now()
        WHERE campaign_id = p_campaign_id AND status = 'sending'
          AND COALESCE(claimed_by, '') = p_owner
          AND claimed_at <= now() - make_interval(secs => p_older_than_s)
        RETURNING status)
    SELECT jsonb_build_object('unknown', count(*) FILTER (WHERE status = 'unknown'),
                              'pending', count(*) FILTER (WHERE status = 'pending'))
    FROM moved;
$$;

-- Puts unknown and/or failed recipients back in the queue; returns how many of each moved.
CREATE OR REPLACE FUNCTION instancia_sofia.requeue_recipients(p_campaign_id text, p_statuses text[])
RETURNS jsonb LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE instancia_sofia.leads_activos l
        SET status = 'pending', error_code = NULL, error_detail = NULL, updated_at = now()
        FROM (SELECT id, status AS old_status FROM instancia_sofia.leads_activos
              WHERE campaign_id = p_campaign_id AND status = ANY (p_statuses) FOR UPDATE) old
        WHERE l.id = old.id
        RETURNING old.old_status)
    SELECT COALESCE(jsonb_object_agg(old_status, n), '{}'::jsonb)
    FROM (SELECT old_status, count(*) AS n FROM moved GROUP BY old_status) s;
$$;

-- Failures grouped by error code, recomputed from the rows (used when Redis lost its copy).
CREATE OR REPLACE FUNCTION instancia_sofia.failure_breakdown(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_object_agg(code, jsonb_build_object('count', n, 'detail', detail)), '{}'::jsonb)
    FROM (SELECT COALESCE(error_code::text, 'network') AS code, count(*) AS n, max(error_detail) AS detail
          FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND status = 'failed' GROUP BY 1) e;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.open_campaigns()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(id ORDER BY created_at), '[]'::jsonb)
    FROM instancia_sofia.campaigns WHERE status IN ('queued', 'running', 'paused');
$$;

-- 'running' may now also follow 'completed' and 'failed': an operator's retry reopens the campaign.
CREATE OR REPLACE FUNCTION instancia_sofia.set_campaign_status(
    p_campaign_id text, p_status text, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_from text[] := CASE p_status
        WHEN 'running' THEN ARRAY['queued', 'paused', 'completed', 'failed']
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
        finished_at = CASE WHEN p_status IN ('cancelled', 'completed', 'failed') THEN now() ELSE NULL END,
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

-- Batches that have recipients being sent right now (a batch without any is not really in flight).
CREATE OR REPLACE FUNCTION instancia_sofia.sending_batches(p_campaign_id text, p_batch_size integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(DISTINCT (seq - 1) / p_batch_size + 1), '[]'::jsonb)
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id AND status = 'sending';
$$;

-- A page of a campaign's recipients, optionally in one status, for operators who must act on them.
CREATE OR REPLACE FUNCTION instancia_sofia.list_recipients(
    p_campaign_id text, p_status text, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'recipients', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('seq', seq, 'phone', phone, 'status', status, 'wamid', wamid,
                                                'error_code', error_code, 'error_detail', error_detail,
                                                'attempts', attempts, 'sent_at', sent_at) ORDER BY seq)
            FROM (SELECT * FROM instancia_sofia.leads_activos
                  WHERE campaign_id = p_campaign_id AND (p_status IS NULL OR status = p_status)
                  ORDER BY seq LIMIT p_limit OFFSET p_offset) r), '[]'::jsonb),
        'total', (SELECT count(*) FROM instancia_sofia.leads_activos
                  WHERE campaign_id = p_campaign_id AND (p_status IS NULL OR status = p_status)));
$$;
