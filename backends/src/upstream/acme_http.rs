//! What the upstream ACME backend ([`super::acme`]) sends and serves over HTTP: instant-acme's
//! transport (reqwest with the backend's roots and bounded retries) and the http-01 responder
//! (RFC 8555 §8.3) that answers the upstream's validation in `answer-http01` mode.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use instant_acme::{BodyWrapper, BytesResponse};

use crate::upstream;
use crate::BackendError;

/// The http-01 path prefix (RFC 8555 §8.3).
const HTTP01_PREFIX: &str = "/.well-known/acme-challenge/";

/// instant-acme's transport: reqwest with the backend's TLS roots, bounded retries and readable
/// errors. Connection failures and 5xx answers are retried (a replayed JWS is safe: its nonce is
/// single-use, and instant-acme fetches a fresh one after `badNonce`).
pub(super) struct AcmeHttp {
    pub(super) client: reqwest::Client,
}

fn acme_retry_status(status: reqwest::StatusCode) -> bool {
    status.is_server_error()
}

impl instant_acme::HttpClient for AcmeHttp {
    fn request(
        &self,
        req: http::Request<BodyWrapper<Bytes>>,
    ) -> Pin<Box<dyn Future<Output = Result<BytesResponse, instant_acme::Error>> + Send>> {
        let client = self.client.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(never) => match never {},
            };
            let target = format!("{} {}", parts.method, parts.uri);
            let request = reqwest::Request::try_from(http::Request::from_parts(parts, body))
                .map_err(|e| other(format!("{target}: {}", upstream::error_chain(&e))))?;
            let response = upstream::send_with_retries(&client, request, acme_retry_status, None)
                .await
                .map_err(other)?;
            let status = response.status();
            if status.is_server_error() {
                let body = response.bytes().await.unwrap_or_default();
                return Err(other(format!(
                    "{target} answered {status} after {} attempts: {}",
                    upstream::MAX_RETRIES + 1,
                    upstream::excerpt(&body)
                )));
            }
            Ok(BytesResponse::from(http::Response::<reqwest::Body>::from(
                response,
            )))
        })
    }
}

fn other(message: String) -> instant_acme::Error {
    instant_acme::Error::Other(message.into())
}

/// The http-01 responder: serves key authorizations for tokens that orders publish.
pub(super) struct Http01Responder {
    pub(super) addr: SocketAddr,
    answers: Arc<Mutex<HashMap<String, String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One published token; withdrawn on drop.
pub(super) struct Published {
    token: String,
    answers: Arc<Mutex<HashMap<String, String>>>,
}

impl Drop for Published {
    fn drop(&mut self) {
        if let Ok(mut answers) = self.answers.lock() {
            answers.remove(&self.token);
        }
    }
}

impl Http01Responder {
    pub(super) async fn bind(addr: SocketAddr) -> Result<Self, BackendError> {
        let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            BackendError::Io(format!("binding the http-01 responder to {addr}: {e}"))
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| BackendError::Io(format!("the http-01 responder's address: {e}")))?;
        let answers: Arc<Mutex<HashMap<String, String>>> = Arc::default();
        let task = tokio::spawn(serve_http01(listener, answers.clone()));
        tracing::debug!(%addr, "http-01 responder listening");
        Ok(Http01Responder {
            addr,
            answers,
            task,
        })
    }

    pub(super) fn publish(&self, token: String, key_authorization: String) -> Published {
        if let Ok(mut answers) = self.answers.lock() {
            answers.insert(token.clone(), key_authorization);
        }
        Published {
            token,
            answers: self.answers.clone(),
        }
    }
}

async fn serve_http01(
    listener: tokio::net::TcpListener,
    answers: Arc<Mutex<HashMap<String, String>>>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "http-01 responder: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let answers = answers.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                let answer = http01_answer(&answers, req.method(), req.uri().path());
                async move { Ok::<_, std::convert::Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http-01 responder: connection ended with an error");
            }
        });
    }
}

fn http01_answer(
    answers: &Mutex<HashMap<String, String>>,
    method: &http::Method,
    path: &str,
) -> hyper::Response<Full<Bytes>> {
    let found = (method == http::Method::GET || method == http::Method::HEAD)
        .then(|| path.strip_prefix(HTTP01_PREFIX))
        .flatten()
        .and_then(|token| answers.lock().ok()?.get(token).cloned());
    let mut response =
        hyper::Response::new(Full::new(Bytes::from(found.clone().unwrap_or_default())));
    match found {
        Some(_) => {
            response.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/octet-stream"),
            );
        }
        None => *response.status_mut() = http::StatusCode::NOT_FOUND,
    }
    response
}
