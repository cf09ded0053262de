//! Attributes of the RA's client operations, CZERTAINLY's way of passing settings: an RA
//! profile's own (validity, certificate profile, approval, subject and SAN policy), those a
//! client may give to an issuance (a shorter validity) and to a revocation (a comment). Each
//! definition has a fixed UUID and name; a request names an attribute by either and gives its
//! content as a list of `data` values. [`check`] reads a request's attributes against
//! definitions and says every fault at once, as CZERTAINLY's 422 does.

use std::collections::BTreeMap;

use serde_json::Value;

/// The content types pkid's attributes use (CZERTAINLY's `AttributeContentType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    String,
    Integer,
    Boolean,
}

impl ContentType {
    pub fn as_str(self) -> &'static str {
        match self {
            ContentType::String => "string",
            ContentType::Integer => "integer",
            ContentType::Boolean => "boolean",
        }
    }
}

/// One attribute definition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Definition {
    pub uuid: &'static str,
    pub name: &'static str,
    pub label: &'static str,
    pub description: &'static str,
    pub content_type: ContentType,
    pub required: bool,
    /// Several values may be given.
    pub list: bool,
    /// A regular expression each string value must match (shown as a `regExp` constraint).
    pub pattern: Option<&'static str>,
}

pub const VALIDITY_DAYS: &str = "validityDays";
pub const CERTIFICATE_PROFILE: &str = "certificateProfile";
pub const APPROVAL_REQUIRED: &str = "approvalRequired";
pub const ALLOWED_SUBJECT_PATTERNS: &str = "allowedSubjectPatterns";
pub const ALLOWED_SAN_PATTERNS: &str = "allowedSanPatterns";
pub const COMMENT: &str = "comment";

/// The RA profile's own attributes (given at create and edit).
pub const PROFILE: &[Definition] = &[
    Definition {
        uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b01",
        name: VALIDITY_DAYS,
        label: "Validity (days)",
        description: "How long certificates issued under the profile are valid, at most; 1 to 3650",
        content_type: ContentType::Integer,
        required: false,
        list: false,
        pattern: None,
    },
    Definition {
        uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b02",
        name: CERTIFICATE_PROFILE,
        label: "Certificate profile",
        description: "The extended key usages: tls-server, tls-client or tls-server-client",
        content_type: ContentType::String,
        required: false,
        list: false,
        pattern: Some("^(tls-server|tls-client|tls-server-client)$"),
    },
    Definition {
        uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b03",
        name: APPROVAL_REQUIRED,
        label: "Approval required",
        description: "Requests wait in pending_approval until an RA manager approves them",
        content_type: ContentType::Boolean,
        required: false,
        list: false,
        pattern: None,
    },
    Definition {
        uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b04",
        name: ALLOWED_SUBJECT_PATTERNS,
        label: "Allowed subjects",
        description:
            "Regular expressions; the request's subject DN (RFC 2253) must match one whole",
        content_type: ContentType::String,
        required: false,
        list: true,
        pattern: None,
    },
    Definition {
        uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b05",
        name: ALLOWED_SAN_PATTERNS,
        label: "Allowed subject alternative names",
        description:
            "Regular expressions; every DNS name and IP address requested must match one whole",
        content_type: ContentType::String,
        required: false,
        list: true,
        pattern: None,
    },
];

/// What a client may give to an issuance under a profile.
pub const ISSUE: &[Definition] = &[Definition {
    uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b11",
    name: VALIDITY_DAYS,
    label: "Validity (days)",
    description: "A validity shorter than the RA profile's",
    content_type: ContentType::Integer,
    required: false,
    list: false,
    pattern: None,
}];

/// What a client may give to a revocation.
pub const REVOKE: &[Definition] = &[Definition {
    uuid: "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b21",
    name: COMMENT,
    label: "Comment",
    description: "Kept in the certificate's event history",
    content_type: ContentType::String,
    required: false,
    list: false,
    pattern: None,
}];

/// What builds a CSR from a managed key (`csrAttributes`): the subject's parts and the names.
pub const CSR: &[Definition] = &[
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b31",
        "commonName",
        "Common name (CN)",
        true,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b32",
        "organization",
        "Organization (O)",
        false,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b33",
        "organizationalUnit",
        "Organizational unit (OU)",
        false,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b34",
        "locality",
        "Locality (L)",
        false,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b35",
        "state",
        "State or province (ST)",
        false,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b36",
        "country",
        "Country (C), two letters",
        false,
        false,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b37",
        "dnsNames",
        "DNS names (subject alternative names)",
        false,
        true,
    ),
    csr_part(
        "8f6c1a64-3d2e-4b8e-9c61-0f7e2d5a1b38",
        "ipAddresses",
        "IP addresses (subject alternative names)",
        false,
        true,
    ),
];

const fn csr_part(
    uuid: &'static str,
    name: &'static str,
    label: &'static str,
    required: bool,
    list: bool,
) -> Definition {
    Definition {
        uuid,
        name,
        label,
        description: label,
        content_type: ContentType::String,
        required,
        list,
        pattern: None,
    }
}

/// One attribute as a request gives it: by UUID or name, with its content's `data` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Given {
    pub uuid: Option<String>,
    pub name: Option<String>,
    pub values: Vec<Value>,
}

/// Attribute values that passed [`check`], by definition name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Checked(BTreeMap<&'static str, Vec<Value>>);

impl Checked {
    pub fn integer(&self, name: &str) -> Option<i64> {
        self.0.get(name)?.first()?.as_i64()
    }

    pub fn boolean(&self, name: &str) -> Option<bool> {
        self.0.get(name)?.first()?.as_bool()
    }

    pub fn string(&self, name: &str) -> Option<String> {
        Some(self.0.get(name)?.first()?.as_str()?.to_string())
    }

    pub fn strings(&self, name: &str) -> Option<Vec<String>> {
        Some(
            self.0
                .get(name)?
                .iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect(),
        )
    }
}

/// `given` read against `definitions`: every unknown attribute, value of the wrong type, list
/// where one value is allowed, value that breaks its pattern, and missing required attribute.
pub fn check(definitions: &[Definition], given: &[Given]) -> Result<Checked, Vec<String>> {
    let mut faults = Vec::new();
    let mut checked = BTreeMap::new();
    for attribute in given {
        let found = definitions.iter().find(|d| {
            attribute.uuid.as_deref() == Some(d.uuid) || attribute.name.as_deref() == Some(d.name)
        });
        let shown = attribute
            .name
            .clone()
            .or_else(|| attribute.uuid.clone())
            .unwrap_or_else(|| "(unnamed)".into());
        let Some(definition) = found else {
            faults.push(format!("unknown attribute {shown:?}"));
            continue;
        };
        if let (Some(uuid), Some(name)) = (&attribute.uuid, &attribute.name) {
            if uuid != definition.uuid || name != definition.name {
                faults.push(format!(
                    "attribute {name:?}: its uuid is {}, not {uuid}",
                    definition.uuid
                ));
                continue;
            }
        }
        if checked.contains_key(definition.name) {
            faults.push(format!("attribute {:?} is given twice", definition.name));
            continue;
        }
        if attribute.values.len() > 1 && !definition.list {
            faults.push(format!("attribute {:?} takes one value", definition.name));
            continue;
        }
        let mut good = true;
        for value in &attribute.values {
            if let Some(fault) = value_fault(definition, value) {
                faults.push(fault);
                good = false;
            }
        }
        if good {
            checked.insert(definition.name, attribute.values.clone());
        }
    }
    for definition in definitions.iter().filter(|d| d.required) {
        if !given.iter().any(|g| {
            g.name.as_deref() == Some(definition.name) || g.uuid.as_deref() == Some(definition.uuid)
        }) {
            faults.push(format!("attribute {:?} is required", definition.name));
        }
    }
    if faults.is_empty() {
        Ok(Checked(checked))
    } else {
        Err(faults)
    }
}

fn value_fault(definition: &Definition, value: &Value) -> Option<String> {
    let name = definition.name;
    let type_ok = match definition.content_type {
        ContentType::Integer => value.as_i64().is_some(),
        ContentType::Boolean => value.is_boolean(),
        ContentType::String => value.is_string(),
    };
    if !type_ok {
        return Some(format!(
            "attribute {name:?} takes {} values, not {value}",
            definition.content_type.as_str()
        ));
    }
    if let (Some(pattern), Some(text)) = (definition.pattern, value.as_str()) {
        if !regex::Regex::new(pattern).is_ok_and(|re| re.is_match(text)) {
            return Some(format!(
                "attribute {name:?}: {text:?} does not match {pattern}"
            ));
        }
    }
    if definition.content_type == ContentType::String
        && value.as_str().is_some_and(|s| s.len() > 1024)
    {
        return Some(format!(
            "attribute {name:?}: a value is longer than 1024 bytes"
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn given(name: &str, values: Vec<Value>) -> Given {
        Given {
            uuid: None,
            name: Some(name.into()),
            values,
        }
    }

    #[test]
    fn every_fault_is_told_at_once() {
        let ok = check(
            PROFILE,
            &[
                given(VALIDITY_DAYS, vec![json!(30)]),
                given(ALLOWED_SAN_PATTERNS, vec![json!(".*\\.test"), json!("a")]),
            ],
        )
        .unwrap();
        assert_eq!(ok.integer(VALIDITY_DAYS), Some(30));
        assert_eq!(ok.strings(ALLOWED_SAN_PATTERNS).unwrap().len(), 2);
        let faults = check(
            PROFILE,
            &[
                given("colour", vec![json!("red")]),
                given(VALIDITY_DAYS, vec![json!("thirty")]),
                given(APPROVAL_REQUIRED, vec![json!(true), json!(false)]),
                given(CERTIFICATE_PROFILE, vec![json!("code-signing")]),
            ],
        )
        .unwrap_err();
        assert_eq!(faults.len(), 4, "{faults:?}");
        // By UUID alone, too.
        let by_uuid = Given {
            uuid: Some(ISSUE[0].uuid.into()),
            name: None,
            values: vec![json!(7)],
        };
        assert_eq!(
            check(ISSUE, &[by_uuid]).unwrap().integer(VALIDITY_DAYS),
            Some(7)
        );
    }
}
