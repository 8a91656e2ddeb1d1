//! Named events of a team, for coordinating an agent with its operator or
//! with other sessions: `POST /v1/events/{name}/wait` blocks until another
//! client signals the name with `POST /v1/events/{name}` (every waiter of
//! that moment gets the data), its timeout passes, or the server shuts
//! down. A signal with nobody waiting is not kept. In memory: a waiter is
//! a connection that is open now, and goes with the process.

use std::collections::HashMap;
use std::sync::Mutex;

use anchorage_core::TeamId;
use serde_json::Value;
use tokio::sync::broadcast;

/// The waiters of every team's events.
#[derive(Debug, Default)]
pub struct EventHub {
    waiting: Mutex<HashMap<(TeamId, String), broadcast::Sender<Value>>>,
}

/// A client waiting for one event.
#[derive(Debug)]
pub struct Waiter<'a> {
    hub: &'a EventHub,
    key: (TeamId, String),
    receiver: broadcast::Receiver<Value>,
}

impl EventHub {
    /// Starts waiting for `name` of `team`: signals from now on are seen.
    pub fn wait(&self, team: TeamId, name: &str) -> Waiter<'_> {
        let key = (team, name.to_owned());
        let receiver = match self.waiting.lock() {
            Ok(mut waiting) => waiting
                .entry(key.clone())
                .or_insert_with(|| broadcast::channel(1).0)
                .subscribe(),
            // A poisoned map: this waiter hears nothing, and times out.
            Err(_) => broadcast::channel(1).1,
        };
        Waiter {
            hub: self,
            key,
            receiver,
        }
    }

    /// How many clients wait for an event now, of every team and name.
    pub fn waiters(&self) -> usize {
        self.waiting.lock().map_or(0, |waiting| {
            waiting.values().map(broadcast::Sender::receiver_count).sum()
        })
    }

    /// Signals `name` of `team` with `data`; returns how many waiters got it.
    pub fn signal(&self, team: TeamId, name: &str, data: Value) -> usize {
        let key = (team, name.to_owned());
        self.waiting
            .lock()
            .ok()
            .and_then(|waiting| waiting.get(&key).map(|sender| sender.send(data).unwrap_or(0)))
            .unwrap_or(0)
    }
}

impl Waiter<'_> {
    /// The data of the next signal (`None` if the hub went away).
    pub async fn signalled(&mut self) -> Option<Value> {
        self.receiver.recv().await.ok()
    }
}

impl Drop for Waiter<'_> {
    fn drop(&mut self) {
        // The last waiter of a name takes its entry away.
        if let Ok(mut waiting) = self.hub.waiting.lock() {
            if waiting
                .get(&self.key)
                .is_some_and(|sender| sender.receiver_count() <= 1)
            {
                waiting.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn a_signal_wakes_every_waiter_of_its_team_and_name_only() {
        let hub = EventHub::default();
        let (team, other) = (TeamId::new_random(), TeamId::new_random());
        let mut first = hub.wait(team, "done");
        let mut second = hub.wait(team, "done");
        let mut theirs = hub.wait(other, "done");
        assert_eq!(hub.waiters(), 3);
        assert_eq!(hub.signal(team, "done", json!({"n": 1})), 2);
        assert_eq!(first.signalled().await, Some(json!({"n": 1})));
        assert_eq!(second.signalled().await, Some(json!({"n": 1})));
        let nothing = tokio::time::timeout(std::time::Duration::from_millis(50), theirs.signalled()).await;
        assert!(nothing.is_err(), "another team's waiter heard nothing");
        drop((first, second, theirs));
        assert_eq!(hub.waiters(), 0);
        assert_eq!(hub.signal(team, "done", json!({})), 0, "nobody waits any more");
        assert!(hub.waiting.lock().map(|waiting| waiting.is_empty()).unwrap_or(false));
    }
}
