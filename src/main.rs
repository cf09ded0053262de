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
    /// Users: roles, passwords, linked certificates, bound keys.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// OAuth2 clients of the token endpoint (/token).
    Client {
        #[command(subcommand)]
        command: ClientCommand,
    },
    /// The audit trail: every state change, hash-chained, with signed checkpoints.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the whole chain and its signed checkpoints; fails with the first bad entry.
    Verify,
    /// List entries (position, time, principal, action, resource, outcome, detail).
    List {
        /// Only entries at or after this RFC 3339 time.
        #[arg(long)]
        since: Option<String>,
        /// Only entries of this principal (`user:alice`, `acme-account:ID`, `pkid` …).
        #[arg(long)]
        principal: Option<String>,
    },
    /// Sign a checkpoint of the chain's head now.
    Checkpoint,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create a user.
    Create {
        name: String,
        /// admin, certificate-manager, certificate-requestor or read-only (repeatable).
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
        #[arg(long)]
        email: Option<String>,
        /// Read the password from standard input (no password: no password login).
        #[arg(long)]
        password_stdin: bool,
        /// A certificate (PEM or DER) to link: its subject and issuer then log the user in.
        #[arg(long)]
        certificate: Option<PathBuf>,
    },
    /// List users with their linked certificates and bound keys.
    List,
    /// Disable a user: its tokens stop working at their next use.
    Disable { name: String },
    /// Bind a public key for JWS-signed requests: a JWK file, or the key of an ACME account.
    BindKey {
        name: String,
        /// A JWK file (private members are dropped).
        #[arg(long, required_unless_present = "account", conflicts_with = "account")]
        jwk: Option<PathBuf>,
        /// An ACME account (its URL or id) whose key the user signs with.
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client; prints its client_id and secret once.
    Create {
        name: String,
        /// The scopes it may be granted, space-separated.
        #[arg(long, default_value = "")]
        scopes: String,
        /// password or client_credentials (repeatable; default both).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List clients (never their secrets).
    List,
    /// Disable a client: its tokens stop working at their next use.
    Disable { name: String },
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
        /// Days until it expires (default: identity.admin_token_days, 90).
        #[arg(long)]
        expires_days: Option<u32>,
    },
    /// List tokens: id, state, times, note (never the token).
    List,
    /// Revoke a token by its id.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum EabCommand {
    /// Create a single-use key; prints its kid and HMAC key once.
    Create {
        #[arg(long, default_value = "")]
        note: String,
        /// The ACME directory the key is for (`default`, or a name of [acme.directories]): an
        /// account it binds belongs to that directory.
        #[arg(long, default_value = "default")]
        directory: String,
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
                    command: TokenCommand::Create { note, expires_days },
                },
        } => pkid::commands::admin_token_create(&cfg, &note, expires_days).await,
        Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::List,
                },
        } => pkid::commands::admin_token_list(&cfg).await,
        Command::Admin {
            command:
                AdminCommand::Token {
                    command: TokenCommand::Revoke { id },
                },
        } => pkid::commands::admin_token_revoke(&cfg, &id).await,
        Command::User { command } => user(&cfg, command).await,
        Command::Client { command } => client(&cfg, command).await,
        Command::Audit { command } => match command {
            AuditCommand::Verify => pkid::commands::audit::verify(&cfg).await,
            AuditCommand::List { since, principal } => {
                pkid::commands::audit::list(&cfg, since.as_deref(), principal.as_deref()).await
            }
            AuditCommand::Checkpoint => pkid::commands::audit::checkpoint(&cfg).await,
        },
        Command::Eab {
            command:
                EabCommand::Create {
                    note,
                    directory,
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
            pkid::commands::eab_create(&cfg, &directory, &note, &policy).await
        }
        Command::Eab {
            command: EabCommand::List,
        } => pkid::commands::eab_list(&cfg).await,
        Command::Backend {
            command: BackendCommand::Check { name },
        } => pkid::commands::backend_check(&cfg, &name).await,
    }
}

async fn user(cfg: &Config, command: UserCommand) -> Result<(), BoxError> {
    match command {
        UserCommand::Create {
            name,
            roles,
            email,
            password_stdin,
            certificate,
        } => {
            let options = pkid::commands::UserOptions {
                email,
                password_stdin,
                certificate,
            };
            pkid::commands::user_create(cfg, &name, &roles, options).await
        }
        UserCommand::List => pkid::commands::user_list(cfg).await,
        UserCommand::Disable { name } => pkid::commands::user_disable(cfg, &name).await,
        UserCommand::BindKey { name, jwk, account } => {
            let key = match (jwk, account) {
                (Some(file), _) => pkid::commands::KeySource::JwkFile(file),
                (None, Some(account)) => pkid::commands::KeySource::Account(account),
                (None, None) => return Err("give --jwk FILE or --account ACCOUNT".into()),
            };
            pkid::commands::user_bind_key(cfg, &name, key).await
        }
    }
}

async fn client(cfg: &Config, command: ClientCommand) -> Result<(), BoxError> {
    match command {
        ClientCommand::Create {
            name,
            scopes,
            grant_types,
            json,
        } => pkid::commands::client_create(cfg, &name, &scopes, &grant_types, json).await,
        ClientCommand::List => pkid::commands::client_list(cfg).await,
        ClientCommand::Disable { name } => pkid::commands::client_disable(cfg, &name).await,
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
