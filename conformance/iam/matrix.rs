//! Who may do what on the IAM surface, one table (each principal × each operation, the exact
//! status), and the paging edge cases of the list: a count of 0, a count past 10, a start
//! past the end, values that are not numbers or statuses — each a 200 or a 400, never a 500.

use serde_json::{json, Value};

use super::links::request_by_dn;
use super::{World, TEST_CA};
use crate::identity::{access_token, client_from, login_token, token_request};

/// How a row authenticates.
enum Who {
    Anonymous,
    Bearer(String),
    /// The certificate files `name.pem` and `name.key`.
    Certificate(&'static str),
}

/// What a row sees in the list: every request, or only its own account's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sees {
    All,
    Own,
    Nothing,
}

/// One principal: its name, how it authenticates, what the list shows it, and the status of
/// `GET /iam/api/trusts`, `GET` a request of test0's, approve and reject a decided request
/// (allowed: 400, the transition), delete a pending request of test0's, `PUT` an empty proxy
/// upload (allowed: 400).
struct Row {
    name: &'static str,
    who: Who,
    sees: Sees,
    expect: [u16; 6],
}

impl Who {
    fn curl(&self, w: &World<'_>, method: &str, path: &str) -> super::Reply {
        let mut args = vec!["-X", method];
        let (pem, key);
        let token = match self {
            Who::Anonymous => None,
            Who::Bearer(token) => Some(token.as_str()),
            Who::Certificate(name) => {
                pem = w.path(&format!("{name}.pem"));
                key = w.path(&format!("{name}.key"));
                args.extend(["--cert", pem.as_str(), "--key", key.as_str()]);
                None
            }
        };
        w.curl(token, &args, path)
    }
}

pub(super) async fn scenario(w: &World<'_>) {
    let http = client_from(w.pkid, "127.0.0.1");
    let login = |name: &'static str| login_token(&http, w.pkid, name);
    let (test0, bob, admin) = (
        login("test0").await,
        login("bob").await,
        login("admin").await,
    );
    let client = access_token(
        token_request(
            &http,
            w.pkid,
            Some((&w.client_id, &w.client_secret)),
            &[
                ("grant_type", "client_credentials"),
                ("scope", "iam:admin.read iam:admin.write"),
            ],
        )
        .await,
    )
    .await;
    let operator = w.pkid.admin_token("iam matrix").await;

    // A decided request to approve and reject (allowed: the transition is refused, 400).
    let decided = request_by_dn(w, &bob, "CN=decided,O=IGI,C=IT", TEST_CA);
    let decided = decided.body["uuid"].as_str().unwrap().to_owned();
    let reject = w.curl(
        Some(&admin),
        &["-X", "POST"],
        &format!("/iam/cert_link_requests/{decided}/reject?motivation=matrix"),
    );
    assert_eq!(reject.status, 200, "{}", reject.text);

    let rows = vec![
        Row {
            name: "anonymous",
            who: Who::Anonymous,
            sees: Sees::Nothing,
            expect: [401, 401, 401, 401, 401, 401],
        },
        Row {
            name: "owner (login token)",
            who: Who::Bearer(test0.clone()),
            sees: Sees::Own,
            expect: [200, 200, 403, 403, 204, 400],
        },
        Row {
            name: "owner (linked certificate)",
            who: Who::Certificate("test0"),
            sees: Sees::Own,
            expect: [200, 200, 403, 403, 204, 400],
        },
        Row {
            name: "owner (proxy:generate only)",
            who: Who::Bearer(w.token("test0", "proxy:generate").await),
            sees: Sees::Own,
            expect: [200, 200, 403, 403, 204, 400],
        },
        Row {
            name: "another user",
            who: Who::Bearer(bob.clone()),
            sees: Sees::Own,
            expect: [200, 403, 403, 403, 403, 400],
        },
        Row {
            name: "unlinked certificate",
            who: Who::Certificate("stranger"),
            sees: Sees::Nothing,
            expect: [401, 401, 401, 401, 401, 401],
        },
        Row {
            name: "admin (login token)",
            who: Who::Bearer(admin.clone()),
            sees: Sees::All,
            expect: [200, 200, 400, 400, 204, 400],
        },
        Row {
            name: "admin, iam:admin.read",
            who: Who::Bearer(w.token("admin", "iam:admin.read").await),
            sees: Sees::All,
            expect: [200, 200, 403, 403, 403, 400],
        },
        Row {
            name: "admin, iam:admin.write",
            who: Who::Bearer(w.token("admin", "iam:admin.write").await),
            sees: Sees::Own,
            expect: [200, 403, 400, 400, 204, 400],
        },
        Row {
            name: "admin, proxy:generate",
            who: Who::Bearer(w.token("admin", "proxy:generate").await),
            sees: Sees::Own,
            expect: [200, 403, 403, 403, 403, 400],
        },
        Row {
            name: "client, admin scopes",
            who: Who::Bearer(client),
            sees: Sees::All,
            expect: [200, 200, 400, 400, 204, 403],
        },
        Row {
            name: "operator",
            who: Who::Bearer(operator.clone()),
            sees: Sees::All,
            expect: [200, 200, 400, 400, 204, 403],
        },
    ];
    let mut report = String::new();
    let mut failed = false;
    for row in &rows {
        // Each row gets a pending request of test0's of its own, to read and to delete.
        let subject = format!("CN=matrix {},O=IGI,C=IT", row.name.replace(',', ""));
        let pending = request_by_dn(w, &test0, &subject, TEST_CA);
        assert_eq!(pending.status, 200, "{}", pending.text);
        let pending = pending.body["uuid"].as_str().unwrap().to_owned();
        let all = w.curl(Some(&operator), &[], "/iam/cert_link_requests?count=1");
        let all = all.body["totalResults"].as_u64().unwrap();

        let list = row.who.curl(w, "GET", "/iam/cert_link_requests?count=10");
        let sees = match list.status {
            200 if list.body["totalResults"].as_u64() == Some(all) => Sees::All,
            200 => Sees::Own,
            _ => Sees::Nothing,
        };
        let got = [
            row.who.curl(w, "GET", "/iam/api/trusts").status,
            row.who
                .curl(w, "GET", &format!("/iam/cert_link_requests/{pending}"))
                .status,
            row.who
                .curl(
                    w,
                    "POST",
                    &format!("/iam/cert_link_requests/{decided}/approve"),
                )
                .status,
            row.who
                .curl(
                    w,
                    "POST",
                    &format!("/iam/cert_link_requests/{decided}/reject?motivation=m"),
                )
                .status,
            row.who
                .curl(w, "DELETE", &format!("/iam/cert_link_requests/{pending}"))
                .status,
            row.who.curl(w, "PUT", "/iam/account/me/proxycert").status,
        ];
        let line = format!("{:32} list {sees:?} {got:?}", row.name);
        if got != row.expect || sees != row.sees {
            failed = true;
            report.push_str(&format!(
                "{line}   expected {:?} {:?}  <--\n",
                row.sees, row.expect
            ));
        } else {
            report.push_str(&format!("{line}\n"));
        }
        // Those who see only their own see nothing else.
        if sees == Sees::Own {
            let own = list.body["Resources"].as_array().unwrap();
            let names: Vec<&Value> = own.iter().map(|r| &r["username"]).collect();
            assert!(
                names.windows(2).all(|p| p[0] == p[1]),
                "{}: {names:?}",
                row.name
            );
        }
    }
    assert!(!failed, "the permission matrix:\n{report}");
    eprintln!("{report}");

    // Denied creations: an operator and a client have no account; anonymous is unknown.
    let body = json!({"label": "x", "subjectDn": "CN=x,O=IGI,C=IT", "issuerDn": TEST_CA});
    for (token, status) in [(Some(operator.as_str()), 403), (None, 401)] {
        let reply = w.json(token, "POST", "/iam/cert_link_requests", &body);
        assert_eq!(reply.status, status, "{}", reply.text);
    }

    paging(w, &bob, &admin).await;
}

/// The list's paging and filters.
async fn paging(w: &World<'_>, bob: &str, admin: &str) {
    for n in 0..12 {
        let reply = request_by_dn(w, bob, &format!("CN=bob-{n:02},O=IGI,C=IT"), TEST_CA);
        assert_eq!(reply.status, 200, "{}", reply.text);
    }
    let list = |query: &str| w.curl(Some(admin), &[], &format!("/iam/cert_link_requests{query}"));
    let page = |reply: &super::Reply| {
        assert_eq!(reply.status, 200, "{}", reply.text);
        (
            reply.body["totalResults"].as_u64().unwrap(),
            reply.body["itemsPerPage"].as_u64().unwrap(),
            reply.body["startIndex"].as_u64().unwrap(),
            reply.body["Resources"].as_array().unwrap().len() as u64,
        )
    };
    let first = list("");
    let (total, items, start, len) = page(&first);
    assert!(total > 12, "{total}");
    assert_eq!((items, start, len), (10, 1, 10));
    // Sorted by username, then subject, then creation time.
    let key = |r: &Value| {
        (
            r["username"].as_str().unwrap().to_owned(),
            r["subjectDn"].as_str().unwrap().to_owned(),
            r["creationTime"].as_i64().unwrap(),
        )
    };
    let mut everything = Vec::new();
    let mut index = 1;
    while index <= total {
        let reply = list(&format!("?startIndex={index}&count=10"));
        everything.extend(reply.body["Resources"].as_array().unwrap().iter().map(key));
        index += 10;
    }
    assert_eq!(everything.len() as u64, total);
    assert!(
        everything.windows(2).all(|p| p[0] <= p[1]),
        "{everything:?}"
    );

    assert_eq!(page(&list("?count=0")), (total, 0, 1, 0));
    assert_eq!(page(&list("?count=50")), (total, 10, 1, 10));
    assert_eq!(page(&list("?count=-3")), (total, 0, 1, 0));
    assert_eq!(page(&list("?startIndex=0&count=2")), (total, 2, 1, 2));
    let past = total + 5;
    assert_eq!(
        page(&list(&format!("?startIndex={past}"))),
        (total, 0, past, 0)
    );
    assert_eq!(page(&list(&format!("?startIndex={total}"))).1, 1);
    for bad in [
        "?status=BOGUS",
        "?status=pending",
        "?startIndex=abc",
        "?count=1.5",
        "?count=99999999999999999999",
        "?subjectDn=not%20a%20dn",
        "?count=1&count=2",
    ] {
        let reply = list(bad);
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text);
        assert!(reply.body["error"].is_string(), "{bad}: {}", reply.text);
    }
    // Filters: username, subject (typed with spaces), status.
    assert_eq!(page(&list("?username=bob&count=1")).0, 14);
    assert_eq!(
        page(&list("?subjectDn=CN%3Dbob-03,%20O%3DIGI,%20C%3DIT")).0,
        1
    );
    assert_eq!(page(&list("?username=bob&status=REJECTED")).0, 1);
    assert_eq!(page(&list("?username=bob&status=APPROVED")).0, 1);
    // A user's username filter is theirs whatever was asked.
    let forced = w.curl(
        Some(bob),
        &[],
        "/iam/cert_link_requests?username=test0&count=10",
    );
    assert_eq!(forced.status, 200, "{}", forced.text);
    assert_eq!(forced.body["totalResults"], 14, "{}", forced.text);
    assert!(forced.body["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["username"] == "bob"));
}
