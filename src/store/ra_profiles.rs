//! The RA's configuration records for its client operations (CZERTAINLY-style, migration
//! 0009): authorities (an issuer's stable UUID), RA profiles bound to one authority, and the
//! end entities of the v1 API, each per RA profile.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::statement;
use super::{now, Reads, Result, Store};

/// An issuer as an authority: its name and the UUID kept for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaAuthorityRow {
    pub uuid: String,
    pub issuer: String,
    pub created_at: i64,
}

/// An RA profile. `settings` is the RA's JSON (attribute values and policy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaProfileRow {
    pub uuid: String,
    pub name: String,
    pub description: String,
    pub authority_uuid: String,
    pub enabled: bool,
    pub settings: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// An end entity of the v1 API. `extension_data` is JSON; the password an argon2id PHC string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaEndEntityRow {
    pub ra_profile_uuid: String,
    pub username: String,
    pub password_hash: String,
    pub subject_dn: String,
    pub subject_alt_name: String,
    pub email: String,
    pub extension_data: String,
    pub status: String,
    pub created_at: i64,
    pub updated_at: i64,
}

const PROFILE_COLUMNS: &str =
    "uuid, name, description, authority_uuid, enabled, settings, created_at, updated_at";
const END_ENTITY_COLUMNS: &str = "ra_profile_uuid, username, password_hash, subject_dn, \
     subject_alt_name, email, extension_data, status, created_at, updated_at";

fn profile_row(r: &AnyRow) -> std::result::Result<RaProfileRow, sqlx::Error> {
    Ok(RaProfileRow {
        uuid: r.try_get("uuid")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        authority_uuid: r.try_get("authority_uuid")?,
        enabled: r.try_get::<i64, _>("enabled")? != 0,
        settings: r.try_get("settings")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn end_entity_row(r: &AnyRow) -> std::result::Result<RaEndEntityRow, sqlx::Error> {
    Ok(RaEndEntityRow {
        ra_profile_uuid: r.try_get("ra_profile_uuid")?,
        username: r.try_get("username")?,
        password_hash: r.try_get("password_hash")?,
        subject_dn: r.try_get("subject_dn")?,
        subject_alt_name: r.try_get("subject_alt_name")?,
        email: r.try_get("email")?,
        extension_data: r.try_get("extension_data")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Reads {
    /// Every authority, by issuer name.
    pub async fn ra_authorities(&self) -> Result<Vec<RaAuthorityRow>> {
        let rows =
            sqlx::query("SELECT uuid, issuer, created_at FROM ra_authorities ORDER BY issuer")
                .fetch_all(&mut self.reader().await?)
                .await?;
        Ok(rows
            .iter()
            .map(|r| -> std::result::Result<_, sqlx::Error> {
                Ok(RaAuthorityRow {
                    uuid: r.try_get("uuid")?,
                    issuer: r.try_get("issuer")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect::<std::result::Result<_, _>>()?)
    }

    /// The profiles `condition` (on `$1`, `value`) selects; every profile without one.
    async fn ra_profiles_where(
        &self,
        condition: Option<(&str, &str)>,
    ) -> Result<Vec<RaProfileRow>> {
        let filter = condition.map_or(String::new(), |(c, _)| format!("WHERE {c}"));
        let sql = format!("SELECT {PROFILE_COLUMNS} FROM ra_profiles {filter} ORDER BY name");
        let mut query = sqlx::query(&sql);
        if let Some((_, value)) = condition {
            query = query.bind(value);
        }
        let rows = query.fetch_all(&mut self.reader().await?).await?;
        Ok(rows
            .iter()
            .map(profile_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    /// Every RA profile, by name.
    pub async fn ra_profiles(&self) -> Result<Vec<RaProfileRow>> {
        self.ra_profiles_where(None).await
    }

    /// The RA profiles bound to one authority, by name.
    pub async fn ra_profiles_of(&self, authority_uuid: &str) -> Result<Vec<RaProfileRow>> {
        self.ra_profiles_where(Some(("authority_uuid = $1", authority_uuid)))
            .await
    }

    pub async fn ra_profile(&self, uuid: &str) -> Result<Option<RaProfileRow>> {
        Ok(self
            .ra_profiles_where(Some(("uuid = $1", uuid)))
            .await?
            .pop())
    }

    pub async fn ra_profile_by_name(&self, name: &str) -> Result<Option<RaProfileRow>> {
        Ok(self
            .ra_profiles_where(Some(("name = $1", name)))
            .await?
            .pop())
    }

    /// The end entities of an RA profile, by username.
    pub async fn ra_end_entities(&self, ra_profile_uuid: &str) -> Result<Vec<RaEndEntityRow>> {
        let sql = format!(
            "SELECT {END_ENTITY_COLUMNS} FROM ra_end_entities WHERE ra_profile_uuid = $1 ORDER BY username"
        );
        let rows = sqlx::query(&sql)
            .bind(ra_profile_uuid)
            .fetch_all(&mut self.reader().await?)
            .await?;
        Ok(rows
            .iter()
            .map(end_entity_row)
            .collect::<std::result::Result<_, _>>()?)
    }

    pub async fn ra_end_entity(
        &self,
        ra_profile_uuid: &str,
        username: &str,
    ) -> Result<Option<RaEndEntityRow>> {
        let sql = format!(
            "SELECT {END_ENTITY_COLUMNS} FROM ra_end_entities WHERE ra_profile_uuid = $1 AND username = $2"
        );
        let row = sqlx::query(&sql)
            .bind(ra_profile_uuid)
            .bind(username)
            .fetch_optional(&mut self.reader().await?)
            .await?;
        Ok(row.as_ref().map(end_entity_row).transpose()?)
    }
}

impl Store {
    /// Gives each issuer without one an authority UUID (`(uuid, issuer)` pairs; an issuer that
    /// has one keeps it, whichever replica made it).
    pub async fn ensure_ra_authorities(&self, fresh: &[(String, String)]) -> Result<()> {
        if fresh.is_empty() {
            return Ok(());
        }
        let at = now();
        let statements = fresh
            .iter()
            .map(|(uuid, issuer)| {
                statement!(
                    "INSERT INTO ra_authorities (uuid, issuer, created_at) VALUES ($1, $2, $3) \
                     ON CONFLICT (issuer) DO NOTHING",
                    uuid,
                    issuer,
                    at,
                )
            })
            .collect();
        self.execute_all(statements).await?;
        Ok(())
    }

    /// A new RA profile; a name in use fails with a unique violation.
    pub async fn insert_ra_profile(&self, p: &RaProfileRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO ra_profiles (uuid, name, description, authority_uuid, enabled, settings, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &p.uuid,
            &p.name,
            &p.description,
            &p.authority_uuid,
            i64::from(p.enabled),
            &p.settings,
            p.created_at,
            p.updated_at,
        ))
        .await?;
        Ok(())
    }

    /// Replaces a profile's description and settings if it is still as `updated_at` says
    /// (`false`: gone, or changed by another request meanwhile).
    pub async fn update_ra_profile(
        &self,
        uuid: &str,
        description: &str,
        settings: &str,
        seen_updated_at: i64,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_profiles SET description = $1, settings = $2, updated_at = $3 \
                 WHERE uuid = $4 AND updated_at = $5",
                description,
                settings,
                now().max(seen_updated_at + 1),
                uuid,
                seen_updated_at,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Enables or disables a profile; `false`: no such profile.
    pub async fn set_ra_profile_enabled(&self, uuid: &str, enabled: bool) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_profiles SET enabled = $1, updated_at = $2 WHERE uuid = $3",
                i64::from(enabled),
                now(),
                uuid,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Deletes a profile that holds no certificate and no end entity; `false` otherwise.
    pub async fn delete_ra_profile(&self, uuid: &str) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "DELETE FROM ra_profiles WHERE uuid = $1 \
                 AND NOT EXISTS (SELECT 1 FROM ra_certificates WHERE ra_profile_uuid = $1) \
                 AND NOT EXISTS (SELECT 1 FROM ra_end_entities WHERE ra_profile_uuid = $1)",
                uuid,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// A new end entity; a username in use in the profile fails with a unique violation.
    pub async fn insert_ra_end_entity(&self, e: &RaEndEntityRow) -> Result<()> {
        self.execute(statement!(
            "INSERT INTO ra_end_entities (ra_profile_uuid, username, password_hash, subject_dn, subject_alt_name, email, extension_data, status, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            &e.ra_profile_uuid,
            &e.username,
            &e.password_hash,
            &e.subject_dn,
            &e.subject_alt_name,
            &e.email,
            &e.extension_data,
            &e.status,
            e.created_at,
            e.updated_at,
        ))
        .await?;
        Ok(())
    }

    /// Replaces an end entity's fields (all but its profile, username and creation time);
    /// `false`: no such end entity.
    pub async fn update_ra_end_entity(&self, e: &RaEndEntityRow) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_end_entities SET password_hash = $1, subject_dn = $2, subject_alt_name = $3, \
                 email = $4, extension_data = $5, status = $6, updated_at = $7 \
                 WHERE ra_profile_uuid = $8 AND username = $9",
                &e.password_hash,
                &e.subject_dn,
                &e.subject_alt_name,
                &e.email,
                &e.extension_data,
                &e.status,
                now(),
                &e.ra_profile_uuid,
                &e.username,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Sets an end entity's status; `false`: no such end entity.
    pub async fn set_ra_end_entity_status(
        &self,
        ra_profile_uuid: &str,
        username: &str,
        status: &str,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "UPDATE ra_end_entities SET status = $1, updated_at = $2 WHERE ra_profile_uuid = $3 AND username = $4",
                status,
                now(),
                ra_profile_uuid,
                username,
            ))
            .await?;
        Ok(changed == 1)
    }

    /// Deletes an end entity; `false`: no such end entity.
    pub async fn delete_ra_end_entity(
        &self,
        ra_profile_uuid: &str,
        username: &str,
    ) -> Result<bool> {
        let changed = self
            .execute(statement!(
                "DELETE FROM ra_end_entities WHERE ra_profile_uuid = $1 AND username = $2",
                ra_profile_uuid,
                username,
            ))
            .await?;
        Ok(changed == 1)
    }
}
