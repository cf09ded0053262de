//! Managed keys (CZERTAINLY's token profiles and keys): keys pkid generates and holds for a
//! client, from which it builds CSRs, and destroys on request.

use super::{OperationError, Ra};

impl Ra {
    /// Destroys managed key `key_uuid`.
    pub async fn destroy_managed_key(&self, key_uuid: &str) -> Result<(), OperationError> {
        Err(OperationError::not_found(format!(
            "no managed key {key_uuid}"
        )))
    }
}
