//! HTTPS transport: rustls + hyper (no framework). Routing to the API surfaces, body limits,
//! header-read timeouts, a connection limit, request ids, graceful shutdown.

pub mod admin;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::acme::problem::Problem;
use crate::acme::{header_value, AcmeServer, Reply};
use crate::revocation::{CrlScope, Revocation};
use base64::Engine;

pub struct HttpSettings {
    /// Fixed origin for absolute URLs; `None`: taken from the request's Host header.
    pub base_url: Option<String>,
    pub default_origin: String,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

pub struct App {
    /// ACME directories: named ones (`/acme/NAME/…`) and the default (`/acme/…`).
    pub acme: Vec<Arc<AcmeServer>>,
    pub revocation: Arc<Revocation>,
    pub admin: admin::AdminApi,
    pub settings: HttpSettings,
    request_counter: AtomicU64,
}

/// Which resources a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The HTTPS listener: everything.
    All,
    /// The plain-HTTP listener: CRLs and OCSP only.
    RevocationOnly,
}

impl App {
    pub fn new(
        acme: Vec<Arc<AcmeServer>>,
        revocation: Arc<Revocation>,
        admin: admin::AdminApi,
        settings: HttpSettings,
    ) -> App {
        App {
            acme,
            revocation,
            admin,
            settings,
            request_counter: AtomicU64::new(0),
        }
    }

    fn origin(&self, req: &Request<Incoming>) -> String {
        if let Some(base) = &self.settings.base_url {
            return base.clone();
        }
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
        match host {
            Some(h) => format!("https://{h}"),
            None => self.settings.default_origin.clone(),
        }
    }

    pub async fn serve_request(
        self: Arc<Self>,
        req: Request<Incoming>,
        peer: SocketAddr,
        surface: Surface,
    ) -> Response<Full<Bytes>> {
        let id = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", id, %method, path = %path, %peer);
        async move {
            let started = std::time::Instant::now();
            let response = self.route(req, surface).await;
            tracing::debug!(
                status = response.status().as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "served"
            );
            response
        }
        .instrument(span)
        .await
    }

    async fn route(&self, req: Request<Incoming>, surface: Surface) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if path.starts_with("/crl/") || path == "/ocsp" || path.starts_with("/ocsp/") {
            return self.revocation_route(req, &path).await;
        }
        if surface == Surface::RevocationOnly {
            return plain(StatusCode::NOT_FOUND, "not found\n");
        }
        if path.starts_with("/admin/") {
            let (parts, body) = req.into_parts();
            let reply = match read_body(body, self.settings.max_body_bytes).await {
                Ok(body) => {
                    self.admin
                        .handle(&parts.method, &path, &parts.headers, body)
                        .await
                }
                Err(_) => admin::AdminReply {
                    status: StatusCode::PAYLOAD_TOO_LARGE,
                    body: serde_json::json!({"error": "request body is too large"}),
                },
            };
            let mut r = Response::new(Full::new(Bytes::from(
                serde_json::to_vec(&reply.body).unwrap_or_default(),
            )));
            *r.status_mut() = reply.status;
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            r.headers_mut().insert(
                http::header::CACHE_CONTROL,
                http::HeaderValue::from_static("no-store"),
            );
            return r;
        }
        if path == "/acme" || path.starts_with("/acme/") {
            let origin = self.origin(&req);
            let (parts, body) = req.into_parts();
            // The longest matching prefix wins: `/acme/NAME/…` before `/acme/…`.
            let directory = self
                .acme
                .iter()
                .filter(|d| {
                    path.strip_prefix(d.prefix())
                        .is_some_and(|r| r.is_empty() || r.starts_with('/'))
                })
                .max_by_key(|d| d.prefix().len());
            let Some(directory) = directory else {
                return plain(StatusCode::NOT_FOUND, "no such ACME directory\n");
            };
            let body = match read_body(body, self.settings.max_body_bytes).await {
                Ok(b) => b,
                // Still an ACME error: problem document, fresh nonce, index link.
                Err(p) => return to_response(directory.error_reply(&p, &origin)),
            };
            let reply = directory
                .handle(&parts.method, &path, &parts.headers, body, &origin)
                .await;
            return to_response(reply);
        }
        match path.as_str() {
            "/healthz" => plain(StatusCode::OK, "ok\n"),
            "/" => plain(StatusCode::OK, "pkid: ACME directory at /acme/directory\n"),
            _ => plain(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

impl App {
    /// RFC 5280 CRLs (DER and PEM) and RFC 6960 OCSP (POST, and GET with base64 in the path).
    async fn revocation_route(&self, req: Request<Incoming>, path: &str) -> Response<Full<Bytes>> {
        let method = req.method().clone();
        if let Some(file) = path.strip_prefix("/crl/") {
            if method != http::Method::GET && method != http::Method::HEAD {
                return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
            }
            let (name, pem) = match (file.strip_suffix(".crl"), file.strip_suffix(".pem")) {
                (Some(n), _) => (n, false),
                (_, Some(n)) => (n, true),
                _ => return plain(StatusCode::NOT_FOUND, "not found\n"),
            };
            // `NAME` (the complete CRL), `NAME/SHARD` or `NAME/delta`.
            let (name, scope) = match name.split_once('/') {
                None => (name, CrlScope::Full),
                Some((issuer, "delta")) => (issuer, CrlScope::Delta),
                Some((issuer, shard)) => match shard.parse::<i64>() {
                    Ok(k) if shard.bytes().all(|b| b.is_ascii_digit()) => {
                        (issuer, CrlScope::Shard(k))
                    }
                    _ => return plain(StatusCode::NOT_FOUND, "no such CRL shard\n"),
                },
            };
            return match self.revocation.current_crl_scope(name, scope).await {
                Ok(crl) if pem => bytes_response(
                    "application/x-pem-file",
                    crate::ca::to_pem("X509 CRL", &crl.der).into_bytes(),
                ),
                Ok(crl) => {
                    let mut r = bytes_response("application/pkix-crl", Vec::new());
                    // The stored CRL's bytes, shared with other requests rather than copied.
                    *r.body_mut() = Full::new(Bytes::from_owner(SharedCrl(crl)));
                    r
                }
                Err(crate::revocation::RevocationError::UnknownIssuer(_)) => {
                    plain(StatusCode::NOT_FOUND, "no such issuer\n")
                }
                Err(crate::revocation::RevocationError::UnknownShard(..)) => {
                    plain(StatusCode::NOT_FOUND, "no such CRL shard\n")
                }
                Err(crate::revocation::RevocationError::NoDeltaCrls(_)) => plain(
                    StatusCode::NOT_FOUND,
                    "this issuer publishes no delta CRLs\n",
                ),
                Err(e) => {
                    tracing::error!(code = "PKID-CRL", error = %e, "CRL unavailable");
                    plain(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "CRL temporarily unavailable\n",
                    )
                }
            };
        }
        let request_der = match (&method, path.strip_prefix("/ocsp/")) {
            (&http::Method::GET, Some(encoded)) => {
                let decoded = percent_decode(encoded);
                match base64::engine::general_purpose::STANDARD
                    .decode(decoded.trim_end_matches('\n'))
                {
                    Ok(der) => der,
                    Err(_) => {
                        return bytes_response(
                            "application/ocsp-response",
                            pkid_backends::ocsp::error_response(
                                pkid_backends::ocsp::OcspError::MalformedRequest,
                            ),
                        )
                    }
                }
            }
            (&http::Method::POST, None) => match read_body(req.into_body(), 16 * 1024).await {
                Ok(b) => b.to_vec(),
                Err(_) => {
                    return bytes_response(
                        "application/ocsp-response",
                        pkid_backends::ocsp::error_response(
                            pkid_backends::ocsp::OcspError::MalformedRequest,
                        ),
                    )
                }
            },
            _ => {
                return plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "use POST /ocsp or GET /ocsp/{base64}\n",
                )
            }
        };
        bytes_response(
            "application/ocsp-response",
            self.revocation.answer_ocsp(&request_der).await,
        )
    }
}

/// A served CRL's DER as a response body.
struct SharedCrl(Arc<crate::store::CrlRow>);

impl AsRef<[u8]> for SharedCrl {
    fn as_ref(&self) -> &[u8] {
        &self.0.der
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn bytes_response(content_type: &'static str, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}

async fn read_body(body: Incoming, limit: usize) -> Result<Bytes, Problem> {
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Problem::payload_too_large(format!(
                "request body exceeds {limit} bytes"
            )))
        }
        Err(_) => Err(Problem::malformed("request body could not be read")),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    r
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(reply.body));
    *r.status_mut() = reply.status;
    if !reply.content_type.is_empty() {
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(reply.content_type),
        );
    }
    for (name, value) in reply.headers {
        r.headers_mut().append(name, header_value(&value));
    }
    r
}

/// Accept connections (TLS when `tls` is set) until `shutdown` resolves, then drain in-flight
/// requests (bounded).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<Arc<rustls::ServerConfig>>,
    surface: Surface,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = tls.map(TlsAcceptor::from);
    let limit = Arc::new(Semaphore::new(app.settings.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let header_timeout = app.settings.header_timeout;
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            p = limit.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _permit = permit;
            match acceptor {
                Some(acceptor) => {
                    let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await
                    {
                        Ok(Ok(tls)) => tls,
                        Ok(Err(e)) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                        Err(_) => {
                            tracing::debug!(%peer, "TLS handshake timed out");
                            return;
                        }
                    };
                    serve_connection(
                        app,
                        TokioIo::new(tls),
                        peer,
                        surface,
                        watcher,
                        header_timeout,
                    )
                    .await
                }
                None => {
                    serve_connection(
                        app,
                        TokioIo::new(tcp),
                        peer,
                        surface,
                        watcher,
                        header_timeout,
                    )
                    .await
                }
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::info!("all connections drained"),
        _ = tokio::time::sleep(Duration::from_secs(10)) => tracing::warn!("shutdown: connections still open after 10 s, closing"),
    }
    Ok(())
}

async fn serve_connection<IO>(
    app: Arc<App>,
    io: IO,
    peer: SocketAddr,
    surface: Surface,
    watcher: hyper_util::server::graceful::Watcher,
    header_timeout: Duration,
) where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(app.serve_request(req, peer, surface).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(128);
    let conn = builder.serve_connection(io, service);
    let conn = watcher.watch(conn.into_owned());
    if let Err(e) = conn.await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
