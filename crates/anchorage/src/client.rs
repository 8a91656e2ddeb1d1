//! The command-line client: `anchorage batch …` and `anchorage session …`
//! talk to a running server over its HTTP API, like any other client.
//!
//! Output is a short human summary, or with `--json` the answer's `data`
//! as the server sent it, for scripts. Errors print the server's own message
//! and make the process exit non-zero. `batch create --wait` follows the
//! batch's events stream and draws a progress bar on a terminal (plain lines
//! otherwise).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Where the server is and who is asking.
#[derive(Debug, Args)]
pub struct Connection {
    /// The server's base URL.
    #[arg(long, env = "ANCHORAGE_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
    /// An API key of the team to act for.
    #[arg(long, env = "ANCHORAGE_API_KEY", hide_env_values = true, global = true)]
    api_key: Option<String>,
    /// Print the server's answer as JSON, for scripts.
    #[arg(long, global = true)]
    json: bool,
}

/// `anchorage batch …`.
#[derive(Debug, Subcommand)]
pub enum BatchCommand {
    /// Ask for a batch of sessions.
    Create {
        /// How many sessions.
        #[arg(long)]
        count: u32,
        /// A JSON file with the session start body every session gets.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// A JSON file with metadata to keep with the batch.
        #[arg(long, value_name = "FILE")]
        metadata: Option<PathBuf>,
        /// Wait until every item is final, showing progress.
        #[arg(long)]
        wait: bool,
    },
    /// List batches, newest first.
    List {
        /// Only batches in this status.
        #[arg(long)]
        status: Option<String>,
        /// The page, from 1.
        #[arg(long, default_value_t = 1)]
        page: u32,
        /// Batches per page (1 to 100).
        #[arg(long, default_value_t = 20)]
        limit: u32,
    },
    /// Show a batch and its items.
    Show {
        /// The batch id.
        id: String,
    },
    /// Cancel a batch: its running sessions end and nothing more of it starts.
    Cancel {
        /// The batch id.
        id: String,
    },
    /// End every session of a batch and remove it.
    Delete {
        /// The batch id.
        id: String,
    },
    /// Provision a batch's failed items again.
    Retry {
        /// The batch id.
        id: String,
        /// Also re-provision completed items whose session has ended.
        #[arg(long)]
        all: bool,
        /// Attempts per item (1 to 3).
        #[arg(long, default_value_t = 1)]
        max_retries: u32,
    },
}

/// `anchorage session …`.
#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// Start a session and print where to connect.
    Create {
        /// A JSON file with the session start body.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// The page to open first (sets session.initial_url).
        #[arg(long)]
        initial_url: Option<String>,
        /// A tag (repeat for more; added to session.tags).
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// List the team's running sessions.
    List,
    /// End a session.
    End {
        /// The session id.
        id: String,
    },
}

/// A client of one server.
struct Client {
    http: reqwest::Client,
    base: String,
    api_key: String,
    json: bool,
}

impl Client {
    fn new(connection: Connection) -> anyhow::Result<Self> {
        let api_key = connection
            .api_key
            .filter(|key| !key.is_empty())
            .ok_or_else(|| anyhow!("give an API key with --api-key or ANCHORAGE_API_KEY"))?;
        let base = connection.url.trim_end_matches('/').to_owned();
        let parsed = url::Url::parse(&base).map_err(|error| anyhow!("--url {base:?} is not a URL: {error}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            bail!("--url must be an http or https URL, not {base:?}");
        }
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot set up the HTTP client")?;
        Ok(Self {
            http,
            base,
            api_key,
            json: connection.json,
        })
    }

    fn request(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("anchor-api-key", &self.api_key)
    }

    /// Sends a request and returns the answer's `data`, or the server's error.
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| anyhow!("cannot reach the server at {}: {}", self.base, plain_error(&error)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|error| anyhow!("the server's answer was cut off: {}", plain_error(&error)))?;
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            anyhow!(
                "the server at {} answered HTTP {} with something that is not JSON; is it an anchorage server?",
                self.base,
                status.as_u16()
            )
        })?;
        if !status.is_success() {
            let message = value
                .pointer("/error/message")
                .and_then(Value::as_str)
                .unwrap_or("no message");
            bail!("{message} (HTTP {})", status.as_u16());
        }
        Ok(value.get("data").cloned().unwrap_or(Value::Null))
    }

    /// Prints an answer: JSON for scripts, else what `human` makes of it.
    fn show(&self, data: &Value, human: impl FnOnce(&Value) -> String) {
        let text = if self.json {
            serde_json::to_string_pretty(data).unwrap_or_default()
        } else {
            human(data)
        };
        println!("{}", text.trim_end());
    }
}

/// An error's chain as one line (reqwest's top-level message is vague).
fn plain_error(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Reads a JSON object from a file.
fn read_object(path: &Path, what: &str) -> anyhow::Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => bail!("{what} {} must hold a JSON object", path.display()),
        Err(error) => bail!("{what} {} is not valid JSON: {error}", path.display()),
    }
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn number(value: &Value, key: &str) -> i64 {
    value.get(key).and_then(Value::as_i64).unwrap_or(0)
}

/// A path segment from user input: ids are UUIDs, anything else is sent
/// escaped so that it cannot change the path (the server answers 404).
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes()).collect()
}

/// Runs a `batch` command.
pub async fn batch(connection: Connection, command: BatchCommand) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    match command {
        BatchCommand::Create {
            count,
            config,
            metadata,
            wait,
        } => {
            let mut body = json!({ "count": count });
            if let Some(path) = config {
                body["configuration"] = Value::Object(read_object(&path, "the configuration file")?);
            }
            if let Some(path) = metadata {
                body["metadata"] = Value::Object(read_object(&path, "the metadata file")?);
            }
            let created = client.call(Method::POST, "/v1/batch-sessions", Some(body)).await?;
            let batch_id = text(&created, "batch_id").to_owned();
            if !wait {
                client.show(&created, |data| {
                    format!(
                        "batch {} accepted: {} session(s), status {}",
                        text(data, "batch_id"),
                        number(data, "total_requests"),
                        text(data, "status")
                    )
                });
                return Ok(());
            }
            if !client.json {
                eprintln!("batch {batch_id} accepted; waiting for its {count} session(s)");
            }
            let last = wait_for_batch(&client, &batch_id).await?;
            client.show(&last, batch_details);
            match text(&last, "status") {
                "completed" => Ok(()),
                other => bail!("batch {batch_id} ended {other}"),
            }
        }
        BatchCommand::List { status, page, limit } => {
            let mut query = format!("?page={page}&limit={limit}");
            if let Some(status) = status {
                query.push_str(&format!("&status={}", segment(&status)));
            }
            let data = client
                .call(Method::GET, &format!("/v1/batch-sessions{query}"), None)
                .await?;
            client.show(&data, batch_table);
            Ok(())
        }
        BatchCommand::Show { id } => {
            let data = client
                .call(Method::GET, &format!("/v1/batch-sessions/{}", segment(&id)), None)
                .await?;
            client.show(&data, batch_details);
            Ok(())
        }
        BatchCommand::Cancel { id } => {
            let data = client
                .call(
                    Method::PATCH,
                    &format!("/v1/batch-sessions/{}", segment(&id)),
                    Some(json!({"status": "cancelled"})),
                )
                .await?;
            client.show(&data, |data| text(data, "message").to_owned());
            Ok(())
        }
        BatchCommand::Delete { id } => {
            let data = client
                .call(Method::DELETE, &format!("/v1/batch-sessions/{}", segment(&id)), None)
                .await?;
            client.show(&data, |data| text(data, "message").to_owned());
            Ok(())
        }
        BatchCommand::Retry { id, all, max_retries } => {
            let data = client
                .call(
                    Method::POST,
                    &format!("/v1/batch-sessions/{}/retry", segment(&id)),
                    Some(json!({"retry_failed_only": !all, "max_retries": max_retries})),
                )
                .await?;
            client.show(&data, |data| text(data, "message").to_owned());
            Ok(())
        }
    }
}

/// Runs a `session` command.
pub async fn session(connection: Connection, command: SessionCommand) -> anyhow::Result<()> {
    let client = Client::new(connection)?;
    match command {
        SessionCommand::Create {
            config,
            initial_url,
            tags,
        } => {
            let mut body = match config {
                Some(path) => read_object(&path, "the configuration file")?,
                None => Map::new(),
            };
            if initial_url.is_some() || !tags.is_empty() {
                let session = body
                    .entry("session")
                    .or_insert_with(|| Value::Object(Map::new()))
                    .as_object_mut()
                    .ok_or_else(|| anyhow!("session in the configuration file must be an object"))?;
                if let Some(url) = initial_url {
                    session.insert("initial_url".to_owned(), Value::String(url));
                }
                if !tags.is_empty() {
                    let list = session
                        .entry("tags")
                        .or_insert_with(|| Value::Array(Vec::new()))
                        .as_array_mut()
                        .ok_or_else(|| anyhow!("session.tags in the configuration file must be a list"))?;
                    list.extend(tags.into_iter().map(Value::String));
                }
            }
            let data = client
                .call(Method::POST, "/v1/sessions", Some(Value::Object(body)))
                .await?;
            client.show(&data, |data| {
                format!(
                    "session {}\n  cdp_url:       {}\n  live_view_url: {}",
                    text(data, "id"),
                    text(data, "cdp_url"),
                    text(data, "live_view_url")
                )
            });
            Ok(())
        }
        SessionCommand::List => {
            let data = client.call(Method::GET, "/v1/sessions/all/status", None).await?;
            client.show(&data, |data| {
                let mut out = format!("{} running session(s)\n", number(data, "count"));
                let items = data.get("items").and_then(Value::as_array).cloned().unwrap_or_default();
                if !items.is_empty() {
                    out.push_str(&format!("{:<38} {:<10} {:<26} tags\n", "session", "status", "created"));
                }
                for item in &items {
                    let tags: Vec<&str> = item
                        .get("tags")
                        .and_then(Value::as_array)
                        .map(|tags| tags.iter().filter_map(Value::as_str).collect())
                        .unwrap_or_default();
                    out.push_str(&format!(
                        "{:<38} {:<10} {:<26} {}\n",
                        text(item, "session_id"),
                        text(item, "status"),
                        text(item, "created_at"),
                        tags.join(",")
                    ));
                }
                out
            });
            Ok(())
        }
        SessionCommand::End { id } => {
            let data = client
                .call(Method::DELETE, &format!("/v1/sessions/{}", segment(&id)), None)
                .await?;
            client.show(&data, |_| format!("session {id} ended"));
            Ok(())
        }
    }
}

fn batch_table(data: &Value) -> String {
    let batches = data
        .get("batches")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut out = format!(
        "{:<38} {:<11} {:>9} {:>6} {:>6}  created\n",
        "batch", "status", "completed", "failed", "total"
    );
    for batch in &batches {
        out.push_str(&format!(
            "{:<38} {:<11} {:>9} {:>6} {:>6}  {}\n",
            text(batch, "batch_id"),
            text(batch, "status"),
            number(batch, "completed_requests"),
            number(batch, "failed_requests"),
            number(batch, "total_requests"),
            text(batch, "created_at")
        ));
    }
    let pagination = data.get("pagination").cloned().unwrap_or(Value::Null);
    out.push_str(&format!(
        "page {} of {} ({} batch(es))",
        number(&pagination, "current_page"),
        number(&pagination, "total_pages").max(1),
        number(&pagination, "total_records")
    ));
    out
}

fn batch_details(data: &Value) -> String {
    let mut out = format!(
        "batch {}: {}\n  {} completed, {} failed, {} processing, {} pending, {} cancelled, of {}\n",
        text(data, "batch_id"),
        text(data, "status"),
        number(data, "completed_requests"),
        number(data, "failed_requests"),
        number(data, "processing_requests"),
        number(data, "pending_requests"),
        number(data, "cancelled_requests"),
        number(data, "total_requests"),
    );
    if let Some(error) = data.get("error").and_then(Value::as_str) {
        out.push_str(&format!("  error: {error}\n"));
    }
    let items = data
        .get("sessions")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for item in &items {
        let detail = match item.get("cdp_url").and_then(Value::as_str) {
            Some(url) => url.to_owned(),
            None => item.get("error").and_then(Value::as_str).unwrap_or("").to_owned(),
        };
        out.push_str(&format!(
            "  #{:<4} {:<10} {:<38} {}\n",
            number(item, "item_index"),
            text(item, "status"),
            item.get("session_id").and_then(Value::as_str).unwrap_or("-"),
            detail
        ));
    }
    out
}

/// Follows a batch until it is final and returns its full status. Progress
/// goes to stderr: a bar on a terminal, a line per change otherwise.
async fn wait_for_batch(client: &Client, batch_id: &str) -> anyhow::Result<Value> {
    let mut progress = Progress::new(!client.json);
    let path = format!("/v1/batch-sessions/{}", segment(batch_id));
    loop {
        follow_events(client, &format!("{path}/events"), &mut progress).await;
        let batch = client.call(Method::GET, &path, None).await?;
        progress.show(&batch);
        if matches!(text(&batch, "status"), "completed" | "failed" | "cancelled") {
            progress.finish();
            return Ok(batch);
        }
        // The stream ended early (the server restarting, say): look again shortly.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Reads the events stream until it ends, showing each `batch` event.
async fn follow_events(client: &Client, path: &str, progress: &mut Progress) {
    let Ok(mut response) = client.request(Method::GET, path).send().await else {
        return;
    };
    if !response.status().is_success() {
        return;
    }
    let mut buffer = String::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut event = "message";
            let mut data = String::new();
            for line in block.lines() {
                if let Some(name) = line.strip_prefix("event:") {
                    event = name.trim();
                } else if let Some(part) = line.strip_prefix("data:") {
                    data.push_str(part.trim_start());
                }
            }
            if event == "batch" {
                if let Ok(batch) = serde_json::from_str::<Value>(&data) {
                    progress.show(&batch);
                }
            }
        }
    }
}

/// Progress of a batch on stderr.
struct Progress {
    enabled: bool,
    terminal: bool,
    last: String,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        Self {
            enabled,
            // A bar only for a person at a terminal; plain lines when the
            // output goes to a file or a pipe.
            terminal: std::io::stdout().is_terminal() && std::io::stderr().is_terminal(),
            last: String::new(),
        }
    }

    fn show(&mut self, batch: &Value) {
        if !self.enabled {
            return;
        }
        let total = number(batch, "total_requests").max(1);
        let (completed, failed) = (number(batch, "completed_requests"), number(batch, "failed_requests"));
        let summary = format!(
            "{completed}/{total} up, {failed} failed, {} starting, {} waiting ({})",
            number(batch, "processing_requests"),
            number(batch, "pending_requests"),
            text(batch, "status")
        );
        if summary == self.last {
            return;
        }
        self.last = summary.clone();
        let mut stderr = std::io::stderr();
        if self.terminal {
            const WIDTH: i64 = 30;
            let filled = (WIDTH * completed / total) as usize;
            let broken = ((WIDTH * failed / total) as usize).min(WIDTH as usize - filled);
            let empty = WIDTH as usize - filled - broken;
            let bar = format!("{}{}{}", "#".repeat(filled), "x".repeat(broken), ".".repeat(empty));
            let _ = write!(stderr, "\r\x1b[2K[{bar}] {summary}");
        } else {
            let _ = writeln!(stderr, "{summary}");
        }
        let _ = stderr.flush();
    }

    fn finish(&self) {
        if self.enabled && self.terminal {
            eprintln!();
        }
    }
}
