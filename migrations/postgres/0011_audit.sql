-- The audit trail (postgres; kept column-for-column equal to migrations/sqlite/0011_audit.sql).
-- Append-only and hash-chained: entry `seq` (1, 2, 3 … with no gap) holds the hash of entry
-- seq - 1 (`prev_hash`; 64 zeros for the first) and its own `hash`, SHA-256 over a canonical
-- encoding of every other column (src/audit/chain.rs). pkid only ever inserts here.
-- outcome: 'success' or 'failure'; detail: a small JSON object, or NULL.
CREATE TABLE audit_log (
    seq        BIGINT PRIMARY KEY,
    at         BIGINT NOT NULL,
    principal  TEXT NOT NULL,
    action     TEXT NOT NULL,
    resource   TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    detail     TEXT,
    prev_hash  TEXT NOT NULL,
    hash       TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_principal ON audit_log(principal, seq);

-- A signed checkpoint of the chain: entry `seq` had hash `hash`, signed at `at` by the issuing
-- key of `backend` (its certificate `certificate`, DER; `algorithm` as pkid names key
-- algorithms) over a domain-separated encoding of the three.
CREATE TABLE audit_checkpoints (
    seq          BIGINT PRIMARY KEY,
    hash         TEXT NOT NULL,
    at           BIGINT NOT NULL,
    backend      TEXT NOT NULL,
    algorithm    TEXT NOT NULL,
    certificate  BYTEA NOT NULL,
    signature    BYTEA NOT NULL
);
