-- Access control: API keys, roles of Supabase users, the audit log, and campaign lists limited to some buzones.

CREATE OR REPLACE FUNCTION instancia_sofia.list_campaigns_in(p_buzones text[], p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'campaigns', COALESCE((
            SELECT jsonb_agg(instancia_sofia.campaign_json(c) ORDER BY c.created_at DESC, c.id)
            FROM (SELECT * FROM instancia_sofia.campaigns WHERE buzon = ANY (p_buzones)
                  ORDER BY created_at DESC, id LIMIT p_limit OFFSET p_offset) c), '[]'::jsonb),
        'total', (SELECT count(*) FROM instancia_sofia.campaigns WHERE buzon = ANY (p_buzones)));
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.api_key_json(k instancia_sofia.api_keys)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(k) - 'key_hash';
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.create_api_key(p_name text, p_key_hash text, p_role text,
                                                          p_buzones text[])
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.api_keys (name, key_hash, role, buzones)
    VALUES (p_name, p_key_hash, p_role, p_buzones)
    RETURNING instancia_sofia.api_key_json(api_keys);
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.list_api_keys()
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT COALESCE(jsonb_agg(instancia_sofia.api_key_json(k) ORDER BY k.name), '[]'::jsonb)
    FROM instancia_sofia.api_keys k;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.revoke_api_key(p_name text)
RETURNS jsonb LANGUAGE sql AS $$
    WITH r AS (UPDATE instancia_sofia.api_keys SET revoked_at = now()
               WHERE name = p_name AND revoked_at IS NULL RETURNING 1)
    SELECT jsonb_build_object('revoked', count(*) > 0) FROM r;
$$;

-- The key with this hash, unless revoked. Its last use is written at most once a minute, so a front end that
-- polls every second does not turn each read into a write.
CREATE OR REPLACE FUNCTION instancia_sofia.use_api_key(p_key_hash text)
RETURNS jsonb LANGUAGE plpgsql AS $$
DECLARE
    v_key instancia_sofia.api_keys;
BEGIN
    SELECT * INTO v_key FROM instancia_sofia.api_keys WHERE key_hash = p_key_hash AND revoked_at IS NULL;
    IF NOT FOUND THEN
        RETURN NULL;
    END IF;
    IF v_key.last_used_at IS NULL OR v_key.last_used_at < now() - interval '1 minute' THEN
        UPDATE instancia_sofia.api_keys SET last_used_at = now() WHERE name = v_key.name
        RETURNING * INTO v_key;
    END IF;
    RETURN instancia_sofia.api_key_json(v_key);
END;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.upsert_api_user(p_user_id text, p_email text, p_role text,
                                                           p_buzones text[])
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.api_users (user_id, email, role, buzones)
    VALUES (p_user_id, p_email, p_role, p_buzones)
    ON CONFLICT (user_id) DO UPDATE SET email = COALESCE(EXCLUDED.email, api_users.email), role = EXCLUDED.role,
                                        buzones = EXCLUDED.buzones, updated_at = now()
    RETURNING to_jsonb(api_users);
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.get_api_user(p_user_id text)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT to_jsonb(u) FROM instancia_sofia.api_users u WHERE u.user_id = p_user_id;
$$;

CREATE OR REPLACE FUNCTION instancia_sofia.record_audit(p_entry jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    INSERT INTO instancia_sofia.audit_log (actor, actor_email, actor_kind, action, campaign_id, buzon, status_code,
                                           outcome, ip, user_agent, details)
    VALUES (p_entry->>'actor', p_entry->>'actor_email', p_entry->>'actor_kind', p_entry->>'action',
            p_entry->>'campaign_id', p_entry->>'buzon', (p_entry->>'status_code')::integer, p_entry->>'outcome',
            p_entry->>'ip', p_entry->>'user_agent', COALESCE(p_entry->'details', '{}'::jsonb))
    RETURNING jsonb_build_object('id', id);
$$;

-- A page of the audit log, newest first; every filter is optional.
CREATE OR REPLACE FUNCTION instancia_sofia.list_audit(p_campaign_id text, p_since timestamptz,
                                                      p_until timestamptz, p_limit integer, p_offset integer)
RETURNS jsonb LANGUAGE sql STABLE AS $$
    WITH f AS (
        SELECT * FROM instancia_sofia.audit_log a
        WHERE (p_campaign_id IS NULL OR a.campaign_id = p_campaign_id)
          AND (p_since IS NULL OR a.at >= p_since) AND (p_until IS NULL OR a.at < p_until))
    SELECT jsonb_build_object(
        'entries', COALESCE((SELECT jsonb_agg(to_jsonb(p) ORDER BY p.at DESC, p.id DESC)
                             FROM (SELECT * FROM f ORDER BY at DESC, id DESC LIMIT p_limit OFFSET p_offset) p),
                            '[]'::jsonb),
        'total', (SELECT count(*) FROM f));
$$;
