//! HTTPS transport: rustls + hyper (no framework). Routing to the API surfaces, body limits,
//! header-read timeouts, a connection limit, request ids, graceful shutdown.

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

pub struct HttpSettings {
    /// Fixed origin for absolute URLs; `None`: taken from the request's Host header.
    pub base_url: Option<String>,
    pub default_origin: String,
    pub max_body_bytes: usize,
    pub header_timeout: Duration,
    pub max_connections: usize,
}

pub struct App {
    pub acme: Arc<AcmeServer>,
    pub settings: HttpSettings,
    request_counter: AtomicU64,
}

impl App {
    pub fn new(acme: Arc<AcmeServer>, settings: HttpSettings) -> App {
        App {
            acme,
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
    ) -> Response<Full<Bytes>> {
        let id = self.request_counter.fetch_add(1, Ordering::Relaxed);
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!("request", id, %method, path = %path, %peer);
        async move {
            let started = std::time::Instant::now();
            let response = self.route(req).await;
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

    async fn route(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if path == "/acme" || path.starts_with("/acme/") {
            let origin = self.origin(&req);
            let (parts, body) = req.into_parts();
            let body = match read_body(body, self.settings.max_body_bytes).await {
                Ok(b) => b,
                Err(p) => {
                    let reply = Reply::problem(&p);
                    return to_response(reply);
                }
            };
            let reply = self
                .acme
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

/// Accept TLS connections until `shutdown` resolves, then drain in-flight requests (bounded).
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
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
            let tls = match tokio::time::timeout(header_timeout, acceptor.accept(tcp)).await {
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
            let service = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(app.serve_request(req, peer).await) }
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
            let conn = builder.serve_connection(TokioIo::new(tls), service);
            let conn = watcher.watch(conn.into_owned());
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
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
