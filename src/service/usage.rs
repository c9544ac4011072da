//! "Last used" of app tokens, recorded off the request path.
//!
//! A check only notes the use in memory, and only when the token's last noted use is
//! at least [`RECORD_EVERY`] old, so a busy token costs one map lookup per check and
//! one database write a minute. A background task writes what was noted every
//! [`FLUSH_INTERVAL`]; a use counts as written only once its write committed, so a
//! failed or interrupted write is tried again in the next round.

use crate::domain::clock::UnixSeconds;
use crate::store::AppStore;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Least time between two recorded uses of one token, seconds.
pub const RECORD_EVERY: UnixSeconds = 60;
/// How often noted uses are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// One token's last noted use.
#[derive(Debug, Clone, Copy)]
struct Mark {
    at: UnixSeconds,
    written: bool,
}

/// Notes app-token uses and writes them in the background.
#[derive(Debug, Default)]
pub struct UsageRecorder {
    marks: Mutex<HashMap<String, Mark>>,
}

impl UsageRecorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    fn marks(&self) -> MutexGuard<'_, HashMap<String, Mark>> {
        // A panic while holding the lock cannot leave a map half-changed in a way that
        // matters here: at worst one use is written late.
        self.marks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Notes that token `id` was used at `now`, unless a use under a minute old was
    /// noted already.
    pub fn touch(&self, id: &str, now: UnixSeconds) {
        let mut marks = self.marks();
        match marks.get_mut(id) {
            Some(mark) if now - mark.at < RECORD_EVERY => {}
            Some(mark) => {
                *mark = Mark {
                    at: now,
                    written: false,
                }
            }
            None => {
                marks.insert(
                    id.to_owned(),
                    Mark {
                        at: now,
                        written: false,
                    },
                );
            }
        }
    }

    /// The uses not written yet. Written marks too old to hold back a new use are
    /// dropped, so memory follows the tokens in use, not all tokens ever used.
    fn unwritten(&self) -> Vec<(String, UnixSeconds)> {
        let mut marks = self.marks();
        let newest = marks.values().map(|m| m.at).max().unwrap_or_default();
        marks.retain(|_, m| !m.written || newest - m.at < 2 * RECORD_EVERY);
        marks
            .iter()
            .filter(|(_, m)| !m.written)
            .map(|(id, m)| (id.clone(), m.at))
            .collect()
    }

    /// Marks `uses` written, unless a newer use was noted meanwhile.
    fn mark_written(&self, uses: &[(String, UnixSeconds)]) {
        let mut marks = self.marks();
        for (id, at) in uses {
            if let Some(mark) = marks.get_mut(id)
                && mark.at == *at
            {
                mark.written = true;
            }
        }
    }

    /// Writes the noted uses.
    pub async fn flush(&self, store: &dyn AppStore) {
        let uses = self.unwritten();
        if uses.is_empty() {
            return;
        }
        match store.record_app_token_use(&uses).await {
            Ok(()) => self.mark_written(&uses),
            Err(e) => {
                tracing::warn!(error = %e, tokens = uses.len(), "could not record app token use");
            }
        }
    }
}

/// Writes noted uses every [`FLUSH_INTERVAL`], until aborted.
pub async fn record_usage(usage: Arc<UsageRecorder>, store: Arc<dyn crate::store::Store>) {
    loop {
        tokio::time::sleep(FLUSH_INTERVAL).await;
        usage.flush(store.as_ref()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_noted_at_most_once_a_minute() {
        let usage = UsageRecorder::new();
        usage.touch("t1", 1000);
        usage.touch("t1", 1059);
        usage.touch("t2", 1010);
        let mut first = usage.unwritten();
        first.sort();
        assert_eq!(first, [("t1".into(), 1000), ("t2".into(), 1010)]);
        assert_eq!(
            usage.unwritten().len(),
            2,
            "not written until the write commits"
        );
        usage.mark_written(&first);
        assert!(usage.unwritten().is_empty(), "written once");
        usage.touch("t1", 1030);
        assert!(usage.unwritten().is_empty(), "within the minute");
        usage.touch("t1", 1060);
        assert_eq!(usage.unwritten(), [("t1".into(), 1060)]);
    }

    #[test]
    fn a_newer_use_is_not_lost_to_an_older_write() {
        let usage = UsageRecorder::new();
        usage.touch("t1", 1000);
        let writing = usage.unwritten();
        usage.touch("t1", 1070); // noted while the older write was in flight
        usage.mark_written(&writing);
        assert_eq!(usage.unwritten(), [("t1".into(), 1070)]);
    }

    #[test]
    fn old_marks_are_dropped() {
        let usage = UsageRecorder::new();
        usage.touch("old", 1000);
        usage.mark_written(&usage.unwritten());
        usage.touch("new", 1000 + 3 * RECORD_EVERY);
        usage.unwritten();
        assert!(!usage.marks().contains_key("old"));
        assert!(usage.marks().contains_key("new"));
    }
}
