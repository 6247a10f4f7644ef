-- Campaign rows: reading, listing, status transitions and removal.

-- The campaign as the API shows it: without the rejected rows (only their count) and the idempotency key.
CREATE OR REPLACE FUNCTION instancia_sofia.campaign_json(c instancia_sofia.campaigns)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(c) - 'rejected_rows' - 'idempotency_key'
           || jsonb_build_object('rejected_count', jsonb_array_length(c.rejected_rows));
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.get_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT instancia_sofia.campaign_json(c) FROM instancia_sofia.campaigns c WHERE c.id = p_campaign_id;
$$;

-- A page of campaigns, newest first, with the count of all of them.
CREATE OR REPLACE FUNCTION instancia_sofia.list_campaigns(p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'campaigns', COALESCE((
            SELECT jsonb_agg(instancia_sofia.campaign_json(c) ORDER BY c.created_at DESC, c.id)
            FROM (SELECT * FROM instancia_sofia.campaigns ORDER BY created_at DESC, id
                  LIMIT p_limit OFFSET p_offset) c), '[]'::jsonb),
        'total', (SELECT count(*) FROM instancia_sofia.campaigns));
$$;

-- Ids of the campaigns the sweeper still looks after.
CREATE OR REPLACE FUNCTION instancia_sofia.open_campaigns()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(id ORDER BY created_at), '[]'::jsonb)
    FROM instancia_sofia.campaigns WHERE status IN ('queued', 'scheduled', 'running', 'waiting', 'paused');
$$;

-- Moves a campaign to a new status when the transition makes sense; returns whether it moved, the status
-- and its version (one more at every change).
-- 'running' may follow 'completed' and 'failed': an operator's retry reopens the campaign. A scheduled or
-- waiting campaign becomes 'running' through wake_campaign (at its time) or an operator's resume; 'waiting'
-- is entered through wait_campaign, which also says until when. A scheduled campaign may be paused (Meta paused
-- its template); resuming it starts it then.
CREATE OR REPLACE FUNCTION instancia_sofia.set_campaign_status(
    p_campaign_id text, p_status text, p_reason text DEFAULT NULL)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_from text[] := CASE p_status
        WHEN 'running' THEN ARRAY['queued', 'paused', 'completed', 'failed', 'waiting']
        WHEN 'paused' THEN ARRAY['queued', 'scheduled', 'running', 'waiting']
        WHEN 'cancelled' THEN ARRAY['queued', 'scheduled', 'running', 'waiting', 'paused']
        WHEN 'completed' THEN ARRAY['queued', 'running', 'waiting']
        WHEN 'failed' THEN ARRAY['queued', 'scheduled', 'running', 'waiting', 'paused']
        ELSE ARRAY[]::text[] END;
    v_status text;
    v_version bigint;
BEGIN
    UPDATE instancia_sofia.campaigns
    SET status = p_status,
        status_reason = p_reason,
        started_at = CASE WHEN p_status = 'running' THEN COALESCE(started_at, now()) ELSE started_at END,
        finished_at = CASE WHEN p_status IN ('cancelled', 'completed', 'failed') THEN now() ELSE NULL END,
        resume_at = NULL,
        status_version = status_version + 1,
        updated_at = now()
    WHERE id = p_campaign_id AND status = ANY (v_from)
    RETURNING status, status_version INTO v_status, v_version;
    IF FOUND THEN
        RETURN jsonb_build_object('changed', true, 'status', v_status, 'version', v_version);
    END IF;
    SELECT status, status_version INTO v_status, v_version FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    RETURN jsonb_build_object('changed', false, 'status', v_status, 'version', v_version);
END;
$$;

-- Holds a started campaign until p_until (outside its sending window, or its portfolio's budget used up). A
-- campaign already waiting takes the new time and reason, so the latest cause is the one shown.
CREATE OR REPLACE FUNCTION instancia_sofia.wait_campaign(p_campaign_id text, p_reason text, p_until timestamptz)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_version bigint;
BEGIN
    UPDATE instancia_sofia.campaigns
    SET status = 'waiting', status_reason = p_reason, resume_at = p_until,
        status_version = status_version + 1, updated_at = now()
    WHERE id = p_campaign_id AND status IN ('queued', 'running', 'waiting')
      AND (status <> 'waiting' OR resume_at IS DISTINCT FROM p_until OR status_reason IS DISTINCT FROM p_reason)
    RETURNING status, status_version INTO v_status, v_version;
    IF FOUND THEN
        RETURN jsonb_build_object('changed', true, 'status', v_status, 'version', v_version);
    END IF;
    SELECT status, status_version INTO v_status, v_version FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    RETURN jsonb_build_object('changed', false, 'status', v_status, 'version', v_version);
END;
$$;

-- Starts a scheduled or waiting campaign whose time has come. The conditional UPDATE is what makes a start
-- happen once: of two callers (two beats by mistake) only one finds the row still due.
CREATE OR REPLACE FUNCTION instancia_sofia.wake_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_version bigint;
    v_from text;
BEGIN
    SELECT status INTO v_from FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    UPDATE instancia_sofia.campaigns
    SET status = 'running', status_reason = NULL, resume_at = NULL, started_at = COALESCE(started_at, now()),
        status_version = status_version + 1, updated_at = now()
    WHERE id = p_campaign_id AND status IN ('scheduled', 'waiting') AND resume_at <= now()
    RETURNING status, status_version INTO v_status, v_version;
    IF FOUND THEN
        RETURN jsonb_build_object('changed', true, 'status', v_status, 'version', v_version, 'from', v_from);
    END IF;
    SELECT status, status_version INTO v_status, v_version FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    RETURN jsonb_build_object('changed', false, 'status', v_status, 'version', v_version);
END;
$$;

-- Scheduled and waiting campaigns whose time has come, oldest first.
CREATE OR REPLACE FUNCTION instancia_sofia.due_campaigns()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(id ORDER BY resume_at, id), '[]'::jsonb)
    FROM instancia_sofia.campaigns WHERE status IN ('scheduled', 'waiting') AND resume_at <= now();
$$;

-- Moves the start of a campaign that has not started yet.
CREATE OR REPLACE FUNCTION instancia_sofia.reschedule_campaign(p_campaign_id text, p_at timestamptz, p_reason text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_status text;
    v_version bigint;
BEGIN
    UPDATE instancia_sofia.campaigns
    SET scheduled_for = p_at, resume_at = p_at, status_reason = p_reason,
        status_version = status_version + 1, updated_at = now()
    WHERE id = p_campaign_id AND status = 'scheduled'
    RETURNING status, status_version INTO v_status, v_version;
    IF FOUND THEN
        RETURN jsonb_build_object('changed', true, 'status', v_status, 'version', v_version);
    END IF;
    SELECT status, status_version INTO v_status, v_version FROM instancia_sofia.campaigns WHERE id = p_campaign_id;
    RETURN jsonb_build_object('changed', false, 'status', v_status, 'version', v_version);
END;
$$;

-- Removes a campaign and its recipients (recipients carry no foreign key, see 005_campaign_row.sql).
CREATE OR REPLACE FUNCTION instancia_sofia.delete_campaign(p_campaign_id text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH l AS (DELETE FROM instancia_sofia.leads_activos WHERE campaign_id = p_campaign_id),
         d AS (DELETE FROM instancia_sofia.campaigns WHERE id = p_campaign_id RETURNING 1)
    SELECT jsonb_build_object('deleted', count(*) > 0) FROM d;
$$;
