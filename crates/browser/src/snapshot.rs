//! What an agent reads of a page, and how it points back at what it read:
//! an accessibility snapshot (Chromium's own accessibility tree, through
//! `Accessibility.getFullAXTree`) as indented lines of role, name and state,
//! each element with a reference `e<N>` (its DOM `backendNodeId`, stable for
//! as long as the element stays in the document); and acting on a
//! reference: its centre (scrolled into view), focus, and the options of a
//! `<select>`.
//!
//! Rendering is a pure function of the tree ([`render`]), so that its
//! rules are tested without a browser; budgets (a size cap, only what
//! changed) are applied by [`fit`]. It does not decide which page is read:
//! the caller's [`PageControl`] is on it already.

use serde_json::{json, Value};

use crate::actions::PageControl;
use crate::cdp::CdpError;

/// Roles that carry nothing by themselves: their children are shown in
/// their place (unless they have a name).
const TRANSPARENT_ROLES: [&str; 7] = [
    "generic",
    "none",
    "GenericContainer",
    "InlineTextBox",
    "LineBreak",
    "Section",
    "presentation",
];

/// How long a snapshot waits for a document that is still being parsed.
const PARSE_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The reference of an element: `e` and its `backendNodeId`.
pub fn element_ref(backend_node_id: i64) -> String {
    format!("e{backend_node_id}")
}

/// The `backendNodeId` a reference names, if it is one.
pub fn parse_ref(reference: &str) -> Option<i64> {
    let digits = reference.trim().strip_prefix('e')?;
    if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn text_of(value: &Value) -> String {
    let text = match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    };
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if collapsed.chars().count() > 120 {
        let cut: String = collapsed.chars().take(117).collect();
        format!("{cut}…")
    } else {
        collapsed
    }
}

/// The states worth telling of a node: `[checked]`, `[level=2]`, a value.
fn states(node: &Value) -> String {
    let mut out = String::new();
    for property in node["properties"].as_array().into_iter().flatten() {
        let name = property["name"].as_str().unwrap_or_default();
        let value = &property["value"]["value"];
        match name {
            "checked" | "pressed" | "selected" | "expanded" => match value
                .as_str()
                .or_else(|| value.as_bool().map(|flag| if flag { "true" } else { "false" }))
            {
                Some("true") => out.push_str(&format!(" [{name}]")),
                Some("mixed") => out.push_str(&format!(" [{name}=mixed]")),
                _ => {}
            },
            "disabled" | "focused" | "required" | "readonly" if value.as_bool() == Some(true) => {
                out.push_str(&format!(" [{name}]"));
            }
            "level" => out.push_str(&format!(" [level={}]", text_of(value))),
            _ => {}
        }
    }
    let value = text_of(&node["value"]["value"]);
    if !value.is_empty() {
        out.push_str(&format!(" value={}", serde_json::to_string(&value).unwrap_or_default()));
    }
    out
}

/// The lines of a tree (`Accessibility.getFullAXTree`'s `nodes`), from the
/// node of the element `root` (a `backendNodeId`) when given, else from
/// the document.
pub fn render(nodes: &[Value], root: Option<i64>) -> Vec<String> {
    let by_id: std::collections::HashMap<&str, &Value> = nodes
        .iter()
        .filter_map(|node| Some((node["nodeId"].as_str()?, node)))
        .collect();
    let start = match root {
        Some(backend) => nodes
            .iter()
            .find(|node| node["backendDOMNodeId"].as_i64() == Some(backend)),
        None => nodes.iter().find(|node| node.get("parentId").is_none()),
    };
    let mut lines = Vec::new();
    if let Some(start) = start {
        let is_document = start["role"]["value"].as_str() == Some("RootWebArea");
        if is_document {
            walk_children(start, &by_id, 0, "", &mut lines);
        } else {
            walk(start, &by_id, 0, "", &mut lines);
        }
    }
    lines
}

fn walk_children(
    node: &Value,
    by_id: &std::collections::HashMap<&str, &Value>,
    depth: usize,
    shown_name: &str,
    lines: &mut Vec<String>,
) {
    for child in node["childIds"].as_array().into_iter().flatten() {
        if let Some(child) = child.as_str().and_then(|id| by_id.get(id)) {
            walk(child, by_id, depth, shown_name, lines);
        }
    }
}

fn walk(
    node: &Value,
    by_id: &std::collections::HashMap<&str, &Value>,
    depth: usize,
    shown_name: &str,
    lines: &mut Vec<String>,
) {
    let role = node["role"]["value"].as_str().unwrap_or_default();
    let name = text_of(&node["name"]["value"]);
    let ignored = node["ignored"].as_bool().unwrap_or(false);
    if ignored || (TRANSPARENT_ROLES.contains(&role) && name.is_empty()) || role.is_empty() {
        walk_children(node, by_id, depth, shown_name, lines);
        return;
    }
    let indent = "  ".repeat(depth);
    if role == "StaticText" {
        // Text its element's name says already is not said twice.
        if !name.is_empty() && !shown_name.contains(&name) {
            lines.push(format!(
                "{indent}- text {}",
                serde_json::to_string(&name).unwrap_or_default()
            ));
        }
        return;
    }
    let mut line = format!("{indent}- {role}");
    if !name.is_empty() {
        line.push(' ');
        line.push_str(&serde_json::to_string(&name).unwrap_or_default());
    }
    line.push_str(&states(node));
    if let Some(backend) = node["backendDOMNodeId"].as_i64() {
        line.push_str(&format!(" [ref={}]", element_ref(backend)));
    }
    lines.push(line);
    // What the line said already (its name and value) is not said again by its text.
    let said = format!("{name} {}", text_of(&node["value"]["value"]));
    walk_children(node, by_id, depth + 1, &said, lines);
}

/// A snapshot's text within `max_chars`; with `previous` (the last
/// snapshot's lines of this page), only the lines that are new, and a count
/// of those gone. Says what was left out and how to see it.
pub fn fit(lines: &[String], max_chars: usize, previous: Option<&[String]>) -> (String, bool) {
    let (shown, header): (Vec<&String>, Option<String>) = match previous {
        Some(before) => {
            let seen: std::collections::HashSet<&String> = before.iter().collect();
            let now: std::collections::HashSet<&String> = lines.iter().collect();
            let added: Vec<&String> = lines.iter().filter(|line| !seen.contains(line)).collect();
            let gone = before.iter().filter(|line| !now.contains(line)).count();
            let header = format!(
                "# changes since the last snapshot: {} new or changed lines below, {gone} gone",
                added.len()
            );
            (added, Some(header))
        }
        None => (lines.iter().collect(), None),
    };
    let mut text = String::new();
    if let Some(header) = header {
        text.push_str(&header);
        text.push('\n');
    }
    let mut truncated = false;
    for (index, line) in shown.iter().enumerate() {
        if text.len() + line.len() + 1 > max_chars {
            truncated = true;
            let note = format!(
                "# … {} more lines not shown (max_chars {max_chars}); narrow it with selector, or ask for changes only",
                shown.len() - index
            );
            // The note always fits: it replaces lines until it does.
            while text.len() + note.len() > max_chars && !text.is_empty() {
                let cut = text[..text.len() - 1].rfind('\n').map_or(0, |at| at + 1);
                text.truncate(cut);
            }
            if note.len() <= max_chars {
                text.push_str(&note);
            }
            break;
        }
        text.push_str(line);
        text.push('\n');
    }
    (text, truncated)
}

impl PageControl {
    /// The page's URL and title.
    pub async fn location(&mut self) -> Result<(String, String), CdpError> {
        let found = self.evaluate("[location.href, document.title]").await?;
        Ok((
            found[0].as_str().unwrap_or_default().to_owned(),
            found[1].as_str().unwrap_or_default().to_owned(),
        ))
    }

    /// Waits until `condition` holds (`{"text": …}` appears in the page's
    /// text, `{"gone": …}` no longer does, or `{"selector": …}` matches),
    /// at most `timeout`; whether it came.
    pub async fn wait_until(&mut self, condition: &Value, timeout: std::time::Duration) -> Result<bool, CdpError> {
        let literal = |value: &Value| serde_json::to_string(value).unwrap_or_else(|_| "null".to_owned());
        let expression = format!(
            "(() => {{ const text = {}, gone = {}, selector = {};                const body = document.body ? document.body.innerText : '';                if (text !== null) return body.includes(text);                if (gone !== null) return !body.includes(gone);                return document.querySelector(selector) !== null; }})()",
            literal(&condition["text"]),
            literal(&condition["gone"]),
            literal(&condition["selector"]),
        );
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.evaluate(&expression).await?.as_bool() == Some(true) {
                return Ok(true);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(false);
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The lines of the page's snapshot, from the element `selector` names
    /// when given (`Ok(None)` when nothing matches it). A document still
    /// being parsed (a session's `initial_url` opens as the session starts,
    /// and the start does not wait for it) is waited for first, for at most
    /// [`PARSE_WAIT`]: a snapshot of half a page shows neither what the
    /// page will hold nor that more is coming.
    pub async fn snapshot_lines(&mut self, selector: Option<&str>) -> Result<Option<Vec<String>>, CdpError> {
        let deadline = tokio::time::Instant::now() + PARSE_WAIT;
        // An error here (a document replaced meanwhile) is not the
        // snapshot's: it is read as it is then.
        while tokio::time::Instant::now() < deadline
            && self
                .evaluate("document.readyState")
                .await
                .is_ok_and(|state| state == "loading")
        {
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        let root = match selector {
            None => None,
            Some(selector) => {
                let document = self.call("DOM.getDocument", json!({"depth": 0})).await?;
                let found = self
                    .call(
                        "DOM.querySelector",
                        json!({"nodeId": document["root"]["nodeId"], "selector": selector}),
                    )
                    .await?;
                let node_id = found["nodeId"].as_i64().unwrap_or(0);
                if node_id == 0 {
                    return Ok(None);
                }
                let described = self.call("DOM.describeNode", json!({"nodeId": node_id})).await?;
                described["node"]["backendNodeId"].as_i64()
            }
        };
        let tree = self.call("Accessibility.getFullAXTree", json!({})).await?;
        let nodes = tree["nodes"].as_array().cloned().unwrap_or_default();
        Ok(Some(render(&nodes, root)))
    }

    /// The centre of the element `backend_node_id`, scrolled into view;
    /// `Ok(None)` when it is no longer in the page (or has no box).
    pub async fn element_ref_centre(&mut self, backend_node_id: i64) -> Result<Option<(f64, f64)>, CdpError> {
        let node = json!({"backendNodeId": backend_node_id});
        if let Err(error) = self.call("DOM.scrollIntoViewIfNeeded", node.clone()).await {
            return gone_or(error);
        }
        let quads = match self.call("DOM.getContentQuads", node).await {
            Ok(quads) => quads,
            Err(error) => return gone_or(error),
        };
        let Some(quad) = quads["quads"]
            .as_array()
            .and_then(|quads| quads.first())
            .and_then(Value::as_array)
        else {
            return Ok(None);
        };
        let points: Vec<f64> = quad.iter().filter_map(Value::as_f64).collect();
        if points.len() != 8 {
            return Ok(None);
        }
        let x = (points[0] + points[2] + points[4] + points[6]) / 4.0;
        let y = (points[1] + points[3] + points[5] + points[7]) / 4.0;
        Ok(Some((x, y)))
    }

    /// Focuses the element `backend_node_id`; false when it is gone.
    pub async fn focus_ref(&mut self, backend_node_id: i64) -> Result<bool, CdpError> {
        match self.call("DOM.focus", json!({"backendNodeId": backend_node_id})).await {
            Ok(_) => Ok(true),
            Err(error) => gone_or(error).map(|gone: Option<()>| gone.is_some()),
        }
    }

    /// Chooses the options of the `<select>` `backend_node_id` whose values
    /// or labels are `values`, as a user would (input and change events);
    /// the values chosen, or `Ok(None)` when it is gone or not a select.
    pub async fn select_ref(
        &mut self,
        backend_node_id: i64,
        values: &[String],
    ) -> Result<Option<Vec<String>>, CdpError> {
        let resolved = match self
            .call("DOM.resolveNode", json!({"backendNodeId": backend_node_id}))
            .await
        {
            Ok(resolved) => resolved,
            Err(error) => return gone_or(error),
        };
        let Some(object) = resolved["object"]["objectId"].as_str() else {
            return Ok(None);
        };
        let chosen = self
            .call(
                "Runtime.callFunctionOn",
                json!({
                    "objectId": object,
                    "functionDeclaration": "function (wanted) { if (!(this instanceof HTMLSelectElement)) return null; \
                        const matches = (option) => wanted.includes(option.value) || wanted.includes(option.label); \
                        if (this.multiple) { for (const option of this.options) option.selected = matches(option); } \
                        else { const first = [...this.options].find(matches); if (first) this.value = first.value; } \
                        this.dispatchEvent(new Event('input', {bubbles: true})); \
                        this.dispatchEvent(new Event('change', {bubbles: true})); \
                        return [...this.selectedOptions].map((option) => option.value); }",
                    "arguments": [{"value": values}],
                    "returnByValue": true,
                }),
            )
            .await?;
        Ok(chosen["result"]["value"].as_array().map(|chosen| {
            chosen
                .iter()
                .filter_map(|value| value.as_str().map(str::to_owned))
                .collect()
        }))
    }
}

/// A DOM error about a node that is not there is `Ok(None)`; others stay errors.
fn gone_or<T>(error: CdpError) -> Result<Option<T>, CdpError> {
    let text = error.to_string();
    if text.contains("No node")
        || text.contains("not found")
        || text.contains("Could not compute")
        || text.contains("does not have")
    {
        Ok(None)
    } else {
        Err(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, role: &str, name: &str, backend: i64, children: &[&str], parent: Option<&str>) -> Value {
        let mut node = json!({
            "nodeId": id,
            "ignored": false,
            "role": {"type": "role", "value": role},
            "name": {"type": "computedString", "value": name},
            "childIds": children,
            "backendDOMNodeId": backend,
        });
        if let Some(parent) = parent {
            node["parentId"] = json!(parent);
        }
        node
    }

    fn page() -> Vec<Value> {
        let mut checkbox = node("5", "checkbox", "Remember me", 14, &[], Some("3"));
        checkbox["properties"] = json!([{"name": "checked", "value": {"type": "tristate", "value": "true"}}]);
        let mut heading = node("2", "heading", "Sign in", 11, &["6"], Some("1"));
        heading["properties"] = json!([{"name": "level", "value": {"type": "integer", "value": 1}}]);
        vec![
            node("1", "RootWebArea", "Shop", 1, &["2", "3"], None),
            heading,
            node("3", "generic", "", 12, &["4", "5", "7"], Some("1")),
            node("4", "button", "Buy now", 13, &["8"], Some("3")),
            checkbox,
            node("6", "StaticText", "Sign in", 15, &[], Some("2")),
            node("7", "StaticText", "Free shipping", 16, &[], Some("3")),
            node("8", "StaticText", "Buy now", 17, &[], Some("4")),
        ]
    }

    #[test]
    fn a_tree_reads_as_roles_names_states_and_references() {
        assert_eq!(
            render(&page(), None),
            vec![
                "- heading \"Sign in\" [level=1] [ref=e11]",
                "- button \"Buy now\" [ref=e13]",
                "- checkbox \"Remember me\" [checked] [ref=e14]",
                "- text \"Free shipping\"",
            ]
        );
        // From one element down.
        assert_eq!(render(&page(), Some(13)), vec!["- button \"Buy now\" [ref=e13]"]);
        assert!(render(&page(), Some(999)).is_empty());
        assert_eq!(parse_ref("e13"), Some(13));
        for bad in ["13", "e", "ex", "e-1", "e1234567890123456"] {
            assert_eq!(parse_ref(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_budget_cuts_with_a_note_and_changes_show_only_what_is_new() {
        let lines: Vec<String> = (0..1000)
            .map(|index| format!("- button \"b{index}\" [ref=e{index}]"))
            .collect();
        let (text, truncated) = fit(&lines, 500, None);
        assert!(truncated);
        assert!(text.len() <= 500, "{}", text.len());
        assert!(text.contains("more lines not shown"), "{text}");
        let (all, truncated) = fit(&lines[..3], 10_000, None);
        assert!(!truncated);
        assert_eq!(all.lines().count(), 3);
        let mut after = lines[..3].to_vec();
        after[1] = "- button \"changed\" [ref=e1]".to_owned();
        let (changes, _) = fit(&after, 10_000, Some(&lines[..3]));
        assert_eq!(
            changes,
            "# changes since the last snapshot: 1 new or changed lines below, 1 gone\n- button \"changed\" [ref=e1]\n"
        );
        // A budget smaller than the note gives an empty text, never more.
        let (tiny, _) = fit(&lines, 10, None);
        assert!(tiny.len() <= 10);
    }
}
