-- When a challenge's validation started. Several replicas share the database: a replica that
-- starts, or a housekeeping round, puts back to `pending` only the challenges `processing` for
-- longer than any validation can take (left by a replica that stopped), never another live
-- replica's validation in flight.
ALTER TABLE challenges ADD COLUMN processing_since BIGINT;
-- Challenges in flight under an earlier version have no start time: they count as stale.
UPDATE challenges SET processing_since = 0 WHERE status = 'processing';
CREATE INDEX challenges_processing ON challenges(processing_since) WHERE status = 'processing';
