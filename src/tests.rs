//! The layer rules of `lib.rs`, checked on the source itself: which top-level module may name
//! which (`crate::…` paths, in code and tests alike), that the allowed graph has no circle, and
//! that the surfaces hold no write handle of the store.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module and the modules it may name: data flows down only.
const ALLOWED: &[(&str, &[&str])] = &[
    (
        "startup",
        &[
            "api",
            "audit",
            "ca",
            "config",
            "http",
            "identity",
            "pki",
            "ra",
            "revocation",
            "store",
            "va",
        ],
    ),
    (
        "commands",
        &[
            "audit",
            "ca",
            "config",
            "identity",
            "pki",
            "ra",
            "revocation",
            "startup",
            "store",
        ],
    ),
    ("config", &["pki", "ra"]),
    ("http", &["api"]),
    (
        "api",
        &["ca", "identity", "pki", "ra", "revocation", "store", "va"],
    ),
    ("identity", &["audit", "pki", "ra", "store"]),
    ("ra", &["audit", "ca", "pki", "revocation", "store", "va"]),
    ("audit", &["pki", "store"]),
    ("revocation", &["ca", "pki", "store"]),
    ("ca", &["pki", "store"]),
    ("va", &["pki"]),
    ("store", &[]),
    ("pki", &[]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file of `src/` belongs to (`src/ra/orders.rs` → `ra`).
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap();
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// The top-level modules a file names with `crate::`, comments left out.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            rest = &rest[at + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                named.insert(name);
            }
        }
    }
    named
}

#[test]
fn modules_name_only_the_layers_below_them() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file);
        if matches!(module.as_str(), "lib" | "main" | "tests") {
            continue;
        }
        let may = allowed
            .get(module.as_str())
            .unwrap_or_else(|| panic!("{module} (from {}) is not in ALLOWED", file.display()));
        for named in named_modules(&std::fs::read_to_string(file).unwrap()) {
            if named != module && !may.contains(&named.as_str()) {
                wrong.push(format!("{} names crate::{named}", file.display()));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layers:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_allowed_layers_have_no_circle() {
    let graph: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Depth-first, with the path walked so far: meeting a module on it again is a circle.
    fn visit<'a>(
        module: &'a str,
        graph: &BTreeMap<&'a str, &'a [&'a str]>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) {
        if done.contains(module) {
            return;
        }
        assert!(!path.contains(&module), "circle: {path:?} -> {module}");
        path.push(module);
        for next in graph.get(module).copied().unwrap_or_default() {
            visit(next, graph, path, done);
        }
        path.pop();
        done.insert(module);
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        visit(module, &graph, &mut Vec::new(), &mut done);
    }
}

/// The surfaces write only through the RA: they hold the store's read side (`Reads`). The
/// nonces they redeem (RFC 8555 §6.5) are identity's (`identity::nonce`), which holds its own
/// handle.
#[test]
fn surfaces_hold_no_write_handle_of_the_store() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("api"), &mut files);
    let mut holders = Vec::new();
    for file in &files {
        let relative = file.strip_prefix(&src).unwrap().display().to_string();
        if relative.ends_with("tests.rs") {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        let code: String = text
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        let names_store = code.match_indices("crate::store::").any(|(at, prefix)| {
            let rest = &code[at + prefix.len()..];
            let item = |name: &str| {
                name.trim()
                    .trim_start_matches("self::")
                    .split(" as ")
                    .next()
                    .is_some_and(|n| n.trim() == "Store")
            };
            match rest.strip_prefix('{') {
                Some(group) => group.split('}').next().unwrap_or("").split(',').any(item),
                None => item(
                    rest.split(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .next()
                        .unwrap_or(""),
                ),
            }
        });
        if names_store {
            holders.push(relative);
        }
    }
    assert!(
        holders.is_empty(),
        "surfaces naming the store's write handle: {holders:?}"
    );
}
