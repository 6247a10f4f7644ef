-- Claims: which worker is sending which recipient, and how a dead worker's claims are released.

-- Versions before 003 claimed without naming the worker (three arguments).
DROP FUNCTION IF EXISTS instancia_sofia.claim_messages(text, integer, integer);

-- Claims, for worker p_owner, the pending recipients of one chunk so that no other task can send them.
-- A recipient whose number opted out (for the campaign's buzón or for all, see optouts.sql) comes with
-- "suppressed": true: the worker records it as suppressed without sending. Checked here, at claim time, so
-- an opt-out that arrives while the campaign runs holds for every later batch on every worker.
-- PL/pgSQL rather than SQL: PostgreSQL plans a SQL function's body again on every call, while PL/pgSQL keeps
-- its statement's plan for the session: 0.7 → 0.25 ms of PostgreSQL's CPU per call
-- that claims nothing (docs/benchmarks.md, eleventh round).
CREATE OR REPLACE FUNCTION instancia_sofia.claim_messages(
    p_campaign_id text, p_seq_from integer, p_seq_to integer, p_owner text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_result jsonb;
BEGIN
    WITH claimed AS (
        UPDATE instancia_sofia.leads_activos
        SET status = 'sending', attempts = attempts + 1, claimed_at = now(), claimed_by = p_owner,
            updated_at = now()
        WHERE campaign_id = p_campaign_id AND seq BETWEEN p_seq_from AND p_seq_to AND status = 'pending'
        RETURNING id, seq, phone, parameters, attempts),
    campaign AS (SELECT buzon FROM instancia_sofia.campaigns WHERE id = p_campaign_id)
    SELECT COALESCE(jsonb_agg(jsonb_build_object('id', id, 'seq', seq, 'phone', phone,
                                                 'parameters', parameters, 'attempts', attempts)
                              || CASE WHEN EXISTS (
                                     SELECT 1 FROM instancia_sofia.suppressions s
                                     WHERE s.phone = claimed.phone AND s.active
                                       AND s.buzon IN ('*', (SELECT buzon FROM campaign)))
                                 THEN '{"suppressed": true}'::jsonb ELSE '{}'::jsonb END
                              ORDER BY seq),
                    '[]'::jsonb)
    FROM claimed
    INTO v_result;
    RETURN v_result;
END;
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

-- Releases a dead worker's claims. What WhatsApp reported on decides first: a row with a sent, delivered
-- or read notification was sent, one with a failed notification failed. Of the rest, rows whose request
-- may have gone out (in p_attempted, or every row when p_attempted is NULL: the worker's marks were lost)
-- become unknown, the others pending. Returns the rows moved, how many of each, and failures by error code.
CREATE OR REPLACE FUNCTION instancia_sofia.recover_claims(
    p_campaign_id text, p_owner text, p_attempted bigint[], p_older_than_s integer DEFAULT 0)
RETURNS jsonb LANGUAGE sql AS $$
    WITH moved AS (
        UPDATE instancia_sofia.leads_activos
        SET status = CASE WHEN delivery_status = 'failed' THEN 'failed'
                          WHEN delivery_status IS NOT NULL THEN 'sent'
                          WHEN p_attempted IS NULL OR id = ANY (p_attempted) THEN 'unknown'
                          ELSE 'pending' END,
            error_detail = CASE WHEN delivery_status IS NOT NULL THEN error_detail
                                WHEN p_attempted IS NULL OR id = ANY (p_attempted)
                                THEN 'El worker se detuvo durante el envío; no se sabe si WhatsApp lo recibió'
                                ELSE error_detail END,
            sent_at = CASE WHEN delivery_status IN ('sent', 'delivered', 'read')
                           THEN COALESCE(sent_at, delivery_updated_at, now()) ELSE sent_at END,
            updated_at = now()
        WHERE campaign_id = p_campaign_id AND status = 'sending'
          AND COALESCE(claimed_by, '') = p_owner
          AND claimed_at <= now() - make_interval(secs => p_older_than_s)
        RETURNING id, status, error_code, error_detail)
    SELECT jsonb_build_object('ids', COALESCE(jsonb_agg(id), '[]'::jsonb),
                              'unknown', count(*) FILTER (WHERE status = 'unknown'),
                              'pending', count(*) FILTER (WHERE status = 'pending'),
                              'sent', count(*) FILTER (WHERE status = 'sent'),
                              'failed', count(*) FILTER (WHERE status = 'failed'),
                              'errors', COALESCE((SELECT jsonb_object_agg(code, jsonb_build_object('count', n, 'detail', detail))
                                                  FROM (SELECT COALESCE(error_code::text, 'network') AS code, count(*) AS n,
                                                               max(error_detail) AS detail
                                                        FROM moved WHERE status = 'failed' GROUP BY 1) e), '{}'::jsonb))
    FROM moved;
$$;

-- Batches that still hold pending recipients.
CREATE OR REPLACE FUNCTION instancia_sofia.pending_batches(p_campaign_id text, p_batch_size integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(b ORDER BY b), '[]'::jsonb)
    FROM (SELECT DISTINCT (seq - 1) / p_batch_size + 1 AS b
          FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND status = 'pending') s;
$$;

-- Batches that have recipients being sent right now (a batch without any is not really in flight).
CREATE OR REPLACE FUNCTION instancia_sofia.sending_batches(p_campaign_id text, p_batch_size integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(DISTINCT (seq - 1) / p_batch_size + 1), '[]'::jsonb)
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id AND status = 'sending';
$$;
