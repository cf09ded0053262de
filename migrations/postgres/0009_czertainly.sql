-- RA client operations, CZERTAINLY-style (postgres; kept column-for-column equal to
-- migrations/sqlite/0009_czertainly.sql): authorities (an issuer's stable UUID), RA profiles,
-- certificates as RA records with their event history, token profiles and managed keys, and the
-- end entities of the v1 API. Times are Unix seconds; flags 1 or 0; JSON as TEXT.

-- An issuer as an authority: its name (the issuer's, `[backends.NAME]` today) and a UUID kept
-- for good.
CREATE TABLE ra_authorities (
    uuid        TEXT PRIMARY KEY,
    issuer      TEXT NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL
);

-- An RA profile, bound to one authority; `settings` holds its issue and revoke attribute values
-- and its policy (JSON).
CREATE TABLE ra_profiles (
    uuid            TEXT PRIMARY KEY,
    name            TEXT NOT NULL UNIQUE,
    description     TEXT NOT NULL,
    authority_uuid  TEXT NOT NULL REFERENCES ra_authorities(uuid),
    enabled         BIGINT NOT NULL,
    settings        TEXT NOT NULL,
    created_at      BIGINT NOT NULL,
    updated_at      BIGINT NOT NULL
);

-- A certificate as an RA record: its state, the request it came from (CSR, issuer, the issuance
-- profile snapshotted), the issued certificate's serial (`certificates.serial`), the operation
-- last accepted on it and how it went. `next_attempt_at` set: background work is due (an
-- upstream to poll, an operation to resume), leased by moving it forward.
CREATE TABLE ra_certificates (
    uuid              TEXT PRIMARY KEY,
    ra_profile_uuid   TEXT NOT NULL REFERENCES ra_profiles(uuid),
    state             TEXT NOT NULL,
    subject_dn        TEXT NOT NULL,
    public_key        BYTEA NOT NULL,
    csr               BYTEA NOT NULL,
    issuer            TEXT NOT NULL,
    profile           TEXT NOT NULL,
    serial            TEXT,
    source_uuid       TEXT,
    key_uuid          TEXT,
    end_entity        TEXT,
    owner             TEXT NOT NULL,
    operation         TEXT NOT NULL,
    operation_status  TEXT NOT NULL,
    operation_error   TEXT,
    upstream_ref      TEXT,
    revoke_reason     BIGINT,
    destroy_key       BIGINT NOT NULL,
    next_attempt_at   BIGINT,
    attempts          BIGINT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL
);
CREATE INDEX ra_certificates_due ON ra_certificates(next_attempt_at) WHERE next_attempt_at IS NOT NULL;
CREATE INDEX ra_certificates_serial ON ra_certificates(serial);
CREATE INDEX ra_certificates_end_entity ON ra_certificates(end_entity);

CREATE TABLE ra_certificate_events (
    id                TEXT PRIMARY KEY,
    certificate_uuid  TEXT NOT NULL REFERENCES ra_certificates(uuid),
    at                BIGINT NOT NULL,
    event             TEXT NOT NULL,
    status            TEXT NOT NULL,
    message           TEXT NOT NULL,
    actor             TEXT NOT NULL
);
CREATE INDEX ra_certificate_events_certificate ON ra_certificate_events(certificate_uuid, at);

-- Where managed keys live: `kind` software (sealed with the key-encryption key) or pkcs11
-- (`settings`: module, token label, PIN variable).
CREATE TABLE ra_token_profiles (
    uuid        TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    settings    TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

-- A key generated in a token profile: its public key, and the sealed private key (software) or
-- its label on the token (pkcs11). `destroyed_at` set: the private key is gone.
CREATE TABLE ra_managed_keys (
    uuid                TEXT PRIMARY KEY,
    token_profile_uuid  TEXT NOT NULL REFERENCES ra_token_profiles(uuid),
    name                TEXT NOT NULL,
    algorithm           TEXT NOT NULL,
    public_key          BYTEA NOT NULL,
    sealed_key          TEXT,
    label               TEXT NOT NULL,
    created_at          BIGINT NOT NULL,
    destroyed_at        BIGINT
);

-- The end entities of the v1 API, per RA profile; the password as an argon2id PHC string.
CREATE TABLE ra_end_entities (
    ra_profile_uuid   TEXT NOT NULL REFERENCES ra_profiles(uuid),
    username          TEXT NOT NULL,
    password_hash     TEXT NOT NULL,
    subject_dn        TEXT NOT NULL,
    subject_alt_name  TEXT NOT NULL,
    email             TEXT NOT NULL,
    extension_data    TEXT NOT NULL,
    status            TEXT NOT NULL,
    created_at        BIGINT NOT NULL,
    updated_at        BIGINT NOT NULL,
    PRIMARY KEY (ra_profile_uuid, username)
);
