//! Storage for operator documents (the scope catalog and the route policy): the text
//! every replica serves, so a replacement made through Admin on one replica reaches all
//! of them and survives restarts.

use super::StoreResult;
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
    /// Stores `body` as document `name` and returns its new version. `file_digest` is
    /// recorded when the body comes from a file; `None` keeps the digest recorded before,
    /// so an unchanged file is not re-applied over a replacement made through Admin.
    async fn put_document(
        &self,
        name: &str,
        body: &str,
        file_digest: Option<&[u8]>,
        now: UnixSeconds,
    ) -> StoreResult<i64>;
}

pub(super) const GET_DOCUMENT: &str =
    "SELECT body, file_digest, version, updated_at FROM documents WHERE name = $1";

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

/// Implements [`DocumentStore`] for `$store` (see `sql.rs`).
macro_rules! impl_document_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl DocumentStore for $store {
            async fn get_document(&self, name: &str) -> StoreResult<Option<DocumentRecord>> {
                let row = sqlx::query_as::<_, documents::DocumentRow>(documents::GET_DOCUMENT)
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.map(DocumentRecord::from))
            }

            async fn put_document(
                &self,
                name: &str,
                body: &str,
                file_digest: Option<&[u8]>,
                now: UnixSeconds,
            ) -> StoreResult<i64> {
                let mut tx = self.begin_write().await?;
                let version = sqlx::query_scalar::<_, i64>(documents::PUT_DOCUMENT)
                    .bind(name)
                    .bind(body)
                    .bind(file_digest)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(version)
            }
        }
    };
}
pub(super) use impl_document_store;
