//! PEM (RFC 7468) as pkid writes it: LF line endings, 64-column base64.

/// One PEM block of `der` with the label `tag` (`CERTIFICATE`, `X509 CRL`, …).
pub fn to_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Why a PEM text is not what was asked for.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("not PEM")]
    NotPem,
    #[error("a {found} PEM block where a {expected} was expected")]
    WrongKind {
        expected: &'static str,
        found: String,
    },
    #[error("{0} PEM blocks where one was expected")]
    NotOne(usize),
}

/// The DER of the one `CERTIFICATE REQUEST` (or `NEW CERTIFICATE REQUEST`) block of `text`.
pub fn one_request(text: &str) -> Result<Vec<u8>, PemError> {
    let blocks = pem::parse_many(text.trim()).map_err(|_| PemError::NotPem)?;
    let [block] = blocks.as_slice() else {
        return Err(if blocks.is_empty() {
            PemError::NotPem
        } else {
            PemError::NotOne(blocks.len())
        });
    };
    match block.tag() {
        "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => Ok(block.contents().to_vec()),
        other => Err(PemError::WrongKind {
            expected: "CERTIFICATE REQUEST",
            found: other.to_owned(),
        }),
    }
}

/// The DER of every block of `text`, each a `CERTIFICATE`, at least one.
pub fn certificates(text: &str) -> Result<Vec<Vec<u8>>, PemError> {
    let blocks = pem::parse_many(text.trim()).map_err(|_| PemError::NotPem)?;
    if blocks.is_empty() {
        return Err(PemError::NotPem);
    }
    blocks
        .into_iter()
        .map(|block| {
            if block.tag() == "CERTIFICATE" {
                Ok(block.into_contents())
            } else {
                Err(PemError::WrongKind {
                    expected: "CERTIFICATE",
                    found: block.tag().to_owned(),
                })
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn requests_and_chains_are_told_from_other_blocks() {
        let request = to_pem("CERTIFICATE REQUEST", b"\x30\x00");
        let certificate = to_pem("CERTIFICATE", b"\x30\x01");
        assert_eq!(one_request(&request).unwrap(), b"\x30\x00");
        assert!(matches!(
            one_request(&certificate),
            Err(PemError::WrongKind { .. })
        ));
        assert_eq!(
            one_request(&format!("{request}{request}")),
            Err(PemError::NotOne(2))
        );
        assert_eq!(one_request("garbage"), Err(PemError::NotPem));
        assert_eq!(
            certificates(&format!("{certificate}{certificate}"))
                .unwrap()
                .len(),
            2
        );
        assert!(certificates(&format!("{certificate}{request}")).is_err());
        assert_eq!(certificates(""), Err(PemError::NotPem));
    }
}
