#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use rustls::client::ResolvesClientCert;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion};
use rustls_pki_types::{PrivateKeyDer, ServerName};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::*;

struct Made {
    der: Vec<u8>,
    key: KeyPair,
    params: CertificateParams,
}

fn make(name: &str, ca: bool, alg: &'static SignatureAlgorithm, issuer: Option<&Made>) -> Made {
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "pkid tests");
    dn.push(DnType::OrganizationalUnitName, name);
    params.distinguished_name = dn;
    if ca {
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.subject_alt_names.clear();
    }
    sign(params, alg, issuer)
}

fn sign(
    params: CertificateParams,
    alg: &'static SignatureAlgorithm,
    issuer: Option<&Made>,
) -> Made {
    let key = KeyPair::generate_for(alg).unwrap();
    let cert = match issuer {
        Some(i) => params
            .signed_by(&key, &Issuer::from_params(&i.params, &i.key))
            .unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Made {
        der: cert.der().to_vec(),
        key,
        params,
    }
}

/// An RFC 3820 proxy under `issuer`: its subject the issuer's plus a CN, and the critical
/// proxyCertInfo extension rustls' own verifier does not know.
fn proxy_of(issuer: &Made) -> Made {
    let mut params = CertificateParams::default();
    params.distinguished_name = issuer.params.distinguished_name.clone();
    params
        .distinguished_name
        .push(DnType::CommonName, "1234567");
    let info = vec![
        0x30, 0x0c, 0x30, 0x0a, 0x06, 0x08, 0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x15, 0x01,
    ];
    let mut ext = CustomExtension::from_oid_content(&[1, 3, 6, 1, 5, 5, 7, 1, 14], info);
    ext.set_criticality(true);
    params.custom_extensions.push(ext);
    sign(params, &PKCS_ECDSA_P256_SHA256, Some(issuer))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn key_der(made: &Made) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(made.key.serialize_der().into())
}

/// The server's world: a root that issues the server's certificate and the clients'.
struct World {
    root: Made,
    server: Made,
}

impl World {
    fn new() -> World {
        let root = make("Root", true, &PKCS_ECDSA_P256_SHA256, None);
        let server = make("server", false, &PKCS_ECDSA_P256_SHA256, Some(&root));
        World { root, server }
    }

    fn root_subject(&self) -> Vec<u8> {
        let (_, root) = X509Certificate::from_der(&self.root.der).unwrap();
        root.subject().as_raw().to_vec()
    }

    fn server_config(&self, verifier: Arc<dyn ClientCertVerifier>) -> Arc<ServerConfig> {
        let config = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(self.server.der.clone())],
                key_der(&self.server),
            )
            .unwrap();
        Arc::new(config)
    }

    fn ours(&self) -> Arc<ServerConfig> {
        let algorithms = provider().signature_verification_algorithms;
        self.server_config(Arc::new(OptionalClientAuth::new(
            &[self.root_subject()],
            algorithms,
        )))
    }

    fn client_config(
        &self,
        version: &'static SupportedProtocolVersion,
        presents: Option<Arc<Presents>>,
    ) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.root.der.clone()))
            .unwrap();
        let builder = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[version])
            .unwrap()
            .with_root_certificates(roots);
        Arc::new(match presents {
            Some(presents) => builder.with_client_cert_resolver(presents),
            None => builder.with_no_client_auth(),
        })
    }
}

/// What a test client presents: a chain and a signing key, matching or not (so no rustls
/// check of the pair), and the hints the server sent.
#[derive(Debug)]
struct Presents {
    key: Arc<CertifiedKey>,
    hints: Mutex<Vec<Vec<u8>>>,
}

impl Presents {
    fn new(chain: &[&Made], key: &Made) -> Arc<Presents> {
        let signer = provider()
            .key_provider
            .load_private_key(key_der(key))
            .unwrap();
        let chain = chain
            .iter()
            .map(|c| CertificateDer::from(c.der.clone()))
            .collect();
        Arc::new(Presents {
            key: Arc::new(CertifiedKey::new(chain, signer)),
            hints: Mutex::new(Vec::new()),
        })
    }
}

impl ResolvesClientCert for Presents {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _schemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        *self.hints.lock().unwrap() = root_hint_subjects.iter().map(|h| h.to_vec()).collect();
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// One handshake over an in-memory pipe: the chain the server kept, or why it refused.
async fn handshake(
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
) -> Result<Option<Vec<CertificateDer<'static>>>, String> {
    let (server_io, client_io) = tokio::io::duplex(64 * 1024);
    let name = ServerName::try_from("localhost").unwrap();
    let (accepted, _connected) = tokio::join!(
        TlsAcceptor::from(server).accept(server_io),
        TlsConnector::from(client).connect(name, client_io)
    );
    let accepted = accepted.map_err(|e| e.to_string())?;
    Ok(accepted
        .get_ref()
        .1
        .peer_certificates()
        .map(<[CertificateDer<'static>]>::to_vec))
}

const VERSIONS: [&SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];

#[tokio::test]
async fn a_client_without_a_certificate_connects_as_before() {
    let world = World::new();
    for version in VERSIONS {
        let kept = handshake(world.ours(), world.client_config(version, None)).await;
        assert_eq!(kept, Ok(None), "{version:?}");
    }
}

#[tokio::test]
async fn any_chain_whose_leaf_key_the_client_holds_is_kept_for_later() {
    let world = World::new();
    let algorithms = [
        &PKCS_ECDSA_P256_SHA256,
        &PKCS_ECDSA_P384_SHA384,
        &PKCS_ED25519,
    ];
    for version in VERSIONS {
        for alg in algorithms {
            let alice = make("alice", false, alg, Some(&world.root));
            let presents = Presents::new(&[&alice], &alice);
            let client = world.client_config(version, Some(presents.clone()));
            let kept = handshake(world.ours(), client).await;
            assert_eq!(
                kept,
                Ok(Some(vec![CertificateDer::from(alice.der.clone())])),
                "{version:?} {alg:?}"
            );
            // The anchors' subjects were the hints.
            assert_eq!(*presents.hints.lock().unwrap(), vec![world.root_subject()]);
        }
        // Not verified here: a certificate from nowhere is kept too (identity refuses it).
        let stranger_root = make("Elsewhere", true, &PKCS_ECDSA_P256_SHA256, None);
        let stranger = make(
            "mallory",
            false,
            &PKCS_ECDSA_P256_SHA256,
            Some(&stranger_root),
        );
        let client = world.client_config(version, Some(Presents::new(&[&stranger], &stranger)));
        assert_eq!(
            handshake(world.ours(), client)
                .await
                .unwrap()
                .map(|c| c.len()),
            Some(1)
        );
    }
}

#[tokio::test]
async fn a_proxy_chain_is_accepted_where_rustls_own_verifier_refuses_it() {
    let world = World::new();
    let alice = make("alice", false, &PKCS_ECDSA_P256_SHA256, Some(&world.root));
    let proxy = proxy_of(&alice);
    let rustls_own = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new({
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(world.root.der.clone()))
                .unwrap();
            roots
        }),
        provider(),
    )
    .allow_unauthenticated()
    .build()
    .unwrap();
    for version in VERSIONS {
        let presents = Presents::new(&[&proxy, &alice], &proxy);
        let kept = handshake(
            world.ours(),
            world.client_config(version, Some(presents.clone())),
        )
        .await;
        assert_eq!(kept.unwrap().map(|c| c.len()), Some(2), "{version:?}");
        let refused = handshake(
            world.server_config(rustls_own.clone()),
            world.client_config(version, Some(presents)),
        )
        .await;
        let refused = refused.unwrap_err();
        assert!(
            refused.contains("UnsupportedCriticalExtension"),
            "{version:?}: {refused}"
        );
    }
}

#[tokio::test]
async fn a_client_that_does_not_hold_the_leaf_key_is_refused() {
    let world = World::new();
    let alice = make("alice", false, &PKCS_ECDSA_P256_SHA256, Some(&world.root));
    let other_key = make("other", false, &PKCS_ECDSA_P256_SHA256, Some(&world.root));
    for version in VERSIONS {
        let client = world.client_config(version, Some(Presents::new(&[&alice], &other_key)));
        let refused = handshake(world.ours(), client).await.unwrap_err();
        assert!(refused.contains("BadSignature"), "{version:?}: {refused}");
        // The proxy's key is the one to hold, not its end-entity certificate's.
        let proxy = proxy_of(&alice);
        let client = world.client_config(version, Some(Presents::new(&[&proxy, &alice], &alice)));
        let refused = handshake(world.ours(), client).await.unwrap_err();
        assert!(refused.contains("BadSignature"), "{version:?}: {refused}");
    }
}
