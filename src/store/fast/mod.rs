//! The ACME fast paths: reads a request would make of a row, answered without a query of their
//! own.
//!
//! A client reads what it has just created or is about to change: its account on every request
//! (`kid`), the authorization of its new order, the challenge it answers, the order it
//! finalizes, the certificate it was just issued. Two ways answer these reads sooner:
//!
//! - **SQLite** (the embedded file, written by this process alone): the rows are kept in memory
//!   as they are written. Accounts in `accounts` (each change drops the copy; a read keeps what
//!   it read unless an account changed meanwhile), orders, authorizations, challenges and
//!   issued certificates in `fresh`.
//! - **PostgreSQL** (replicas sharing the database, so nothing is kept in memory): the account
//!   and the resource a request's URL names are read by the statement that redeems its nonce
//!   (`prefetch`), one round trip where there were three.
//!
//! The rule that keeps them exact (`fresh` says it at length): a fast path answers what the
//! plain read would have answered. In memory, only the database writer changes an entry, once
//! a write is committed and before that write's caller hears of it, in commit order
//! (`group_commit::After`); any write that may change a row without telling the whole new row,
//! or that did not commit, drops the entry, and a dropped row is read from the file from then
//! on. With the nonce, the resource is read a few milliseconds early in the account's snapshot,
//! and every write that depends on a row's state checks that state in its own statement.
//! `tests` checks every read served from memory against the file through every step of an
//! issuance.

pub(super) mod accounts;
mod bounded;
pub(super) mod fresh;
pub(super) mod prefetch;
#[cfg(test)]
mod tests;

pub use prefetch::{Prefetch, Prefetched};
