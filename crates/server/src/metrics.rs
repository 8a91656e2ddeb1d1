//! The server's metrics, kept and rendered by the Prometheus project's Rust
//! client (`prometheus-client`), which writes the OpenMetrics text format
//! (histograms, label escaping and `# EOF` included). Gauges that the fleet
//! and the store already know (running sessions, pooled browsers, queued
//! starts, batch items by status, connected clients) are set from them when
//! rendered, not kept twice.

use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the launch-duration histogram, in seconds.
const LAUNCH_BUCKETS: [f64; 9] = [0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// The `Content-Type` of [`Metrics::render`]'s text.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric of the server, registered once.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    launches: Counter,
    launch_failures: Counter,
    sessions_ended: Counter,
    proxied_bytes: Counter,
    websocket_tasks: Gauge,
    launch_duration: Histogram,
    running_sessions: Gauge,
    pooled_browsers: Gauge,
    host_browsers: Gauge,
    context_sessions: Gauge,
    queued_requests: Gauge,
    cdp_connections: Gauge,
    unseen_admission_changes: Gauge,
    event_waiters: Gauge,
    memory_in_use: Gauge,
    memory_reserved: Gauge,
    memory_limit: Gauge,
    memory_readings: Gauge,
    batch_items: Family<Vec<(String, String)>, Gauge>,
    stored_items: Family<Vec<(String, String)>, Gauge>,
    stored_bytes: Family<Vec<(String, String)>, Gauge>,
    webhook_attempts: Family<Vec<(String, String)>, Counter>,
    node_signals: Family<Vec<(String, String)>, Counter>,
    code_runs: Gauge,
    code_runs_waiting: Gauge,
    code_zygote: Gauge,
    code_runs_finished: Family<Vec<(String, String)>, Counter>,
    code_runners: Family<Vec<(String, String)>, Counter>,
    code_cache_modules: Family<Vec<(String, String)>, Counter>,
    adblock_blocked: Counter,
    adblock_rules: Gauge,
    adblock_list_modified: Family<Vec<(String, String)>, Gauge>,
}

/// What `/metrics` shows besides the counters, read at render time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Sessions whose browser runs.
    pub running_sessions: usize,
    /// Browsers waiting in the warm pool.
    pub pooled_browsers: usize,
    /// Host browsers of context sessions.
    pub host_browsers: usize,
    /// Running sessions that are a context in a host browser.
    pub context_sessions: usize,
    /// Start requests waiting for a browser.
    pub queued_requests: usize,
    /// CDP clients connected now.
    pub cdp_connections: usize,
    /// Changes (a start queued, a place freed) the admission loop has not
    /// looked at yet.
    pub unseen_admission_changes: u64,
    /// Clients waiting for a named event on this node.
    pub event_waiters: usize,
    /// Bytes this node's browsers used at the last reading.
    pub memory_in_use: u64,
    /// Bytes reserved by starts the last reading has not seen.
    pub memory_reserved: u64,
    /// Bytes the browsers may use together, if limited.
    pub memory_limit: Option<u64>,
    /// Readings of the browsers' memory begun since the start.
    pub memory_readings: u64,
    /// Batch items by status.
    pub batch_items: Vec<(&'static str, i64)>,
    /// What teams keep on the server, by kind (`profiles`, `extensions`): how many, and their bytes.
    pub stored: Vec<(&'static str, i64, i64)>,
    /// Requests ad blocking blocked on this node since the start.
    pub adblock_blocked: u64,
    /// Rules in the ad-blocking engine.
    pub adblock_rules: u64,
    /// Each filter list's file and when it was last changed (seconds since
    /// the epoch).
    pub adblock_lists: Vec<(String, i64)>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            launches: Counter::default(),
            launch_failures: Counter::default(),
            sessions_ended: Counter::default(),
            proxied_bytes: Counter::default(),
            websocket_tasks: Gauge::default(),
            launch_duration: Histogram::new(LAUNCH_BUCKETS),
            running_sessions: Gauge::default(),
            pooled_browsers: Gauge::default(),
            host_browsers: Gauge::default(),
            context_sessions: Gauge::default(),
            queued_requests: Gauge::default(),
            cdp_connections: Gauge::default(),
            unseen_admission_changes: Gauge::default(),
            event_waiters: Gauge::default(),
            memory_in_use: Gauge::default(),
            memory_reserved: Gauge::default(),
            memory_limit: Gauge::default(),
            memory_readings: Gauge::default(),
            batch_items: Family::default(),
            stored_items: Family::default(),
            stored_bytes: Family::default(),
            webhook_attempts: Family::default(),
            node_signals: Family::default(),
            code_runs: Gauge::default(),
            code_runs_waiting: Gauge::default(),
            code_zygote: Gauge::default(),
            code_runs_finished: Family::default(),
            code_runners: Family::default(),
            code_cache_modules: Family::default(),
            adblock_blocked: Counter::default(),
            adblock_rules: Gauge::default(),
            adblock_list_modified: Family::default(),
            registry: Registry::default(),
        };
        // Names are given without `_total`: the client adds it to counters.
        let gauges: [(&str, &str, &Gauge); 17] = [
            (
                "anchorage_code_zygote_ready",
                "1 while runs of users' code are forked from this node's zygote (ANCHORAGE_CODE_ZYGOTE), 0 while each starts its own process",
                &metrics.code_zygote,
            ),
            (
                "anchorage_adblock_rules",
                "Filter rules in this node's ad-blocking engine (0 when ad blocking is off on the node).",
                &metrics.adblock_rules,
            ),
            (
                "anchorage_memory_readings",
                "Readings of the browsers' memory begun since the start (one at least every second).",
                &metrics.memory_readings,
            ),
            (
                "anchorage_code_runs_waiting",
                "Runs of users' code waiting for a place on this node (ANCHORAGE_CODE_MAX_RUNS, ANCHORAGE_CODE_TEAM_MAX_RUNS).",
                &metrics.code_runs_waiting,
            ),
            (
                "anchorage_code_runs",
                "Runs of users' code (execute_code, task runs) under way on this node.",
                &metrics.code_runs,
            ),
            (
                "anchorage_sessions_running",
                "Sessions whose browser runs.",
                &metrics.running_sessions,
            ),
            (
                "anchorage_pool_browsers",
                "Browsers waiting in the warm pool.",
                &metrics.pooled_browsers,
            ),
            (
                "anchorage_host_browsers",
                "Host browsers serving context sessions.",
                &metrics.host_browsers,
            ),
            (
                "anchorage_context_sessions",
                "Running sessions that are a browser context in a host browser.",
                &metrics.context_sessions,
            ),
            (
                "anchorage_queued_requests",
                "Start requests waiting for a browser, on every node of the database together.",
                &metrics.queued_requests,
            ),
            (
                "anchorage_cdp_connections",
                "Clients connected to sessions: CDP clients through the proxy and live-view viewers.",
                &metrics.cdp_connections,
            ),
            (
                "anchorage_admission_unseen_changes",
                "Changes (a start queued, a place freed) the admission loop has not looked at yet; 0 when it is idle.",
                &metrics.unseen_admission_changes,
            ),
            (
                "anchorage_memory_in_use_bytes",
                "Memory (proportional set size) of this node's browsers and displays at the last reading.",
                &metrics.memory_in_use,
            ),
            (
                "anchorage_memory_reserved_bytes",
                "Memory set aside for starts the last reading has not seen yet.",
                &metrics.memory_reserved,
            ),
            (
                "anchorage_memory_limit_bytes",
                "Memory this node's browsers may use together (ANCHORAGE_MAX_MEMORY_MIB); 0 for no limit.",
                &metrics.memory_limit,
            ),
            (
                "anchorage_event_waiters",
                "Clients of this node waiting for a named event (POST /v1/events/{name}/wait).",
                &metrics.event_waiters,
            ),
            (
                "anchorage_websocket_tasks",
                "WebSocket tasks running: upgraded CDP and live-view connections, from the upgrade to the last close.",
                &metrics.websocket_tasks,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        let counters: [(&str, &str, &Counter); 5] = [
            (
                "anchorage_adblock_blocked_requests",
                "Requests of this node's sessions that ad blocking failed before they left the browser.",
                &metrics.adblock_blocked,
            ),
            (
                "anchorage_launches",
                "Browser launches tried (each try counts).",
                &metrics.launches,
            ),
            (
                "anchorage_launch_failures",
                "Browser launches that failed.",
                &metrics.launch_failures,
            ),
            (
                "anchorage_sessions_ended",
                "Sessions that ended.",
                &metrics.sessions_ended,
            ),
            (
                "anchorage_proxied_bytes",
                "Payload bytes the CDP proxy forwarded, both ways.",
                &metrics.proxied_bytes,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        registry.register(
            "anchorage_launch_duration_seconds",
            "Time from spawn to DevTools ready.",
            metrics.launch_duration.clone(),
        );
        registry.register(
            "anchorage_adblock_list_modified_seconds",
            "When each filter list's file was last changed (its package or its operator dates it), by file.",
            metrics.adblock_list_modified.clone(),
        );
        registry.register(
            "anchorage_batch_items",
            "Batch items by status.",
            metrics.batch_items.clone(),
        );
        registry.register(
            "anchorage_stored_items",
            "What teams keep on the server, by kind (profiles, extensions, certificates, finished recordings).",
            metrics.stored_items.clone(),
        );
        registry.register(
            "anchorage_stored_bytes",
            "Bytes of what teams keep on the server, by kind (profiles: their saved copies; extensions: unpacked).",
            metrics.stored_bytes.clone(),
        );
        registry.register(
            "anchorage_webhook_attempts",
            "Webhook delivery attempts by outcome (succeeded; failed, to be tried again; refused by the receiver; dead, out of attempts).",
            metrics.webhook_attempts.clone(),
        );
        registry.register(
            "anchorage_node_signals",
            "Signals between the nodes of one PostgreSQL database (queued, request, batch), sent by this node or received from others.",
            metrics.node_signals.clone(),
        );
        registry.register(
            "anchorage_code_runs_finished",
            "Runs of users' code that finished on this node, by how (success, failure, timeout, cancelled).",
            metrics.code_runs_finished.clone(),
        );
        registry.register(
            "anchorage_code_runners",
            "Runs of users' code that answered, by the runner they got: warm (ready), warming (taken while it warmed up), cold (started for the run). Many cold ones say ANCHORAGE_CODE_WARM is low for this node's load; many warming ones, that runs come faster than runners warm up.",
            metrics.code_runners.clone(),
        );
        registry.register(
            "anchorage_code_cache_modules",
            "Modules that runs loaded with the node's V8 code cache, by whether V8 used or refused the cache (refused ones were compiled again).",
            metrics.code_cache_modules.clone(),
        );
        Self { registry, ..metrics }
    }
}

impl Metrics {
    /// Records one successful launch and how long it took to DevTools.
    pub fn launched(&self, took: Duration) {
        self.launches.inc();
        self.launch_duration.observe(took.as_secs_f64());
    }

    /// Records one failed launch.
    pub fn launch_failed(&self) {
        self.launches.inc();
        self.launch_failures.inc();
    }

    /// Records a session that ended.
    pub fn session_ended(&self) {
        self.sessions_ended.inc();
    }

    /// The counter the CDP pump adds forwarded bytes to.
    pub fn proxied_bytes(&self) -> &AtomicU64 {
        self.proxied_bytes.inner()
    }

    /// Counts a webhook delivery attempt by its outcome.
    pub fn webhook_attempt(&self, outcome: &str) {
        self.webhook_attempts
            .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
            .inc();
    }

    /// Counts a signal to (`sent`) or from (`received`) the other nodes.
    pub fn node_signal(&self, direction: &str, signal: &str) {
        self.node_signals
            .get_or_create(&vec![
                ("direction".to_owned(), direction.to_owned()),
                ("signal".to_owned(), signal.to_owned()),
            ])
            .inc();
    }

    /// Sets the number of runs of code under way, and waiting.
    pub fn set_code_runs(&self, running: usize, waiting: usize) {
        self.code_runs.set(i64::try_from(running).unwrap_or(i64::MAX));
        self.code_runs_waiting.set(i64::try_from(waiting).unwrap_or(i64::MAX));
    }

    /// Sets whether runs are forked from the zygote now.
    pub fn set_code_zygote(&self, ready: bool) {
        self.code_zygote.set(i64::from(ready));
    }

    /// Counts a finished run of code by how it ended.
    pub fn count_code_run(&self, status: anchorage_core::ExecutionStatus) {
        self.code_runs_finished
            .get_or_create(&vec![("status".to_owned(), status.as_str().to_owned())])
            .inc();
    }

    /// Counts the runner a run got (`warm`, `warming`, `cold`) and the
    /// modules it loaded with the code cache, used and refused.
    pub fn count_code_runner(&self, runner: &str, cache_used: u64, cache_refused: u64) {
        self.code_runners
            .get_or_create(&vec![("runner".to_owned(), runner.to_owned())])
            .inc();
        for (outcome, modules) in [("used", cache_used), ("refused", cache_refused)] {
            self.code_cache_modules
                .get_or_create(&vec![("outcome".to_owned(), outcome.to_owned())])
                .inc_by(modules);
        }
    }

    /// Counts a WebSocket task that starts (`true`) or ends.
    pub fn websocket_task(&self, starts: bool) {
        if starts {
            self.websocket_tasks.inc();
        } else {
            self.websocket_tasks.dec();
        }
    }

    /// Launches tried and failed so far.
    #[cfg(test)]
    pub fn launch_counts(&self) -> (u64, u64) {
        (self.launches.get(), self.launch_failures.get())
    }

    /// The exposition text (OpenMetrics).
    pub fn render(&self, gauges: &Gauges) -> String {
        let count = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.running_sessions.set(count(gauges.running_sessions));
        self.pooled_browsers.set(count(gauges.pooled_browsers));
        self.host_browsers.set(count(gauges.host_browsers));
        self.context_sessions.set(count(gauges.context_sessions));
        self.queued_requests.set(count(gauges.queued_requests));
        self.cdp_connections.set(count(gauges.cdp_connections));
        self.event_waiters.set(count(gauges.event_waiters));
        let bytes = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        self.memory_in_use.set(bytes(gauges.memory_in_use));
        self.memory_reserved.set(bytes(gauges.memory_reserved));
        self.memory_limit.set(bytes(gauges.memory_limit.unwrap_or(0)));
        self.memory_readings.set(bytes(gauges.memory_readings));
        self.unseen_admission_changes
            .set(i64::try_from(gauges.unseen_admission_changes).unwrap_or(i64::MAX));
        for (status, value) in &gauges.batch_items {
            self.batch_items
                .get_or_create(&vec![("status".to_owned(), (*status).to_owned())])
                .set(*value);
        }
        for (kind, items, bytes) in &gauges.stored {
            let label = vec![("kind".to_owned(), (*kind).to_owned())];
            self.stored_items.get_or_create(&label).set(*items);
            self.stored_bytes.get_or_create(&label).set(*bytes);
        }
        let blocked_before = self.adblock_blocked.get();
        self.adblock_blocked
            .inc_by(gauges.adblock_blocked.saturating_sub(blocked_before));
        self.adblock_rules.set(bytes(gauges.adblock_rules));
        for (list, modified) in &gauges.adblock_lists {
            self.adblock_list_modified
                .get_or_create(&vec![("list".to_owned(), list.clone())])
                .set(*modified);
        }
        let mut out = String::new();
        if let Err(error) = encode(&mut out, &self.registry) {
            // Writing into a String cannot fail; say so if it ever does.
            tracing::error!(%error, "could not render the metrics");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_every_family_with_help_and_type() {
        let metrics = Metrics::default();
        metrics.launched(Duration::from_millis(250));
        metrics.launch_failed();
        metrics.node_signal("received", "batch");
        let gauges = Gauges {
            running_sessions: 3,
            batch_items: vec![("pending", 2)],
            stored: vec![("profiles", 2, 4096)],
            ..Gauges::default()
        };
        let text = metrics.render(&gauges);
        assert!(text.contains("anchorage_sessions_running 3\n"), "{text}");
        assert!(text.contains("anchorage_launches_total 2\n"), "{text}");
        assert!(
            text.contains("anchorage_launch_duration_seconds_bucket{le=\"0.2\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("anchorage_launch_duration_seconds_bucket{le=\"0.3\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("anchorage_launch_duration_seconds_count 1\n"), "{text}");
        assert!(text.contains("anchorage_batch_items{status=\"pending\"} 2\n"), "{text}");
        assert!(text.contains("anchorage_stored_items{kind=\"profiles\"} 2\n"), "{text}");
        assert!(
            text.contains("anchorage_stored_bytes{kind=\"profiles\"} 4096\n"),
            "{text}"
        );
        assert_eq!(text.matches("# TYPE").count(), 27, "{text}");
        assert!(
            text.contains("anchorage_node_signals_total{direction=\"received\",signal=\"batch\"} 1\n"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"), "{text}");
    }
}
