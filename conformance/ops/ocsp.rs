//! OCSP as a signing oracle (issue 29, item 4): with the CA key's signatures counted (pkid logs
//! each one, target `pkid::signatures`), a request with a nonce (`openssl ocsp`'s default), two
//! different nonces, a serial pkid never issued, several certificates in one request, and the
//! GET form sign nothing once the certificate's answer is cached; `openssl ocsp` verifies the
//! answers it gets (no nonce in them: RFC 8954 lets a responder leave it out). Past
//! `ca.ocsp_requests_per_minute` a client gets 429 with Retry-After and the `tryLater` status.

use base64::Engine;

use super::{acme, issue, TEST_BOUND};
use crate::harness::certs::{
    ocsp_query, ocsp_status, openssl, revocation_endpoints, write_chain_files, OcspSubject,
};
use crate::harness::environment::{within, Environment};
use crate::harness::pkid::Pkid;
use crate::harness::process::require_tool;

/// How many signatures the CA keys have made, as pkid's log says (one debug line each).
fn signatures(pkid: &Pkid) -> usize {
    pkid.logs()
        .lines()
        .filter(|line| line.contains("pkid::signatures") && line.contains("CA key signature"))
        .count()
}

/// `openssl ocsp ARGS…`: its output, whatever its exit status.
fn openssl_ocsp(args: &[&std::ffi::OsStr]) -> String {
    let mut all: Vec<&std::ffi::OsStr> = vec!["ocsp".as_ref()];
    all.extend_from_slice(args);
    openssl(&all).1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocsp_with_a_nonce_an_unknown_serial_or_several_certificates_signs_nothing() {
    require_tool("openssl");
    let env = Environment::start_with(&[("PKID_CA__OCSP_REQUESTS_PER_MINUTE", "40")]).await;
    within(TEST_BOUND, async {
        let (mut client, responder) = acme(&env).await;
        let chain = issue(&mut client, &responder, &["ocsp-a.pkid.test"]).await;
        let other_chain = issue(&mut client, &responder, &["ocsp-b.pkid.test"]).await;
        let work = env.subdir("ocsp");
        let (leaf, issuer, bundle) = write_chain_files(&env.pkid.root_pem_path(), &chain, &work);
        let (other, _, _) = write_chain_files(
            &env.pkid.root_pem_path(),
            &other_chain,
            &env.subdir("other"),
        );
        let (_, url) = revocation_endpoints(&chain);

        // The first answer for the certificate is signed (once) and cached.
        let before_first = signatures(&env.pkid);
        assert_eq!(
            ocsp_status(&issuer, &bundle, &url, OcspSubject::Cert(&leaf)),
            "good"
        );
        let signed = signatures(&env.pkid);
        assert_eq!(
            signed,
            before_first + 1,
            "the first answer is one signature"
        );

        // With a nonce (two different ones): the cached answer, which openssl verifies.
        let mut answers = Vec::new();
        for round in 0..2 {
            let out = work.join(format!("nonce-{round}.der"));
            let respout = out.display().to_string();
            let (status, text) = ocsp_query(
                &issuer,
                &bundle,
                &url,
                OcspSubject::Cert(&leaf),
                &["-respout", &respout, "-resp_text"],
            );
            assert_eq!(status, "good", "{text}");
            assert!(
                text.contains("WARNING: no nonce in response") && !text.contains("OCSP Nonce"),
                "the nonce is not echoed:\n{text}"
            );
            answers.push(std::fs::read(&out).expect("read the response"));
        }
        assert_eq!(answers[0], answers[1], "two nonces, one pre-signed answer");

        // A serial pkid never issued: unauthorized, unsigned (RFC 6960 §2.3).
        for serial in ["0x1234", "0x7f0102030405060708090a0b0c0d0e0f"] {
            let text = openssl_ocsp(&[
                "-issuer".as_ref(),
                issuer.as_os_str(),
                "-serial".as_ref(),
                serial.as_ref(),
                "-url".as_ref(),
                url.as_ref(),
            ]);
            assert!(
                text.contains("Responder Error: unauthorized"),
                "serial {serial}:\n{text}"
            );
        }

        // Two certificates in one request: malformedRequest, unsigned.
        let text = openssl_ocsp(&[
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-cert".as_ref(),
            other.as_os_str(),
            "-url".as_ref(),
            url.as_ref(),
        ]);
        assert!(
            text.contains("Responder Error: malformedrequest"),
            "two CertIDs:\n{text}"
        );

        // GET with a nonce in the request: the same cached bytes.
        let request = work.join("request.der");
        let (ok, text) = openssl(&[
            "ocsp".as_ref(),
            "-issuer".as_ref(),
            issuer.as_os_str(),
            "-cert".as_ref(),
            leaf.as_os_str(),
            "-reqout".as_ref(),
            request.as_os_str(),
        ]);
        assert!(ok, "openssl ocsp -reqout:\n{text}");
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(std::fs::read(&request).expect("read the request"));
        let get = format!("{url}/{}", encoded.replace('/', "%2F").replace('+', "%2B"));
        let got = reqwest::get(&get).await.expect("GET /ocsp/…");
        assert_eq!(got.status().as_u16(), 200);
        assert_eq!(
            got.bytes().await.expect("read the answer").as_ref(),
            answers[0]
        );

        assert_eq!(
            signatures(&env.pkid),
            signed,
            "nonces, unknown serials, several CertIDs and GET signed nothing:\n{}",
            env.pkid.logs()
        );

        // Past the limit (40 a minute from one address): 429, Retry-After, tryLater.
        let body = std::fs::read(&request).expect("read the request");
        let http = reqwest::Client::new();
        let mut limited = None;
        for _ in 0..45 {
            let answer = http
                .post(&url)
                .header("content-type", "application/ocsp-request")
                .body(body.clone())
                .send()
                .await
                .expect("POST /ocsp");
            if answer.status().as_u16() == 429 {
                limited = Some(answer);
                break;
            }
            assert_eq!(answer.status().as_u16(), 200);
        }
        let limited = limited.expect("a 429 within 45 requests of a 40-a-minute limit");
        let retry_after: u64 = limited
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .expect("a Retry-After in seconds");
        assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
        assert_eq!(
            limited
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/ocsp-response")
        );
        assert_eq!(
            limited.bytes().await.expect("read the 429").as_ref(),
            [0x30, 0x03, 0x0a, 0x01, 0x03],
            "the unsigned tryLater status"
        );
        assert_eq!(
            signatures(&env.pkid),
            signed,
            "nor did the refused requests"
        );
    })
    .await;
}
