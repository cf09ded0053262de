-- Identity (sqlite; kept column-for-column equal to migrations/postgres/0005_identity.sql): users
-- and their roles, the certificates linked to them and the keys bound to them, OAuth2 clients,
-- and an expiry for admin tokens. No secret is stored in the clear: passwords as argon2id PHC
-- strings, client secrets as their SHA-256.

-- roles: space-separated role names; password_hash NULL: no password login; enabled 1 or 0.
CREATE TABLE users (
    id             TEXT PRIMARY KEY,
    username       TEXT NOT NULL UNIQUE,
    email          TEXT UNIQUE,
    roles          TEXT NOT NULL,
    password_hash  TEXT,
    enabled        BIGINT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- A certificate linked to a user: by its subject and issuer DN (RFC 2253), with the certificate
-- itself when it was given (a link may be by DN only). One user per subject and issuer.
CREATE TABLE user_certificates (
    id          TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    subject_dn  TEXT NOT NULL,
    issuer_dn   TEXT NOT NULL,
    der         BLOB,
    created_at  BIGINT NOT NULL,
    UNIQUE (subject_dn, issuer_dn)
);
CREATE INDEX user_certificates_user ON user_certificates(user_id);

-- A public key bound to a user, for JWS-signed requests: its RFC 7638 thumbprint and its JWK.
CREATE TABLE user_keys (
    thumbprint  TEXT PRIMARY KEY,
    user_id     TEXT NOT NULL REFERENCES users(id),
    jwk         TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX user_keys_user ON user_keys(user_id);

-- OAuth2 clients (RFC 6749 §2): the secret's SHA-256 (hex), the scopes and grant types the
-- client may use (space-separated).
CREATE TABLE oauth_clients (
    client_id    TEXT PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    secret_hash  TEXT NOT NULL,
    scopes       TEXT NOT NULL,
    grant_types  TEXT NOT NULL,
    enabled      BIGINT NOT NULL,
    created_at   BIGINT NOT NULL
);

-- NULL for tokens made before expiry existed: they keep working until revoked.
ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;
