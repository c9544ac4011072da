//! The signing key ring: Ed25519 keys stored in the database with their private halves
//! sealed by the master key, shared by every replica.
//!
//! The newest key signs. Rotation keeps the previous keys published (and verifying) until
//! the last token they may have signed has expired. Replicas pick up another replica's
//! rotation on their periodic reload, or at once when a token names a key id they have
//! not seen (rate-limited, so garbage key ids cannot hammer the database).

use crate::domain::access_token::{
    AccessClaims, TOKEN_TYPE, TokenPolicy, TokenRejection, is_access_token_type,
};
use crate::domain::audit::Origin;
use crate::domain::clock::{Clock, UnixSeconds};
use crate::domain::sealing::{MasterKey, SealError};
use crate::store::{SigningKeyRecord, Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The JOSE algorithm of every key.
pub const ALGORITHM: &str = "EdDSA";
/// JWK key type of every key (RFC 8037).
pub const KEY_TYPE: &str = "OKP";
/// JWK curve of every key (RFC 8037).
pub const CURVE: &str = "Ed25519";
/// JWK public key use: signatures.
pub const KEY_USE: &str = "sig";
/// How often each replica re-reads the key set.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(30);
/// Least time between reloads caused by unknown key ids: short, so a key another replica
/// just started signing with is found at once; not zero, so garbage key ids cannot turn
/// every check into a database read.
const UNKNOWN_KID_RELOAD: Duration = Duration::from_millis(100);

/// Why the key ring could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored key does not open with the configured master key.
    #[error(
        "signing key {kid} does not open with the configured master key; \
         start with the master key the keys were created with"
    )]
    WrongMasterKey {
        /// The key that did not open.
        kid: String,
    },
    /// Stored key material is malformed.
    #[error("signing key {0} is corrupt")]
    Corrupt(String),
    /// Signing failed.
    #[error("signing failed: {0}")]
    Sign(String),
}

/// One public key of the JWKS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicJwk {
    /// Key id.
    pub kid: String,
    /// Ed25519 public key, base64url.
    pub x: String,
}

/// The RFC 7517 JSON of a key: `{kty, crv, x, kid, alg, use}`.
impl serde::Serialize for PublicJwk {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct as _;
        let mut jwk = serializer.serialize_struct("Jwk", 6)?;
        jwk.serialize_field("kty", KEY_TYPE)?;
        jwk.serialize_field("crv", CURVE)?;
        jwk.serialize_field("x", &self.x)?;
        jwk.serialize_field("kid", &self.kid)?;
        jwk.serialize_field("alg", ALGORITHM)?;
        jwk.serialize_field("use", KEY_USE)?;
        jwk.end()
    }
}

struct Signer {
    kid: String,
    key: EncodingKey,
}

/// A loaded key set: the signer, the verifiers, and the records behind them.
struct KeySet {
    signer: Signer,
    verifiers: HashMap<String, DecodingKey>,
    records: Vec<SigningKeyRecord>,
}

/// Signs and verifies access tokens.
pub struct KeyRing {
    store: Arc<dyn Store>,
    master: MasterKey,
    clock: Arc<dyn Clock>,
    /// How long a retired key stays published: the longest a token it signed can live,
    /// plus one reload interval during which other replicas may still sign with it.
    retire_for: UnixSeconds,
    keys: RwLock<Arc<KeySet>>,
    /// Held across a reload: reloads run one at a time, so an older key set can never
    /// replace a newer one, and callers that need a reload wait for the running one.
    last_reload: tokio::sync::Mutex<Instant>,
}

impl KeyRing {
    /// Loads the key set, creating the first key on an empty database.
    pub async fn load(
        store: Arc<dyn Store>,
        master: MasterKey,
        clock: Arc<dyn Clock>,
        access_ttl: UnixSeconds,
    ) -> Result<Self, KeyError> {
        let retire_for = access_ttl + 2 * i64::try_from(RELOAD_INTERVAL.as_secs()).unwrap_or(60);
        let now = clock.now();
        let mut records = store.published_signing_keys(now).await?;
        if records.is_empty() {
            let first = new_key(&master, now);
            let event = Origin::system().event(now, "key.create", key_target(&first.kid));
            store
                .add_signing_key(&first, now + retire_for, &event)
                .await?;
            super::audit::log(&event);
            records = store.published_signing_keys(now).await?;
        }
        let keys = build(&master, records)?;
        Ok(Self {
            store,
            master,
            clock,
            retire_for,
            keys: RwLock::new(Arc::new(keys)),
            last_reload: tokio::sync::Mutex::new(Instant::now()),
        })
    }

    fn current(&self) -> Arc<KeySet> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Re-reads the key set from storage.
    pub async fn reload(&self) -> Result<(), KeyError> {
        let mut last = self.last_reload.lock().await;
        self.reload_locked().await?;
        *last = Instant::now();
        Ok(())
    }

    async fn reload_locked(&self) -> Result<(), KeyError> {
        let records = self.store.published_signing_keys(self.clock.now()).await?;
        if records.is_empty() {
            // Every key expired meanwhile (e.g. a long outage): keep what we have.
            return Ok(());
        }
        let keys = Arc::new(build(&self.master, records)?);
        match self.keys.write() {
            Ok(mut k) => *k = keys,
            Err(poisoned) => *poisoned.into_inner() = keys,
        }
        Ok(())
    }

    /// Makes a new key the signer; the old ones stay published until their tokens
    /// expire. Returns the new key's record.
    pub async fn rotate(&self, origin: &Origin) -> Result<SigningKeyRecord, KeyError> {
        let now = self.clock.now();
        let new = new_key(&self.master, now);
        let event = origin
            .event(now, "key.rotate", key_target(&new.kid))
            .with("retired_published_until", now + self.retire_for);
        self.store
            .add_signing_key(&new, now + self.retire_for, &event)
            .await?;
        super::audit::log(&event);
        self.reload().await?;
        Ok(new)
    }

    /// Published keys, newest first, as stored (for the admin surface).
    pub fn records(&self) -> Vec<SigningKeyRecord> {
        self.current().records.clone()
    }

    /// The key id that signs now.
    pub fn signing_kid(&self) -> String {
        self.current().signer.kid.clone()
    }

    /// The public keys, newest first.
    pub fn jwks(&self) -> Vec<PublicJwk> {
        self.current()
            .records
            .iter()
            .map(|r| PublicJwk {
                kid: r.kid.clone(),
                x: URL_SAFE_NO_PAD.encode(&r.public_key),
            })
            .collect()
    }

    /// Signs access-token claims with the current key.
    pub fn sign(&self, claims: &AccessClaims) -> Result<String, KeyError> {
        self.sign_json(TOKEN_TYPE, claims)
    }

    /// Signs any serialisable claims with the current key, header type `typ`. The
    /// issuing path uses [`KeyRing::sign`]; tests use this to forge well-signed tokens
    /// with bad claims.
    pub fn sign_json(&self, typ: &str, claims: &impl serde::Serialize) -> Result<String, KeyError> {
        let keys = self.current();
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some(typ.to_owned());
        header.kid = Some(keys.signer.kid.clone());
        jsonwebtoken::encode(&header, claims, &keys.signer.key)
            .map_err(|e| KeyError::Sign(e.to_string()))
    }

    /// Verifies a token's header and signature and returns its claims, which the caller
    /// must still check ([`AccessClaims::check`]). Only EdDSA under a published key id
    /// is accepted: `alg` is pinned, never taken from the token.
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, TokenRejection> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenRejection::Invalid)?;
        if header.alg != Algorithm::EdDSA || !is_access_token_type(header.typ.as_deref()) {
            return Err(TokenRejection::Invalid);
        }
        let kid = header.kid.ok_or(TokenRejection::Invalid)?;
        let keys = match self.current() {
            k if k.verifiers.contains_key(&kid) => k,
            _ => {
                self.reload_for_unknown_kid(&kid).await;
                self.current()
            }
        };
        let key = keys.verifiers.get(&kid).ok_or(TokenRejection::Invalid)?;
        jsonwebtoken::decode::<AccessClaims>(token, key, &signature_only())
            .map(|data| data.claims)
            .map_err(|_| TokenRejection::Invalid)
    }

    /// [`KeyRing::verify`], then the claims checked for `policy` at `now`: the one way
    /// a presented access token is accepted.
    pub async fn verify_checked(
        &self,
        token: &str,
        policy: &TokenPolicy,
        now: UnixSeconds,
    ) -> Result<AccessClaims, TokenRejection> {
        let claims = self.verify(token).await?;
        claims.check(policy, now)?;
        Ok(claims)
    }

    async fn reload_for_unknown_kid(&self, kid: &str) {
        let mut last = self.last_reload.lock().await;
        // A reload that finished while this caller waited may have brought the key.
        if self.current().verifiers.contains_key(kid) || last.elapsed() < UNKNOWN_KID_RELOAD {
            return;
        }
        match self.reload_locked().await {
            Ok(()) => *last = Instant::now(),
            Err(e) => tracing::warn!(error = %e, "could not reload signing keys"),
        }
    }
}

/// How the audit log names a signing key.
fn key_target(kid: &str) -> String {
    format!("key:{kid}")
}

/// Checks the signature and algorithm only: claims are checked by
/// [`AccessClaims::check`] against the service clock.
fn signature_only() -> Validation {
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    validation
}

/// Generates a key and seals its private half.
fn new_key(master: &MasterKey, now: UnixSeconds) -> SigningKeyRecord {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::fill(seed.as_mut_slice());
    let key = SigningKey::from_bytes(&seed);
    let kid = uuid::Uuid::now_v7().simple().to_string();
    SigningKeyRecord {
        sealed_private_key: master.seal(seed.as_slice(), kid.as_bytes()),
        public_key: key.verifying_key().to_bytes().to_vec(),
        algorithm: ALGORITHM.into(),
        kid,
        created_at: now,
        retired_at: None,
        published_until: None,
    }
}

/// Opens every key with the master key, checks that its stored public half is its own
/// (so a row written into the database cannot smuggle in a verifying key), and makes the
/// newest the signer.
fn build(master: &MasterKey, records: Vec<SigningKeyRecord>) -> Result<KeySet, KeyError> {
    // Newest first: the newest key still signing, else the newest at all.
    let signing_kid = records
        .iter()
        .find(|r| r.retired_at.is_none())
        .or(records.first())
        .map(|r| r.kid.clone())
        .ok_or_else(|| KeyError::Corrupt("(none)".into()))?;
    let mut verifiers = HashMap::new();
    let mut signer = None;
    for r in &records {
        let key = open(master, r)?;
        if r.algorithm != ALGORITHM || key.verifying_key().to_bytes().as_slice() != r.public_key {
            return Err(KeyError::Corrupt(r.kid.clone()));
        }
        verifiers.insert(r.kid.clone(), DecodingKey::from_ed_der(&r.public_key));
        if r.kid == signing_kid {
            let pkcs8 = key
                .to_pkcs8_der()
                .map_err(|_| KeyError::Corrupt(r.kid.clone()))?;
            signer = Some(Signer {
                kid: r.kid.clone(),
                key: EncodingKey::from_ed_der(pkcs8.as_bytes()),
            });
        }
    }
    let signer = signer.ok_or_else(|| KeyError::Corrupt("(none)".into()))?;
    Ok(KeySet {
        signer,
        verifiers,
        records,
    })
}

/// The private key of a record, opened with the master key.
fn open(master: &MasterKey, record: &SigningKeyRecord) -> Result<SigningKey, KeyError> {
    let seed = master
        .open(&record.sealed_private_key, record.kid.as_bytes())
        .map_err(|_: SealError| KeyError::WrongMasterKey {
            kid: record.kid.clone(),
        })?;
    let seed: &[u8; 32] = seed
        .as_slice()
        .try_into()
        .map_err(|_| KeyError::Corrupt(record.kid.clone()))?;
    Ok(SigningKey::from_bytes(seed))
}
