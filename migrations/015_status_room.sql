-- Room on each page of the recipients table for the versions its rows get after the upload: the claim, the
-- send's result and then one update per status notification (sent, delivered, read). With the space there,
-- a status update, which changes no indexed column, is a HOT update: no new index entries, less WAL, and
-- the page's old versions are pruned in place (bench/status_batches.py, docs/benchmarks.md). Pages written
-- from now on keep 30 % free; existing ones are left as they are.
ALTER TABLE instancia_sofia.leads_activos SET (fillfactor = 70);
