//! Storage for operator documents (the scope catalog and the route policy): the text
//! every replica serves, so a replacement made through Admin on one replica reaches all
//! of them and survives restarts.

use super::StoreResult;
use crate::domain::audit::Event;
use crate::domain::clock::UnixSeconds;
use async_trait::async_trait;

/// A stored document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRecord {
    /// The text, as the operator wrote it.
    pub body: String,
    /// SHA-256 of the file last applied at startup, if any.
    pub file_digest: Option<Vec<u8>>,
    /// Increases with every change.
    pub version: i64,
    /// Last change.
    pub updated_at: UnixSeconds,
}

/// Operator documents by name.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// The document named `name`, if one was ever stored.
    async fn get_document(&self, name: &str) -> StoreResult<Option<DocumentRecord>>;
    /// The version of every stored document, by name; cheap enough to poll.
    async fn document_versions(&self) -> StoreResult<Vec<(String, i64)>>;
    /// Stores `body` as document `name` and returns its new version. `file_digest` is
    /// recorded when the body comes from a file; `None` keeps the digest recorded before,
    /// so an unchanged file is not re-applied over a replacement made through Admin.
    ///
    /// With `expected`, the write happens only if every stored version still equals the
    /// one given (0 for a document never stored), checked under a lock that orders
    /// concurrent writers; otherwise nothing changes and `None` is returned. Documents
    /// are validated as a set, so this keeps two replicas from each storing a document
    /// that fits only the other's stale copy. `event` is recorded, with the new version,
    /// when the document is stored.
    async fn put_document(
        &self,
        name: &str,
        body: &str,
        file_digest: Option<&[u8]>,
        expected: Option<&[(&str, i64)]>,
        event: &Event,
    ) -> StoreResult<Option<i64>>;
}

pub(super) const GET_DOCUMENT: &str =
    "SELECT body, file_digest, version, updated_at FROM documents WHERE name = $1";

pub(super) const DOCUMENT_VERSIONS: &str = "SELECT name, version FROM documents ORDER BY name";

pub(super) const PUT_DOCUMENT: &str = "\
    INSERT INTO documents (name, body, file_digest, version, updated_at) \
    VALUES ($1, $2, $3, 1, $4) \
    ON CONFLICT (name) DO UPDATE SET body = excluded.body, \
        file_digest = COALESCE(excluded.file_digest, documents.file_digest), \
        version = documents.version + 1, updated_at = excluded.updated_at \
    RETURNING version";

#[derive(sqlx::FromRow)]
pub(super) struct DocumentRow {
    pub body: String,
    pub file_digest: Option<Vec<u8>>,
    pub version: i64,
    pub updated_at: i64,
}

impl From<DocumentRow> for DocumentRecord {
    fn from(r: DocumentRow) -> Self {
        Self {
            body: r.body,
            file_digest: r.file_digest,
            version: r.version,
            updated_at: r.updated_at,
        }
    }
}

/// Implements [`DocumentStore`] for `$store` (see `sql.rs`). `$lock` is the statement
/// that orders document writers inside a write transaction (SQLite's `BEGIN IMMEDIATE`
/// already does, so it passes a no-op).
macro_rules! impl_document_store {
    ($store:ty, $lock:literal) => {
        #[async_trait::async_trait]
        impl DocumentStore for $store {
            async fn get_document(&self, name: &str) -> StoreResult<Option<DocumentRecord>> {
                let row = sqlx::query_as::<_, documents::DocumentRow>(documents::GET_DOCUMENT)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(DocumentRecord::from))
            }

            async fn document_versions(&self) -> StoreResult<Vec<(String, i64)>> {
                Ok(
                    sqlx::query_as::<_, (String, i64)>(documents::DOCUMENT_VERSIONS)
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            async fn put_document(
                &self,
                name: &str,
                body: &str,
                file_digest: Option<&[u8]>,
                expected: Option<&[(&str, i64)]>,
                event: &Event,
            ) -> StoreResult<Option<i64>> {
                let mut tx = self.begin_write().await?;
                if let Some(expected) = expected {
                    sqlx::query($lock).execute(&mut *tx).await?;
                    let stored = sqlx::query_as::<_, (String, i64)>(documents::DOCUMENT_VERSIONS)
                        .fetch_all(&mut *tx)
                        .await?;
                    let version_of = |name: &str| {
                        stored
                            .iter()
                            .find(|(n, _)| n == name)
                            .map_or(0, |(_, v)| *v)
                    };
                    if expected.iter().any(|(name, v)| version_of(name) != *v) {
                        return Ok(None);
                    }
                }
                let version = sqlx::query_scalar::<_, i64>(documents::PUT_DOCUMENT)
                    .bind(name)
                    .bind(body)
                    .bind(file_digest)
                    .bind(event.at)
                    .fetch_one(&mut *tx)
                    .await?;
                Self::write_event(&mut tx, &event.clone().with("version", version)).await?;
                tx.commit().await?;
                Ok(Some(version))
            }
        }
    };
}
pub(super) use impl_document_store;
