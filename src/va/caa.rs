//! CAA (RFC 8659, with the RFC 8657 `accounturi` and `validationmethods` parameters): the walk
//! from the name up to its first CAA RRset, and whether that set lets this CA issue.

use hickory_resolver::proto::rr::rdata::CAA;

use super::{ValidationError, Validator};

/// What a CAA check is about (RFC 8659, RFC 8657).
pub struct CaaQuery<'a> {
    /// The base name (no `*.`).
    pub domain: &'a str,
    pub wildcard: bool,
    pub account_uri: &'a str,
    /// The challenge type that validated (`http-01`, …).
    pub method: &'a str,
}

impl Validator {
    /// RFC 8659 §3: the relevant CAA RRset is the first one found walking from the name to the
    /// top; issuance is allowed when there is none, or when an `issue`/`issuewild` record names
    /// one of `identities` with matching RFC 8657 `accounturi`/`validationmethods`. A lookup
    /// failure (SERVFAIL, timeout) never counts as permission.
    ///
    /// The names of the walk are looked up at once (one round trip, not one per label) and
    /// decided in the walk's order, so the outcome is the sequential walk's: a name's answer
    /// counts only when every name below it answered with no CAA records.
    pub async fn check_caa(
        &self,
        query: &CaaQuery<'_>,
        identities: &[String],
    ) -> Result<(), ValidationError> {
        use hickory_resolver::proto::rr::{RData, RecordType};
        let labels: Vec<&str> = query.domain.trim_end_matches('.').split('.').collect();
        let names: Vec<String> = (0..labels.len())
            .map(|start| format!("{}.", labels[start..].join(".")))
            .collect();
        let mut lookups = tokio::task::JoinSet::new();
        for (position, name) in names.iter().enumerate() {
            let resolver = self.resolver.clone();
            let name = name.clone();
            lookups.spawn(async move {
                let records = match resolver.lookup(name.as_str(), RecordType::CAA).await {
                    Ok(lookup) => Ok(lookup
                        .record_iter()
                        .filter_map(|r| match r.data() {
                            RData::CAA(caa) => Some(caa.clone()),
                            _ => None,
                        })
                        .collect::<Vec<_>>()),
                    Err(e) if is_empty_answer(&e) => Ok(Vec::new()),
                    Err(e) => Err(e.to_string()),
                };
                (position, records)
            });
        }
        let mut answers: Vec<Option<Result<Vec<CAA>, String>>> = vec![None; names.len()];
        let mut next = 0;
        while let Some(joined) = lookups.join_next().await {
            let (position, records) = joined.map_err(|e| {
                ValidationError::caa(format!("CAA lookup failed ({e}); issuance is not allowed"))
            })?;
            answers[position] = Some(records);
            // Decide as far as the walk's order allows; the lookups still running are
            // dropped (aborted) with the set once decided.
            while let Some(Some(answer)) = answers.get(next) {
                let name = &names[next];
                match answer {
                    Err(e) => {
                        return Err(ValidationError::caa(format!(
                            "CAA lookup of {name} failed ({e}); issuance is not allowed without an answer"
                        )))
                    }
                    Ok(records) if !records.is_empty() => {
                        return caa_permits(name, records, query, identities)
                    }
                    Ok(_) => next += 1,
                }
            }
        }
        Ok(())
    }
}

/// RFC 8659 §4 and RFC 8657 over the relevant (non-empty) CAA RRset found at `name`: may a CA
/// answering to one of `identities` issue for `query`? An unknown critical property forbids;
/// a set with no applicable `issue`/`issuewild` property permits.
pub fn caa_permits(
    name: &str,
    records: &[CAA],
    query: &CaaQuery<'_>,
    identities: &[String],
) -> Result<(), ValidationError> {
    use hickory_resolver::proto::rr::rdata::caa::Property;
    if records
        .iter()
        .any(|r| r.issuer_critical() && matches!(r.tag(), Property::Unknown(_)))
    {
        return Err(ValidationError::caa(format!(
            "{name} has a critical CAA property pkid does not know"
        )));
    }
    let wild: Vec<_> = records.iter().filter(|r| r.tag().is_issuewild()).collect();
    let relevant: Vec<_> = if query.wildcard && !wild.is_empty() {
        wild
    } else {
        records.iter().filter(|r| r.tag().is_issue()).collect()
    };
    if relevant.is_empty() {
        return Ok(());
    }
    let permitted = relevant.iter().any(|r| {
        let Ok((Some(issuer), params)) = r.value_as_issue() else {
            return false;
        };
        let issuer = issuer.to_ascii().trim_end_matches('.').to_ascii_lowercase();
        identities.iter().any(|id| id.eq_ignore_ascii_case(&issuer))
            && params.iter().all(|kv| match kv.key() {
                "accounturi" => kv.value() == query.account_uri,
                "validationmethods" => kv.value().split(',').any(|m| m.trim() == query.method),
                _ => true,
            })
    });
    if permitted {
        Ok(())
    } else {
        Err(ValidationError::caa(format!(
            "CAA records at {name} do not allow this CA to issue for {}",
            query.domain
        )))
    }
}

/// One CAA record from its DNS wire-format RDATA (RFC 8659 §4.1), as a resolver receives it.
pub fn parse_caa_rdata(rdata: &[u8]) -> Result<CAA, String> {
    use hickory_resolver::proto::rr::{RData, RecordType};
    use hickory_resolver::proto::serialize::binary::{BinDecoder, Restrict};
    let length = u16::try_from(rdata.len()).map_err(|_| "CAA RDATA is over 65535 bytes")?;
    let mut decoder = BinDecoder::new(rdata);
    match RData::read(&mut decoder, RecordType::CAA, Restrict::new(length)) {
        Ok(RData::CAA(caa)) => Ok(caa),
        Ok(other) => Err(format!("not a CAA record: {other}")),
        Err(e) => Err(e.to_string()),
    }
}

/// A lookup that definitely found nothing: NOERROR with no records, or NXDOMAIN. hickory also
/// reports SERVFAIL and REFUSED as "no records found"; those are failures, never an empty answer.
fn is_empty_answer(e: &hickory_resolver::ResolveError) -> bool {
    use hickory_resolver::proto::op::ResponseCode;
    use hickory_resolver::proto::ProtoErrorKind;
    matches!(
        e.proto().map(|p| p.kind()),
        Some(ProtoErrorKind::NoRecordsFound {
            response_code: ResponseCode::NoError | ResponseCode::NXDomain,
            ..
        })
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// RFC 8659 §4.1 RDATA: flags, tag length, tag, value.
    fn rdata(flags: u8, tag: &str, value: &str) -> Vec<u8> {
        let mut out = vec![flags, tag.len() as u8];
        out.extend_from_slice(tag.as_bytes());
        out.extend_from_slice(value.as_bytes());
        out
    }

    #[test]
    fn caa_records_from_wire_format_decide_issuance() {
        let query = CaaQuery {
            domain: "www.example.test",
            wildcard: false,
            account_uri: "https://ca.test/acme/acct/1",
            method: "http-01",
        };
        let ids = ["pkid.test".to_owned()];
        let ours = parse_caa_rdata(&rdata(0, "issue", "pkid.test")).unwrap();
        let theirs = parse_caa_rdata(&rdata(0, "issue", "other.test")).unwrap();
        assert!(caa_permits("example.test.", std::slice::from_ref(&ours), &query, &ids).is_ok());
        assert!(caa_permits("example.test.", &[theirs], &query, &ids).is_err());
        let other_account = parse_caa_rdata(&rdata(
            0,
            "issue",
            "pkid.test; accounturi=https://ca.test/acme/acct/2",
        ))
        .unwrap();
        assert!(caa_permits("example.test.", &[other_account], &query, &ids).is_err());
        let critical = parse_caa_rdata(&rdata(128, "tbs", "x")).unwrap();
        assert!(caa_permits("example.test.", &[ours, critical], &query, &ids).is_err());
        assert!(parse_caa_rdata(&[0, 200, b'x']).is_err());
    }
}
