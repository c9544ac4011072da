//! OAuth2 grants (RFC 6749), refresh-token rotation with reuse detection (RFC 9700
//! §4.14.2) and revocation (RFC 7009).
//!
//! Every grant opens a session: the access tokens it yields carry the session id, and a
//! password login's refresh tokens form one rotation family inside it. Revoking the
//! session (explicitly, on refresh-token reuse, on a password change or when the owner
//! is disabled) ends every token of it at once.
//!
//! A grant may ask for scopes: each must be in the catalog and its needs held by the
//! requester. The session keeps the granted scopes; a refresh may narrow them, never
//! widen. With a `no_expiry` scope the grant yields an opaque, stored token instead of a
//! signed one: its session is the token, it never expires (unless a scope such as
//! `decrypt` sets a regeneration deadline), and it comes without a refresh token.

use super::ServiceError;
use super::apps::{app_token_credential_id, app_token_target};
use super::audit;
use super::cache::CheckCache;
use super::documents::Documents;
use super::error::OAuthError;
use super::integrations::integration_target;
use super::keys::KeyRing;
use super::limits::{AdmitError, Guess, GuessLimits, Limited};
use super::passwords::Passwords;
use crate::domain::access_token::{AccessClaims, TokenPolicy, looks_like_jwt};
use crate::domain::audit::{Actor, Event, Origin, Outcome, Pseudonyms};
use crate::domain::clock::{Clock, NEVER, UnixSeconds};
use crate::domain::guessing::Guessed;
use crate::domain::names;
use crate::domain::permissions::Permission;
use crate::domain::principal::PrincipalKind;
use crate::domain::scopes::{self, Catalog, ScopeError};
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{NewRefreshToken, NewSession, SessionGuard, Store, Subject};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The client id of callers that are not integrations (e.g. a login page).
pub const PUBLIC_CLIENT: &str = "public";
/// Longest username-or-email the password grant looks up.
pub const MAX_LOGIN: usize = names::MAX_EMAIL;

/// Token lifetimes and the issuer and audience tokens are minted for.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Access-token lifetime in seconds.
    pub access_ttl: UnixSeconds,
    /// Absolute lifetime of a login session (its refresh tokens) in seconds.
    pub refresh_ttl: UnixSeconds,
    /// `iss` and `aud`.
    pub policy: TokenPolicy,
    /// Names for login names that are no account's.
    pub pseudonyms: Pseudonyms,
}

/// An OAuth2 token request, as received. Secrets stay wrapped.
#[derive(Debug, Default)]
pub struct GrantRequest {
    /// `client_credentials`, `password` or `refresh_token`.
    pub grant_type: String,
    /// The client, empty for the public client.
    pub client: ClientCredentials,
    /// Password grant: username or email.
    pub username: String,
    /// Password grant: the password.
    pub password: SecretString,
    /// Refresh grant: the refresh token and its CSRF token.
    pub refresh: RefreshGrant,
    /// Requested scopes, space-separated (RFC 6749 §3.3); empty for none.
    pub scope: String,
    /// Who asks, from where.
    pub origin: Origin,
}

/// Client id and secret as presented.
#[derive(Debug, Default)]
pub struct ClientCredentials {
    /// Client id; empty or `public` for the public client.
    pub client_id: String,
    /// The integration's secret.
    pub client_secret: SecretString,
}

/// A refresh token and the CSRF token that came with it.
#[derive(Debug, Default)]
pub struct RefreshGrant {
    /// The refresh token.
    pub refresh_token: SecretString,
    /// The CSRF token; empty skips the check.
    pub csrf_token: SecretString,
}

/// Tokens issued by a successful grant.
#[derive(Debug)]
pub struct Issued {
    /// The access token: signed, or opaque for a non-expiring token.
    pub access_token: SecretString,
    /// Seconds until it expires (or must be regenerated); 0 for never.
    pub expires_in: UnixSeconds,
    /// The granted scopes, normalised and space-separated; empty when unscoped.
    pub scope: String,
    /// The session the tokens belong to.
    pub session_id: String,
    /// For password and refresh grants.
    pub refresh: Option<IssuedRefresh>,
}

/// A refresh token and its CSRF token.
#[derive(Debug)]
pub struct IssuedRefresh {
    /// The refresh token.
    pub refresh_token: SecretString,
    /// The CSRF token bound to it.
    pub csrf_token: SecretString,
    /// Seconds until the session ends.
    pub expires_in: UnixSeconds,
}

/// The authenticated client of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Client {
    Public,
    Integration {
        id: String,
        client_id: String,
        /// Its name, for the audit log.
        name: String,
        /// The secret digest that was verified, re-checked when the session is stored.
        secret_digest: SecretDigest,
    },
}

impl Client {
    fn client_id(&self) -> &str {
        match self {
            Self::Public => PUBLIC_CLIENT,
            Self::Integration { client_id, .. } => client_id,
        }
    }

    /// What must still hold of the client when the session is stored.
    fn guard(&self) -> Option<(String, SecretDigest)> {
        match self {
            Self::Public => None,
            Self::Integration {
                id, secret_digest, ..
            } => Some((id.clone(), *secret_digest)),
        }
    }
}

/// Issues, refreshes and revokes OAuth2 tokens.
pub struct Tokens {
    store: Arc<dyn Store>,
    limits: Arc<GuessLimits>,
    keys: Arc<KeyRing>,
    passwords: Arc<Passwords>,
    cache: Arc<CheckCache>,
    clock: Arc<dyn Clock>,
    documents: Arc<Documents>,
    settings: TokenSettings,
}

/// Scopes a grant was allowed.
#[derive(Debug, Default)]
struct Granted {
    /// Normalised names; empty when unscoped.
    names: Vec<String>,
    /// One of them makes the token non-expiring.
    no_expiry: bool,
    /// The shortest regeneration deadline among them, for a non-expiring token.
    regenerate_after: Option<UnixSeconds>,
}

impl Granted {
    fn of(catalog: &Catalog, names: Vec<String>) -> Self {
        Self {
            no_expiry: catalog.is_no_expiry(&names),
            regenerate_after: catalog.regenerate_after(&names),
            names,
        }
    }

    fn joined(&self) -> String {
        self.names.join(" ")
    }
}

impl Tokens {
    /// Builds the service.
    #[allow(
        clippy::too_many_arguments,
        reason = "built once, by the server's wiring"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        limits: Arc<GuessLimits>,
        keys: Arc<KeyRing>,
        passwords: Arc<Passwords>,
        cache: Arc<CheckCache>,
        clock: Arc<dyn Clock>,
        documents: Arc<Documents>,
        settings: TokenSettings,
    ) -> Self {
        Self {
            store,
            limits,
            keys,
            passwords,
            cache,
            clock,
            documents,
            settings,
        }
    }

    /// The token endpoint: dispatches on `grant_type`.
    pub async fn grant(&self, request: GrantRequest) -> Result<Issued, ServiceError> {
        let origin = &request.origin;
        match request.grant_type.as_str() {
            "client_credentials" => {
                self.client_credentials(origin, &request.client, &request.scope)
                    .await
            }
            "password" => {
                let login = (request.username.as_str(), request.password);
                self.password(origin, &request.client, login, &request.scope)
                    .await
            }
            "refresh_token" => {
                self.refresh(origin, &request.client, &request.refresh, &request.scope)
                    .await
            }
            "" => Err(OAuthError::InvalidRequest("grant_type is required").into()),
            _ => Err(OAuthError::UnsupportedGrantType.into()),
        }
    }

    async fn client_credentials(
        &self,
        origin: &Origin,
        presented: &ClientCredentials,
        scope: &str,
    ) -> Result<Issued, ServiceError> {
        let login = Login::new(origin, "client_credentials", self.clock.now());
        let client = self.authenticate_client(&login, presented).await?;
        let guard = SessionGuard {
            password_hash: None,
            client: client.guard(),
        };
        let (id, client_id, login) = match client {
            // The public client has no credentials to grant on (RFC 6749 §4.4).
            Client::Public if presented.client_id.is_empty() => {
                return Err(
                    OAuthError::InvalidRequest("client_id and client_secret are required").into(),
                );
            }
            Client::Public => return Err(OAuthError::UnauthorizedClient.into()),
            Client::Integration {
                id,
                client_id,
                name,
                ..
            } => {
                let login = login.of_integration(&id, &name, &client_id);
                (id, client_id, login)
            }
        };
        let subject = Subject::Integration(id.clone());
        let granted = self.obtainable(&subject, scope).await?;
        let now = self.clock.now();
        let (session, opaque) = self.new_session(
            subject,
            &client_id,
            "client_credentials",
            &granted,
            None,
            now,
        );
        let event = login.success(&session, now);
        // Rotated or disabled between authentication and now.
        if !self.store.create_session(&session, &guard, &event).await? {
            self.record(login.failed("client_changed")).await;
            return Err(OAuthError::InvalidClient.into());
        }
        audit::log(&event);
        self.issue_for(&session, &id, opaque, None, now)
    }

    async fn password(
        &self,
        origin: &Origin,
        client: &ClientCredentials,
        (login_name, password): (&str, SecretString),
        scope: &str,
    ) -> Result<Issued, ServiceError> {
        if login_name.is_empty() || password.expose_secret().is_empty() {
            return Err(OAuthError::InvalidRequest("username and password are required").into());
        }
        if login_name.len() > MAX_LOGIN {
            return Err(OAuthError::InvalidRequest("username is too long").into());
        }
        let login = Login::new(origin, "password", self.clock.now());
        let client = self.authenticate_client(&login, client).await?;
        // One namespace: the key names at most one user, by username or email.
        let key = names::login_key(login_name);
        let user = self.store.find_login(&key).await?;
        // A name that is no account's may be a password typed in the wrong field: it
        // is counted and recorded under its pseudonym, never as typed.
        let subject = match &user {
            Some(u) => u.username.clone(),
            None => self.settings.pseudonyms.of(&key),
        };
        let login = match &user {
            Some(u) => login.of_user(&u.id, &u.username),
            None => login.of_unknown(&subject),
        };
        let guess = Guess {
            secret: Guessed::Password,
            subject,
            source: origin.client,
        };
        // Decided before argon2 runs, so a refused attempt costs no hashing.
        match self.limits.admit(&guess, &login.origin).await {
            Ok(()) => {}
            Err(AdmitError::Limited(limited)) => {
                self.record_limited(login.limited(), &limited).await;
                return Err(OAuthError::InvalidGrant.into());
            }
            Err(AdmitError::Store(e)) => return Err(e.into()),
        }
        let stored = user.as_ref().and_then(|u| u.password_hash.clone());
        // Runs argon2 even for unknown users, so neither timing nor the answer tells.
        let matches = self.passwords.verify(password, stored.clone()).await?;
        let (user, hash) = match (user, stored, matches) {
            (Some(user), Some(hash), true) if user.active => (user, hash),
            (Some(user), Some(_), true) if !user.active => {
                self.record(login.failed("user_disabled")).await;
                return Err(OAuthError::InvalidGrant.into());
            }
            (Some(_), Some(_), _) => {
                self.record(login.failed("wrong_password")).await;
                return Err(OAuthError::InvalidGrant.into());
            }
            (Some(_), None, _) => {
                self.record(login.failed("no_password_set")).await;
                return Err(OAuthError::InvalidGrant.into());
            }
            (None, ..) => {
                self.record(login.failed("unknown_user")).await;
                return Err(OAuthError::InvalidGrant.into());
            }
        };
        self.limits.refund(&guess).await;
        let subject = Subject::User(user.id.clone());
        let granted = self.obtainable(&subject, scope).await?;
        let now = self.clock.now();
        // A non-expiring token has no refresh token: there is nothing to refresh.
        let refresh =
            (!granted.no_expiry).then(|| self.new_refresh(now + self.settings.refresh_ttl, now));
        let (session, opaque) = self.new_session(
            subject,
            client.client_id(),
            "password",
            &granted,
            refresh.as_ref().map(|(stored, _)| *stored),
            now,
        );
        let guard = SessionGuard {
            password_hash: Some(hash),
            client: client.guard(),
        };
        let event = login.success(&session, now);
        // Disabled, password changed, or client rotated between the checks and now.
        if !self.store.create_session(&session, &guard, &event).await? {
            self.record(login.failed("credentials_changed")).await;
            return Err(OAuthError::InvalidGrant.into());
        }
        audit::log(&event);
        let issued_refresh = refresh.map(|(_, issued)| issued);
        self.issue_for(&session, &user.id, opaque, issued_refresh, now)
    }

    /// Records an event that goes with no change (a refused attempt). The answer is a
    /// refusal either way, so a storage failure here is logged rather than returned.
    async fn record(&self, event: Event) {
        match self.store.record_event(&event).await {
            Ok(()) => audit::log(&event),
            Err(e) => {
                tracing::error!(error = %e, action = event.action, "could not record an audit event");
                audit::log(&event);
            }
        }
    }

    /// The scopes asked for, normalised, once the subject is known to hold what each
    /// needs.
    async fn obtainable(&self, subject: &Subject, scope: &str) -> Result<Granted, ServiceError> {
        let documents = self.documents.current();
        let names = documents
            .catalog
            .normalize(&scopes::names(scope))
            .map_err(OAuthError::InvalidScope)?;
        self.held(&documents.catalog, subject, names).await
    }

    /// `names` as granted scopes, once the subject is known to hold what each needs (its
    /// permissions as they are now).
    async fn held(
        &self,
        catalog: &Catalog,
        subject: &Subject,
        names: Vec<String>,
    ) -> Result<Granted, ServiceError> {
        if names.is_empty() {
            return Ok(Granted::default());
        }
        let held = self
            .store
            .subject_permissions(subject)
            .await?
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect();
        catalog
            .check_obtainable(&names, &held)
            .map_err(OAuthError::InvalidScope)?;
        Ok(Granted::of(catalog, names))
    }

    /// The scopes a refresh asks for: those granted before when it names none, else a
    /// subset of them (a write scope covers the read scope it supersedes), which the user
    /// must still be able to obtain. An unscoped session may narrow to any scopes the
    /// user can obtain. Never a non-expiring token.
    async fn refreshed_scopes(
        &self,
        user_id: &str,
        granted: &str,
        scope: &str,
    ) -> Result<Granted, ServiceError> {
        let documents = self.documents.current();
        let catalog = &documents.catalog;
        let granted = scopes::names(granted);
        if scope.trim().is_empty() {
            return Ok(Granted::of(catalog, granted));
        }
        let asked = catalog
            .normalize(&scopes::names(scope))
            .map_err(OAuthError::InvalidScope)?;
        let covered = |name: &String| {
            granted.is_empty()
                || granted.contains(name)
                || granted.iter().any(|g| {
                    catalog
                        .get(g)
                        .is_some_and(|s| s.supersedes.as_ref() == Some(name))
                })
        };
        let refused = asked
            .iter()
            .find(|n| !covered(n) || catalog.is_no_expiry(std::slice::from_ref(n)));
        if let Some(name) = refused {
            return Err(OAuthError::InvalidScope(ScopeError::NotGranted(name.clone())).into());
        }
        self.held(catalog, &Subject::User(user_id.to_owned()), asked)
            .await
    }

    /// A session for a grant: with a non-expiring token, the session is the token, and
    /// the token is returned alongside.
    fn new_session(
        &self,
        subject: Subject,
        client_id: &str,
        grant_type: &'static str,
        granted: &Granted,
        refresh: Option<NewRefreshToken>,
        now: UnixSeconds,
    ) -> (NewSession, Option<SecretString>) {
        let opaque = granted
            .no_expiry
            .then(|| SecretKind::NonExpiringToken.generate());
        // A login with refresh tokens lasts as long as they may be refreshed; a grant
        // without lasts as long as its one access token.
        let expires_at = match (&opaque, &refresh) {
            (Some(_), _) => NEVER,
            (None, Some(_)) => now + self.settings.refresh_ttl,
            (None, None) => now + self.settings.access_ttl,
        };
        let session = NewSession {
            id: new_id(),
            subject,
            client_id: client_id.to_owned(),
            grant_type,
            expires_at,
            refresh,
            scopes: granted.joined(),
            token_digest: opaque.as_ref().map(SecretDigest::of),
            regenerate_at: opaque
                .as_ref()
                .and(granted.regenerate_after)
                .map(|after| now + after),
        };
        (session, opaque)
    }

    /// The response for a stored session: its non-expiring token, or a signed one.
    fn issue_for(
        &self,
        session: &NewSession,
        subject: &str,
        opaque: Option<SecretString>,
        refresh: Option<IssuedRefresh>,
        now: UnixSeconds,
    ) -> Result<Issued, ServiceError> {
        match opaque {
            Some(token) => Ok(Issued {
                access_token: token,
                expires_in: session.regenerate_at.map_or(0, |at| at - now),
                scope: session.scopes.clone(),
                session_id: session.id.clone(),
                refresh: None,
            }),
            None => self.issue(
                subject,
                &session.client_id,
                session.id.clone(),
                &session.scopes,
                now,
                refresh,
            ),
        }
    }

    /// Exchanges a refresh token: one use each; a second use revokes the family.
    pub async fn refresh(
        &self,
        origin: &Origin,
        client: &ClientCredentials,
        grant: &RefreshGrant,
        scope: &str,
    ) -> Result<Issued, ServiceError> {
        let presented = grant.refresh_token.expose_secret();
        if presented.is_empty() {
            return Err(OAuthError::InvalidRequest("refresh_token is required").into());
        }
        let client = self
            .authenticate_client(
                &Login::new(origin, "refresh_token", self.clock.now()),
                client,
            )
            .await?;
        if !SecretKind::RefreshToken.matches_shape(presented) {
            return Err(OAuthError::InvalidGrant.into());
        }
        let digest = SecretDigest::of(&grant.refresh_token);
        let Some(record) = self.store.find_refresh_token(&digest).await? else {
            return Err(OAuthError::InvalidGrant.into());
        };
        let now = self.clock.now();
        let origin = origin.acting(Actor::principal(
            PrincipalKind::User,
            &record.user_id,
            &record.username,
            "refresh_token",
        ));
        if record.used {
            // Whoever presents a used token is not known to be its owner.
            let presenter = origin.acting(Actor::presenting("refresh_token"));
            self.revoke_family(&presenter, &record.session_id, now)
                .await?;
            return Err(OAuthError::InvalidGrant.into());
        }
        let csrf = grant.csrf_token.expose_secret();
        let csrf_ok =
            csrf.is_empty() || SecretDigest::of(&grant.csrf_token).ct_eq(&record.csrf_digest);
        if record.revoked
            || record.expires_at <= now
            || !record.user_active
            || record.client_id != client.client_id()
            || !csrf_ok
        {
            return Err(OAuthError::InvalidGrant.into());
        }
        let granted = self
            .refreshed_scopes(&record.user_id, &record.scopes, scope)
            .await?;
        let scopes = granted.joined();
        let narrowed = scopes != record.scopes;
        let (next, issued_refresh) = self.new_refresh(record.expires_at, now);
        let event = origin
            .event(now, "token.refresh", session_target(&record.session_id))
            .with("scope", scopes.as_str())
            .with("client_id", record.client_id.as_str());
        if !self
            .store
            .rotate_refresh_token(&digest, &next, &scopes, &event)
            .await?
        {
            // Another exchange of the same token won the race: that is reuse too.
            let presenter = origin.acting(Actor::presenting("refresh_token"));
            self.revoke_family(&presenter, &record.session_id, now)
                .await?;
            return Err(OAuthError::InvalidGrant.into());
        }
        audit::log(&event);
        if narrowed {
            // Earlier tokens of the session are cached with the wider scopes.
            self.cache.invalidate_session(&record.session_id);
        }
        self.issue(
            &record.user_id,
            &record.client_id,
            record.session_id,
            &scopes,
            now,
            Some(issued_refresh),
        )
    }

    /// RFC 7009: ends the session of an access or refresh token. Unknown, expired and
    /// already revoked tokens succeed without effect.
    pub async fn revoke(
        &self,
        origin: &Origin,
        token: &SecretString,
        hint: &str,
        client: &ClientCredentials,
    ) -> Result<(), ServiceError> {
        if !matches!(hint, "" | "access_token" | "refresh_token") {
            return Err(OAuthError::UnsupportedTokenType.into());
        }
        let text = token.expose_secret();
        if text.is_empty() {
            return Err(OAuthError::InvalidRequest("token is required").into());
        }
        let client = self
            .authenticate_client(&Login::new(origin, "revoke", self.clock.now()), client)
            .await?;
        let origin = match &client {
            Client::Public => origin.clone(),
            Client::Integration {
                id,
                client_id,
                name,
                ..
            } => origin.acting(integration_actor(id, name, client_id)),
        };
        let now = self.clock.now();
        // The token's shape says what it is; the hint is only a hint.
        if SecretKind::AppToken.matches_shape(text) {
            // App tokens have no session: holding one is enough to end it. The store
            // names the token it found as the target.
            let digest = SecretDigest::of(token);
            let event = origin.event(now, "app_token.revoke", app_token_target("?"));
            if let Some(revoked) = self
                .store
                .revoke_app_token_by_digest(&digest, &event)
                .await?
            {
                let mut event = event.with("app_id", revoked.app_id.as_str());
                event.target = app_token_target(&revoked.id);
                audit::log(&event);
                self.cache
                    .invalidate_credential(&app_token_credential_id(&revoked.id));
            }
            return Ok(());
        }
        let session = if SecretKind::RefreshToken.matches_shape(text) {
            self.store
                .find_refresh_token(&SecretDigest::of(token))
                .await?
                .map(|r| (r.session_id, r.client_id))
        } else if SecretKind::NonExpiringToken.matches_shape(text) {
            self.store
                .find_token_session(&SecretDigest::of(token))
                .await?
                .map(|s| (s.session_id, s.client_id))
        } else if looks_like_jwt(text) {
            // An expired or otherwise invalid token is as good as unknown.
            let verified = self
                .keys
                .verify_checked(text, &self.settings.policy, self.clock.now())
                .await;
            match verified {
                Ok(claims) => self
                    .store
                    .find_session(&claims.sid)
                    .await?
                    .map(|s| (s.session_id, s.client_id)),
                Err(_) => None,
            }
        } else {
            None
        };
        let Some((session_id, owner)) = session else {
            return Ok(());
        };
        // A confidential client's tokens are revoked only by that client.
        if owner != PUBLIC_CLIENT && owner != client.client_id() {
            return Err(OAuthError::InvalidClient.into());
        }
        let event = origin.event(now, "token.revoke", session_target(&session_id));
        if self.store.revoke_session(&session_id, &event).await? {
            audit::log(&event);
        }
        self.cache.invalidate_session(&session_id);
        Ok(())
    }

    /// A used refresh token came back: the whole family ends (RFC 9700 §4.14.2). The
    /// reuse is recorded even when the session had ended already: it is a sign of theft.
    async fn revoke_family(
        &self,
        origin: &Origin,
        session_id: &str,
        now: UnixSeconds,
    ) -> Result<(), ServiceError> {
        let event = origin
            .event(now, "token.reuse", session_target(session_id))
            .ended(Outcome::Failure, "refresh_token_reused");
        if self.store.revoke_session(session_id, &event).await? {
            audit::log(&event);
        } else {
            self.record(event.with("session_already_ended", true)).await;
        }
        self.cache.invalidate_session(session_id);
        Ok(())
    }

    /// The public client, or the integration whose id and secret were presented. A
    /// secret is checked by digest first; a wrong one is charged to the client id's
    /// guessing limit, and a right one passes only while that limit allows it.
    async fn authenticate_client(
        &self,
        login: &Login,
        client: &ClientCredentials,
    ) -> Result<Client, ServiceError> {
        let secret = client.client_secret.expose_secret();
        let client_id = client.client_id.as_str();
        if client_id.is_empty() || client_id == PUBLIC_CLIENT {
            if !secret.is_empty() {
                return Err(OAuthError::InvalidClient.into());
            }
            return Ok(Client::Public);
        }
        // No id identityd issued looks otherwise: nothing to look up, count or record
        // (an attacker's arbitrary text has no place in storage).
        if !is_client_id(client_id) {
            return Err(OAuthError::InvalidClient.into());
        }
        let Some(found) = self.store.find_client(client_id).await? else {
            // No integration: no secret to guess, so nothing to count. Recorded, but at
            // most once a minute per source address whatever the id, so made-up ids
            // cannot fill the log. (Client ids are not secret: that one exists shows.)
            if self.limits.record_unknown_client(login.origin.client) {
                let event = login.client_refused(client_id, Outcome::Failure, "unknown_client");
                self.record(event).await;
            }
            return Err(OAuthError::InvalidClient.into());
        };
        let guess = Guess {
            secret: Guessed::ClientSecret,
            subject: client_id.to_owned(),
            source: login.origin.client,
        };
        let right = found
            .secret_digest
            .ct_eq(&SecretDigest::of(&client.client_secret));
        match self.limits.settle(&guess, right, &login.origin).await {
            Ok(()) => {}
            Err(AdmitError::Limited(limited)) => {
                self.record_limited(
                    login.client_refused(client_id, Outcome::Limited, ""),
                    &limited,
                )
                .await;
                return Err(OAuthError::InvalidClient.into());
            }
            Err(AdmitError::Store(e)) => return Err(e.into()),
        }
        let refusal = match (right, found.active) {
            (false, _) => "wrong_client_secret",
            (true, false) => "client_disabled",
            (true, true) => {
                return Ok(Client::Integration {
                    id: found.id,
                    client_id: found.client_id,
                    name: found.name,
                    secret_digest: found.secret_digest,
                });
            }
        };
        self.record(login.client_refused(client_id, Outcome::Failure, refusal))
            .await;
        Err(OAuthError::InvalidClient.into())
    }

    /// Records an attempt a guessing limit refused: at most once a minute per refusing
    /// counter, so a refused flood cannot fill the log (the metric counts every one).
    async fn record_limited(&self, event: Event, limited: &Limited) {
        if self.limits.record_refusal(&limited.by) {
            self.record(event).await;
        }
    }

    fn new_refresh(
        &self,
        session_end: UnixSeconds,
        now: UnixSeconds,
    ) -> (NewRefreshToken, IssuedRefresh) {
        // Only the digests are stored; the tokens go to the caller once.
        let refresh_token = SecretKind::RefreshToken.generate();
        let csrf_token = SecretKind::CsrfToken.generate();
        let stored = NewRefreshToken {
            digest: SecretDigest::of(&refresh_token),
            csrf_digest: SecretDigest::of(&csrf_token),
        };
        let issued = IssuedRefresh {
            refresh_token,
            csrf_token,
            expires_in: session_end - now,
        };
        (stored, issued)
    }

    fn issue(
        &self,
        subject: &str,
        client_id: &str,
        session_id: String,
        scope: &str,
        now: UnixSeconds,
        refresh: Option<IssuedRefresh>,
    ) -> Result<Issued, ServiceError> {
        // An access token never outlives its session.
        let session_end = refresh.as_ref().map_or(i64::MAX, |r| now + r.expires_in);
        let exp = (now + self.settings.access_ttl).min(session_end);
        let claims = AccessClaims {
            iss: self.settings.policy.issuer.clone(),
            aud: self.settings.policy.audience.clone(),
            sub: subject.to_owned(),
            client_id: client_id.to_owned(),
            sid: session_id.clone(),
            jti: new_id(),
            iat: now,
            nbf: now,
            exp,
            scope: (!scope.is_empty()).then(|| scope.to_owned()),
        };
        let access_token = self
            .keys
            .sign(&claims)
            .map_err(|e| ServiceError::Internal(e.to_string()))?;
        Ok(Issued {
            access_token: SecretString::from(access_token),
            expires_in: exp - now,
            scope: scope.to_owned(),
            session_id,
            refresh,
        })
    }
}

fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// A client id identityd could have issued (`idc_` and 32 hex digits, as
/// `create_integration` makes them; a little room for other shapes of the same alphabet).
fn is_client_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// How the audit log names a session.
fn session_target(session_id: &str) -> String {
    format!("session:{session_id}")
}

fn integration_actor(id: &str, name: &str, client_id: &str) -> Actor {
    let credential = format!("client_secret:{client_id}");
    Actor::principal(PrincipalKind::Integration, id, name, &credential)
}

/// One attempt at a grant, as the audit log tells it: `login` events for the password
/// and client-credentials grants, and the client refusals of every grant. Until it
/// succeeds, an attempt is by nobody proven (`anonymous`, presenting a password or a
/// client secret): the account it names is its target, never its actor, so nobody can
/// write events in another's name.
struct Login {
    origin: Origin,
    grant: &'static str,
    /// When the attempt began; refusals are recorded at this time.
    at: UnixSeconds,
    /// What was logged in to: `user:<username>`, `login:<pseudonym>` for no account,
    /// or the integration.
    target: String,
    /// Who the attempt acts as once it succeeds.
    succeeds_as: Option<Actor>,
}

impl Login {
    fn new(origin: &Origin, grant: &'static str, at: UnixSeconds) -> Self {
        let credential = if grant == "password" {
            "password"
        } else {
            "client_secret"
        };
        Self {
            origin: origin.acting(Actor::presenting(credential)),
            grant,
            at,
            target: String::new(),
            succeeds_as: None,
        }
    }

    /// The password grant named the user `username`.
    fn of_user(self, id: &str, username: &str) -> Self {
        Self {
            target: format!("user:{username}"),
            succeeds_as: Some(Actor::principal(
                PrincipalKind::User,
                id,
                username,
                "password",
            )),
            ..self
        }
    }

    /// The client-credentials grant authenticated integration `name`.
    fn of_integration(self, id: &str, name: &str, client_id: &str) -> Self {
        Self {
            origin: self
                .origin
                .acting(Actor::presenting(format!("client_secret:{client_id}"))),
            target: integration_target(client_id),
            succeeds_as: Some(integration_actor(id, name, client_id)),
            ..self
        }
    }

    /// The password grant named no account; `pseudonym` stands for what was typed.
    fn of_unknown(self, pseudonym: &str) -> Self {
        Self {
            target: format!("login:{pseudonym}"),
            ..self
        }
    }

    fn event(&self, at: UnixSeconds, target: &str) -> Event {
        let action = match self.grant {
            "refresh_token" => "token.refresh",
            "revoke" => "token.revoke",
            _ => "login",
        };
        self.origin
            .event(at, action, target)
            .with("grant", self.grant)
    }

    fn success(&self, session: &NewSession, at: UnixSeconds) -> Event {
        let mut event = self
            .event(at, &self.target)
            .with("session", session.id.as_str())
            .with("scope", session.scopes.as_str())
            .with("client_id", session.client_id.as_str());
        if let Some(actor) = &self.succeeds_as {
            event.actor = actor.clone();
        }
        event
    }

    fn failed(&self, reason: &str) -> Event {
        self.event(self.at, &self.target)
            .ended(Outcome::Failure, reason)
    }

    fn limited(&self) -> Event {
        self.event(self.at, &self.target)
            .ended(Outcome::Limited, "")
    }

    /// The client authentication of any grant refused: `reason` for a failure, empty
    /// when limited.
    fn client_refused(&self, client_id: &str, outcome: Outcome, reason: &str) -> Event {
        let mut event = self
            .event(self.at, &integration_target(client_id))
            .ended(outcome, reason);
        event.actor = Actor::presenting(format!("client_secret:{client_id}"));
        event
    }
}
