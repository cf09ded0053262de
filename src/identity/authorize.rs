//! The one authorization check: principal × action → allowed, or why not ([`Denied`], which
//! each surface answers in its own shape: 401 / 403). Every rule is in the `match` of
//! [`authorize`]; a surface adds its actions here, never a check of its own. Ownership
//! ("requestors see only their own") stays with the surface, which compares the resource's
//! owner with [`Principal::user_id`].
//!
//! | action | anonymous | operator (admin token) | user | OAuth2 client |
//! |---|---|---|---|---|
//! | `Whoami` | 401 | yes | yes | yes |
//! | `AdminRead` | 401 | yes | role `admin`, and scope `iam:admin.read` if scope-limited | scope `iam:admin.read` |
//! | `AdminWrite` | 401 | yes | role `admin`, and scope `iam:admin.write` if scope-limited | scope `iam:admin.write` |
//! | `RaRead` | 401 | yes | any role | scope `iam:admin.read` |
//! | `RaOperate` | 401 | yes | admin, certificate-manager, certificate-requestor | scope `iam:admin.write` |
//! | `RaManage` | 401 | yes | admin, certificate-manager | scope `iam:admin.write` |
//!
//! `iam:admin.write` does not imply `iam:admin.read`, as in IAM.
//!
//! Notary's surface (`/api/v1`), by Notary's roles (0 admin, 1 certificate manager, 2
//! certificate requestor, 3 read-only); operators may do everything, OAuth2 clients and
//! scope-limited tokens nothing (Notary knows neither):
//!
//! | action | admin | manager | requestor | read-only |
//! |---|---|---|---|---|
//! | `NotaryReadRequests` | yes | yes | its own | yes |
//! | `NotaryCreateRequest` | yes | yes | yes | 403 |
//! | `NotaryManageRequests` (sign, reject, upload, revoke, delete) | yes | yes | 403 | 403 |
//! | `NotaryReadCas` | yes | yes | 403 | yes |
//! | `NotaryManageCas` | yes | yes | 403 | 403 |
//! | `NotaryAccounts` (others' accounts) | yes | 403 | 403 | 403 |
//!
//! The IAM surface (`/iam`) adds two actions; its administrators' rows are `AdminRead` and
//! `AdminWrite`:
//!
//! | action | anonymous | operator | user | OAuth2 client |
//! |---|---|---|---|---|
//! | `IamAccount` (own link requests, own proxy) | 401 | 403 | yes | 403 |
//! | `ProxyGenerate` (`POST /iam/proxycert`) | 401 | 403 | a token carrying scope `proxy:generate` | 403 |

use super::principal::{Principal, Role};

/// OAuth2 scope of IAM's administrative reads.
pub const SCOPE_ADMIN_READ: &str = "iam:admin.read";
/// OAuth2 scope of IAM's administrative writes.
pub const SCOPE_ADMIN_WRITE: &str = "iam:admin.write";
/// OAuth2 scope of IAM's proxy generation.
pub const SCOPE_PROXY_GENERATE: &str = "proxy:generate";

/// What a request wants to do, for every surface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Learn who the credential names (`GET /identity/me`).
    Whoami,
    /// Read operator resources (`GET /admin/…`).
    AdminRead,
    /// Change operator resources (`POST`/`DELETE /admin/…`).
    AdminWrite,
    // Notary's surface (`/api/v1`).
    /// Read certificate requests (a requestor only its own: the surface checks).
    NotaryReadRequests,
    /// Submit a certificate request.
    NotaryCreateRequest,
    /// Sign, reject, give a chain to, revoke or delete certificate requests.
    NotaryManageRequests,
    /// Read certificate authorities.
    NotaryReadCas,
    /// Create, sign, enable, disable, revoke and delete certificate authorities.
    NotaryManageCas,
    /// Read, create and delete accounts, and change others' passwords.
    NotaryAccounts,
    // RA client operations (CZERTAINLY-style `/v1`, `/v2`): see the block in `authorize`.
    /// Read authorities, RA profiles, attribute definitions and certificate records.
    RaRead,
    /// Issue, renew, rekey and revoke certificates through an RA profile.
    RaOperate,
    /// Create, edit, enable, disable and delete RA profiles and end entities; approve requests.
    RaManage,
    // The IAM surface (`/iam`).
    /// Act on one's own account: request certificate links, see and withdraw one's own
    /// requests, upload one's proxy certificate. Only a user has an account.
    IamAccount,
    /// Generate a proxy from one's stored one: a user's token that carries `proxy:generate`
    /// (not merely one without scope limits: IAM asks for the scope itself).
    ProxyGenerate,
}

/// Why a principal may not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// No credential (401: authenticate and try again).
    Unauthenticated,
    /// A credential that does not allow this (403).
    Forbidden,
}

/// Whether `principal` may do `action`.
pub fn authorize(principal: &Principal, action: Action) -> Result<(), Denied> {
    use Action::*;
    let allowed = match (principal, action) {
        (Principal::Anonymous, _) => return Err(Denied::Unauthenticated),
        (_, Whoami) => true,
        (Principal::Operator { .. }, AdminRead | AdminWrite) => true,
        (Principal::User(user), AdminRead) => {
            user.has_role(Role::Admin) && user.allows_scope(SCOPE_ADMIN_READ)
        }
        (Principal::User(user), AdminWrite) => {
            user.has_role(Role::Admin) && user.allows_scope(SCOPE_ADMIN_WRITE)
        }
        (Principal::Client { scopes, .. }, AdminRead) => has(scopes, SCOPE_ADMIN_READ),
        (Principal::Client { scopes, .. }, AdminWrite) => has(scopes, SCOPE_ADMIN_WRITE),
        // RA client operations (CZERTAINLY-style): operators and admins do everything;
        // certificate managers too; requestors read and operate (on their own records: the
        // surface checks ownership); read-only users read. An OAuth2 client reads with
        // `iam:admin.read` and operates and manages with `iam:admin.write`.
        (Principal::Operator { .. }, RaRead | RaOperate | RaManage) => true,
        (Principal::User(user), RaRead) => !user.roles.is_empty(),
        (Principal::User(user), RaOperate) => {
            user.has_role(Role::Admin)
                || user.has_role(Role::CertificateManager)
                || user.has_role(Role::CertificateRequestor)
        }
        (Principal::User(user), RaManage) => {
            user.has_role(Role::Admin) || user.has_role(Role::CertificateManager)
        }
        (Principal::Client { scopes, .. }, RaRead) => has(scopes, SCOPE_ADMIN_READ),
        (Principal::Client { scopes, .. }, RaOperate | RaManage) => has(scopes, SCOPE_ADMIN_WRITE),
        // The IAM surface.
        (Principal::User(_), IamAccount) => true,
        (Principal::User(user), ProxyGenerate) => user
            .scopes
            .as_deref()
            .is_some_and(|scopes| has(scopes, SCOPE_PROXY_GENERATE)),
        (Principal::Operator { .. } | Principal::Client { .. }, IamAccount | ProxyGenerate) => {
            false
        }
        // Notary's surface: by role, for users whose credential is not scope-limited.
        (
            Principal::Operator { .. },
            NotaryReadRequests | NotaryCreateRequest | NotaryManageRequests | NotaryReadCas
            | NotaryManageCas | NotaryAccounts,
        ) => true,
        (
            Principal::Client { .. },
            NotaryReadRequests | NotaryCreateRequest | NotaryManageRequests | NotaryReadCas
            | NotaryManageCas | NotaryAccounts,
        ) => false,
        (Principal::User(user), action) => {
            user.scopes.is_none() && notary_roles(action).iter().any(|r| user.has_role(*r))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(Denied::Forbidden)
    }
}

/// The roles allowed each Notary action.
fn notary_roles(action: Action) -> &'static [Role] {
    use Role::*;
    match action {
        Action::NotaryReadRequests => &[Admin, CertificateManager, CertificateRequestor, ReadOnly],
        Action::NotaryCreateRequest => &[Admin, CertificateManager, CertificateRequestor],
        Action::NotaryManageRequests | Action::NotaryManageCas => &[Admin, CertificateManager],
        Action::NotaryReadCas => &[Admin, CertificateManager, ReadOnly],
        Action::NotaryAccounts => &[Admin],
        Action::Whoami
        | Action::AdminRead
        | Action::AdminWrite
        | Action::IamAccount
        | Action::ProxyGenerate
        | Action::RaRead
        | Action::RaOperate
        | Action::RaManage => &[],
    }
}

fn has(scopes: &[String], scope: &str) -> bool {
    scopes.iter().any(|s| s == scope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::principal::{Proof, UserPrincipal};

    fn user(role: Role, scopes: Option<&[&str]>) -> Principal {
        Principal::User(UserPrincipal {
            id: "u".into(),
            username: "u".into(),
            email: None,
            roles: vec![role],
            proof: Proof::Bearer,
            scopes: scopes.map(|s| s.iter().map(|s| s.to_string()).collect()),
        })
    }

    fn client(scopes: &[&str]) -> Principal {
        Principal::Client {
            client_id: "c".into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
        }
    }

    type Outcome = Result<(), Denied>;
    const OK: Outcome = Ok(());
    const E401: Outcome = Err(Denied::Unauthenticated);
    const E403: Outcome = Err(Denied::Forbidden);

    /// The table of the module's header, row by row.
    #[test]
    fn the_table() {
        let rows: Vec<(&str, Principal, [Outcome; 3])> = vec![
            ("anonymous", Principal::Anonymous, [E401, E401, E401]),
            (
                "operator",
                Principal::Operator {
                    token_id: "t".into(),
                },
                [OK, OK, OK],
            ),
            ("admin", user(Role::Admin, None), [OK, OK, OK]),
            (
                "manager",
                user(Role::CertificateManager, None),
                [OK, E403, E403],
            ),
            (
                "requestor",
                user(Role::CertificateRequestor, None),
                [OK, E403, E403],
            ),
            ("read-only", user(Role::ReadOnly, None), [OK, E403, E403]),
            (
                "admin, read scope",
                user(Role::Admin, Some(&[SCOPE_ADMIN_READ])),
                [OK, OK, E403],
            ),
            (
                "admin, write scope",
                user(Role::Admin, Some(&[SCOPE_ADMIN_WRITE])),
                [OK, E403, OK],
            ),
            (
                "admin, other scope",
                user(Role::Admin, Some(&["proxy:generate"])),
                [OK, E403, E403],
            ),
            (
                "requestor with admin scopes",
                user(
                    Role::CertificateRequestor,
                    Some(&[SCOPE_ADMIN_READ, SCOPE_ADMIN_WRITE]),
                ),
                [OK, E403, E403],
            ),
            ("client, read", client(&[SCOPE_ADMIN_READ]), [OK, OK, E403]),
            (
                "client, write",
                client(&[SCOPE_ADMIN_WRITE]),
                [OK, E403, OK],
            ),
            ("client, none", client(&[]), [OK, E403, E403]),
        ];
        check_rows(
            [Action::Whoami, Action::AdminRead, Action::AdminWrite],
            rows,
        );
    }

    /// Each row's principal asked about `actions`, against the row's outcomes.
    fn check_rows(actions: [Action; 3], rows: Vec<(&str, Principal, [Outcome; 3])>) {
        for (name, principal, expected) in rows {
            let got = actions.map(|action| authorize(&principal, action));
            assert_eq!(got, expected, "{name}");
        }
    }

    /// The RA client operations' rows (RaRead, RaOperate, RaManage).
    #[test]
    fn the_ra_operations_rows() {
        let rows: Vec<(&str, Principal, [Outcome; 3])> = vec![
            ("anonymous", Principal::Anonymous, [E401, E401, E401]),
            (
                "operator",
                Principal::Operator {
                    token_id: "t".into(),
                },
                [OK, OK, OK],
            ),
            ("admin", user(Role::Admin, None), [OK, OK, OK]),
            (
                "manager",
                user(Role::CertificateManager, None),
                [OK, OK, OK],
            ),
            (
                "requestor",
                user(Role::CertificateRequestor, None),
                [OK, OK, E403],
            ),
            ("read-only", user(Role::ReadOnly, None), [OK, E403, E403]),
            (
                "client, read",
                client(&[SCOPE_ADMIN_READ]),
                [OK, E403, E403],
            ),
            (
                "client, write",
                client(&[SCOPE_ADMIN_WRITE]),
                [E403, OK, OK],
            ),
        ];
        check_rows([Action::RaRead, Action::RaOperate, Action::RaManage], rows);
    }

    /// The IAM surface's rows of the module's header.
    #[test]
    fn the_iam_table() {
        let rows: Vec<(&str, Principal, [Outcome; 2])> = vec![
            ("anonymous", Principal::Anonymous, [E401, E401]),
            (
                "operator",
                Principal::Operator {
                    token_id: "t".into(),
                },
                [E403, E403],
            ),
            (
                "login token",
                user(Role::CertificateRequestor, None),
                [OK, E403],
            ),
            ("admin login token", user(Role::Admin, None), [OK, E403]),
            (
                "token with proxy:generate",
                user(Role::ReadOnly, Some(&[SCOPE_PROXY_GENERATE])),
                [OK, OK],
            ),
            (
                "token without proxy:generate",
                user(Role::Admin, Some(&[SCOPE_ADMIN_READ])),
                [OK, E403],
            ),
            (
                "client with proxy:generate",
                client(&[SCOPE_PROXY_GENERATE]),
                [E403, E403],
            ),
        ];
        for (name, principal, expected) in rows {
            let got = [Action::IamAccount, Action::ProxyGenerate]
                .map(|action| authorize(&principal, action));
            assert_eq!(got, expected, "{name}");
        }
    }

    /// The Notary table of the module's header, row by row.
    #[test]
    fn the_notary_table() {
        use Action::*;
        let actions = [
            NotaryReadRequests,
            NotaryCreateRequest,
            NotaryManageRequests,
            NotaryReadCas,
            NotaryManageCas,
            NotaryAccounts,
        ];
        let rows: Vec<(&str, Principal, [Outcome; 6])> = vec![
            ("anonymous", Principal::Anonymous, [E401; 6]),
            (
                "operator",
                Principal::Operator {
                    token_id: "t".into(),
                },
                [OK; 6],
            ),
            ("admin", user(Role::Admin, None), [OK; 6]),
            (
                "manager",
                user(Role::CertificateManager, None),
                [OK, OK, OK, OK, OK, E403],
            ),
            (
                "requestor",
                user(Role::CertificateRequestor, None),
                [OK, OK, E403, E403, E403, E403],
            ),
            (
                "read-only",
                user(Role::ReadOnly, None),
                [OK, E403, E403, OK, E403, E403],
            ),
            (
                "admin, scope-limited token",
                user(Role::Admin, Some(&[SCOPE_ADMIN_READ])),
                [E403; 6],
            ),
            ("client", client(&[SCOPE_ADMIN_WRITE]), [E403; 6]),
        ];
        for (name, principal, expected) in rows {
            let got = actions.map(|action| authorize(&principal, action));
            assert_eq!(got, expected, "{name}");
        }
    }
}
