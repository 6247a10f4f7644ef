-- Every status change of a campaign gets the next version number, so that Redis, written by several
-- processes after the database, keeps the status of the latest change whatever order the writes land in.
ALTER TABLE instancia_sofia.campaigns ADD COLUMN IF NOT EXISTS status_version bigint NOT NULL DEFAULT 0;
