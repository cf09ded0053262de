-- Certificate authorities made at run time, certificate requests and Notary account numbers
-- (sqlite; kept column-for-column equal to migrations/postgres/0007_notary.sql).

-- The stored part of the issuer registry. key_reference: the sealed PKCS#8 PEM of a software
-- key (emptied when the CA is deleted) or the label of its key on the PKCS#11 token; never a key
-- in the clear. chain_pem: '' until certified, then its own certificate first and the root last.
-- A deleted CA keeps its row, so its name keeps naming only the certificates it issued.
CREATE TABLE certificate_authorities (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    name                TEXT NOT NULL UNIQUE,
    key_custody         TEXT NOT NULL,
    key_algorithm       TEXT NOT NULL,
    key_reference       TEXT NOT NULL,
    csr_pem             TEXT NOT NULL,
    chain_pem           TEXT NOT NULL,
    certificate_serial  TEXT,
    parent_id           BIGINT REFERENCES certificate_authorities(id),
    enabled             BIGINT NOT NULL,
    not_after           BIGINT,
    revoked_at          BIGINT,
    deleted_at          BIGINT,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_by          TEXT NOT NULL,
    updated_at          BIGINT NOT NULL
);

-- One row, bumped in the transaction of every change of certificate_authorities: a replica
-- whose registry was read at an older version reads the table again.
CREATE TABLE certificate_authorities_version (
    singleton  BIGINT PRIMARY KEY,
    version    BIGINT NOT NULL
);
INSERT INTO certificate_authorities_version (singleton, version) VALUES (1, 0);

-- Certificate requests (Notary). One request per CSR: csr_digest is the SHA-256 of its DER, so
-- the same CSR wrapped differently is the same request. status: Outstanding, Active, Rejected,
-- Revoked. chain_pem: '' until a certificate is signed or uploaded. certificate_serial: the
-- certificate a stored CA signed (revocable here); NULL for none or an uploaded one.
-- signing_since: a sign in progress holds the request (a stale hold is taken over).
CREATE TABLE certificate_requests (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    csr_pem             TEXT NOT NULL,
    csr_digest          TEXT NOT NULL UNIQUE,
    status              TEXT NOT NULL,
    chain_pem           TEXT NOT NULL,
    certificate_serial  TEXT,
    ca_id               BIGINT REFERENCES certificate_authorities(id),
    owner_id            TEXT NOT NULL,
    owner_email         TEXT NOT NULL,
    signing_since       BIGINT,
    created_by          TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    updated_by          TEXT NOT NULL,
    updated_at          BIGINT NOT NULL
);
CREATE INDEX certificate_requests_owner ON certificate_requests(owner_id, id);

-- Notary's integer account ids: one per user, given when the user is made (whatever made it:
-- the API, the command line), in order. A deleted account keeps its number, never reused.
CREATE TABLE account_numbers (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id     TEXT NOT NULL UNIQUE REFERENCES users(id),
    deleted_at  BIGINT
);
INSERT INTO account_numbers (user_id) SELECT id FROM users ORDER BY created_at, id;
CREATE TRIGGER users_account_number AFTER INSERT ON users
BEGIN
    INSERT INTO account_numbers (user_id) VALUES (NEW.id);
END;
