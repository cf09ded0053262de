//! The http-01 responder (RFC 8555 §8.3) pkid validates against in the suites: a tiny HTTP/1.1
//! server on a loopback port, serving the key authorizations a test registers (or the files a
//! webroot client writes), and holding chosen answers behind a [`Gate`] so that a validation
//! stays in flight while the test acts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A tiny HTTP/1.1 server answering `GET /.well-known/acme-challenge/<token>` with the key
/// authorization registered for the token (or, for a webroot, the file certbot wrote under
/// `<webroot>/.well-known/acme-challenge/`), 404 otherwise. Stops when dropped.
pub struct Http01Responder {
    tokens: Arc<Mutex<HashMap<String, String>>>,
    held: HeldTokens,
    task: JoinHandle<()>,
}

/// Tokens whose answer waits for a [`Gate`] to open.
type HeldTokens =
    Arc<Mutex<HashMap<String, (Arc<tokio::sync::Notify>, tokio::sync::watch::Receiver<bool>)>>>;

/// Holds the answer to one token: a validation of it stays in flight until [`Gate::open`].
pub struct Gate {
    asked: Arc<tokio::sync::Notify>,
    open: tokio::sync::watch::Sender<bool>,
}

impl Gate {
    /// Resolves once the validator has asked for the token (at once if it already has).
    pub async fn asked(&self) {
        self.asked.notified().await;
    }

    /// Lets the held answer go out.
    pub fn open(&self) {
        let _ = self.open.send(true);
    }
}

/// Where the responder finds key authorizations.
#[derive(Clone)]
enum Http01Source {
    Tokens(Arc<Mutex<HashMap<String, String>>>),
    Webroot(PathBuf),
}

impl Http01Source {
    fn key_authorization(&self, token: &str) -> Option<String> {
        match self {
            Http01Source::Tokens(tokens) => tokens.lock().expect("token map").get(token).cloned(),
            Http01Source::Webroot(root) => {
                // Tokens are base64url: no path separators, nothing to escape from the root.
                if token.is_empty()
                    || !token
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                {
                    return None;
                }
                std::fs::read_to_string(root.join(".well-known/acme-challenge").join(token)).ok()
            }
        }
    }
}

impl Http01Responder {
    pub async fn bind(port: u16) -> Http01Responder {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        Http01Responder::start(port, tokens.clone(), Http01Source::Tokens(tokens)).await
    }

    /// Serves the files a webroot client (`certbot --webroot`) writes under `webroot`.
    pub async fn webroot(port: u16, webroot: &Path) -> Http01Responder {
        let tokens = Arc::new(Mutex::new(HashMap::new()));
        Http01Responder::start(port, tokens, Http01Source::Webroot(webroot.to_owned())).await
    }

    async fn start(
        port: u16,
        tokens: Arc<Mutex<HashMap<String, String>>>,
        source: Http01Source,
    ) -> Http01Responder {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap_or_else(|err| panic!("bind the http-01 responder on 127.0.0.1:{port}: {err}"));
        let held = HeldTokens::default();
        let gates = held.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(answer_http01(stream, source.clone(), gates.clone()));
            }
        });
        Http01Responder { tokens, held, task }
    }

    /// Serves `token`, but answers only once the returned gate opens.
    pub fn serve_held(&self, token: &str, key_authorization: &str) -> Gate {
        let asked = Arc::new(tokio::sync::Notify::new());
        let (open, opened) = tokio::sync::watch::channel(false);
        self.held
            .lock()
            .expect("held tokens")
            .insert(token.to_owned(), (asked.clone(), opened));
        self.serve(token, key_authorization);
        Gate { asked, open }
    }

    pub fn serve(&self, token: &str, key_authorization: &str) {
        self.tokens
            .lock()
            .expect("token map")
            .insert(token.to_owned(), key_authorization.to_owned());
    }
}

impl Drop for Http01Responder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn answer_http01(mut stream: TcpStream, source: Http01Source, held: HeldTokens) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    let read_head = async {
        while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => request.extend_from_slice(&buf[..n]),
            }
        }
        true
    };
    if !matches!(
        tokio::time::timeout(Duration::from_secs(5), read_head).await,
        Ok(true)
    ) {
        return;
    }
    let head = String::from_utf8_lossy(&request);
    let path = head
        .lines()
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .unwrap_or("");
    let token = path.strip_prefix("/.well-known/acme-challenge/");
    let gate = token.and_then(|token| held.lock().expect("held tokens").get(token).cloned());
    if let Some((asked, mut opened)) = gate {
        asked.notify_one();
        // Bounded: a gate never opened answers after the validator gave up anyway.
        let _ = tokio::time::timeout(Duration::from_secs(60), opened.wait_for(|open| *open)).await;
    }
    let key_authorization = token.and_then(|token| source.key_authorization(token));
    let reply = match key_authorization {
        Some(body) => format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
    };
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}
