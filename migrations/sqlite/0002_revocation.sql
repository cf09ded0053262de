-- Revocation infrastructure (sqlite; kept column-for-column equal to the other database's file).

-- RFC 5280 §5.3.2: when the key is known or suspected to have been compromised, if earlier than
-- the revocation. The CRL shard (Boulder-style) is fixed at issuance and baked into the
-- certificate's CRL distribution point; NULL: the issuer's unsharded CRL.
ALTER TABLE certificates ADD COLUMN invalidity_date BIGINT;
ALTER TABLE certificates ADD COLUMN crl_shard BIGINT;
CREATE INDEX certificates_issuer_shard ON certificates(issuer, crl_shard, revoked_at);

-- Stored CRLs are caches (always re-derivable from the certificates), so the table is remade
-- with a shard column: -1 is the issuer's full CRL, 0..N-1 its shards.
DROP TABLE crls;
CREATE TABLE crls (
    issuer        TEXT NOT NULL,
    shard         BIGINT NOT NULL,
    number        BIGINT NOT NULL,
    generated_at  BIGINT NOT NULL,
    this_update   BIGINT NOT NULL,
    next_update   BIGINT NOT NULL,
    der           BLOB NOT NULL,
    PRIMARY KEY (issuer, shard, number)
);

-- Leases: one replica at a time does a named job (an issuer's CRL generation). Taken and renewed
-- by a conditional upsert (the holder, or anyone once it has expired).
CREATE TABLE leases (
    name     TEXT PRIMARY KEY,
    holder   TEXT NOT NULL,
    expires  BIGINT NOT NULL
);

-- Delegated OCSP responders (RFC 6960 §4.2.2.2): a short-lived certificate issued by the CA with
-- id-kp-OCSPSigning and id-pkix-ocsp-nocheck; its key is software-held, sealed with the KEK.
CREATE TABLE ocsp_responders (
    issuer      TEXT NOT NULL,
    serial      TEXT NOT NULL,
    cert_der    BLOB NOT NULL,
    sealed_key  TEXT NOT NULL,
    not_before  BIGINT NOT NULL,
    not_after   BIGINT NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (issuer, serial)
);
