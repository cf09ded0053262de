-- Directory isolation (sqlite; kept column-for-column equal to
-- migrations/postgres/0010_directory_isolation.sql): an account belongs to the ACME directory it
-- was made in, and one key may hold an account on each directory, so the key is unique per
-- directory instead of across the server.
--
-- Existing accounts: one made with an external account binding belongs to the directory of its
-- binding key (a binding key is bound to one directory and was checked against it); every other
-- account belongs to `default`. No directory is inferred from an account's orders: an account
-- without a binding whose orders were placed on a directory that requires one is exactly what
-- this change shuts out.
--
-- SQLite cannot drop a column's UNIQUE constraint, so the table is made again. Orders and
-- authorizations reference it: their foreign keys are checked at commit (defer_foreign_keys
-- holds for this transaction only), by which time every account is back under its old id.
PRAGMA defer_foreign_keys = ON;
CREATE TABLE accounts_before_0010 AS SELECT * FROM accounts;
DROP TABLE accounts;
CREATE TABLE accounts (
    id          TEXT PRIMARY KEY,
    thumbprint  TEXT NOT NULL,
    jwk         TEXT NOT NULL,
    status      TEXT NOT NULL,
    contact     TEXT NOT NULL,
    eab_kid     TEXT,
    created_at  BIGINT NOT NULL,
    directory   TEXT NOT NULL,
    UNIQUE (directory, thumbprint)
);
INSERT INTO accounts (id, thumbprint, jwk, status, contact, eab_kid, created_at, directory)
SELECT a.id, a.thumbprint, a.jwk, a.status, a.contact, a.eab_kid, a.created_at,
       COALESCE((SELECT k.directory FROM eab_keys k WHERE k.kid = a.eab_kid), 'default')
FROM accounts_before_0010 a;
DROP TABLE accounts_before_0010;
