//! Finding the master key at start: from the environment, from a file, or, for the
//! embedded SQLite default, generated once into a file beside the database.

use crate::config::MasterKeyConfig;
use crate::domain::sealing::MasterKey;
use secrecy::ExposeSecret;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// Why no master key could be had. Each message says what to do.
#[derive(Debug, thiserror::Error)]
pub enum MasterKeyError {
    /// The key given is not 32 bytes of base64.
    #[error("{origin}: {source}")]
    Invalid {
        /// Where it came from.
        origin: String,
        /// What is wrong.
        source: crate::domain::sealing::SealError,
    },
    /// The key file could not be read or written.
    #[error("master key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Shared databases need a shared key.
    #[error(
        "PostgreSQL needs a master key shared by every replica: set IDENTITYD_MASTER_KEY \
         (32 bytes in base64, e.g. from `openssl rand -base64 32`) or IDENTITYD_MASTER_KEY_FILE"
    )]
    Required,
}

/// The master key for `database_url`, as configured.
pub fn resolve(config: &MasterKeyConfig, database_url: &str) -> Result<MasterKey, MasterKeyError> {
    if let Some(key) = &config.master_key {
        return MasterKey::from_base64(key.expose_secret()).map_err(|source| {
            MasterKeyError::Invalid {
                origin: "IDENTITYD_MASTER_KEY".into(),
                source,
            }
        });
    }
    if let Some(path) = &config.master_key_file {
        return read(path);
    }
    match sqlite_file(database_url) {
        Some(db) => read_or_generate(&key_file_beside(&db)),
        None if database_url.starts_with("sqlite:") => {
            // An in-memory database lives as long as the process; so may its key.
            tracing::warn!("in-memory database: using a throw-away master key");
            Ok(MasterKey::generate())
        }
        None => Err(MasterKeyError::Required),
    }
}

/// The file of a `sqlite:` URL, unless it is in memory.
fn sqlite_file(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite:")?;
    let rest = rest.strip_prefix("//").unwrap_or(rest);
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

fn key_file_beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".master-key");
    db.with_file_name(name)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MasterKeyError + '_ {
    move |source| MasterKeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn read(path: &Path) -> Result<MasterKey, MasterKeyError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io(path))?);
    let mode = std::fs::metadata(path)
        .map_err(io(path))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        tracing::warn!(path = %path.display(), "the master key file is readable by other users; chmod 600 it");
    }
    MasterKey::from_base64(&text).map_err(|source| MasterKeyError::Invalid {
        origin: format!("master key file {}", path.display()),
        source,
    })
}

fn read_or_generate(path: &Path) -> Result<MasterKey, MasterKeyError> {
    if path.exists() {
        return read(path);
    }
    let key = MasterKey::generate();
    // create_new: never overwrite a key that appeared meanwhile; 0600: owner only.
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(format!("{}\n", key.to_base64().as_str()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(path))?;
    tracing::warn!(
        path = %path.display(),
        "generated a master key for the embedded database; keep this file with the \
         database and back it up: without it the signing keys cannot be opened. For \
         production set IDENTITYD_MASTER_KEY"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_key_file_is_generated_once_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("id.db").display());
        let first = resolve(&MasterKeyConfig::default(), &url).unwrap();
        let file = dir.path().join("id.db.master-key");
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = resolve(&MasterKeyConfig::default(), &url).unwrap();
        let sealed = first.seal(b"x", b"");
        assert!(again.open(&sealed, b"").is_ok());
    }

    #[test]
    fn postgres_needs_a_key_and_bad_keys_are_refused() {
        let none = resolve(&MasterKeyConfig::default(), "postgres://db/x");
        assert!(matches!(none, Err(MasterKeyError::Required)));
        let bad = MasterKeyConfig {
            master_key: Some("short".into()),
            master_key_file: None,
        };
        let err = resolve(&bad, "postgres://db/x").err().unwrap().to_string();
        assert!(
            err.contains("IDENTITYD_MASTER_KEY") && !err.contains("short"),
            "{err}"
        );
        assert!(resolve(&MasterKeyConfig::default(), "sqlite::memory:").is_ok());
    }
}
