//! Signing latency, per backend and operation, for the operator's `/metrics`: every local
//! backend times its certificate, CRL and OCSP signatures (the whole build-sign-check step)
//! into one process-wide table, read as a snapshot. [`Histogram`] is the fixed-bucket
//! histogram the server's other timings use too.

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::Duration;

/// Upper bounds of the buckets, seconds (a PKCS#11 signature is a millisecond or two, an RSA
/// 4096 software one tens of milliseconds, a slow token seconds).
pub const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// Counts of observations at or under each bound of [`BUCKETS`], their sum and count.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// Not cumulative: `buckets[i]` counts observations in `(BUCKETS[i-1], BUCKETS[i]]`; the
    /// last slot those past every bound.
    pub buckets: [u64; BUCKETS.len() + 1],
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, seconds: f64) {
        let slot = BUCKETS
            .iter()
            .position(|bound| seconds <= *bound)
            .unwrap_or(BUCKETS.len());
        self.buckets[slot] += 1;
        self.sum += seconds;
        self.count += 1;
    }

    /// The cumulative counts Prometheus wants, one per bound of [`BUCKETS`].
    pub fn cumulative(&self) -> [u64; BUCKETS.len()] {
        let mut out = [0u64; BUCKETS.len()];
        let mut running = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            running += self.buckets[i];
            *slot = running;
        }
        out
    }
}

/// What was signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    Certificate,
    CaCertificate,
    Crl,
    Ocsp,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Certificate => "certificate",
            Operation::CaCertificate => "ca_certificate",
            Operation::Crl => "crl",
            Operation::Ocsp => "ocsp",
        }
    }
}

/// (backend name, backend kind, operation).
pub type SigningKey = (String, &'static str, Operation);

fn table() -> &'static Mutex<BTreeMap<SigningKey, Histogram>> {
    static TABLE: OnceLock<Mutex<BTreeMap<SigningKey, Histogram>>> = OnceLock::new();
    TABLE.get_or_init(|| Mutex::new(BTreeMap::new()))
}

/// Note one signing step of `backend` (of `kind`) that took `took`.
pub fn record_signing(backend: &str, kind: &'static str, operation: Operation, took: Duration) {
    let mut table = table().lock().unwrap_or_else(PoisonError::into_inner);
    table
        .entry((backend.to_owned(), kind, operation))
        .or_default()
        .observe(took.as_secs_f64());
}

/// Every signing histogram so far.
pub fn signing_snapshot() -> Vec<(SigningKey, Histogram)> {
    let table = table().lock().unwrap_or_else(PoisonError::into_inner);
    table.iter().map(|(k, h)| (k.clone(), h.clone())).collect()
}

/// Runs `work` and notes how long it took, whatever it gave.
pub async fn timed<T>(
    backend: &str,
    kind: &'static str,
    operation: Operation,
    work: impl std::future::Future<Output = T>,
) -> T {
    let started = std::time::Instant::now();
    let out = work.await;
    record_signing(backend, kind, operation, started.elapsed());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_their_buckets() {
        let mut h = Histogram::default();
        h.observe(0.0004);
        h.observe(0.003);
        h.observe(60.0);
        assert_eq!(h.count, 3);
        let cumulative = h.cumulative();
        assert_eq!(cumulative[0], 1);
        assert_eq!(cumulative[3], 2, "0.005 s and under");
        assert_eq!(cumulative[BUCKETS.len() - 1], 2, "one past every bound");
        record_signing("t", "software", Operation::Crl, Duration::from_millis(2));
        assert!(signing_snapshot()
            .iter()
            .any(|((name, _, op), h)| name == "t" && *op == Operation::Crl && h.count >= 1));
    }
}
