//! Which of a browser's pages is its active one: the page opened most
//! recently that is still open. REST actions, screenshots and the live view
//! all follow this one rule, learnt from `Target.targetCreated` and
//! `Target.targetDestroyed` events (a connection with target discovery on
//! gets one `targetCreated` for every target that exists when it asks, then
//! one for each new one).
//!
//! A tab brought to the front by a client is not seen: Chromium announces no
//! event for it, so the newest page stays the active one.

use serde_json::Value;

/// The open pages of one browser, oldest first.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct PageOrder {
    pages: Vec<String>,
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

    /// The active page's target id.
    pub(crate) fn active(&self) -> Option<&str> {
        self.pages.last().map(String::as_str)
    }
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
}
