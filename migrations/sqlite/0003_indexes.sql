-- Indexes for the queries that run on every newOrder or every minute, so that their cost does
-- not grow with the number of orders an account (or the whole CA) has made.

-- newOrder hands back a pending order of the account for the same identifiers (RFC 8555 §7.4):
-- without this index it read every order of the account.
CREATE INDEX orders_reuse ON orders(account_id, identifiers, created_at) WHERE status = 'pending';
-- RFC 9773: the order that already replaces a certificate.
CREATE INDEX orders_replaces ON orders(replaces) WHERE replaces IS NOT NULL;
-- Recovery looks for orders stuck in processing every minute.
CREATE INDEX orders_processing ON orders(processing_since) WHERE status = 'processing';
-- The per-identifier rate limit counts the recent authorizations of a name, of all accounts.
CREATE INDEX authorizations_identifier ON authorizations(id_value, created_at);
