-- Directory isolation (postgres; kept column-for-column equal to
-- migrations/sqlite/0010_directory_isolation.sql): an account belongs to the ACME directory it
-- was made in, and one key may hold an account on each directory, so the key is unique per
-- directory instead of across the server.
--
-- Existing accounts: one made with an external account binding belongs to the directory of its
-- binding key (a binding key is bound to one directory and was checked against it); every other
-- account belongs to `default`. No directory is inferred from an account's orders: an account
-- without a binding whose orders were placed on a directory that requires one is exactly what
-- this change shuts out.
ALTER TABLE accounts ADD COLUMN directory TEXT NOT NULL DEFAULT 'default';
ALTER TABLE accounts ALTER COLUMN directory DROP DEFAULT;
UPDATE accounts SET directory = k.directory FROM eab_keys k WHERE k.kid = accounts.eab_kid;
ALTER TABLE accounts DROP CONSTRAINT accounts_thumbprint_key;
ALTER TABLE accounts ADD CONSTRAINT accounts_directory_thumbprint_key UNIQUE (directory, thumbprint);
