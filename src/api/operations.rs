//! What load balancers and monitoring ask of every replica: `GET /readyz` (200 when the
//! database and every issuer's backend answer, 503 naming what failed; `/healthz` stays the
//! plain liveness answer) and `GET /metrics` (Prometheus text format 0.0.4).
//!
//! The metrics, Notary's names where Notary has them:
//! - `http_requests_total` and `http_request_duration_seconds` by surface, route (ids folded
//!   to `{id}`), method and status code, recorded by the transport for every request;
//! - `certificate_requests`, `outstanding_certificate_requests`, `certificates`,
//!   `certificates_expired`, `certificates_expiring_in_{1_day,7_days,30_days,90_days}`,
//!   `active_ca_certificates`, `pending_ca_certificates`, `expired_ca_certificates`: read from
//!   the database at each scrape, so every replica tells the same;
//! - `pkid_certificates_issued_total` and `pkid_certificates_revoked_total` by issuer and
//!   backend kind (from the database), `pkid_certificates_expiring` by issuer and horizon;
//! - `pkid_backend_signing_seconds` by backend, kind and operation (this process's signatures);
//! - `pkid_pkcs11_sessions`, `pkid_pkcs11_sessions_in_use`, `pkid_pkcs11_recoveries_total` by
//!   backend, for keys in a token.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::StatusCode;
use pkid_backends::metrics::{signing_snapshot, Histogram, BUCKETS};
use serde::Serialize;

use super::Reply;
use crate::ca::registry::Issuers;
use crate::store::{Reads, EXPIRY_HORIZON_DAYS};

/// Distinct (surface, route, method, code) sets kept; past it, new ones count as `other`.
const MAX_SERIES: usize = 2000;
/// How long one backend's readiness probe may take.
const PROBE_BOUND: Duration = Duration::from_secs(5);

/// The requests this process served, by (surface, route, method, code).
#[derive(Default)]
pub struct RequestMetrics {
    series: Mutex<BTreeMap<(String, String, String, u16), Histogram>>,
}

impl RequestMetrics {
    /// Note one request to `path` answered `status` after `took`.
    pub fn record(&self, method: &http::Method, path: &str, status: StatusCode, took: Duration) {
        let (surface, route) = route_label(path, status);
        let mut series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        let mut key = (surface, route, method.to_string(), status.as_u16());
        if !series.contains_key(&key) && series.len() >= MAX_SERIES {
            key.1 = "other".into();
        }
        series.entry(key).or_default().observe(took.as_secs_f64());
    }

    fn snapshot(&self) -> Vec<((String, String, String, u16), Histogram)> {
        let series = self.series.lock().unwrap_or_else(PoisonError::into_inner);
        series.iter().map(|(k, h)| (k.clone(), h.clone())).collect()
    }
}

/// The surface a path belongs to, and the path with its ids folded (`{id}`); an answer 404 is
/// `unmatched` (scanners' paths would be endless).
pub fn route_label(path: &str, status: StatusCode) -> (String, String) {
    let surface = match path {
        p if p.starts_with("/acme") => "acme",
        p if p.starts_with("/admin/") => "admin",
        p if p.starts_with("/api/v1") || p == "/status" => "notary",
        p if p.starts_with("/iam") => "iam",
        p if p.starts_with("/v1/") || p.starts_with("/v2/") => "czertainly",
        p if p.starts_with("/crl/") || p.starts_with("/ocsp") || p.starts_with("/ca/") => {
            "repository"
        }
        "/token" | "/login" | "/.well-known/jwks.json" => "identity",
        p if p.starts_with("/identity") => "identity",
        "/metrics" | "/readyz" | "/healthz" => "operations",
        _ => "other",
    };
    if status == StatusCode::NOT_FOUND {
        return (surface.into(), "unmatched".into());
    }
    let route = path
        .split('/')
        .map(|segment| {
            // Random names have capitals or digits; route words (`certificate_requests`) not.
            let id = (segment.len() >= 16
                && segment
                    .bytes()
                    .any(|b| b.is_ascii_digit() || b.is_ascii_uppercase()))
                || (!segment.is_empty() && segment.bytes().all(|b| b.is_ascii_digit()));
            if id {
                "{id}"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/");
    (surface.into(), route)
}

/// `/metrics` and `/readyz`.
pub struct Operations {
    reads: Reads,
    issuers: Arc<Issuers>,
    pub requests: Arc<RequestMetrics>,
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    /// Each check: `ok`, or what failed.
    checks: BTreeMap<String, String>,
}

impl Operations {
    pub fn new(reads: Reads, issuers: Arc<Issuers>) -> Operations {
        Operations {
            reads,
            issuers,
            requests: Arc::new(RequestMetrics::default()),
        }
    }

    pub fn serves(path: &str) -> bool {
        matches!(path, "/metrics" | "/readyz")
    }

    pub async fn handle(&self, method: &http::Method, path: &str) -> Reply {
        if method != http::Method::GET && method != http::Method::HEAD {
            return Reply::text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n")
                .header(http::header::ALLOW, "GET, HEAD");
        }
        match path {
            "/readyz" => self.readiness().await,
            _ => self.metrics().await,
        }
    }

    /// 200 when the database answers and every issuer's backend signs a probe; 503 naming what
    /// failed otherwise.
    async fn readiness(&self) -> Reply {
        let mut checks = BTreeMap::new();
        let database = match tokio::time::timeout(PROBE_BOUND, self.reads.ping()).await {
            Ok(Ok(())) => "ok".to_owned(),
            Ok(Err(e)) => format!("failed: {e}"),
            Err(_) => "no answer within 5 s".to_owned(),
        };
        checks.insert("database".to_owned(), database);
        for ca in self.issuers.all().await {
            let outcome = match tokio::time::timeout(PROBE_BOUND, ca.backend.probe()).await {
                Ok(Ok(())) => "ok".to_owned(),
                Ok(Err(e)) => format!("failed: {e}"),
                Err(_) => "no answer within 5 s".to_owned(),
            };
            checks.insert(format!("backend:{}", ca.name), outcome);
        }
        for stored in &self.issuers.view().await.cas {
            if let Some(why) = stored.broken() {
                checks.insert(
                    format!("backend:{}", stored.row.name),
                    format!("failed: {why}"),
                );
            }
        }
        let ready = checks.values().all(|v| v == "ok");
        let status = if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        Reply::json(status, &Readiness { ready, checks })
            .header(http::header::CACHE_CONTROL, "no-store")
    }

    async fn metrics(&self) -> Reply {
        let mut out = String::new();
        self.request_metrics(&mut out);
        if let Err(e) = self.stored_metrics(&mut out).await {
            tracing::warn!(error = %e, "metrics from the database are left out of this scrape");
        }
        self.backend_metrics(&mut out).await;
        Reply::bytes("text/plain; version=0.0.4", out)
            .header(http::header::CACHE_CONTROL, "no-store")
    }

    fn request_metrics(&self, out: &mut String) {
        let series = self.requests.snapshot();
        header(
            out,
            "http_requests_total",
            "counter",
            "HTTP requests served, by surface, route, method and status code.",
        );
        for ((surface, route, method, code), h) in &series {
            let labels = labels(&[
                ("surface", surface),
                ("route", route),
                ("method", method),
                ("code", &code.to_string()),
            ]);
            let _ = writeln!(out, "http_requests_total{labels} {}", h.count);
        }
        header(
            out,
            "http_request_duration_seconds",
            "histogram",
            "Time to answer HTTP requests, seconds.",
        );
        for ((surface, route, method, code), h) in &series {
            let base = [
                ("surface", surface.as_str()),
                ("route", route),
                ("method", method),
            ];
            let code = code.to_string();
            let mut pairs: Vec<(&str, &str)> = base.to_vec();
            pairs.push(("code", &code));
            histogram(out, "http_request_duration_seconds", &pairs, h);
        }
    }

    async fn stored_metrics(&self, out: &mut String) -> Result<(), crate::store::StoreError> {
        let now = crate::store::now();
        let counts = self.reads.certificate_request_counts().await?;
        let total: i64 = counts.iter().map(|(_, n)| n).sum();
        let outstanding = counts
            .iter()
            .find(|(status, _)| status == crate::store::cert_requests::OUTSTANDING)
            .map_or(0, |(_, n)| *n);
        gauge(
            out,
            "certificate_requests",
            "Certificate requests (Notary).",
            total,
        );
        gauge(
            out,
            "outstanding_certificate_requests",
            "Certificate requests without a certificate.",
            outstanding,
        );

        let inventory = self.reads.certificate_inventory(now).await?;
        let kinds = self.backend_kinds().await;
        let kind_of = |issuer: &str| kinds.get(issuer).copied().unwrap_or("unknown");
        let live: i64 = inventory
            .iter()
            .map(|i| i.issued - i.revoked - i.expired)
            .sum();
        gauge(
            out,
            "certificates",
            "Certificates issued, neither revoked nor expired.",
            live,
        );
        gauge(
            out,
            "certificates_expired",
            "Certificates expired and not revoked.",
            inventory.iter().map(|i| i.expired).sum(),
        );
        for (k, days) in EXPIRY_HORIZON_DAYS.iter().enumerate() {
            let name = if *days == 1 {
                "certificates_expiring_in_1_day".to_owned()
            } else {
                format!("certificates_expiring_in_{days}_days")
            };
            let help = format!("Certificates expiring within {days} days, not revoked.");
            gauge(
                out,
                &name,
                &help,
                inventory.iter().map(|i| i.expiring[k]).sum(),
            );
        }
        header(
            out,
            "pkid_certificates_issued_total",
            "counter",
            "Certificates issued, by issuer and backend kind.",
        );
        for i in &inventory {
            let l = labels(&[("issuer", &i.issuer), ("backend", kind_of(&i.issuer))]);
            let _ = writeln!(out, "pkid_certificates_issued_total{l} {}", i.issued);
        }
        header(
            out,
            "pkid_certificates_revoked_total",
            "counter",
            "Certificates revoked, by issuer and backend kind.",
        );
        for i in &inventory {
            let l = labels(&[("issuer", &i.issuer), ("backend", kind_of(&i.issuer))]);
            let _ = writeln!(out, "pkid_certificates_revoked_total{l} {}", i.revoked);
        }
        header(
            out,
            "pkid_certificates_expiring",
            "gauge",
            "Certificates neither revoked nor expired that expire within the horizon, by issuer.",
        );
        for i in &inventory {
            for (k, days) in EXPIRY_HORIZON_DAYS.iter().enumerate() {
                let l = labels(&[
                    ("issuer", &i.issuer),
                    ("backend", kind_of(&i.issuer)),
                    ("within_days", &days.to_string()),
                ]);
                let _ = writeln!(out, "pkid_certificates_expiring{l} {}", i.expiring[k]);
            }
        }
        let view = self.issuers.view().await;
        let count = |f: &dyn Fn(&crate::ca::registry::StoredCa) -> bool| {
            i64::try_from(view.cas.iter().filter(|c| f(c)).count()).unwrap_or(i64::MAX)
        };
        gauge(
            out,
            "active_ca_certificates",
            "CAs made here that may sign now.",
            count(&|c| c.may_sign(now).is_ok()),
        );
        gauge(
            out,
            "pending_ca_certificates",
            "CAs made here waiting for their certificate.",
            count(&|c| c.row.chain_pem.is_empty()),
        );
        gauge(
            out,
            "expired_ca_certificates",
            "CAs made here whose certificate expired.",
            count(&|c| c.row.not_after.is_some_and(|t| t <= now)),
        );
        Ok(())
    }

    /// Each issuer's backend kind, by name.
    async fn backend_kinds(&self) -> BTreeMap<String, &'static str> {
        self.issuers
            .all()
            .await
            .iter()
            .map(|ca| (ca.name.clone(), ca.backend.kind()))
            .collect()
    }

    async fn backend_metrics(&self, out: &mut String) {
        header(
            out,
            "pkid_backend_signing_seconds",
            "histogram",
            "Time a backend took to build, sign and check, seconds, by operation.",
        );
        for ((backend, kind, operation), h) in signing_snapshot() {
            histogram(
                out,
                "pkid_backend_signing_seconds",
                &[
                    ("backend", &backend),
                    ("kind", kind),
                    ("operation", operation.as_str()),
                ],
                &h,
            );
        }
        let sessions: Vec<(String, pkid_backends::SessionUse)> = self
            .issuers
            .all()
            .await
            .iter()
            .filter_map(|ca| Some((ca.name.clone(), ca.backend.session_use()?)))
            .collect();
        header(
            out,
            "pkid_pkcs11_sessions",
            "gauge",
            "Logged-in PKCS#11 sessions a token key keeps, by backend.",
        );
        for (name, u) in &sessions {
            let _ = writeln!(
                out,
                "pkid_pkcs11_sessions{} {}",
                labels(&[("backend", name)]),
                u.sessions
            );
        }
        header(
            out,
            "pkid_pkcs11_sessions_in_use",
            "gauge",
            "PKCS#11 sessions signing now, by backend.",
        );
        for (name, u) in &sessions {
            let _ = writeln!(
                out,
                "pkid_pkcs11_sessions_in_use{} {}",
                labels(&[("backend", name)]),
                u.in_use
            );
        }
        header(
            out,
            "pkid_pkcs11_recoveries_total",
            "counter",
            "PKCS#11 signatures that recovered a lost session, login or token, by backend.",
        );
        for (name, u) in &sessions {
            let _ = writeln!(
                out,
                "pkid_pkcs11_recoveries_total{} {}",
                labels(&[("backend", name)]),
                u.recoveries
            );
        }
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    header(out, name, "gauge", help);
    let _ = writeln!(out, "{name} {value}");
}

/// `{a="x",b="y"}` with the values escaped (text format 0.0.4: `\`, `"` and newlines).
fn labels(pairs: &[(&str, &str)]) -> String {
    let inner: Vec<String> = pairs
        .iter()
        .map(|(k, v)| {
            let v = v
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            format!("{k}=\"{v}\"")
        })
        .collect();
    format!("{{{}}}", inner.join(","))
}

fn histogram(out: &mut String, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
    let cumulative = h.cumulative();
    for (bound, count) in BUCKETS.iter().zip(cumulative) {
        let le = bound.to_string();
        let mut with = pairs.to_vec();
        with.push(("le", &le));
        let _ = writeln!(out, "{name}_bucket{} {count}", labels(&with));
    }
    let mut with = pairs.to_vec();
    with.push(("le", "+Inf"));
    let _ = writeln!(out, "{name}_bucket{} {}", labels(&with), h.count);
    let _ = writeln!(out, "{name}_sum{} {}", labels(pairs), h.sum);
    let _ = writeln!(out, "{name}_count{} {}", labels(pairs), h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fold_their_ids_and_unmatched_paths_are_one_series() {
        assert_eq!(
            route_label("/api/v1/certificate_requests/12/sign", StatusCode::ACCEPTED),
            (
                "notary".into(),
                "/api/v1/certificate_requests/{id}/sign".into()
            )
        );
        assert_eq!(
            route_label("/acme/order/AbCdEfGhIjKlMnOpQr", StatusCode::OK),
            ("acme".into(), "/acme/order/{id}".into())
        );
        assert_eq!(
            route_label("/wp-admin/x.php", StatusCode::NOT_FOUND),
            ("other".into(), "unmatched".into())
        );
        assert_eq!(labels(&[("a", "x\"y\\z")]), "{a=\"x\\\"y\\\\z\"}");
    }

    /// A histogram in Prometheus' text form: cumulative buckets that never decrease, `+Inf`
    /// equal to the count, and the sum.
    #[test]
    fn histograms_are_cumulative_up_to_their_count() {
        let mut h = Histogram::default();
        for seconds in [0.0001, 0.003, 0.2, 0.2, 42.0] {
            h.observe(seconds);
        }
        let mut out = String::new();
        histogram(&mut out, "t_seconds", &[("route", "/x")], &h);
        let counts: Vec<u64> = out
            .lines()
            .filter(|l| l.starts_with("t_seconds_bucket{"))
            .map(|l| {
                l.rsplit(' ')
                    .next()
                    .unwrap_or("")
                    .parse()
                    .unwrap_or(u64::MAX)
            })
            .collect();
        assert_eq!(counts.len(), BUCKETS.len() + 1);
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{out}");
        assert_eq!(counts.last(), Some(&5));
        assert!(
            out.contains("t_seconds_bucket{route=\"/x\",le=\"+Inf\"} 5"),
            "{out}"
        );
        assert!(out.contains("t_seconds_count{route=\"/x\"} 5"), "{out}");
        assert!(out.contains("t_seconds_sum{route=\"/x\"} 42.4031"), "{out}");
    }
}
