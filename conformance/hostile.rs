//! Hostile input over every surface of a real pkid: the ACME surface (default and named
//! directories), the admin REST surface (on its own listener; the public one answers it 404)
//! and the plain-HTTP revocation listener (CRLs, OCSP).
//!
//! Every request goes on the wire byte for byte as written here (a small HTTP/1.1 client over
//! TLS or TCP), so that what no HTTP library would send can be sent: oversized and endless
//! bodies, invalid UTF-8, NUL bytes, absurd headers, garbage DER. Each row states the status
//! and the error shape of its surface — ACME `application/problem+json` with an
//! `urn:ietf:params:acme:error:*` type and a fresh nonce, admin `{"error": …}`, OCSP an
//! `OCSPResponse` whose `responseStatus` says why (RFC 6960 §4.2.1) — and none may be a 5xx.
//! Slow clients (nothing sent, headers or bodies dribbled) must be cut off after
//! `server.header_timeout_secs`. At the end pkid must still issue a certificate, its stderr
//! must hold no panic, its memory (VmHWM) must have stayed under [`RSS_BOUND_KB`], and the
//! database must hold what it held before the hostile rows.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::badinput::{issue, open_read_only, snapshot};
use crate::harness::acme::b64;
use crate::harness::client::{AcmeClient, TestKey};
use crate::harness::environment::{within, Environment};
use crate::harness::http01::Http01Responder;
use crate::harness::process::require_tool;
use crate::harness::tls::ensure_crypto_provider;

const TEST_BOUND: Duration = Duration::from_secs(150);
/// `server.max_body_bytes` of this test: large enough for a CSR with 5,000 names.
const MAX_BODY: usize = 256 * 1024;
/// `server.header_timeout_secs` of this test.
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
/// Every single exchange must be over within this (no hang).
const EXCHANGE_BOUND: Duration = Duration::from_secs(15);
/// A slow client must be cut off by then (the header timeout plus scheduling slack).
const CUT_OFF_BOUND: Duration = Duration::from_secs(8);
/// pkid's peak resident memory after all of it.
const RSS_BOUND_KB: u64 = 256 * 1024;

const ACME_ERROR: &str = "urn:ietf:params:acme:error:";

/// A stream to pkid: TLS over TCP, or plain TCP.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// How to reach one listener.
#[derive(Clone)]
struct Wire {
    addr: SocketAddr,
    /// `None`: plain HTTP.
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Wire {
    fn https(addr: SocketAddr, root_pem: &[u8], alpn: &[u8]) -> Wire {
        ensure_crypto_provider();
        let mut roots = rustls::RootCertStore::empty();
        for cert in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem) {
            roots.add(cert.expect("root PEM")).expect("add the root");
        }
        let mut config = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![alpn.to_vec()];
        Wire {
            addr,
            tls: Some(Arc::new(config)),
        }
    }

    fn plain(addr: SocketAddr) -> Wire {
        Wire { addr, tls: None }
    }

    async fn connect(&self) -> Box<dyn Stream> {
        let tcp = tokio::time::timeout(EXCHANGE_BOUND, TcpStream::connect(self.addr))
            .await
            .unwrap_or_else(|_| panic!("connect to {} timed out", self.addr))
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.addr));
        match &self.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls_pki_types::ServerName::IpAddress(self.addr.ip().into());
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                let tls = tokio::time::timeout(EXCHANGE_BOUND, connector.connect(name, tcp))
                    .await
                    .expect("TLS handshake timed out")
                    .expect("TLS handshake");
                Box::new(tls)
            }
        }
    }

    /// `request` with a `Host` header naming this listener (signed ACME URLs carry the port)
    /// after its first line.
    fn with_host(&self, request: &[u8]) -> Vec<u8> {
        let host = format!("Host: {}\r\n", self.addr);
        let mut out = request.to_vec();
        if let Some(i) = out.windows(2).position(|w| w == b"\r\n") {
            out.splice(i + 2..i + 2, host.bytes());
        }
        out
    }

    /// Sends `request` and reads one response; every step bounded. Err: no response (the
    /// connection was dropped, or nothing came within [`EXCHANGE_BOUND`]).
    async fn exchange(&self, request: &[u8]) -> Result<Raw, String> {
        let request = self.with_host(request);
        let mut stream = self.connect().await;
        let started = Instant::now();
        // The server may answer (413, say) before it has read everything: write and read at
        // once, and keep the answer even if the write is cut short.
        let (mut reader, mut writer) = tokio::io::split(&mut stream);
        let write = async {
            let _ = writer.write_all(&request).await;
            let _ = writer.flush().await;
        };
        let (_, raw) = tokio::time::timeout(EXCHANGE_BOUND, async {
            tokio::join!(write, read_response(&mut reader))
        })
        .await
        .map_err(|_| format!("no answer within {EXCHANGE_BOUND:?}"))?;
        let mut raw = raw.map_err(|err| format!("no answer: {err}"))?;
        raw.elapsed = started.elapsed();
        Ok(raw)
    }
}

/// One HTTP/1.1 response as read from the wire.
#[derive(Debug, Default)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    elapsed: Duration,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body: String = body.chars().take(300).collect();
        format!("{} {:?} {body}", self.status, self.header("content-type"))
    }
}

/// Reads a response head and its Content-Length body (or to EOF without one).
async fn read_response(reader: &mut (impl AsyncRead + Unpin)) -> Result<Raw, String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = reader
            .read(&mut chunk)
            .await
            .map_err(|e| format!("{e} after {} bytes", buf.len()))?;
        if n == 0 {
            return Err(format!(
                "connection closed before a response head ({} bytes: {:?})",
                buf.len(),
                String::from_utf8_lossy(&buf)
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut raw = Raw {
        status,
        headers,
        body: buf[head_end + 4..].to_vec(),
        elapsed: Duration::ZERO,
    };
    let length: Option<usize> = raw.header("content-length").and_then(|v| v.parse().ok());
    loop {
        if length.is_some_and(|l| raw.body.len() >= l) {
            break;
        }
        match reader.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => raw.body.extend_from_slice(&chunk[..n]),
            Err(e) if length.is_none() => return Err(e.to_string()),
            Err(e) => return Err(format!("{e} in the body")),
        }
    }
    if let Some(l) = length {
        raw.body.truncate(l);
    }
    Ok(raw)
}

/// An HTTP/1.1 request: `Connection: close` and `Content-Length` (unless a
/// `Transfer-Encoding` is given) added; [`Wire`] adds `Host`.
fn http(method: &str, path: &[u8], headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path);
    out.extend_from_slice(b" HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value);
        out.extend_from_slice(b"\r\n");
    }
    if !headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("transfer-encoding"))
    {
        out.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn jose(path: &str, body: &[u8]) -> Vec<u8> {
    http(
        "POST",
        path.as_bytes(),
        &[("Content-Type", b"application/jose+json")],
        body,
    )
}

/// What the answer must be, in its surface's shape.
#[derive(Clone, Copy, Debug)]
enum Expect {
    /// ACME: status, problem type after `urn:ietf:params:acme:error:`, a Replay-Nonce.
    Acme(u16, &'static str),
    /// Admin REST: status and `{"error": "…"}`.
    Admin(u16),
    /// OCSP: 200 with an unsigned OCSPResponse of this responseStatus (1 malformedRequest,
    /// 6 unauthorized).
    Ocsp(u8),
    /// A plain-text answer of pkid's router (404, 405).
    Plain(u16),
    /// Refused by the HTTP layer before routing (431 for headers over the limit, 400 for a
    /// head that is not HTTP): no body shape to check.
    Transport(u16),
}

fn judge(expect: Expect, raw: &Raw) -> Vec<String> {
    let mut wrong = Vec::new();
    if raw.status >= 500 {
        wrong.push(format!("a server error: {}", raw.describe()));
    }
    let content_type = raw.header("content-type").unwrap_or_default();
    let json: Option<Value> = serde_json::from_slice(&raw.body).ok();
    let status = match expect {
        Expect::Acme(status, short_type) => {
            let wanted = format!("{ACME_ERROR}{short_type}");
            let got = json.as_ref().and_then(|j| j["type"].as_str());
            if got != Some(wanted.as_str()) {
                wrong.push(format!("problem type {got:?}, wanted {wanted}"));
            }
            if !content_type.starts_with("application/problem+json") {
                wrong.push(format!("content-type {content_type:?}"));
            }
            if raw.header("replay-nonce").is_none() {
                wrong.push("no Replay-Nonce".to_owned());
            }
            status
        }
        Expect::Admin(status) => {
            if !json.as_ref().is_some_and(|j| j["error"].is_string()) {
                wrong.push("no {\"error\": …} body".to_owned());
            }
            if !content_type.starts_with("application/json") {
                wrong.push(format!("content-type {content_type:?}"));
            }
            status
        }
        Expect::Ocsp(code) => {
            // OCSPResponse ::= SEQUENCE { responseStatus ENUMERATED } with no responseBytes.
            if raw.body != [0x30, 0x03, 0x0a, 0x01, code] {
                wrong.push(format!(
                    "OCSP body {:02x?}, wanted responseStatus {code}",
                    &raw.body[..raw.body.len().min(16)]
                ));
            }
            if content_type != "application/ocsp-response" {
                wrong.push(format!("content-type {content_type:?}"));
            }
            200
        }
        Expect::Plain(status) => {
            if !content_type.starts_with("text/plain") {
                wrong.push(format!("content-type {content_type:?}"));
            }
            status
        }
        Expect::Transport(status) => status,
    };
    if raw.status != status {
        wrong.push(format!("status {}, wanted {status}", raw.status));
    }
    if !wrong.is_empty() {
        wrong.push(format!("answer: {}", raw.describe()));
    }
    wrong
}

/// One row: a name, where it goes, the bytes, what must come back.
struct Row {
    name: &'static str,
    wire: Wire,
    request: Vec<u8>,
    expect: Expect,
}

/// A DER element (definite length).
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}

fn concat(parts: &[Vec<u8>]) -> Vec<u8> {
    parts.concat()
}

const OID_SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const OID_SHA256_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b];

/// An OCSPRequest (RFC 6960 §4.1.1) for `count` CertIDs of an issuer pkid does not have.
fn ocsp_request(count: usize) -> Vec<u8> {
    let requests: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let alg = der(0x30, &concat(&[der(0x06, OID_SHA1), der(0x05, &[])]));
            let serial = der(0x02, &[0x01, (i >> 8) as u8, i as u8]);
            let cert_id = der(
                0x30,
                &concat(&[alg, der(0x04, &[0x11; 20]), der(0x04, &[0x22; 20]), serial]),
            );
            der(0x30, &cert_id)
        })
        .collect();
    der(0x30, &der(0x30, &der(0x30, &requests.concat())))
}

/// A CSR whose key is an RSA modulus of `bits` bits (nothing signs with it: pkid must refuse
/// the key before it looks at the signature). aws-lc-rs and openssl take minutes to generate
/// a real 16k-bit key; the size is what is under test.
fn csr_with_rsa_bits(bits: usize) -> Vec<u8> {
    let mut modulus = vec![0x00, 0xc5];
    modulus.extend(std::iter::repeat_n(0xa7u8, bits / 8 - 2));
    modulus.push(0x01);
    let rsa_key = der(
        0x30,
        &concat(&[der(0x02, &modulus), der(0x02, &[0x01, 0x00, 0x01])]),
    );
    let spki = der(
        0x30,
        &concat(&[
            der(0x30, &concat(&[der(0x06, OID_RSA), der(0x05, &[])])),
            der(0x03, &concat(&[vec![0x00], rsa_key])),
        ]),
    );
    let info = der(
        0x30,
        &concat(&[der(0x02, &[0x00]), der(0x30, &[]), spki, der(0xa0, &[])]),
    );
    let alg = der(0x30, &concat(&[der(0x06, OID_SHA256_RSA), der(0x05, &[])]));
    let signature = der(0x03, &concat(&[vec![0x00], vec![0x5a; bits / 8]]));
    der(0x30, &concat(&[info, alg, signature]))
}

/// A CSR over a fresh P-256 key for `names` with the subject `dn`.
fn csr(names: &[String], dn: rcgen::DistinguishedName) -> Vec<u8> {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
    let mut params = rcgen::CertificateParams::new(names.to_vec()).expect("CSR parameters");
    params.distinguished_name = dn;
    params
        .serialize_request(&key)
        .expect("serialize the CSR")
        .der()
        .to_vec()
}

fn nested_json(depth: usize) -> Vec<u8> {
    let mut out = "[".repeat(depth).into_bytes();
    out.extend("]".repeat(depth).into_bytes());
    out
}

/// Signs ACME requests for one account: fresh nonces from pkid, the account's kid.
struct Signer<'a> {
    client: &'a AcmeClient,
    account_url: String,
}

impl Signer<'_> {
    /// A kid-signed JWS for `url` over `payload` bytes, with `edit` applied to the header.
    async fn jws(&self, url: &str, payload: &[u8], edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let nonce = self.client.new_nonce().await;
        let mut header =
            json!({"alg": "ES256", "nonce": nonce, "url": url, "kid": self.account_url});
        edit(&mut header);
        let jws = self.client.key.sign_bytes(&header, payload);
        serde_json::to_vec(&jws).expect("serialize the JWS")
    }

    fn path(url: &str) -> String {
        let rest = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
        rest.find('/')
            .map(|i| rest[i..].to_owned())
            .unwrap_or_default()
    }

    async fn post(&self, url: &str, payload: &[u8]) -> Vec<u8> {
        jose(&Self::path(url), &self.jws(url, payload, |_| {}).await)
    }
}

/// The ACME rows: the default directory and a named one.
async fn acme_rows(
    https: &Wire,
    signer: &Signer<'_>,
    ready_finalize_url: &str,
    ready_names: &[String],
) -> Vec<Row> {
    let client = signer.client;
    let new_order = client.resource("newOrder");
    let new_order_path = Signer::path(&new_order);
    let revoke = client.resource("revokeCert");
    let row = |name, request, expect| Row {
        name,
        wire: https.clone(),
        request,
        expect,
    };
    let order = |value: &str| {
        json!({"identifiers": [{"type": "dns", "value": value}]})
            .to_string()
            .into_bytes()
    };
    let finalize = |csr: &[u8]| json!({"csr": b64(csr)}).to_string().into_bytes();
    let no_dn = rcgen::DistinguishedName::new;

    let mut unicode_dn = rcgen::DistinguishedName::new();
    unicode_dn.push(
        rcgen::DnType::CommonName,
        rcgen::DnValue::Utf8String("пример.pkid.test\u{202e}".into()),
    );
    // A 10,000-character common name beside a 20,000-character unit: the CN is an identifier
    // the order does not hold.
    let mut long_dn = rcgen::DistinguishedName::new();
    long_dn.push(rcgen::DnType::CommonName, "c".repeat(10_000));
    long_dn.push(rcgen::DnType::OrganizationalUnitName, "ou".repeat(10_000));
    let many_names: Vec<String> = (0..5000).map(|i| format!("{i}.t")).collect();
    let five_thousand = json!({"identifiers": many_names
        .iter()
        .map(|n| json!({"type": "dns", "value": n}))
        .collect::<Vec<_>>()});

    let mut modulus = vec![0xc5u8];
    modulus.extend(std::iter::repeat_n(0x3bu8, 16384 / 8 - 1));
    let huge_rsa_jwk = json!({"kty": "RSA", "n": b64(modulus), "e": "AQAB"});
    let new_account = client.resource("newAccount");
    let new_account_nonce = client.new_nonce().await;
    let huge_rsa_account = {
        let header = json!({"alg": "RS256", "nonce": new_account_nonce, "url": new_account, "jwk": huge_rsa_jwk});
        let jws = json!({
            "protected": b64(header.to_string()),
            "payload": b64(json!({"termsOfServiceAgreed": true}).to_string()),
            "signature": b64([0x42u8; 2048]),
        });
        jose(&Signer::path(&new_account), jws.to_string().as_bytes())
    };

    vec![
        row(
            "ACME body one byte over server.max_body_bytes",
            jose(&new_order_path, &vec![b'{'; MAX_BODY + 1]),
            Expect::Acme(413, "malformed"),
        ),
        row(
            "ACME truncated JSON",
            jose(&new_order_path, br#"{"protected":"eyJhbGciOi"#),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME JWS members of the wrong JSON types",
            jose(
                &new_order_path,
                br#"{"protected":1,"payload":[],"signature":{}}"#,
            ),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME body a JSON array",
            jose(&new_order_path, b"[1,2,3]"),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME body nested 100,000 deep",
            jose(&new_order_path, &nested_json(100_000)),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME protected header nested 20,000 deep",
            jose(
                &new_order_path,
                json!({"protected": b64(nested_json(20_000)), "payload": "", "signature": "AAAA"})
                    .to_string()
                    .as_bytes(),
            ),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME body invalid UTF-8",
            jose(&new_order_path, b"{\"protected\":\"\xff\xfe\xfd\"}"),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME body of NUL bytes",
            jose(&new_order_path, &[0u8; 512]),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME escaped NUL inside base64url",
            jose(
                &new_order_path,
                br#"{"protected":"eyJ\u0000hbGc","payload":"","signature":"AAAA"}"#,
            ),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME signed newOrder naming a DNS name with a NUL",
            signer.post(&new_order, &order("a\u{0}b.pkid.test")).await,
            Expect::Acme(400, "rejectedIdentifier"),
        ),
        row(
            "ACME signed newOrder naming a name of control and RTL characters",
            signer
                .post(&new_order, &order("\u{7}\u{202e}\u{feff}.pkid.test"))
                .await,
            Expect::Acme(400, "rejectedIdentifier"),
        ),
        row(
            "ACME signed payload invalid UTF-8",
            signer
                .post(&new_order, b"{\"identifiers\":\"\xff\xfe\"}")
                .await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME signed payload nested 50,000 deep",
            signer.post(&new_order, &nested_json(50_000)).await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME signed newOrder, identifiers a string",
            signer.post(&new_order, br#"{"identifiers":"x"}"#).await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME signed newOrder, identifier members of the wrong types",
            signer
                .post(&new_order, br#"{"identifiers":[{"type":1,"value":[]}]}"#)
                .await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME signed newOrder with 5,000 identifiers",
            signer
                .post(&new_order, five_thousand.to_string().as_bytes())
                .await,
            Expect::Acme(400, "rejectedIdentifier"),
        ),
        row(
            "ACME nonce of 100,000 characters",
            jose(
                &new_order_path,
                &signer
                    .jws(&new_order, &order("n.pkid.test"), |h| {
                        h["nonce"] = json!("n".repeat(100_000))
                    })
                    .await,
            ),
            Expect::Acme(400, "badNonce"),
        ),
        row(
            "ACME kid of 100,000 characters",
            jose(
                &new_order_path,
                &signer
                    .jws(&new_order, &order("k.pkid.test"), |h| {
                        h["kid"] = json!("k".repeat(100_000))
                    })
                    .await,
            ),
            Expect::Acme(400, "accountDoesNotExist"),
        ),
        row(
            "ACME newAccount with a 16,384-bit RSA jwk",
            huge_rsa_account,
            Expect::Acme(400, "badPublicKey"),
        ),
        row(
            "ACME finalize, CSR with a unicode and right-to-left common name",
            signer
                .post(ready_finalize_url, &finalize(&csr(ready_names, unicode_dn)))
                .await,
            Expect::Acme(400, "badCSR"),
        ),
        row(
            "ACME finalize, CSR with a 30,000-character DN",
            signer
                .post(ready_finalize_url, &finalize(&csr(ready_names, long_dn)))
                .await,
            Expect::Acme(400, "badCSR"),
        ),
        row(
            "ACME finalize, CSR with 5,000 SANs",
            signer
                .post(ready_finalize_url, &finalize(&csr(&many_names, no_dn())))
                .await,
            Expect::Acme(400, "badCSR"),
        ),
        row(
            "ACME finalize, CSR with a 16,384-bit RSA key",
            signer
                .post(ready_finalize_url, &finalize(&csr_with_rsa_bits(16384)))
                .await,
            Expect::Acme(400, "badPublicKey"),
        ),
        row(
            "ACME finalize, CSR of garbage DER",
            signer
                .post(
                    ready_finalize_url,
                    &finalize(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]),
                )
                .await,
            Expect::Acme(400, "badCSR"),
        ),
        row(
            "ACME finalize, csr a number",
            signer.post(ready_finalize_url, br#"{"csr": 12345}"#).await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME revokeCert with a 100 KB garbage certificate",
            signer
                .post(
                    &revoke,
                    json!({"certificate": b64(vec![0x30u8; 100_000])})
                        .to_string()
                        .as_bytes(),
                )
                .await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME revokeCert with garbage DER",
            signer
                .post(
                    &revoke,
                    json!({"certificate": b64([0x30, 0x84, 0xff, 0xff, 0xff, 0xff])})
                        .to_string()
                        .as_bytes(),
                )
                .await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME revokeCert, certificate a number and reason a string",
            signer
                .post(&revoke, br#"{"certificate": 7, "reason": "keyCompromise"}"#)
                .await,
            Expect::Acme(400, "malformed"),
        ),
        row(
            "ACME Content-Type of 20,000 bytes",
            http(
                "POST",
                new_order_path.as_bytes(),
                &[("Content-Type", "x".repeat(20_000).as_bytes())],
                b"{}",
            ),
            Expect::Acme(415, "malformed"),
        ),
        row(
            "ACME path of percent-escaped invalid UTF-8",
            http("GET", b"/acme/%ff%fe%00/directory", &[], b""),
            Expect::Acme(405, "malformed"),
        ),
        row(
            "ACME path of raw UTF-8",
            http("GET", "/acme/пример".as_bytes(), &[], b""),
            Expect::Acme(405, "malformed"),
        ),
        row(
            "named ACME directory, body over the limit",
            jose("/acme/hostile/new-order", &vec![b' '; MAX_BODY + 10]),
            Expect::Acme(413, "malformed"),
        ),
        row(
            "named ACME directory, garbage JSON",
            jose("/acme/hostile/new-account", b"{{{{"),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "named ACME directory, nested JSON",
            jose("/acme/hostile/new-account", &nested_json(100_000)),
            Expect::Acme(400, "malformed"),
        ),
        row(
            "header with a NUL byte",
            http("GET", b"/acme/directory", &[("X-Hostile", b"a\0b")], b""),
            Expect::Transport(400),
        ),
        row(
            "a header of 100,000 bytes",
            http(
                "GET",
                b"/acme/directory",
                &[("X-Hostile", "h".repeat(100_000).as_bytes())],
                b"",
            ),
            Expect::Transport(431),
        ),
        row(
            "1,000 headers",
            {
                let names: Vec<String> = (0..1000).map(|i| format!("X-H{i}")).collect();
                let headers: Vec<(&str, &[u8])> =
                    names.iter().map(|n| (n.as_str(), &b"v"[..])).collect();
                http("GET", b"/acme/directory", &headers, b"")
            },
            Expect::Transport(431),
        ),
        row(
            "not HTTP at all",
            b"\x16\x03\x01\x00\xff garbage\r\n\r\n".to_vec(),
            Expect::Transport(400),
        ),
    ]
}

/// The admin API's rows, sent to the admin listener (`admin`); the public listener (`https`)
/// answers the admin API as an unknown path, whatever the request carries.
fn admin_rows(admin: &Wire, https: &Wire, token: &str) -> Vec<Row> {
    let bearer = format!("Bearer {token}");
    let auth: (&str, &[u8]) = ("Authorization", bearer.as_bytes());
    let json_type: (&str, &[u8]) = ("Content-Type", b"application/json");
    let row = |name, request, expect| Row {
        name,
        wire: admin.clone(),
        request,
        expect,
    };
    let public = |name, request| Row {
        name,
        wire: https.clone(),
        request,
        expect: Expect::Plain(404),
    };
    let create = |body: &[u8]| http("POST", b"/admin/eab-keys", &[auth, json_type], body);
    let huge_token = format!("Bearer {}", "t".repeat(60_000));
    vec![
        public(
            "admin API on the public listener, with a token",
            http("GET", b"/admin/eab-keys", &[auth], b""),
        ),
        public(
            "admin API on the public listener, a creation",
            create(br#"{"note":"public"}"#),
        ),
        row(
            "admin without a token",
            http("GET", b"/admin/eab-keys", &[], b""),
            Expect::Admin(401),
        ),
        row(
            "admin with an empty bearer token",
            http(
                "GET",
                b"/admin/eab-keys",
                &[("Authorization", b"Bearer ")],
                b"",
            ),
            Expect::Admin(401),
        ),
        row(
            "admin with Basic credentials",
            http(
                "GET",
                b"/admin/eab-keys",
                &[("Authorization", b"Basic YWRtaW46YWRtaW4=")],
                b"",
            ),
            Expect::Admin(401),
        ),
        row(
            "admin with a 60,000-character bearer token",
            http(
                "GET",
                b"/admin/eab-keys",
                &[("Authorization", huge_token.as_bytes())],
                b"",
            ),
            Expect::Admin(401),
        ),
        row(
            "admin with a bearer token of non-ASCII bytes",
            http(
                "GET",
                b"/admin/eab-keys",
                &[("Authorization", b"Bearer \xff\xfe\x80")],
                b"",
            ),
            Expect::Admin(401),
        ),
        row(
            "admin with a forged token, creating a key",
            http(
                "POST",
                b"/admin/eab-keys",
                &[("Authorization", b"Bearer pkid_forged"), json_type],
                b"{}",
            ),
            Expect::Admin(401),
        ),
        row(
            "admin PUT on the collection",
            http("PUT", b"/admin/eab-keys", &[auth], b"{}"),
            Expect::Admin(405),
        ),
        row(
            "admin PATCH on a key",
            http("PATCH", b"/admin/eab-keys/abc", &[auth], b"{}"),
            Expect::Admin(405),
        ),
        row(
            "admin unknown resource",
            http("GET", b"/admin/../../etc/passwd", &[auth], b""),
            Expect::Admin(404),
        ),
        row("admin body not JSON", create(b"note=x"), Expect::Admin(400)),
        row(
            "admin body invalid UTF-8",
            create(b"{\"note\": \"\xff\xfe\"}"),
            Expect::Admin(400),
        ),
        row(
            "admin body nested 100,000 deep",
            create(&nested_json(100_000)),
            Expect::Admin(400),
        ),
        row(
            "admin note a number",
            create(br#"{"note": 5}"#),
            Expect::Admin(400),
        ),
        row(
            "admin unknown member",
            create(br#"{"nope": true}"#),
            Expect::Admin(400),
        ),
        row(
            "admin note of 2,000 characters",
            create(json!({"note": "n".repeat(2000)}).to_string().as_bytes()),
            Expect::Admin(400),
        ),
        row(
            "admin directory with a NUL",
            create(br#"{"directory": "default\u0000"}"#),
            Expect::Admin(400),
        ),
        row(
            "admin policy a string",
            create(br#"{"policy": "everything"}"#),
            Expect::Admin(400),
        ),
        row(
            "admin body over the limit",
            create(&vec![b' '; MAX_BODY + 1]),
            Expect::Admin(413),
        ),
        row(
            "admin DELETE of a 5,000-character kid",
            http(
                "DELETE",
                format!("/admin/eab-keys/{}", "k".repeat(5000)).as_bytes(),
                &[auth],
                b"",
            ),
            Expect::Admin(404),
        ),
        row(
            "admin DELETE of a percent-escaped NUL kid",
            http("DELETE", b"/admin/eab-keys/%00%ff", &[auth], b""),
            Expect::Admin(404),
        ),
    ]
}

fn revocation_rows(plain: &Wire, https: &Wire) -> Vec<Row> {
    let ocsp_type: (&str, &[u8]) = ("Content-Type", b"application/ocsp-request");
    let post = |body: &[u8]| http("POST", b"/ocsp", &[ocsp_type], body);
    let row = |name, request, expect| Row {
        name,
        wire: plain.clone(),
        request,
        expect,
    };
    let one = ocsp_request(1);
    let get = |der: &[u8]| {
        let encoded = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        http("GET", format!("/ocsp/{encoded}").as_bytes(), &[], b"")
    };
    vec![
        row(
            "OCSP well-formed, unknown issuer",
            post(&one),
            Expect::Ocsp(6),
        ),
        row(
            "OCSP well-formed over GET, unknown issuer",
            get(&one),
            Expect::Ocsp(6),
        ),
        row(
            "OCSP garbage",
            post(b"\xde\xad\xbe\xef garbage"),
            Expect::Ocsp(1),
        ),
        row("OCSP empty body", post(b""), Expect::Ocsp(1)),
        row(
            "OCSP truncated",
            post(&one[..one.len() / 2]),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP length of 4 GiB",
            post(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30]),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP 1 MiB body",
            post(&vec![0x30; 1024 * 1024]),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP 1,000 CertIDs",
            post(&ocsp_request(1000)),
            Expect::Ocsp(1),
        ),
        row("OCSP 21 CertIDs", post(&ocsp_request(21)), Expect::Ocsp(1)),
        row(
            "OCSP trailing data",
            post(&concat(&[one.clone(), vec![0x00]])),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP GET not base64",
            http("GET", b"/ocsp/!!!not*base64!!!", &[], b""),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP GET base64 of garbage",
            get(b"garbage"),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP GET with a '%' before a two-byte character",
            http("GET", "/ocsp/%aé".as_bytes(), &[], b""),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP GET with bad percent escapes",
            http("GET", b"/ocsp/%zz%%%", &[], b""),
            Expect::Ocsp(1),
        ),
        row(
            "OCSP PUT",
            http("PUT", b"/ocsp", &[ocsp_type], &one),
            Expect::Plain(405),
        ),
        row(
            "CRL of an unknown issuer",
            http("GET", b"/crl/nosuch.crl", &[], b""),
            Expect::Plain(404),
        ),
        row(
            "CRL path traversal",
            http("GET", b"/crl/..%2f..%2fetc%2fpasswd.crl", &[], b""),
            Expect::Plain(404),
        ),
        row(
            "CRL name of 10,000 characters",
            http(
                "GET",
                format!("/crl/{}.pem", "c".repeat(10_000)).as_bytes(),
                &[],
                b"",
            ),
            Expect::Plain(404),
        ),
        row(
            "ACME on the plain-HTTP listener",
            http("GET", b"/acme/directory", &[], b""),
            Expect::Plain(404),
        ),
        Row {
            name: "OCSP garbage over HTTPS",
            wire: https.clone(),
            request: post(b"\x30\x03\x02\x01"),
            expect: Expect::Ocsp(1),
        },
    ]
}

/// A body sent without Content-Length in 16 KiB chunks, one every 10 ms, until pkid answers
/// (it must: 413 once the limit is passed) or 64 MiB have gone.
async fn endless_chunked(
    wire: &Wire,
    path: &str,
    headers: &[(&str, &[u8])],
) -> Result<Raw, String> {
    let mut all = headers.to_vec();
    all.push(("Transfer-Encoding", b"chunked"));
    let head = wire.with_host(&http("POST", path.as_bytes(), &all, b""));
    let mut stream = wire.connect().await;
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let answered = AtomicBool::new(false);
    let write = async {
        if writer.write_all(&head).await.is_err() {
            return;
        }
        let chunk = concat(&[b"4000\r\n".to_vec(), vec![b'{'; 0x4000], b"\r\n".to_vec()]);
        for _ in 0..4096 {
            if answered.load(Ordering::SeqCst) || writer.write_all(&chunk).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    let read = async {
        let raw = read_response(&mut reader).await;
        answered.store(true, Ordering::SeqCst);
        raw
    };
    let (_, raw) = tokio::time::timeout(EXCHANGE_BOUND * 2, async { tokio::join!(write, read) })
        .await
        .map_err(|_| "no answer".to_owned())?;
    raw
}

/// A request whose head is complete and whose body (of 1,000 declared bytes) comes 10 bytes
/// at a time, every 300 ms: pkid must give up on it after the header timeout.
async fn trickled_body(wire: &Wire, path: &str, headers: &[(&str, &[u8])]) -> Result<Raw, String> {
    let mut all = headers.to_vec();
    // A Transfer-Encoding stops `http` adding its own Content-Length: 0; strip the one it
    // names and declare the real length instead.
    all.push(("Transfer-Encoding", b"x"));
    let mut head = http("POST", path.as_bytes(), &all, b"");
    let fake = b"Transfer-Encoding: x\r\n";
    let i = head
        .windows(fake.len())
        .position(|w| w == fake)
        .expect("the placeholder header");
    head.splice(
        i..i + fake.len(),
        b"Content-Length: 1000\r\n".iter().copied(),
    );
    let head = wire.with_host(&head);
    let mut stream = wire.connect().await;
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let answered = AtomicBool::new(false);
    let write = async {
        if writer.write_all(&head).await.is_err() {
            return;
        }
        for _ in 0..100 {
            if answered.load(Ordering::SeqCst) || writer.write_all(&[b' '; 10]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let read = async {
        let raw = read_response(&mut reader).await;
        answered.store(true, Ordering::SeqCst);
        raw
    };
    let started = Instant::now();
    let (_, raw) = tokio::time::timeout(EXCHANGE_BOUND * 2, async { tokio::join!(write, read) })
        .await
        .map_err(|_| "no answer".to_owned())?;
    let mut raw = raw?;
    raw.elapsed = started.elapsed();
    Ok(raw)
}

/// Opens a connection, sends `first` and then one byte of `dribble` every 300 ms; returns how
/// long pkid took to close it, or `None` if it was still open after [`CUT_OFF_BOUND`].
async fn slow_client(wire: &Wire, first: &[u8], dribble: &[u8]) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = wire.connect().await;
    let (mut reader, mut writer) = tokio::io::split(&mut stream);
    let closed = async {
        let mut sink = [0u8; 4096];
        loop {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            }
        }
    };
    let write = async {
        let _ = writer.write_all(first).await;
        for byte in dribble {
            tokio::time::sleep(Duration::from_millis(300)).await;
            if writer.write_all(&[*byte]).await.is_err() {
                break;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::time::timeout(CUT_OFF_BOUND, async {
        tokio::select! {
            elapsed = closed => elapsed,
            () = write => unreachable!(),
        }
    })
    .await
    .ok()
}

/// A TCP connection that never starts its TLS handshake.
async fn silent_tcp(addr: SocketAddr) -> Option<Duration> {
    slow_client(&Wire::plain(addr), b"", b"").await
}

/// VmRSS and VmHWM of `pid`, in kB.
fn memory_kb(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/status: {err}"));
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in /proc/{pid}/status"))
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_input_on_every_surface_gets_an_error_in_its_shape_and_pkid_survives() {
    require_tool("openssl");
    let max_body = MAX_BODY.to_string();
    let header_timeout = HEADER_TIMEOUT.as_secs().to_string();
    let env = Environment::start_with(&[
        ("PKID_SERVER__MAX_BODY_BYTES", max_body.as_str()),
        ("PKID_SERVER__HEADER_TIMEOUT_SECS", header_timeout.as_str()),
        ("PKID_ACME__DIRECTORIES__HOSTILE__PRE_AUTHORIZATION", "true"),
    ])
    .await;
    within(TEST_BOUND, Box::pin(async {
        let root = env.pkid.root_pem();
        let https = Wire::https(env.pkid.https_addr(), &root, b"http/1.1");
        let admin = Wire::https(env.pkid.admin_addr(), &root, b"http/1.1");
        let plain = Wire::plain(env.pkid.http_addr());

        let token = env.pkid.admin_token("hostile").await;

        let responder = Http01Responder::bind(env.http01_port).await;
        let mut client = AcmeClient::new(&env.pkid.directory_url(), &root).await;
        let account_url = client.register().await;
        let ready_names = vec!["ready.hostile.test".to_owned()];
        let ready = client.ready_order(&["ready.hostile.test"], &responder).await;
        let signer = Signer {
            client: &client,
            account_url,
        };

        // The named directory the rows below address exists (else the default directory,
        // whose prefix covers every /acme/ path, would answer for it).
        let named = https
            .exchange(&http("GET", b"/acme/hostile/directory", &[], b""))
            .await
            .unwrap_or_else(|err| panic!("GET the named directory: {err}"));
        let named_dir: Value = serde_json::from_slice(&named.body).unwrap_or_default();
        assert!(
            named.status == 200
                && named_dir["newOrder"]
                    .as_str()
                    .is_some_and(|u| u.ends_with("/acme/hostile/new-order")),
            "the named directory: {}",
            named.describe()
        );

        let db = open_read_only(&env.pkid.database_path()).await;
        let before = snapshot(&db).await;

        // Boxed: the rows' future is too large for a test thread's stack.
        let mut rows =
            Box::pin(acme_rows(&https, &signer, &ready.finalize_url(), &ready_names)).await;
        rows.extend(admin_rows(&admin, &https, &token));
        rows.extend(revocation_rows(&plain, &https));
        let mut failures = Vec::new();
        let mut slowest = Duration::ZERO;
        for row in &rows {
            let wrong = match row.wire.exchange(&row.request).await {
                Ok(raw) => {
                    slowest = slowest.max(raw.elapsed);
                    judge(row.expect, &raw)
                }
                Err(err) => vec![err],
            };
            if !wrong.is_empty() {
                failures.push(format!("{}: {}", row.name, wrong.join("; ")));
            }
        }

        // Bodies that never end, and bodies that hardly come.
        let jose_type: (&str, &[u8]) = ("Content-Type", b"application/jose+json");
        let bearer = format!("Bearer {token}");
        let auth: (&str, &[u8]) = ("Authorization", bearer.as_bytes());
        let ocsp_type: (&str, &[u8]) = ("Content-Type", b"application/ocsp-request");
        let new_order = Signer::path(&client.resource("newOrder"));
        let streamed = [
            (
                "ACME endless chunked body",
                endless_chunked(&https, &new_order, &[jose_type]).await,
                Expect::Acme(413, "malformed"),
            ),
            (
                "admin endless chunked body",
                endless_chunked(&admin, "/admin/eab-keys", &[auth]).await,
                Expect::Admin(413),
            ),
            (
                "OCSP endless chunked body",
                endless_chunked(&plain, "/ocsp", &[ocsp_type]).await,
                Expect::Ocsp(1),
            ),
        ];
        let (jose_headers, admin_headers, ocsp_headers) = ([jose_type], [auth], [ocsp_type]);
        let (acme_slow, admin_slow, ocsp_slow) = tokio::join!(
            trickled_body(&https, &new_order, &jose_headers),
            trickled_body(&admin, "/admin/eab-keys", &admin_headers),
            trickled_body(&plain, "/ocsp", &ocsp_headers),
        );
        let trickled = [
            ("ACME trickled body", acme_slow, Expect::Acme(408, "malformed")),
            ("admin trickled body", admin_slow, Expect::Admin(408)),
            ("OCSP trickled body", ocsp_slow, Expect::Ocsp(1)),
        ];
        for (name, raw, expect) in streamed.iter().chain(trickled.iter()) {
            let wrong = match raw {
                Ok(raw) => judge(*expect, raw),
                Err(err) => vec![err.clone()],
            };
            if !wrong.is_empty() {
                failures.push(format!("{name}: {}", wrong.join("; ")));
            }
        }
        for (name, raw, _) in &trickled {
            if let Some(raw) = raw.as_ref().ok().filter(|raw| raw.elapsed > CUT_OFF_BOUND) {
                failures.push(format!("{name}: answered only after {:?}", raw.elapsed));
            }
        }

        // Slow and silent clients, all at once.
        let h2 = Wire::https(env.pkid.https_addr(), &root, b"h2");
        let h2_preface = concat(&[
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
            vec![0, 0, 0, 4, 0, 0, 0, 0, 0],
        ]);
        let head = b"GET /acme/directory HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
        let (tcp_https, tls_silent, tls_dribble, plain_silent, plain_preface, h2_idle) = tokio::join!(
            silent_tcp(env.pkid.https_addr()),
            slow_client(&https, b"", b""),
            slow_client(&https, b"", head),
            slow_client(&plain, b"", b""),
            slow_client(&plain, b"PRI * HTTP/2.0\r\n", b""),
            slow_client(&h2, &h2_preface, b""),
        );
        for (name, cut_off) in [
            ("TCP connection to HTTPS with no TLS handshake", tcp_https),
            ("TLS connection that sends nothing", tls_silent),
            ("TLS connection dribbling its request head", tls_dribble),
            ("plain-HTTP connection that sends nothing", plain_silent),
            ("plain-HTTP connection stopping inside the HTTP/2 preface", plain_preface),
            ("HTTP/2 connection idle after its preface", h2_idle),
        ] {
            match cut_off {
                Some(after) => eprintln!("{name}: closed by pkid after {after:?}"),
                None => failures.push(format!(
                    "{name}: still open after {CUT_OFF_BOUND:?} (header timeout {HEADER_TIMEOUT:?})"
                )),
            }
        }

        let after = snapshot(&db).await;
        if after != before {
            failures.push(format!("database changed: {before:?} -> {after:?}"));
        }
        db.close().await;
        let keys = admin
            .exchange(&http("GET", b"/admin/eab-keys", &[auth], b""))
            .await
            .unwrap_or_else(|err| panic!("list EAB keys: {err}"));
        let listed: Value = serde_json::from_slice(&keys.body).unwrap_or_default();
        if keys.status != 200 || listed["result"] != json!([]) {
            failures.push(format!(
                "admin: EAB keys after the hostile rows: {}",
                keys.describe()
            ));
        }

        // Still a CA: a normal issuance, checked like every other.
        issue(&env, &mut client, &responder, &["after.hostile.test"]).await;

        let (rss, hwm) = memory_kb(env.pkid.pid());
        eprintln!(
            "{} rows, slowest answer {slowest:?}; pkid VmRSS {rss} kB, VmHWM {hwm} kB",
            rows.len() + streamed.len() + trickled.len()
        );
        if hwm > RSS_BOUND_KB {
            failures.push(format!("pkid's peak RSS {hwm} kB is over {RSS_BOUND_KB} kB"));
        }
        let logs = env.pkid.logs();
        if logs.contains("panicked") {
            failures.push("pkid's output holds a panic (printed below)".to_owned());
        }
        assert!(
            failures.is_empty(),
            "{} hostile requests went wrong:\n{}{}",
            failures.len(),
            failures.join("\n"),
            if logs.contains("panicked") {
                format!("\n{logs}")
            } else {
                String::new()
            }
        );
    }))
    .await;
}
