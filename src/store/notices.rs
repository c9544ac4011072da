//! Notices between replicas: a change one replica made that others must act on (drop
//! cache entries, reload documents), carried by PostgreSQL `LISTEN/NOTIFY`.
//!
//! Notices are transient: one sent while a replica's listener was disconnected is lost.
//! The feed therefore reports every (re)subscription, and the replica then drops its
//! whole cache, so a missed notice can never keep a revoked credential alive.
//! SQLite has no feed: it serves a single process.

use super::StoreResult;
use async_trait::async_trait;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use std::time::Duration;

/// The PostgreSQL channel every replica listens on.
pub const CHANNEL: &str = "identityd_changes";
/// How long to wait before reconnecting a listener that failed.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// What a feed reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A notice another replica (or this one) sent.
    Notice(String),
    /// The feed is listening again after being disconnected (or for the first time):
    /// notices sent in between are lost.
    Subscribed,
}

/// A stream of notices.
#[async_trait]
pub trait ChangeFeed: Send {
    /// The next event; reconnects by itself, so it only returns events.
    async fn next(&mut self) -> FeedEvent;
}

/// Sending and receiving notices.
#[async_trait]
pub trait NoticeStore: Send + Sync + 'static {
    /// Sends `notice` to every replica's feed. A no-op where there is no feed.
    async fn publish(&self, notice: &str) -> StoreResult<()>;
    /// A feed of notices, or `None` where replicas cannot share a database.
    fn change_feed(&self) -> Option<Box<dyn ChangeFeed>>;
}

/// The PostgreSQL feed: one dedicated connection listening on [`CHANNEL`].
pub(super) struct PgFeed {
    pool: PgPool,
    listener: Option<PgListener>,
}

impl PgFeed {
    pub(super) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            listener: None,
        }
    }

    async fn subscribe(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}

#[async_trait]
impl ChangeFeed for PgFeed {
    async fn next(&mut self) -> FeedEvent {
        loop {
            let Some(listener) = self.listener.as_mut() else {
                // Reconnected here rather than inside PgListener, so the caller learns
                // of it only once LISTEN is in force again: anything it drops from its
                // cache after that cannot be refilled from before a missed notice.
                match self.subscribe().await {
                    Ok(listener) => {
                        self.listener = Some(listener);
                        return FeedEvent::Subscribed;
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot listen for replica notices; retrying");
                        tokio::time::sleep(RECONNECT_DELAY).await;
                        continue;
                    }
                }
            };
            match listener.try_recv().await {
                Ok(Some(notification)) => {
                    return FeedEvent::Notice(notification.payload().to_owned());
                }
                Ok(None) => {
                    tracing::warn!("lost the replica-notice connection; reconnecting");
                    self.listener = None;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "replica-notice connection failed; reconnecting");
                    self.listener = None;
                    tokio::time::sleep(RECONNECT_DELAY).await;
                }
            }
        }
    }
}

/// `NOTIFY` through a function call, so the payload is a bound parameter.
pub(super) const PUBLISH: &str = "SELECT pg_notify($1, $2)";
