//! PEM (RFC 7468) as pkid writes it: LF line endings, 64-column base64.

/// One PEM block of `der` with the label `tag` (`CERTIFICATE`, `X509 CRL`, …).
pub fn to_pem(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}
