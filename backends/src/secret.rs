//! Secrets named by the configuration rather than written into it: an environment variable
//! (`*_env`, its name) or a file (`*_file`, its path), so that the configuration file can be
//! shared, versioned and printed without giving anything away.

use std::path::Path;

use zeroize::Zeroizing;

use crate::BackendError;

/// Reads the secret `what` (named in errors, never the value) from `env` or `file`, at most one
/// of which may be set; `None` when neither is. One trailing newline (`\n` or `\r\n`) of a file
/// is ignored.
pub fn read_secret(
    what: &str,
    env: Option<&str>,
    file: Option<&Path>,
) -> Result<Option<Zeroizing<String>>, BackendError> {
    match (env, file) {
        (Some(_), Some(_)) => Err(BackendError::Key(format!(
            "{what}: set the environment variable or the file, not both"
        ))),
        (None, None) => Ok(None),
        (Some(var), None) => std::env::var(var)
            .map(|value| Some(Zeroizing::new(value)))
            .map_err(|_| {
                BackendError::Key(format!(
                    "{what}: the environment variable {var} is not set or not UTF-8"
                ))
            }),
        (None, Some(path)) => {
            let mut text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                BackendError::Io(format!("{what}: reading {}: {e}", path.display()))
            })?);
            if text.ends_with('\n') {
                text.pop();
                if text.ends_with('\r') {
                    text.pop();
                }
            }
            Ok(Some(text))
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_secret_comes_from_one_source_and_errors_never_show_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "from-a-file\r\n").unwrap();
        let read = read_secret("the test key", None, Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(read.as_str(), "from-a-file");
        std::fs::write(&file, "two\nlines\n\n").unwrap();
        let read = read_secret("the test key", None, Some(&file))
            .unwrap()
            .unwrap();
        assert_eq!(
            read.as_str(),
            "two\nlines\n",
            "only one trailing newline goes"
        );

        let var = "PKID_TEST_SECRET_FROM_ENV";
        std::env::set_var(var, "from-the-env");
        let read = read_secret("the test key", Some(var), None)
            .unwrap()
            .unwrap();
        assert_eq!(read.as_str(), "from-the-env");

        assert!(read_secret("the test key", None, None).unwrap().is_none());
        let both = read_secret("the test key", Some(var), Some(&file)).unwrap_err();
        assert!(both.to_string().contains("not both"), "{both}");
        let unset = read_secret("the test key", Some("PKID_TEST_SECRET_UNSET"), None).unwrap_err();
        assert!(
            unset.to_string().contains("PKID_TEST_SECRET_UNSET"),
            "{unset}"
        );
        let missing =
            read_secret("the test key", None, Some(&dir.path().join("none"))).unwrap_err();
        assert!(missing.to_string().contains("the test key"), "{missing}");
        for e in [both, unset, missing] {
            assert!(!e.to_string().contains("from-"), "{e}");
        }
    }
}
