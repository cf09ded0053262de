-- When a revoked certificate's reason last changed (re-revocation for keyCompromise, RFC 5280
-- §5.3.1): the CRLs of its scope are stale from then on, on every replica, as after a new
-- revocation. Most rows never change, so the index holds only those that did.
ALTER TABLE certificates ADD COLUMN reason_changed_at BIGINT;
CREATE INDEX certificates_issuer_reason_changed ON certificates(issuer, reason_changed_at)
    WHERE reason_changed_at IS NOT NULL;
