-- IAM-style certificate linking requests and RFC 3820 proxy certificates (sqlite; kept
-- column-for-column equal to migrations/postgres/0008_iam.sql).

-- A request to link a certificate (by its subject and issuer DN, RFC 2253 as pki::dn writes
-- them) to the account that made it. status: PENDING, APPROVED or REJECTED; a request is kept
-- after it is decided, so that its history stays visible. Times in milliseconds since the epoch
-- (IAM's creationTime and lastUpdateTime). motivation: why it was rejected.
CREATE TABLE cert_link_requests (
    uuid              TEXT PRIMARY KEY,
    user_id           TEXT NOT NULL REFERENCES users(id),
    label             TEXT NOT NULL,
    subject_dn        TEXT NOT NULL,
    issuer_dn         TEXT NOT NULL,
    certificate_pem   TEXT,
    notes             TEXT NOT NULL,
    status            TEXT NOT NULL,
    motivation        TEXT,
    creation_time     BIGINT NOT NULL,
    last_update_time  BIGINT NOT NULL
);
-- At most one pending request per account, subject and issuer.
CREATE UNIQUE INDEX cert_link_requests_pending
    ON cert_link_requests(user_id, subject_dn, issuer_dn) WHERE status = 'PENDING';
CREATE INDEX cert_link_requests_user ON cert_link_requests(user_id, subject_dn, creation_time);

-- A user's RFC 3820 proxy certificate, uploaded to generate short proxies from: one per linked
-- certificate (the end entity under the proxies). chain_pem: the certificates of the upload,
-- the proxy first; sealed_key: its private key sealed with the key-encryption key (never in the
-- clear); expires_at: the earliest notAfter of the chain, seconds since the epoch.
CREATE TABLE user_proxies (
    id              TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL REFERENCES users(id),
    certificate_id  TEXT NOT NULL UNIQUE REFERENCES user_certificates(id),
    subject_dn      TEXT NOT NULL,
    issuer_dn       TEXT NOT NULL,
    chain_pem       TEXT NOT NULL,
    sealed_key      TEXT NOT NULL,
    expires_at      BIGINT NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX user_proxies_user ON user_proxies(user_id);
