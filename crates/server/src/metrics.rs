//! Counters for `/metrics`, rendered in the Prometheus text format (0.0.4).
//! Gauges that the fleet and the store already know (running sessions,
//! pooled browsers, batch items by status, CDP connections) are read when
//! rendered, not kept twice.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the launch-duration histogram, in seconds.
const LAUNCH_BUCKETS: [f64; 9] = [0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0];

/// Counters the server keeps itself.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Browsers launched (each try counts).
    pub launches: AtomicU64,
    /// Launches that failed.
    pub launch_failures: AtomicU64,
    /// Sessions that ended.
    pub sessions_ended: AtomicU64,
    /// Payload bytes the CDP proxy forwarded, both ways.
    pub proxied_bytes: AtomicU64,
    /// WebSocket tasks (CDP proxies and live views) running now.
    pub websocket_tasks: AtomicU64,
    launch_buckets: [AtomicU64; LAUNCH_BUCKETS.len()],
    launch_count: AtomicU64,
    launch_micros: AtomicU64,
}

/// What `/metrics` shows besides the counters, read at render time.
#[derive(Debug, Default)]
pub struct Gauges {
    /// Sessions whose browser runs.
    pub running_sessions: usize,
    /// Browsers waiting in the warm pool.
    pub pooled_browsers: usize,
    /// Start requests waiting for a browser.
    pub queued_requests: usize,
    /// CDP clients connected now.
    pub cdp_connections: usize,
    /// Batch items by status.
    pub batch_items: Vec<(&'static str, i64)>,
}

impl Metrics {
    /// Records one successful launch and how long it took to DevTools.
    pub fn launched(&self, took: Duration) {
        self.launches.fetch_add(1, Ordering::Relaxed);
        let seconds = took.as_secs_f64();
        for (bound, bucket) in LAUNCH_BUCKETS.iter().zip(&self.launch_buckets) {
            if seconds <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.launch_count.fetch_add(1, Ordering::Relaxed);
        self.launch_micros.fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Records one failed launch.
    pub fn launch_failed(&self) {
        self.launches.fetch_add(1, Ordering::Relaxed);
        self.launch_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(String, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let plain = |value: String| vec![(String::new(), value)];
        metric(
            "anchorage_sessions_running",
            "gauge",
            "Sessions whose browser runs.",
            &plain(gauges.running_sessions.to_string()),
        );
        metric(
            "anchorage_pool_browsers",
            "gauge",
            "Browsers waiting in the warm pool.",
            &plain(gauges.pooled_browsers.to_string()),
        );
        metric(
            "anchorage_queued_requests",
            "gauge",
            "Start requests waiting for a browser.",
            &plain(gauges.queued_requests.to_string()),
        );
        metric(
            "anchorage_cdp_connections",
            "gauge",
            "Clients connected to sessions: CDP clients through the proxy and live-view viewers.",
            &plain(gauges.cdp_connections.to_string()),
        );
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed).to_string();
        metric(
            "anchorage_websocket_tasks",
            "gauge",
            "WebSocket tasks running: upgraded CDP and live-view connections, from the upgrade to the last close.",
            &plain(load(&self.websocket_tasks)),
        );
        metric(
            "anchorage_launches_total",
            "counter",
            "Browser launches tried.",
            &plain(load(&self.launches)),
        );
        metric(
            "anchorage_launch_failures_total",
            "counter",
            "Browser launches that failed.",
            &plain(load(&self.launch_failures)),
        );
        metric(
            "anchorage_sessions_ended_total",
            "counter",
            "Sessions that ended.",
            &plain(load(&self.sessions_ended)),
        );
        metric(
            "anchorage_proxied_bytes_total",
            "counter",
            "Payload bytes the CDP proxy forwarded, both ways.",
            &plain(load(&self.proxied_bytes)),
        );
        let mut buckets: Vec<(String, String)> = LAUNCH_BUCKETS
            .iter()
            .zip(&self.launch_buckets)
            .map(|(bound, count)| (format!("_bucket{{le=\"{bound}\"}}"), load(count)))
            .collect();
        buckets.push(("_bucket{le=\"+Inf\"}".to_owned(), load(&self.launch_count)));
        buckets.push((
            "_sum".to_owned(),
            format!("{}", self.launch_micros.load(Ordering::Relaxed) as f64 / 1e6),
        ));
        buckets.push(("_count".to_owned(), load(&self.launch_count)));
        // The histogram's series carry their suffix where labels would go.
        metric(
            "anchorage_launch_duration_seconds",
            "histogram",
            "Time from spawn to DevTools ready.",
            &buckets,
        );
        let items: Vec<(String, String)> = gauges
            .batch_items
            .iter()
            .map(|(status, count)| (format!("{{status=\"{status}\"}}"), count.to_string()))
            .collect();
        metric("anchorage_batch_items", "gauge", "Batch items by status.", &items);
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
        let gauges = Gauges {
            running_sessions: 3,
            batch_items: vec![("pending", 2)],
            ..Gauges::default()
        };
        let text = metrics.render(&gauges);
        assert!(text.contains("anchorage_sessions_running 3\n"));
        assert!(text.contains("anchorage_launches_total 2\n"));
        assert!(text.contains("anchorage_launch_duration_seconds_bucket{le=\"0.2\"} 0\n"));
        assert!(text.contains("anchorage_launch_duration_seconds_bucket{le=\"0.3\"} 1\n"));
        assert!(text.contains("anchorage_launch_duration_seconds_count 1\n"));
        assert!(text.contains("anchorage_batch_items{status=\"pending\"} 2\n"));
        assert_eq!(text.matches("# TYPE").count(), 11);
    }
}
