//! Which of a session's pages is its active one: the page switched to
//! through the API ([`switch_to_page`]) while no page opened after the
//! switch, else the page opened most recently that is still open. REST
//! actions, screenshots, agents' tools and the live view all follow this one
//! rule, learnt from `Target.targetCreated` and `Target.targetDestroyed`
//! events (a connection with target discovery on gets one `targetCreated`
//! for every target that exists when it asks, then one for each new one)
//! and from the session's [`FrontPage`].
//!
//! A tab brought to the front by a client over CDP is not seen: Chromium
//! announces no event for it, so only a switch made through the API moves
//! the active page back to an older one.

use serde_json::{json, Value};
use tokio::sync::watch;

use crate::cdp::{CdpClient, CdpError};
use crate::devtools::Devtools;

/// A switch to an older page: the page, and the pages open at that moment.
/// It holds while the page is open and no page opened since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switch {
    target: String,
    open_then: Vec<String>,
}

/// The page a session was last switched to, shared by every connection of
/// the session (one per browser, or one per context session).
#[derive(Debug)]
pub(crate) struct FrontPage {
    switch: watch::Sender<Option<Switch>>,
}

impl Default for FrontPage {
    fn default() -> Self {
        Self {
            switch: watch::channel(None).0,
        }
    }
}

impl FrontPage {
    /// The switch made last, to follow it (the live view waits for changes).
    pub(crate) fn watch(&self) -> watch::Receiver<Option<Switch>> {
        self.switch.subscribe()
    }

    fn set(&self, switch: Switch) {
        self.switch.send_replace(Some(switch));
    }
}

/// The open pages of one browser (or context session), oldest first, and
/// the switch the session made last.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PageOrder {
    pages: Vec<String>,
    switch: Option<Switch>,
}

impl PageOrder {
    /// Takes one DevTools event (any other message is passed over) and says
    /// whether the active page changed with it.
    pub(crate) fn observe(&mut self, event: &Value) -> bool {
        let before = self.active().map(str::to_owned);
        let params = event.get("params").unwrap_or(&Value::Null);
        match event.get("method").and_then(Value::as_str) {
            Some("Target.targetCreated") => {
                if let Some(target) = params.get("targetInfo").and_then(page_target_id) {
                    if !self.pages.contains(&target) {
                        self.pages.push(target);
                    }
                }
            }
            Some("Target.targetDestroyed") => {
                if let Some(target) = params.get("targetId").and_then(Value::as_str) {
                    self.pages.retain(|page| page != target);
                }
            }
            _ => return false,
        }
        before.as_deref() != self.active()
    }

    /// Forgets a page known to have closed (its event may still be on its way).
    pub(crate) fn forget(&mut self, target: &str) {
        self.pages.retain(|page| page != target);
    }

    /// Takes the session's last switch; says whether the active page changed.
    pub(crate) fn follow(&mut self, switch: Option<Switch>) -> bool {
        let before = self.active().map(str::to_owned);
        self.switch = switch;
        before.as_deref() != self.active()
    }

    /// The active page's target id.
    pub(crate) fn active(&self) -> Option<&str> {
        if let Some(switch) = &self.switch {
            let holds =
                self.pages.contains(&switch.target) && self.pages.iter().all(|page| switch.open_then.contains(page));
            if holds {
                return Some(&switch.target);
            }
        }
        self.pages.last().map(String::as_str)
    }

    /// The open pages, oldest first.
    pub(crate) fn pages(&self) -> &[String] {
        &self.pages
    }

    /// Puts the pages in the order they opened in, as the hub saw it (a
    /// discovery announces them in no particular order).
    pub(crate) fn arrange(&mut self, devtools: &Devtools) {
        devtools.oldest_first(&mut self.pages);
    }
}

/// Learns a connection's pages: turns target discovery on (every existing
/// target is announced before the answer) and reads what was announced,
/// with the session's last switch.
pub(crate) async fn discover(client: &mut CdpClient, devtools: &Devtools) -> Result<PageOrder, CdpError> {
    client.keep_target_events();
    client
        .call("Target.setDiscoverTargets", json!({"discover": true}), None)
        .await?;
    let mut order = PageOrder::default();
    for event in client.take_events()? {
        order.observe(&event);
    }
    order.arrange(devtools);
    order.follow(devtools.front().watch().borrow().clone());
    Ok(order)
}

/// The session's open pages, oldest first, and which is active.
pub async fn page_order(devtools: &Devtools) -> Result<(Vec<String>, Option<String>), CdpError> {
    let mut client = CdpClient::open(devtools).await?;
    let order = discover(&mut client, devtools).await;
    client.close().await;
    let order = order?;
    Ok((order.pages().to_vec(), order.active().map(str::to_owned)))
}

/// Makes `target`, one of the session's open pages, its active page (and
/// brings it to the front of its window); it stays so until it closes or a
/// page opens. `false` when the session has no such page.
pub async fn switch_to_page(devtools: &Devtools, target: &str) -> Result<bool, CdpError> {
    let mut client = CdpClient::open(devtools).await?;
    let switched = async {
        let order = discover(&mut client, devtools).await?;
        if !order.pages().iter().any(|page| page == target) {
            return Ok(false);
        }
        client
            .call("Target.activateTarget", json!({"targetId": target}), None)
            .await?;
        devtools.front().set(Switch {
            target: target.to_owned(),
            open_then: order.pages().to_vec(),
        });
        Ok(true)
    }
    .await;
    client.close().await;
    switched
}

/// Whether a message is one [`PageOrder::observe`] learns from.
pub(crate) fn is_target_event(message: &Value) -> bool {
    matches!(
        message.get("method").and_then(Value::as_str),
        Some("Target.targetCreated" | "Target.targetDestroyed")
    )
}

/// The target id of a page target's info, `None` for other target types.
pub(crate) fn page_target_id(info: &Value) -> Option<String> {
    if info.get("type").and_then(Value::as_str) != Some("page") {
        return None;
    }
    info.get("targetId").and_then(Value::as_str).map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn created(id: &str, kind: &str) -> Value {
        json!({"method": "Target.targetCreated", "params": {"targetInfo": {"targetId": id, "type": kind}}})
    }

    fn destroyed(id: &str) -> Value {
        json!({"method": "Target.targetDestroyed", "params": {"targetId": id}})
    }

    #[test]
    fn the_newest_open_page_is_active() {
        let mut order = PageOrder::default();
        assert_eq!(order.active(), None);
        assert!(order.observe(&created("a", "page")));
        assert!(!order.observe(&created("w", "service_worker")));
        assert!(order.observe(&created("b", "page")));
        assert_eq!(order.active(), Some("b"));
        // Announced again (a second discovery): nothing moves.
        assert!(!order.observe(&created("a", "page")));
        assert!(!order.observe(&destroyed("a")));
        assert!(order.observe(&destroyed("b")));
        assert_eq!(order.active(), None);
        assert!(!order.observe(&json!({"method": "Page.loadEventFired", "params": {}})));
        assert!(!order.observe(&json!({"id": 3, "result": {}})));
    }

    #[test]
    fn a_switch_holds_until_its_page_closes_or_a_page_opens() {
        let mut order = PageOrder::default();
        for id in ["a", "b", "c"] {
            order.observe(&created(id, "page"));
        }
        let switch = Switch {
            target: "a".to_owned(),
            open_then: vec!["a".to_owned(), "b".to_owned(), "c".to_owned()],
        };
        assert!(order.follow(Some(switch.clone())));
        assert_eq!(order.active(), Some("a"));
        // Another page closing leaves it.
        assert!(!order.observe(&destroyed("c")));
        assert_eq!(order.active(), Some("a"));
        // A page opening takes over; once it closes, the switch holds again.
        assert!(order.observe(&created("d", "page")));
        assert_eq!(order.active(), Some("d"));
        assert!(order.observe(&destroyed("d")));
        assert_eq!(order.active(), Some("a"));
        // Its own page closing ends it.
        assert!(order.observe(&destroyed("a")));
        assert_eq!(order.active(), Some("b"));
        // Not holding for a connection that knows other pages.
        let mut other = PageOrder::default();
        other.observe(&created("x", "page"));
        assert!(!other.follow(Some(switch)));
        assert_eq!(other.active(), Some("x"));
    }
}
