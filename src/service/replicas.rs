//! Replicas that agree: every change that revokes or narrows access is announced to the
//! other replicas (over the store's notice feed, PostgreSQL `LISTEN/NOTIFY`), and each
//! drops the affected cache entries, or reloads the scope catalog and route policy.
//!
//! A replica whose feed reconnects drops its whole cache: notices sent while it was
//! disconnected are lost, and an entry filled before one of them must not survive it.
//! Each notice carries its sender's id, so a replica skips its own (it applied them
//! when it made the change) instead of evicting entries it refilled since.

use super::cache::CheckCache;
use super::documents::Documents;
use crate::store::{ChangeFeed, FeedEvent, Store};
use std::sync::Arc;
use tokio::sync::mpsc;

/// What one replica tells the others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Every credential of a principal (and of apps attached to it) is stale.
    Principal(String),
    /// Every access token of a session is stale.
    Session(String),
    /// One credential, by credential id, is stale.
    Credential(String),
    /// Everything cached is stale.
    All,
    /// The scope catalog or route policy was replaced.
    Documents,
    /// A guessing-limit counter on one username's API token tripped: every cached check
    /// of that token is stale (the database decides from then on).
    ApiTokenOf(String),
}

impl Notice {
    /// The wire form: the sender's id, a space, a tag, a colon, the id.
    pub fn encode(&self, sender: &str) -> String {
        let (tag, id) = match self {
            Self::Principal(id) => ("p", id.clone()),
            Self::Session(id) => ("s", id.clone()),
            Self::Credential(id) => ("c", id.clone()),
            Self::All => ("a", String::new()),
            Self::Documents => ("d", String::new()),
            Self::ApiTokenOf(username) => ("t", username.clone()),
        };
        format!("{sender} {tag}:{id}")
    }

    /// Reads the wire form: the sender and the notice; `None` for anything else.
    pub fn decode(text: &str) -> Option<(&str, Self)> {
        let (sender, notice) = text.split_once(' ')?;
        Some((sender, Self::decode_notice(notice)?))
    }

    fn decode_notice(text: &str) -> Option<Self> {
        let (tag, body) = text.split_once(':')?;
        let id = || (!body.is_empty()).then(|| body.to_owned());
        match tag {
            "p" => id().map(Self::Principal),
            "s" => id().map(Self::Session),
            "c" => id().map(Self::Credential),
            "a" => Some(Self::All),
            "d" => Some(Self::Documents),
            "t" => id().map(Self::ApiTokenOf),
            _ => None,
        }
    }
}

/// This replica's link to the others: notices the cache announces, waiting to be sent,
/// the feed of everyone's notices, and the id this replica signs its notices with.
pub struct Link {
    outbox: mpsc::UnboundedReceiver<Notice>,
    feed: Box<dyn ChangeFeed>,
    id: String,
}

/// How long the first subscription may take before serving starts without it.
const FIRST_SUBSCRIPTION: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects `cache` to the store's feed, if the store has one (PostgreSQL), and listens
/// before returning, so the server serves nothing it has not been listening for. (If
/// that takes too long, the feed's first event empties the cache when it comes.)
pub async fn connect(store: &dyn Store, cache: &CheckCache) -> Option<Link> {
    let mut feed = store.change_feed()?;
    let first = tokio::time::timeout(FIRST_SUBSCRIPTION, feed.next()).await;
    if !matches!(first, Ok(FeedEvent::Subscribed)) {
        tracing::warn!("not listening for replica notices yet; serving anyway");
    }
    let (tx, outbox) = mpsc::unbounded_channel();
    cache.set_outbox(tx);
    Some(Link {
        outbox,
        feed,
        id: uuid::Uuid::new_v4().simple().to_string(),
    })
}

impl Link {
    /// Runs the link until aborted: sends this replica's notices and applies the
    /// others'.
    pub async fn run(self, store: Arc<dyn Store>, followers: Followers) {
        let Self { outbox, feed, id } = self;
        tokio::join!(
            send_notices(store, outbox, &id),
            follow_notices(feed, followers, &id)
        );
    }
}

/// Sends announced notices to every replica. A notice that cannot be sent (the
/// database is unreachable) is retried as "drop everything", which also covers any
/// other notice lost meanwhile, until it goes through.
async fn send_notices(
    store: Arc<dyn Store>,
    mut outbox: mpsc::UnboundedReceiver<Notice>,
    id: &str,
) {
    while let Some(mut notice) = outbox.recv().await {
        while let Err(e) = store.publish(&notice.encode(id)).await {
            tracing::warn!(error = %e, ?notice, "could not tell other replicas of a change; retrying");
            notice = Notice::All;
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

/// How long to wait before sending a notice again.
const RETRY_DELAY: std::time::Duration = std::time::Duration::from_millis(500);

/// What acts on the other replicas' notices.
pub struct Followers {
    /// Drops stale credentials.
    pub cache: Arc<CheckCache>,
    /// Reloads the scope catalog and route policy.
    pub documents: Arc<Documents>,
}

/// Applies the other replicas' notices.
async fn follow_notices(mut feed: Box<dyn ChangeFeed>, followers: Followers, id: &str) {
    let Followers { cache, documents } = followers;
    loop {
        let notice = match feed.next().await {
            FeedEvent::Subscribed => {
                tracing::info!("listening for replica notices; cache emptied");
                cache.apply(&Notice::All);
                Notice::Documents
            }
            FeedEvent::Notice(text) => match Notice::decode(&text) {
                Some((sender, _)) if sender == id => continue,
                Some((_, notice)) => notice,
                // An unreadable notice might have revoked anything: fail closed.
                None => Notice::All,
            },
        };
        match notice {
            Notice::Documents => {
                if let Err(e) = documents.reload().await {
                    tracing::warn!(error = %e, "could not reload documents after a notice");
                }
            }
            _ => cache.apply(&notice),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_round_trip() {
        let notices = [
            Notice::Principal("u-1".into()),
            Notice::Session("s:with:colons".into()),
            Notice::Credential("app_token:t1".into()),
            Notice::All,
            Notice::Documents,
            Notice::ApiTokenOf("alice".into()),
        ];
        for notice in notices {
            let text = notice.encode("r1");
            assert_eq!(Notice::decode(&text), Some(("r1", notice)));
        }
        for bad in ["", "r1 p:", "r1 x:1", "r1 p", "r1 all", "p:u1", "r1 t:"] {
            assert_eq!(Notice::decode(bad), None, "{bad:?}");
        }
    }
}
