-- Send outcomes reported by the workers.

-- Applies send outcomes to claimed rows only, so a repeated call changes nothing; returns what moved and
-- the failures grouped by error code. A delivery notification that arrived first wins: a message WhatsApp
-- says failed is failed, and one it says it delivered was sent even if our request timed out. Outcomes
-- apply only to rows still claimed by the worker that reports them: after a worker was taken for dead and
-- its messages handed to another, its late results must not overwrite the new claim. A sent outcome may carry
-- the send answer's message_status when WhatsApp held the message (held_for_quality_assessment, paused):
-- it is kept on the row and counted under "held".
-- A deferred outcome (131049) carries retry_at (Unix seconds): the row waits until then, once; a second
-- deferral, or a campaign that does not retry them, fails it. An outcome with suppress_for (131050) adds its
-- number to the suppression list of that buzón ('*': all), audited, in the same transaction.
-- PL/pgSQL rather than SQL: PostgreSQL plans a SQL function's body again on every call, while PL/pgSQL keeps
-- its statement's plan for the session: 1.6 → 0.5 ms of PostgreSQL's CPU per call
-- with 50 outcomes that match no row (docs/benchmarks.md, eleventh round).
CREATE OR REPLACE FUNCTION instancia_sofia.record_outcomes(p_outcomes jsonb)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_result jsonb;
BEGIN
    -- Rows are locked in id order first, as apply_statuses locks them, so the two never deadlock. A statement
    -- of its own: as a CTE the update had to name it to make it run, and the planner made that a nested
    -- loop over the locked rows for every row (100 outcomes: 5,000 comparisons, 2 of the call's 5 ms).
    PERFORM 1 FROM instancia_sofia.leads_activos l
    WHERE l.id IN (SELECT x.id FROM jsonb_to_recordset(p_outcomes) AS x(id bigint))
    ORDER BY l.id FOR UPDATE;
    WITH o AS (
        SELECT * FROM jsonb_to_recordset(p_outcomes)
            AS x(id bigint, status text, wamid text, error_code integer, error_detail text, owner text,
                 message_status text, retry_at double precision, suppress_for text)),
    moved AS (
        UPDATE instancia_sofia.leads_activos l
        SET status = CASE
                WHEN o.status = 'deferred' AND (l.deferrals > 0 OR NOT COALESCE(
                    (SELECT c.retry_deferred FROM instancia_sofia.campaigns c WHERE c.id = l.campaign_id), true))
                    THEN 'failed'
                WHEN o.status IN ('sent', 'unknown') AND l.delivery_status = 'failed' THEN 'failed'
                WHEN o.status = 'unknown' AND l.delivery_status IN ('sent', 'delivered', 'read') THEN 'sent'
                ELSE o.status END,
            wamid = COALESCE(o.wamid, l.wamid),
            error_code = CASE WHEN l.delivery_status = 'failed' AND o.status IN ('sent', 'unknown')
                              THEN l.error_code ELSE o.error_code END,
            error_detail = CASE WHEN l.delivery_status = 'failed' AND o.status IN ('sent', 'unknown')
                                THEN l.error_detail ELSE o.error_detail END,
            sent_at = CASE WHEN o.status = 'sent' THEN COALESCE(l.sent_at, now()) ELSE l.sent_at END,
            message_status = CASE WHEN o.status = 'sent' THEN o.message_status ELSE l.message_status END,
            deferred_until = CASE WHEN o.status = 'deferred' AND l.deferrals = 0
                                  THEN to_timestamp(o.retry_at) ELSE l.deferred_until END,
            deferrals = l.deferrals + CASE WHEN o.status = 'deferred' THEN 1 ELSE 0 END,
            updated_at = now()
        FROM o
        WHERE l.id = o.id
          AND l.status = 'sending' AND (o.owner IS NULL OR l.claimed_by = o.owner)
        RETURNING l.id, l.status, l.error_code, l.error_detail, l.phone, l.campaign_id, o.message_status),
    opted_out AS (
        INSERT INTO instancia_sofia.suppressions AS s
            (buzon, phone, active, source, reason, event_at, campaign_id, actor)
        SELECT DISTINCT ON (o.suppress_for, m.phone) o.suppress_for, m.phone, true, 'send_error', m.error_detail,
               now(), m.campaign_id, 'whatsapp'
        FROM moved m JOIN o ON o.id = m.id
        WHERE o.suppress_for IS NOT NULL AND m.status = 'failed'
        ON CONFLICT (buzon, phone) DO UPDATE
        SET active = true, source = 'send_error', reason = EXCLUDED.reason, event_at = EXCLUDED.event_at,
            campaign_id = EXCLUDED.campaign_id, actor = 'whatsapp', updated_at = now()
        WHERE NOT s.active AND s.event_at <= EXCLUDED.event_at
        RETURNING s.buzon, s.phone, s.campaign_id, s.reason),
    audited AS (
        INSERT INTO instancia_sofia.audit_log
            (actor, actor_kind, action, campaign_id, buzon, status_code, outcome, details)
        SELECT 'whatsapp', 'whatsapp', 'optout.add', campaign_id, buzon, 0, 'ok',
               jsonb_strip_nulls(jsonb_build_object('telefono', phone, 'origen', 'send_error', 'detalle', reason))
        FROM opted_out)
    SELECT (SELECT CASE WHEN count(*) > 0 THEN jsonb_build_object('held', count(*)) ELSE '{}'::jsonb END
            FROM moved WHERE message_status IS NOT NULL AND status = 'sent') || jsonb_build_object(
        'moved', COALESCE((SELECT jsonb_object_agg(status, n)
                           FROM (SELECT status, count(*) AS n FROM moved GROUP BY status) s), '{}'::jsonb),
        'errors', COALESCE((SELECT jsonb_object_agg(code, jsonb_build_object('count', n, 'detail', detail))
                            FROM (SELECT COALESCE(error_code::text, 'network') AS code, count(*) AS n,
                                         max(error_detail) AS detail
                                  FROM moved WHERE status = 'failed' GROUP BY 1) e), '{}'::jsonb))
    INTO v_result;
    RETURN v_result;
END;
$$;
