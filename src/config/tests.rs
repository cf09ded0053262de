//! The configuration's unit tests: the shipped `config.toml` is the default, and each check refuses
//! what cannot be served.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::result_large_err)]
use super::*;

#[test]
fn shipped_config_toml_is_the_default() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml");
    let cfg: Config = Figment::from(Serialized::defaults(Config::default()))
        .merge(Toml::file_exact(shipped))
        .extract()
        .unwrap();
    let default = Config::default();
    assert_eq!(
        serde_json::to_value(&cfg).unwrap(),
        serde_json::to_value(&default).unwrap()
    );
}

#[test]
fn the_default_configuration_holds_together() {
    assert_eq!(Config::default().check(), Ok(()));
}

#[test]
fn directories_that_cannot_be_served_are_refused_before_start() {
    let with = |name: &str, dir: DirectoryConfig| {
        let mut cfg = Config::default();
        cfg.acme.directories.insert(name.into(), dir);
        cfg.check()
    };
    for reserved in ["new-order", "default", "Upper", ""] {
        let refused = with(reserved, DirectoryConfig::default()).unwrap_err();
        assert!(
            refused.contains("a directory name is"),
            "{reserved:?}: {refused}"
        );
    }
    assert_eq!(with("team-1", DirectoryConfig::default()), Ok(()));
    let unknown_backend = DirectoryConfig {
        backend: Some("nowhere".into()),
        ..DirectoryConfig::default()
    };
    assert_eq!(
        with("team-1", unknown_backend).unwrap_err(),
        "ACME directory Some(\"team-1\"): backend \"nowhere\" is not configured"
    );
    let default_not_offered = DirectoryConfig {
        profiles: vec!["short-lived".into()],
        default_profile: Some("tls-server".into()),
        ..DirectoryConfig::default()
    };
    assert!(with("team-1", default_not_offered)
        .unwrap_err()
        .contains("default profile \"tls-server\" is not offered"));
}

/// A listener beyond loopback needs a base URL (URLs never from the Host header there);
/// the admin listener is an address of its own.
#[test]
fn listeners_beyond_loopback_need_a_base_url() {
    let with = |listen: &str, base_url: &str, admin: &str| {
        let mut cfg = Config::default();
        cfg.server.listen = listen.parse().unwrap();
        cfg.server.base_url = base_url.into();
        cfg.server.admin_listen = admin.into();
        cfg.check()
    };
    for loopback in ["127.0.0.1:8443", "127.0.0.2:8443", "[::1]:8443"] {
        assert_eq!(with(loopback, "", "127.0.0.1:8444"), Ok(()), "{loopback}");
    }
    for beyond in [
        "0.0.0.0:8443",
        "[::]:8443",
        "192.0.2.7:8443",
        "[2001:db8::1]:8443",
    ] {
        let refused = with(beyond, "", "127.0.0.1:8444").unwrap_err();
        assert!(
            refused.starts_with("server.base_url must be set when server.listen"),
            "{beyond}: {refused}"
        );
        assert_eq!(with(beyond, "https://ca.example", "127.0.0.1:8444"), Ok(()));
    }
    assert_eq!(with("127.0.0.1:8443", "", ""), Ok(()));
    assert!(with("127.0.0.1:8443", "", "localhost:8444")
        .unwrap_err()
        .contains("is not an ip:port address"));
    assert!(with("127.0.0.1:8443", "", "127.0.0.1:8443")
        .unwrap_err()
        .contains("must differ from server.listen"));
}

#[test]
fn client_certificate_settings_are_checked_before_start() {
    let with = |anchors: &[&str], proxies: &[&str]| {
        let mut cfg = Config::default();
        cfg.server.client_ca_files = anchors.iter().map(|s| s.to_string()).collect();
        cfg.server.trusted_proxies = proxies.iter().map(|s| s.to_string()).collect();
        cfg.check()
    };
    assert_eq!(
        with(
            &["backend:default", "clients-ca.pem"],
            &["10.0.0.0/8", "::1", "2001:db8::/32"]
        ),
        Ok(())
    );
    assert_eq!(
        with(&["backend:nowhere"], &[]).unwrap_err(),
        "server.client_ca_files: backend \"nowhere\" is not configured"
    );
    for bad in ["10.0.0.0/33", "proxy.example", "10.0.0.0/", "::1/129"] {
        assert!(
            with(&[], &[bad])
                .unwrap_err()
                .contains("is not an address or a CIDR range"),
            "{bad}"
        );
    }
}

#[test]
fn environment_overrides_nested_keys() {
    figment::Jail::expect_with(|jail| {
        jail.set_env("PKID_SERVER__LISTEN", "127.0.0.1:9443");
        jail.set_env("PKID_ACME__HTTP01_PORT", "5002");
        jail.set_env(
            "PKID_SERVER__CLIENT_CA_FILES",
            "[\"backend:default\", \"clients.pem\"]",
        );
        let cfg = Config::load(None).unwrap();
        assert_eq!(
            cfg.server.client_ca_files,
            vec!["backend:default".to_string(), "clients.pem".to_string()]
        );
        assert_eq!(cfg.server.listen.port(), 9443);
        assert_eq!(cfg.acme.http01_port, 5002);
        assert_eq!(cfg.base_url(), "https://localhost:9443");
        Ok(())
    });
}
