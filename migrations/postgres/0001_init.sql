-- pkid schema, PostgreSQL. Times are Unix seconds (BIGINT); ids and JSON are TEXT; DER is BYTEA.
-- Kept column-for-column equal to migrations/sqlite/0001_init.sql.

CREATE TABLE settings (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    thumbprint  TEXT NOT NULL UNIQUE,
    jwk         TEXT NOT NULL,
    status      TEXT NOT NULL,
    contact     TEXT NOT NULL,
    eab_kid     TEXT,
    created_at  BIGINT NOT NULL
);

-- External account binding keys (RFC 8555 §7.3.4): the HMAC key sealed with the KEK,
-- single-use (bound_account set once, by a conditional update).
CREATE TABLE eab_keys (
    kid            TEXT PRIMARY KEY,
    sealed_key     TEXT NOT NULL,
    directory      TEXT NOT NULL,
    note           TEXT NOT NULL,
    policy         TEXT,
    created_at     BIGINT NOT NULL,
    bound_account  TEXT,
    bound_at       BIGINT
);

CREATE TABLE orders (
    id                TEXT PRIMARY KEY,
    account_id        TEXT NOT NULL REFERENCES accounts(id),
    directory         TEXT NOT NULL,
    status            TEXT NOT NULL,
    expires           BIGINT NOT NULL,
    identifiers       TEXT NOT NULL,
    not_before        BIGINT,
    not_after         BIGINT,
    error             TEXT,
    profile_name      TEXT,
    replaces          TEXT,
    profile           TEXT,
    csr               BYTEA,
    certificate_serial TEXT,
    processing_since  BIGINT,
    created_at        BIGINT NOT NULL
);
CREATE INDEX orders_account ON orders(account_id, created_at);

CREATE TABLE authorizations (
    id          TEXT PRIMARY KEY,
    account_id  TEXT NOT NULL REFERENCES accounts(id),
    id_type     TEXT NOT NULL,
    id_value    TEXT NOT NULL,
    wildcard    BIGINT NOT NULL,
    status      TEXT NOT NULL,
    expires     BIGINT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX authorizations_reuse ON authorizations(account_id, id_type, id_value, status);

CREATE TABLE order_authorizations (
    order_id  TEXT NOT NULL REFERENCES orders(id),
    authz_id  TEXT NOT NULL REFERENCES authorizations(id),
    position  BIGINT NOT NULL,
    PRIMARY KEY (order_id, authz_id)
);

CREATE TABLE challenges (
    id         TEXT PRIMARY KEY,
    authz_id   TEXT NOT NULL REFERENCES authorizations(id),
    kind       TEXT NOT NULL,
    token      TEXT NOT NULL,
    status     TEXT NOT NULL,
    validated  BIGINT,
    error      TEXT
);
CREATE INDEX challenges_authz ON challenges(authz_id);

-- One row per serial, written before the signature (status 'tbs') and completed after it
-- ('issued'), so a crash between the two leaves a record and the serial is never reused.
CREATE TABLE certificates (
    serial       TEXT PRIMARY KEY,
    issuer       TEXT NOT NULL,
    order_id     TEXT REFERENCES orders(id),
    account_id   TEXT,
    status       TEXT NOT NULL,
    tbs          BYTEA NOT NULL,
    der          BYTEA,
    chain_pem    TEXT,
    not_before   BIGINT NOT NULL,
    not_after    BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    revoked_at   BIGINT,
    revocation_reason BIGINT
);
CREATE INDEX certificates_issuer_revoked ON certificates(issuer, revoked_at);
CREATE INDEX certificates_order ON certificates(order_id);

-- Nonces are authenticated by the server's key; a redeemed nonce is recorded here so it is
-- accepted once across every replica sharing the database.
CREATE TABLE redeemed_nonces (
    nonce    TEXT PRIMARY KEY,
    expires  BIGINT NOT NULL
);
CREATE INDEX redeemed_nonces_expires ON redeemed_nonces(expires);

-- Signed CRLs, newest last per issuer; every replica serves the same bytes. CRL numbers are
-- microsecond timestamps: increasing without coordination between replicas.
CREATE TABLE crls (
    issuer        TEXT NOT NULL,
    number        BIGINT NOT NULL,
    generated_at  BIGINT NOT NULL,
    this_update   BIGINT NOT NULL,
    next_update   BIGINT NOT NULL,
    der           BYTEA NOT NULL,
    PRIMARY KEY (issuer, number)
);

-- Operator bearer tokens for the admin REST surface: only their SHA-256 is stored.
CREATE TABLE admin_tokens (
    id          TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    note        TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);
