//! Checks: authenticate a credential, then decide what it asked for — named permissions,
//! or a method and path the route policy maps to a requirement.

use super::ServiceError;
use super::authenticator::{Authenticator, Outcome};
use super::documents::{Documents, Snapshot};
use crate::domain::audit::Origin;
use crate::domain::permissions::Permission;
use crate::domain::route_policy::{Requirement, Uncovered};
use crate::domain::verdict::{Decision, decide};
use std::borrow::Cow;
use std::sync::Arc;

/// What a check asks for.
#[derive(Debug, Clone)]
pub enum Target {
    /// Every one of these permissions.
    Permissions(Vec<Permission>),
    /// Whatever the route policy requires of this request.
    Route {
        /// HTTP method, e.g. `GET`.
        method: String,
        /// HTTP path, possibly with a query.
        path: String,
    },
}

/// The outcome of a check.
#[derive(Debug)]
pub struct Checked {
    /// Who the credential is, or why it was refused.
    pub outcome: Outcome,
    /// The decision.
    pub decision: Decision,
}

/// Decides checks.
pub struct Checker {
    authenticator: Arc<Authenticator>,
    documents: Arc<Documents>,
}

/// What a request must satisfy once its credential is valid. Borrows the request's
/// permissions, so the common check allocates nothing here.
enum Needs<'a> {
    /// These permissions; a shortfall of scope names these scopes (or, when empty, the
    /// narrowest catalog scope covering each missing permission).
    Permissions(Cow<'a, [Permission]>, Vec<String>),
    /// Nothing beyond a valid credential.
    Nothing,
    /// Refused whatever the credential (an uncovered route under `default deny`).
    Refused,
}

impl Checker {
    /// A checker authenticating with `authenticator` and deciding by `documents`.
    pub fn new(authenticator: Arc<Authenticator>, documents: Arc<Documents>) -> Self {
        Self {
            authenticator,
            documents,
        }
    }

    /// Authenticates `header` and decides `target`. Malformed targets are refused
    /// before the credential is looked at; `Err` otherwise means the check could not be
    /// decided (storage failed), which callers must treat as a denial.
    pub async fn check(
        &self,
        header: &str,
        target: &Target,
        origin: &Origin,
    ) -> Result<Checked, ServiceError> {
        let documents = self.documents.current();
        let needs = needs(&documents, target)?;
        let outcome = self.authenticator.authenticate(header, origin).await?;
        let authn = outcome.as_deref().map_err(|e| *e);
        let decision = match needs {
            Needs::Permissions(required, named) => decide(authn, &required, |missing| {
                if !named.is_empty() {
                    return named;
                }
                let mut scopes: Vec<String> = missing
                    .iter()
                    .filter_map(|p| documents.catalog.covering(p))
                    .map(str::to_owned)
                    .collect();
                scopes.sort_unstable();
                scopes.dedup();
                scopes
            }),
            Needs::Nothing => decide(authn, &[], |_| Vec::new()),
            Needs::Refused => match authn {
                Err(failure) => Decision::Unauthenticated(failure),
                Ok(_) => Decision::UncoveredRoute,
            },
        };
        Ok(Checked { outcome, decision })
    }
}

fn needs<'a>(documents: &'a Snapshot, target: &'a Target) -> Result<Needs<'a>, ServiceError> {
    let (method, path) = match target {
        Target::Permissions(required) => {
            return Ok(Needs::Permissions(Cow::Borrowed(required), Vec::new()));
        }
        Target::Route { method, path } => (method, path),
    };
    let rule = documents
        .policy
        .route(method, path)
        .map_err(|e| ServiceError::invalid("path", e.to_string()))?;
    let Some(rule) = rule else {
        return Ok(match documents.policy.default_action() {
            Uncovered::Deny => Needs::Refused,
            Uncovered::Authenticated => Needs::Nothing,
        });
    };
    Ok(match &rule.requirement {
        Requirement::Authenticated => Needs::Nothing,
        Requirement::Permissions(required) => {
            Needs::Permissions(Cow::Borrowed(required), Vec::new())
        }
        // The route needs what the scope grants; a token whose scopes fall short is told
        // to get this scope. The policy was validated against this catalog, so the scope
        // exists; if not, refuse rather than guess.
        Requirement::Scope(name) => match documents.catalog.get(name) {
            Some(scope) => {
                let granted = scope.grants.iter().cloned().collect();
                Needs::Permissions(Cow::Owned(granted), vec![name.clone()])
            }
            None => Needs::Refused,
        },
    })
}
