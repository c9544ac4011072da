//! The audit log, service side: committed events become structured log lines (target
//! `identityd::audit`), Admin reads the stored log a page at a time, and old events are
//! purged after the retention period.

use super::ServiceError;
use super::admin::AdminService;
use crate::domain::audit::{Event, Outcome};
use crate::domain::clock::UnixSeconds;
use crate::store::{AuditFilter, AuditRecord};

/// Longest text filter accepted.
const MAX_FILTER: usize = 256;

/// Writes a committed event as one log line, so log pipelines see what the database
/// holds.
pub fn log(event: &Event) {
    tracing::info!(
        target: "identityd::audit",
        action = event.action,
        actor = %event.actor.id,
        actor_name = %event.actor.name,
        credential = %event.actor.credential,
        target = %event.target,
        outcome = event.outcome.as_str(),
        reason = %event.reason,
        source = %event.source,
        request_id = %event.request_id,
        details = %event.details_json(),
        "audit"
    );
}

/// Which events to list, as asked for.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Actor id or name; empty for any.
    pub actor: String,
    /// Target; empty for any.
    pub target: String,
    /// Action; empty for any.
    pub action: String,
    /// `success`, `failure` or `limited`; empty for any.
    pub outcome: String,
    /// From this time on; 0 for no bound.
    pub since: UnixSeconds,
    /// Before this time; 0 for no bound.
    pub until: UnixSeconds,
    /// Most events to return: 0 means 100, at most 1000.
    pub page_size: u32,
    /// The previous page's `next_page_token`; empty for the first page.
    pub page_token: String,
}

/// A page of events, newest first.
#[derive(Debug, Clone)]
pub struct AuditPage {
    /// The events.
    pub events: Vec<AuditRecord>,
    /// Pass back for the next page; empty on the last.
    pub next_page_token: String,
}

impl AdminService {
    /// Events matching `query`, newest first, a page at a time.
    pub async fn list_audit_events(&self, query: AuditQuery) -> Result<AuditPage, ServiceError> {
        for (field, value) in [
            ("actor", &query.actor),
            ("target", &query.target),
            ("action", &query.action),
        ] {
            if value.len() > MAX_FILTER || value.chars().any(char::is_control) {
                return Err(ServiceError::invalid(
                    field,
                    "must be at most 256 characters without control characters",
                ));
            }
        }
        let outcome = match query.outcome.as_str() {
            "" => None,
            other => Some(Outcome::parse(other).ok_or_else(|| {
                ServiceError::invalid("outcome", "must be success, failure, limited or empty")
            })?),
        };
        let limit = super::admin::page_size(query.page_size)?;
        let before_id = match query.page_token.as_str() {
            "" => None,
            token => Some(token.parse::<i64>().map_err(|_| {
                ServiceError::invalid("page_token", "is not a token this service issued")
            })?),
        };
        let filter = AuditFilter {
            actor: query.actor,
            target: query.target,
            action: query.action,
            outcome,
            since: (query.since != 0).then_some(query.since),
            until: (query.until != 0).then_some(query.until),
            before_id,
        };
        let events = self.store.list_audit_events(&filter, limit).await?;
        let next_page_token = match events.last() {
            Some(last) if events.len() == limit as usize => last.id.to_string(),
            _ => String::new(),
        };
        Ok(AuditPage {
            events,
            next_page_token,
        })
    }
}
