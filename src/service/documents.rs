//! The operator documents every check consults: the scope catalog and the route policy.
//!
//! They live in the database, so a replacement made through Admin on one replica reaches
//! every replica (each polls for new versions) and survives restarts. In memory the pair
//! is one immutable snapshot behind an atomic pointer: a check reads it without locking
//! and always sees a catalog and a policy that were validated together.

use super::ServiceError;
use super::cache::CheckCache;
use super::replicas::Notice;
use crate::domain::audit::Origin;
use crate::domain::clock::Clock;
use crate::domain::document::DocumentError;
use crate::domain::route_policy::RoutePolicy;
use crate::domain::scopes::Catalog;
use crate::store::{Store, StoreError};
use arc_swap::ArcSwap;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Stored name of the scope catalog.
pub const CATALOG: &str = "scope_catalog";
/// Stored name of the route policy.
pub const POLICY: &str = "route_policy";
/// How often a replica looks for documents another replica replaced.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(10);

/// Files to apply at startup, when configured.
#[derive(Debug, Clone, Default)]
pub struct DocumentFiles {
    /// Scope catalog file.
    pub catalog: Option<PathBuf>,
    /// Route policy file.
    pub policy: Option<PathBuf>,
}

/// Why the documents could not be loaded at startup.
#[derive(Debug, thiserror::Error)]
pub enum DocumentLoadError {
    /// A configured file could not be read.
    #[error("{what} file {path}: {source}")]
    Read {
        /// Which document.
        what: &'static str,
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A document does not parse.
    #[error("{what} from {origin}: {error}")]
    Invalid {
        /// Which document.
        what: &'static str,
        /// The file, or `the database`.
        origin: String,
        /// The line and reason.
        error: DocumentError,
    },
    /// Storage failed.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
}

/// A catalog and a policy that were validated together, with their stored versions (0
/// for the built-in ones).
#[derive(Debug)]
pub struct Snapshot {
    /// The scope catalog.
    pub catalog: Catalog,
    /// The route policy.
    pub policy: RoutePolicy,
    /// Stored version of the catalog.
    pub catalog_version: i64,
    /// Stored version of the policy.
    pub policy_version: i64,
}

/// Holds the current documents and replaces them.
pub struct Documents {
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
    clock: Arc<dyn Clock>,
    current: ArcSwap<Snapshot>,
    /// One replacement or reload at a time on this replica.
    writing: tokio::sync::Mutex<()>,
}

impl Documents {
    /// Applies the configured files that changed since they were last applied, then
    /// loads what the database holds (or the built-in documents).
    pub async fn load(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        clock: Arc<dyn Clock>,
        files: &DocumentFiles,
    ) -> Result<Self, DocumentLoadError> {
        let catalog_file = changed_file(store.as_ref(), CATALOG, files.catalog.as_deref()).await?;
        let policy_file = changed_file(store.as_ref(), POLICY, files.policy.as_deref()).await?;
        // The pair that will be in force is checked together before either is stored,
        // so a refused file leaves the database as it was.
        let catalog = match &catalog_file {
            Some(file) => Catalog::parse(&file.text).map_err(|e| file.invalid(CATALOG, e))?,
            None => stored_catalog(store.as_ref()).await?.0,
        };
        match &policy_file {
            Some(file) => {
                RoutePolicy::parse(&file.text, &catalog).map_err(|e| file.invalid(POLICY, e))?;
            }
            None => {
                let (parsed, _) = stored_policy(store.as_ref(), &catalog).await?;
                parsed.map_err(|error| DocumentLoadError::Invalid {
                    what: POLICY,
                    origin: match &catalog_file {
                        Some(file) => {
                            format!("the database, with the scope catalog from {}", file.origin)
                        }
                        None => "the database".into(),
                    },
                    error,
                })?;
            }
        }
        let now = clock.now();
        for (name, file) in [(CATALOG, &catalog_file), (POLICY, &policy_file)] {
            if let Some(file) = file {
                let event = Origin::system()
                    .event(now, "document.replace", document_target(name))
                    .with("file", file.origin.as_str());
                let version = store
                    .put_document(name, &file.text, Some(&file.digest), None, &event)
                    .await?;
                super::audit::log(&event.with("version", version));
            }
        }
        let snapshot = stored_snapshot(store.as_ref()).await?;
        Ok(Self {
            store,
            cache,
            clock,
            current: ArcSwap::from_pointee(snapshot),
            writing: tokio::sync::Mutex::new(()),
        })
    }

    /// The documents in force now.
    pub fn current(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Replaces the scope catalog. Refused whole when it does not parse, or when the
    /// route policy names a scope it lacks. `validate_only` checks without storing.
    pub async fn replace_catalog(
        &self,
        origin: &Origin,
        text: &str,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, ServiceError> {
        self.replace(origin, CATALOG, text, validate_only, |current| {
            let catalog = Catalog::parse(text).map_err(invalid_text)?;
            let policy = RoutePolicy::parse(current.policy.source(), &catalog).map_err(|e| {
                ServiceError::FailedPrecondition(format!(
                    "the route policy does not fit this catalog: {e}"
                ))
            })?;
            Ok((catalog, policy))
        })
        .await
    }

    /// Replaces the route policy. Refused whole when it does not parse against the
    /// current catalog. `validate_only` checks without storing.
    pub async fn replace_policy(
        &self,
        origin: &Origin,
        text: &str,
        validate_only: bool,
    ) -> Result<Arc<Snapshot>, ServiceError> {
        self.replace(origin, POLICY, text, validate_only, |current| {
            let policy = RoutePolicy::parse(text, &current.catalog).map_err(invalid_text)?;
            Ok((current.catalog.clone(), policy))
        })
        .await
    }

    /// Builds the next pair from the latest stored one, then stores `text` as document
    /// `name` and installs the pair (unless `validate_only`).
    async fn replace(
        &self,
        origin: &Origin,
        name: &'static str,
        text: &str,
        validate_only: bool,
        build: impl FnOnce(&Snapshot) -> Result<(Catalog, RoutePolicy), ServiceError>,
    ) -> Result<Arc<Snapshot>, ServiceError> {
        let _writing = self.writing.lock().await;
        self.reload_locked().await?;
        let current = self.current();
        let (catalog, policy) = build(&current)?;
        let mut versions = (current.catalog_version, current.policy_version);
        if !validate_only {
            // Stored only if the pair it was validated with is still the stored one.
            let validated = [(CATALOG, versions.0), (POLICY, versions.1)];
            let event = origin.event(self.clock.now(), "document.replace", document_target(name));
            let stored = self
                .store
                .put_document(name, text, None, Some(&validated), &event)
                .await?;
            let Some(version) = stored else {
                return Err(ServiceError::FailedPrecondition(
                    "the scope catalog or route policy was replaced meanwhile (through another \
                     replica); retry"
                        .into(),
                ));
            };
            super::audit::log(&event.with("version", version));
            if name == CATALOG {
                versions.0 = version;
            } else {
                versions.1 = version;
            }
        }
        let next = Arc::new(Snapshot {
            catalog,
            policy,
            catalog_version: versions.0,
            policy_version: versions.1,
        });
        if !validate_only {
            self.install(next.clone(), name == CATALOG);
            self.cache.announce(Notice::Documents);
        }
        Ok(next)
    }

    /// Picks up documents another replica stored. A stored pair that does not validate
    /// is logged and the running pair stays.
    pub async fn reload(&self) -> Result<(), StoreError> {
        let _writing = self.writing.lock().await;
        self.reload_locked().await
    }

    /// `reload` with the write lock held.
    async fn reload_locked(&self) -> Result<(), StoreError> {
        let current = self.current();
        let stored = self.store.document_versions().await?;
        let version_of = |name: &str| {
            stored
                .iter()
                .find(|(n, _)| n == name)
                .map_or(0, |(_, v)| *v)
        };
        if (version_of(CATALOG), version_of(POLICY))
            == (current.catalog_version, current.policy_version)
        {
            return Ok(());
        }
        match stored_snapshot(self.store.as_ref()).await {
            Ok(next) => {
                let catalog_changed = next.catalog_version != current.catalog_version;
                tracing::info!(
                    catalog = next.catalog_version,
                    policy = next.policy_version,
                    "documents reloaded"
                );
                self.install(Arc::new(next), catalog_changed);
            }
            Err(DocumentLoadError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::error!(error = %e, "stored documents are invalid; keeping the running ones")
            }
        }
        Ok(())
    }

    /// Swaps in `next`. Cached credentials hold their scopes' permissions as the old
    /// catalog computed them, so a new catalog empties the cache — after the swap, so
    /// no fill can put back an entry computed from the old one.
    fn install(&self, next: Arc<Snapshot>, catalog_changed: bool) {
        self.current.store(next);
        if catalog_changed {
            // Here only: other replicas flush as they install the catalog themselves.
            self.cache.apply(&Notice::All);
        }
    }
}

/// How the audit log names a document.
fn document_target(name: &str) -> String {
    format!("document:{name}")
}

fn invalid_text(e: DocumentError) -> ServiceError {
    ServiceError::invalid("text", e.to_string())
}

/// Reloads the documents every [`RELOAD_INTERVAL`], forever.
pub async fn reload_documents(documents: Arc<Documents>) {
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        if let Err(e) = documents.reload().await {
            tracing::warn!(error = %e, "could not reload documents");
        }
    }
}

/// A configured file to apply.
struct DocumentFile {
    origin: String,
    text: String,
    digest: Vec<u8>,
}

impl DocumentFile {
    fn invalid(&self, what: &'static str, error: DocumentError) -> DocumentLoadError {
        DocumentLoadError::Invalid {
            what,
            origin: self.origin.clone(),
            error,
        }
    }
}

/// The file configured for document `name`, unless this very file was applied before
/// (so an unchanged file does not undo a replacement made through Admin).
async fn changed_file(
    store: &dyn Store,
    name: &'static str,
    path: Option<&Path>,
) -> Result<Option<DocumentFile>, DocumentLoadError> {
    let Some(path) = path else { return Ok(None) };
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| DocumentLoadError::Read {
        what: name,
        path: origin.clone(),
        source,
    })?;
    let digest = Sha256::digest(text.as_bytes()).to_vec();
    let stored = store.get_document(name).await?;
    if stored.and_then(|d| d.file_digest).as_ref() == Some(&digest) {
        return Ok(None);
    }
    Ok(Some(DocumentFile {
        origin,
        text,
        digest,
    }))
}

fn invalid_in_database(what: &'static str) -> impl Fn(DocumentError) -> DocumentLoadError {
    move |error| DocumentLoadError::Invalid {
        what,
        origin: "the database".into(),
        error,
    }
}

/// The stored catalog and its version, or the built-in one (version 0).
async fn stored_catalog(store: &dyn Store) -> Result<(Catalog, i64), DocumentLoadError> {
    let (catalog, version) = match store.get_document(CATALOG).await? {
        Some(d) => (Catalog::parse(&d.body), d.version),
        None => (Catalog::builtin(), 0),
    };
    Ok((catalog.map_err(invalid_in_database(CATALOG))?, version))
}

/// The stored policy parsed against `catalog`, and its version; the built-in policy
/// (version 0) when none is stored.
async fn stored_policy(
    store: &dyn Store,
    catalog: &Catalog,
) -> Result<(Result<RoutePolicy, DocumentError>, i64), StoreError> {
    Ok(match store.get_document(POLICY).await? {
        Some(d) => (RoutePolicy::parse(&d.body, catalog), d.version),
        None => (RoutePolicy::builtin(catalog), 0),
    })
}

/// The stored pair, or the built-in documents where none is stored.
async fn stored_snapshot(store: &dyn Store) -> Result<Snapshot, DocumentLoadError> {
    let (catalog, catalog_version) = stored_catalog(store).await?;
    let (policy, policy_version) = stored_policy(store, &catalog).await?;
    Ok(Snapshot {
        policy: policy.map_err(invalid_in_database(POLICY))?,
        catalog,
        catalog_version,
        policy_version,
    })
}
