//! The `pkid` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pkid::config::Config;
use pkid::startup::BoxError;

#[derive(Parser)]
#[command(
    name = "pkid",
    version,
    about = "Certificate Authority and Registration Authority server"
)]
struct Cli {
    /// Configuration file (default: ./config.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (creates the data directory and software CA on first start).
    Serve,
    /// Revoke a certificate by serial (hex); the CRL and OCSP reflect it at once.
    Revoke {
        serial: String,
        /// RFC 5280 reason code: 0 unspecified, 1 keyCompromise, 4 superseded, 5 cessationOfOperation …
        #[arg(long, default_value_t = 0)]
        reason: u8,
        /// RFC 3339 time the key was known or suspected compromised, or the certificate
        /// otherwise became invalid (RFC 5280 §5.3.2), e.g. 2026-01-31T12:00:00Z.
        #[arg(long)]
        invalidity_date: Option<String>,
    },
    /// CRL operations.
    Crl {
        #[command(subcommand)]
        command: CrlCommand,
    },
    /// Certificate authorities.
    Ca {
        #[command(subcommand)]
        command: CaCommand,
    },
    /// Signing backends.
    Backend {
        #[command(subcommand)]
        command: BackendCommand,
    },
    /// The admin REST surface.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// External account binding keys (RFC 8555 §7.3.4).
    Eab {
        #[command(subcommand)]
        command: EabCommand,
    },
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Admin bearer tokens for the /admin REST surface.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once.
    Create {
        #[arg(long, default_value = "")]
        note: String,
    },
}

#[derive(Subcommand)]
enum EabCommand {
    /// Create a single-use key; prints its kid and HMAC key once.
    Create {
        #[arg(long, default_value = "")]
        note: String,
        /// The bound account may order only names under this DNS suffix (repeatable).
        #[arg(long = "allow-dns-suffix")]
        allow_dns_suffixes: Vec<String>,
        /// The bound account may order only IPs in this CIDR range (repeatable).
        #[arg(long = "allow-ip-range")]
        allow_ip_ranges: Vec<String>,
        /// The bound account may order only this profile (repeatable).
        #[arg(long = "profile")]
        profiles: Vec<String>,
    },
    /// List key ids and their bound accounts.
    List,
}

#[derive(Subcommand)]
enum CrlCommand {
    /// Sign a fresh CRL for an issuer (default: the ACME issuer) and print it as PEM.
    Generate {
        issuer: Option<String>,
        #[arg(long)]
        out: Option<PathBuf>,
        /// One shard of a sharded issuer's CRL instead of its complete CRL.
        #[arg(long, conflicts_with = "delta")]
        shard: Option<i64>,
        /// The delta CRL (with `ca.delta_crls`) instead of the complete CRL.
        #[arg(long)]
        delta: bool,
    },
}

#[derive(Subcommand)]
enum CaCommand {
    /// List the configured issuers.
    List,
    /// Create a configured backend's CA material now (kept if it exists) and show it.
    Create { name: String },
}

#[derive(Subcommand)]
enum BackendCommand {
    /// A signing round-trip through the named backend.
    Check { name: String },
}

async fn dispatch(cfg: Config, command: Command) -> Result<(), BoxError> {
    match command {
        Command::Serve => pkid::startup::run(cfg).await,
        Command::Revoke {
            serial,
            reason,
            invalidity_date,
        } => pkid::commands::revoke(&cfg, &serial, reason, invalidity_date.as_deref()).await,
        Command::Crl {
            command:
                CrlCommand::Generate {
                    issuer,
                    out,
                    shard,
                    delta,
                },
        } => {
            let scope = match (shard, delta) {
                (Some(k), _) => pkid::revocation::CrlScope::Shard(k),
                (None, true) => pkid::revocation::CrlScope::Delta,
                (None, false) => pkid::revocation::CrlScope::Full,
            };
            pkid::commands::crl_generate(&cfg, issuer.as_deref(), scope, out).await
        }
        Command::Ca {
            command: CaCommand::List,
        } => pkid::commands::ca_list(&cfg).await,
        Command::Ca {
            command: CaCommand::Create { name },
        } => pkid::commands::ca_create(&cfg, &name).await,
        Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::Create { note },
                },
        } => pkid::commands::admin_token_create(&cfg, &note).await,
        Command::Eab {
            command:
                EabCommand::Create {
                    note,
                    allow_dns_suffixes,
                    allow_ip_ranges,
                    profiles,
                },
        } => {
            let policy = pkid::ra::BindingPolicy {
                identifiers: pkid::ra::IdentifierPolicy {
                    allowed_dns_suffixes: allow_dns_suffixes,
                    allowed_ip_ranges: allow_ip_ranges,
                    ..Default::default()
                },
                profiles,
            };
            pkid::commands::eab_create(&cfg, &note, &policy).await
        }
        Command::Eab {
            command: EabCommand::List,
        } => pkid::commands::eab_list(&cfg).await,
        Command::Backend {
            command: BackendCommand::Check { name },
        } => pkid::commands::backend_check(&cfg, &name).await,
    }
}

/// glibc's allocator was a tenth of the server's CPU under load (its free lists and
/// consolidation); mimalloc's per-thread pages cost less.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let cfg = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("pkid: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    if !matches!(cli.command, Command::Serve) {
        // Commands log warnings and errors only; their output is for the operator.
        let mut quiet = cfg.clone();
        quiet.log.level = "warn".into();
        pkid::startup::init_logging(&quiet);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("pkid: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(dispatch(cfg, cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("pkid: {e}");
            ExitCode::FAILURE
        }
    }
}
