-- Uploads are stored while the CSV is still being read: the campaign row is created first (with a
-- provisional total 1), the recipients are copied in as they are validated, and this sets what is known only
-- at the end of the file (an empty list fails the campaigns.total > 0 check).
-- All three steps run in one transaction, so a file rejected half-way leaves nothing behind.
CREATE OR REPLACE FUNCTION instancia_sofia.finish_campaign_row(p_campaign_id text, p_total integer,
                                                               p_rejected_rows jsonb)
RETURNS jsonb LANGUAGE sql AS $$
    UPDATE instancia_sofia.campaigns
    SET total = p_total, rejected_rows = COALESCE(p_rejected_rows, '[]'::jsonb)
    WHERE id = p_campaign_id
    RETURNING jsonb_build_object('id', id, 'total', total, 'created', true);
$$;
