//! The transport: rustls + hyper (no framework). Listeners, TLS, a connection limit, header-read
//! timeouts, request ids, graceful shutdown; each request routed by its path prefix to one API
//! surface (`crate::api`), its body handed over unread, and the surface's [`Reply`] sent back.
//!
//! TLS client authentication is offered, never required ([`client_auth`]); the chain a client
//! presents is read once per connection and handed to each of its requests in [`Caller`]. The
//! server's own certificate can be replaced while serving ([`server_cert`]).

pub mod client_auth;
pub mod server_cert;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use rustls_pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;

use crate::api::acme::{header_value, AcmeServer};
use crate::api::admin::AdminApi;
use crate::api::czertainly::CzertainlyApi;
use crate::api::iam::IamApi;
use crate::api::identity::IdentityApi;
use crate::api::notary::NotaryApi;
use crate::api::operations::Operations;
use crate::api::repository::Repository;
use crate::api::{Caller, Reply, RequestBody, RequestHead};

pub struct HttpSettings {
    /// Fixed origin for absolute URLs; `None`: taken from the request's Host header.
    pub base_url: Option<String>,
    pub default_origin: String,
    /// The admin listener's origin when a request names no host (`https://localhost:PORT`).
    pub default_admin_origin: String,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

/// The surfaces one process serves, by path prefix.
pub struct App {
    /// ACME directories: named ones (`/acme/NAME/…`) and the default (`/acme/…`).
    pub acme: Vec<Arc<AcmeServer>>,
    /// `/crl/…`, `/ocsp`, `/ca/…`.
    pub repository: Repository,
    /// `/admin/…`.
    pub admin: AdminApi,
    /// `/token`, `/login`, `/.well-known/jwks.json`, `/identity/…`.
    pub identity: IdentityApi,
    /// `/v1/…`, `/v2/…`: CZERTAINLY-style RA client operations.
    pub czertainly: Option<CzertainlyApi>,
    /// `/iam/…`.
    pub iam: IamApi,
    /// `/api/v1/…` (Notary), `/status`.
    pub notary: NotaryApi,
    /// `/metrics`, `/readyz`; and the requests served, counted.
    pub operations: Operations,
    pub settings: HttpSettings,
    request_counter: AtomicU64,
}

/// Which resources a listener serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// The public HTTPS listener: everything but the admin API.
    Public,
    /// The admin HTTPS listener (`server.admin_listen`): the admin API only.
    Admin,
    /// The plain-HTTP listener: CRLs and OCSP only.
    RevocationOnly,
}

/// Every surface one process serves, for [`App::new`].
pub struct Surfaces {
    pub acme: Vec<Arc<AcmeServer>>,
    pub repository: Repository,
    pub admin: AdminApi,
    pub identity: IdentityApi,
    pub iam: IamApi,
    pub notary: NotaryApi,
    pub operations: Operations,
}

impl App {
    pub fn new(surfaces: Surfaces, settings: HttpSettings) -> App {
        let Surfaces {
            acme,
            repository,
            admin,
            identity,
            iam,
            notary,
            operations,
        } = surfaces;
        App {
            acme,
            repository,
            admin,
            identity,
            czertainly: None,
            iam,
            notary,
            operations,
            settings,
            request_counter: AtomicU64::new(0),
        }
    }

    /// Serve the CZERTAINLY-style RA client operations under `/v1` and `/v2`.
    pub fn with_czertainly(mut self, czertainly: CzertainlyApi) -> App {
        self.czertainly = Some(czertainly);
        self
    }

    /// The origin a request was sent to, as the URLs pkid writes and the `url` a JWS
    /// signature covers name it: the base URL on the public listener when one is set (never
    /// the Host header then). The admin listener writes no absolute URL; its origin, which only
    /// a JWS-signed admin request's `url` names, is the one its client addressed.
    fn origin(&self, parts: &http::request::Parts, surface: Surface) -> String {
        let default = match surface {
            Surface::Admin => &self.settings.default_admin_origin,
            Surface::Public | Surface::RevocationOnly => match &self.settings.base_url {
                Some(base) => return base.clone(),
                None => &self.settings.default_origin,
            },
        };
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| parts.uri.authority().map(|a| a.as_str()))
            .filter(|h| {
                !h.is_empty()
                    && h.len() <= 255
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b))
            });
        match host {
            Some(h) => format!("https://{h}"),
            None => default.clone(),
        }
    }

    pub async fn serve_request(
        self: Arc<Self>,
        req: Request<Incoming>,
        caller: Caller,
        surface: Surface,
    ) -> Response<Full<Bytes>> {
        let id = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let peer = caller.peer;
        let span = tracing::info_span!("request", id, %method, path = %path, %peer);
        async move {
            let started = std::time::Instant::now();
            let oversized_head = header_bytes(&req) > MAX_HEADER_BYTES;
            let (parts, incoming) = req.into_parts();
            let mut body = RequestBody::new(incoming, self.settings.header_timeout);
            let reply = if oversized_head {
                Reply::text(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "request header fields too large\n",
                )
            } else {
                self.route(&parts, &mut body, &caller, surface).await
            };
            // Whatever the surface did not read, so that its answer reaches the client.
            body.drain(self.settings.max_body_bytes).await;
            self.operations
                .requests
                .record(&method, &path, reply.status, started.elapsed());
            tracing::debug!(
                status = reply.status.as_u16(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "served"
            );
            to_response(reply)
        }
        .instrument(span)
        .await
    }

    /// The surface a path belongs to, by prefix: the plain-HTTP listener serves the
    /// repository only, the admin listener the admin API only, and the public listener
    /// everything else (`/admin/…` there is an unknown path, answered 404 like any other).
    async fn route(
        &self,
        parts: &http::request::Parts,
        body: &mut RequestBody,
        caller: &Caller,
        surface: Surface,
    ) -> Reply {
        let path = parts.uri.path();
        let not_found = || Reply::text(StatusCode::NOT_FOUND, "not found\n");
        let admin = path.starts_with("/admin/");
        let served = match surface {
            Surface::Public => !admin,
            Surface::Admin => admin || path == "/healthz",
            Surface::RevocationOnly => Repository::serves(path),
        };
        if !served {
            return not_found();
        }
        if Repository::serves(path) {
            return self
                .repository
                .handle(&parts.method, path, body, caller.peer.ip())
                .await;
        }
        if Operations::serves(path) {
            return self.operations.handle(&parts.method, path).await;
        }
        if let Some(czertainly) = self
            .czertainly
            .as_ref()
            .filter(|_| CzertainlyApi::serves(path))
        {
            let origin = self.origin(parts, surface);
            let head = RequestHead {
                method: &parts.method,
                path,
                query: parts.uri.query().unwrap_or_default(),
                headers: &parts.headers,
                caller,
                origin: &origin,
            };
            return czertainly
                .handle(&head, body, self.settings.max_body_bytes)
                .await;
        }
        if admin || IdentityApi::serves(path) || NotaryApi::serves(path) || IamApi::serves(path) {
            let limit = self.settings.max_body_bytes;
            let origin = self.origin(parts, surface);
            let head = RequestHead {
                method: &parts.method,
                path,
                query: parts.uri.query().unwrap_or_default(),
                headers: &parts.headers,
                caller,
                origin: &origin,
            };
            return if admin {
                self.admin.handle(&head, body, limit).await
            } else if NotaryApi::serves(path) {
                self.notary.handle(&head, body).await
            } else if IamApi::serves(path) {
                self.iam.handle(&head, body, limit).await
            } else {
                self.identity.handle(&head, body, limit).await
            };
        }
        if path == "/acme" || path.starts_with("/acme/") {
            let origin = self.origin(parts, surface);
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
                return Reply::text(StatusCode::NOT_FOUND, "no such ACME directory\n");
            };
            let body = match body.read(self.settings.max_body_bytes).await {
                Ok(b) => b,
                // Still an ACME error: problem document, fresh nonce, index link.
                Err(e) => return directory.error_reply(&e.into(), &origin),
            };
            return directory
                .handle(&parts.method, path, &parts.headers, body, &origin)
                .await;
        }
        match path {
            "/healthz" => Reply::text(StatusCode::OK, "ok\n"),
            "/" => Reply::text(StatusCode::OK, "pkid: ACME directory at /acme/directory\n"),
            _ => Reply::text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}

/// Largest request head (target and header fields) served; hyper's read buffer limit is the same
/// size but soft (one read may carry a larger head past it), so it is checked again here.
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// The size of a request's head as sent: target, and each header field with its separators.
fn header_bytes<B>(req: &Request<B>) -> usize {
    let target = req.uri().path_and_query().map_or(0, |pq| pq.as_str().len());
    req.headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum::<usize>()
        + target
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
                    // ALPN decided the protocol: no sniffing, so a silent client meets the
                    // header timeout instead of waiting forever for a first byte.
                    let protocol = match tls.get_ref().1.alpn_protocol() {
                        Some(b"h2") => Protocol::Http2,
                        _ => Protocol::Http1,
                    };
                    let client_chain = client_chain(tls.get_ref().1, peer);
                    let connection = Connection {
                        caller: Caller { peer, client_chain },
                        surface,
                        protocol,
                        header_timeout,
                    };
                    serve_connection(app, TokioIo::new(tls), connection, watcher).await
                }
                None => {
                    let connection = Connection {
                        caller: Caller {
                            peer,
                            client_chain: None,
                        },
                        surface,
                        protocol: Protocol::Http1,
                        header_timeout,
                    };
                    serve_connection(app, TokioIo::new(tcp), connection, watcher).await
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

/// The certificate chain the client presented in the handshake, if any (its leaf key proven by
/// [`client_auth::OptionalClientAuth`]; the chain itself not yet judged), kept for every
/// request of the connection.
fn client_chain(
    tls: &rustls::ServerConnection,
    peer: SocketAddr,
) -> Option<Arc<Vec<CertificateDer<'static>>>> {
    let chain = tls.peer_certificates().filter(|c| !c.is_empty())?;
    tracing::debug!(%peer, certificates = chain.len(), "client certificate presented");
    Some(Arc::new(chain.to_vec()))
}

/// The HTTP protocol of a connection, fixed before the first request byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Http1,
    Http2,
}

/// What one accepted connection is served with.
struct Connection {
    /// Who is on the other end, handed to each request.
    caller: Caller,
    surface: Surface,
    protocol: Protocol,
    header_timeout: Duration,
}

/// What a connection is doing: requests in flight, and since when it has been idle.
struct Activity {
    in_flight: std::sync::atomic::AtomicUsize,
    /// Milliseconds from `start` to the end of the last request (or to the accept).
    idle_since_ms: AtomicU64,
    start: tokio::time::Instant,
}

impl Activity {
    fn new() -> Arc<Activity> {
        Arc::new(Activity {
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            idle_since_ms: AtomicU64::new(0),
            start: tokio::time::Instant::now(),
        })
    }

    fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(self.clone())
    }

    /// When the connection became idle; `None` while a request is in flight.
    fn idle_since(&self) -> Option<tokio::time::Instant> {
        (self.in_flight.load(Ordering::SeqCst) == 0)
            .then(|| self.start + Duration::from_millis(self.idle_since_ms.load(Ordering::SeqCst)))
    }
}

/// One request in flight; marks the connection idle again when dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let elapsed = u64::try_from(self.0.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.0.idle_since_ms.store(elapsed, Ordering::SeqCst);
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Resolves once the connection has had no request in flight for `idle_timeout`.
async fn idle_for(activity: &Activity, idle_timeout: Duration) {
    loop {
        match activity.idle_since() {
            Some(since) if since.elapsed() >= idle_timeout => return,
            Some(since) => tokio::time::sleep_until(since + idle_timeout).await,
            None => tokio::time::sleep(idle_timeout).await,
        }
    }
}

/// Serve one connection until the client closes it, or until it has carried no request for
/// `header_timeout`. hyper's own header timeout covers HTTP/1 request heads only: without this
/// a client that never sends its first bytes (the HTTP/2 preface, or anything), or an idle
/// HTTP/2 connection, would hold a connection slot for ever.
async fn serve_connection<IO>(
    app: Arc<App>,
    io: IO,
    connection: Connection,
    watcher: hyper_util::server::graceful::Watcher,
) where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let Connection {
        caller,
        surface,
        protocol,
        header_timeout,
    } = connection;
    let peer = caller.peer;
    let activity = Activity::new();
    let requests = activity.clone();
    let service = service_fn(move |req| {
        let app = app.clone();
        let caller = caller.clone();
        let in_flight = requests.begin();
        async move {
            let response = app.serve_request(req, caller, surface).await;
            drop(in_flight);
            Ok::<_, Infallible>(response)
        }
    });
    let builder = auto::Builder::new(TokioExecutor::new());
    let mut builder = match protocol {
        Protocol::Http1 => builder.http1_only(),
        Protocol::Http2 => builder.http2_only(),
    };
    // HTTP/1.1: the header timeout also bounds an idle keep-alive connection.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    // HTTP/2: a peer that stops answering pings is dropped after the same bound.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(header_timeout)
        .keep_alive_timeout(header_timeout)
        .max_concurrent_streams(128);
    let conn = builder.serve_connection(io, service);
    let conn = watcher.watch(conn.into_owned());
    tokio::select! {
        ended = conn => {
            if let Err(e) = ended {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = idle_for(&activity, header_timeout) => {
            tracing::debug!(%peer, "idle connection closed");
        }
    }
}
