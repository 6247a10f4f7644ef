-- Recipients of a campaign: counts, pages, the results export, cancelling and requeueing.

CREATE OR REPLACE FUNCTION instancia_sofia.campaign_counts(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'pending', count(*) FILTER (WHERE status = 'pending'),
        'sending', count(*) FILTER (WHERE status = 'sending'),
        'sent', count(*) FILTER (WHERE status = 'sent'),
        'failed', count(*) FILTER (WHERE status = 'failed'),
        'cancelled', count(*) FILTER (WHERE status = 'cancelled'),
        'unknown', count(*) FILTER (WHERE status = 'unknown'),
        'suppressed', count(*) FILTER (WHERE status = 'suppressed'),
        'deferred', count(*) FILTER (WHERE status = 'deferred'))
    FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id;
$$;

-- Failures grouped by error code, recomputed from the rows (used when Redis lost its copy).
CREATE OR REPLACE FUNCTION instancia_sofia.failure_breakdown(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_object_agg(code, jsonb_build_object('count', n, 'detail', detail)), '{}'::jsonb)
    FROM (SELECT COALESCE(error_code::text, 'network') AS code, count(*) AS n, max(error_detail) AS detail
          FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND status = 'failed' GROUP BY 1) e;
$$;

-- A page of a campaign's recipients, optionally in one status, for operators who must act on them.
CREATE OR REPLACE FUNCTION instancia_sofia.list_recipients(
    p_campaign_id text, p_status text, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'recipients', COALESCE((
            SELECT jsonb_agg(jsonb_build_object('seq', seq, 'phone', phone, 'status', status, 'wamid', wamid,
                                                'error_code', error_code, 'error_detail', error_detail,
                                                'attempts', attempts, 'sent_at', sent_at,
                                                'delivery_status', delivery_status, 'delivered_at', delivered_at,
                                                'read_at', read_at, 'message_status', message_status,
                                                'pricing_category', pricing_category, 'pricing_type', pricing_type,
                                                'billable', billable,
                                                'retry_at', CASE WHEN status = 'deferred' THEN deferred_until END)
                             ORDER BY seq)
            FROM (SELECT * FROM instancia_sofia.leads_activos
                  WHERE campaign_id = p_campaign_id AND (p_status IS NULL OR status = p_status)
                  ORDER BY seq LIMIT p_limit OFFSET p_offset) r), '[]'::jsonb),
        'total', (SELECT count(*) FROM instancia_sofia.leads_activos
                  WHERE campaign_id = p_campaign_id AND (p_status IS NULL OR status = p_status)));
$$;

-- One keyset page of a campaign's recipients for the results export: the rows after seq p_after_seq, in
-- seq order, at most p_limit of them (the caller asks again after the last seq it got; each page is one
-- index range scan, however deep into the campaign). Times are UTC, written as spreadsheets read them.
CREATE OR REPLACE FUNCTION instancia_sofia.export_recipients(
    p_campaign_id text, p_status text, p_after_seq integer, p_limit integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(jsonb_build_object(
               'seq', seq, 'phone', phone, 'status', status, 'wamid', wamid,
               'error_code', error_code, 'error_detail', error_detail, 'attempts', attempts,
               'delivery_status', delivery_status,
               'sent_at', to_char(sent_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
               'delivered_at', to_char(delivered_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS'),
               'read_at', to_char(read_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS')) ORDER BY seq), '[]'::jsonb)
    FROM (SELECT * FROM instancia_sofia.leads_activos
          WHERE campaign_id = p_campaign_id AND seq > p_after_seq AND (p_status IS NULL OR status = p_status)
          ORDER BY seq LIMIT p_limit) r;
$$;

-- Pending and deferred recipients become cancelled.
CREATE OR REPLACE FUNCTION instancia_sofia.cancel_pending(p_campaign_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH c AS (
        UPDATE instancia_sofia.leads_activos SET status = 'cancelled', updated_at = now()
        WHERE campaign_id = p_campaign_id AND status IN ('pending', 'deferred') RETURNING 1)
    SELECT jsonb_build_object('cancelled', count(*)) FROM c;
$$;

-- 003 named the second argument p_statuses, and CREATE OR REPLACE cannot rename an argument; the types
-- are the same as today's, so this drops the live function too, and the file recreates it at once.
DROP FUNCTION IF EXISTS instancia_sofia.requeue_recipients(text, text[]);

-- Puts recipients in the given statuses (unknown, failed) back in the queue; returns how many of each moved.
CREATE OR REPLACE FUNCTION instancia_sofia.requeue_recipients(p_campaign_id text, p_states text[])
RETURNS jsonb LANGUAGE sql AS $$
    WITH old AS (
        SELECT id, status AS old_status FROM instancia_sofia.leads_activos
        WHERE campaign_id = p_campaign_id AND status = ANY (p_states) FOR UPDATE),
    moved AS (
        UPDATE instancia_sofia.leads_activos l
        SET status = 'pending', error_code = NULL, error_detail = NULL, updated_at = now()
        FROM old WHERE l.id = old.id
        RETURNING old.old_status)
    SELECT COALESCE(jsonb_object_agg(old_status, n), '{}'::jsonb)
    FROM (SELECT old_status, count(*) AS n FROM moved GROUP BY old_status) s;
$$;
