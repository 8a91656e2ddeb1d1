//! Webhook delivery: a background worker that posts the events the store's
//! outbox holds to their webhooks, signed, and records each attempt.
//!
//! - **Durable**: events are written by the store in the same transaction
//!   as the change they tell of; the worker only reads them. Attempts left
//!   `in_flight` by a stopped server are released on start and sent again
//!   under the same `Anchor-Delivery-Id` and with the same body.
//! - **Independent**: each attempt runs as its own task (at most
//!   [`CONCURRENT_ATTEMPTS`] at once), with a timeout, so a slow or dead
//!   receiver holds up no other delivery and no API call.
//! - **Signed**: `Anchor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
//!   "v0:" + t + ":" + body>`, one `v1` per valid secret (after a rotation,
//!   the old secret signs too for 24 hours).
//! - **Private networks**: with `ANCHORAGE_BLOCK_PRIVATE_NETWORKS`, a URL
//!   whose host is, or resolves to, a private address is refused at create
//!   and at every attempt; the connection goes to the checked address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anchorage_core::network::is_private_ip;
use anchorage_core::Timestamp;
use anchorage_store::{AttemptOutcome, DueAttempt, Store};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

/// Attempts in flight at once.
pub const CONCURRENT_ATTEMPTS: usize = 32;
/// The longest the worker sleeps before looking for due attempts again
/// (events are written by the store's transactions without waking it; the
/// look is one indexed read).
const POLL: Duration = Duration::from_millis(100);
/// How long finished attempts are listed.
pub const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long an old secret keeps signing after a rotation.
pub const OLD_SECRET_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// The `User-Agent` of deliveries.
pub const USER_AGENT: &str = concat!("anchorage-webhooks/", env!("CARGO_PKG_VERSION"));

/// How deliveries are made.
#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Waits before the second, third, … attempt.
    pub retry_delays: Vec<Duration>,
    /// How long a receiver has to answer.
    pub timeout: Duration,
    /// Whether private addresses are refused.
    pub block_private_networks: bool,
}

/// `t=…,v1=…[,v1=…]`: the signature header of `body` at `timestamp`, one
/// `v1` per secret.
pub fn signature_header(secrets: &[String], timestamp: i64, body: &str) -> String {
    let mut header = format!("t={timestamp}");
    for secret in secrets {
        // HMAC takes a key of any length.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            continue;
        };
        mac.update(format!("v0:{timestamp}:").as_bytes());
        mac.update(body.as_bytes());
        header.push_str(",v1=");
        header.push_str(&hex::encode(mac.finalize().into_bytes()));
    }
    header
}

/// A new signing secret: 32 random bytes, hex.
pub fn new_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    hex::encode(bytes)
}

/// Checks a webhook URL as given by a client: `http` or `https`, a host,
/// no credentials, at most 2048 characters; with `block_private`, a host
/// that is or resolves to a private address is refused. The normalised URL.
pub async fn check_target(text: &str, block_private: bool) -> Result<Url, String> {
    if text.is_empty() || text.chars().count() > 2048 {
        return Err("url must be 1 to 2048 characters".to_owned());
    }
    let url = Url::parse(text).map_err(|error| format!("url is not a valid URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("url must be an http or https URL".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("url must not carry credentials (user:password@); authenticate with the signature".to_owned());
    }
    let Some(host) = url.host_str() else {
        return Err("url must name a host".to_owned());
    };
    if block_private {
        if anchorage_core::network::is_private_url(&url) {
            return Err(format!(
                "url points at a private or loopback address ({host}), which this server refuses (ANCHORAGE_BLOCK_PRIVATE_NETWORKS)"
            ));
        }
        public_addresses(&url).await?;
    }
    Ok(url)
}

/// The addresses `url`'s host resolves to, none of them private; an error
/// when it resolves to none or to a private one.
async fn public_addresses(url: &Url) -> Result<Vec<SocketAddr>, String> {
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|error| format!("url's host {host} does not resolve: {error}"))?
        .collect();
    if addresses.is_empty() {
        return Err(format!("url's host {host} resolves to no address"));
    }
    if let Some(private) = addresses.iter().find(|address| is_private_ip(address.ip())) {
        return Err(format!(
            "url's host {host} resolves to a private address ({}), which this server refuses (ANCHORAGE_BLOCK_PRIVATE_NETWORKS)",
            private.ip()
        ));
    }
    Ok(addresses)
}

/// The delivery worker.
pub struct Deliverer {
    store: Arc<dyn Store>,
    node: anchorage_core::NodeId,
    metrics: Arc<crate::metrics::Metrics>,
    settings: DeliverySettings,
    wake: Notify,
    slots: Arc<Semaphore>,
}

impl Deliverer {
    /// A worker over `store`'s outbox; it counts its attempts in `metrics`.
    pub fn new(
        store: Arc<dyn Store>,
        node: anchorage_core::NodeId,
        metrics: Arc<crate::metrics::Metrics>,
        settings: DeliverySettings,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            node,
            metrics,
            settings,
            wake: Notify::new(),
            slots: Arc::new(Semaphore::new(CONCURRENT_ATTEMPTS)),
        })
    }

    /// Looks for due attempts now (after an event was recorded).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// Runs until `shutdown`: releases attempts a stopped server left in
    /// flight, then sends due attempts as they come due.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken, tasks: TaskTracker) {
        let mut last_prune: Option<std::time::Instant> = None;
        let mut last_release: Option<std::time::Instant> = None;
        while !shutdown.is_cancelled() {
            // Its own claims at start (it restarted), and those of nodes
            // whose lease runs out, as they do.
            if last_release.is_none_or(|at| at.elapsed() > crate::cluster::nodes::LEASE) {
                last_release = Some(std::time::Instant::now());
                match self.store.release_in_flight_attempts(self.node, Timestamp::now()).await {
                    Ok(0) => {}
                    Ok(released) => tracing::info!(released, "webhook attempts left in flight are due again"),
                    Err(error) => tracing::warn!(%error, "could not release webhook attempts left in flight"),
                }
            }
            if last_prune.is_none_or(|at| at.elapsed() > Duration::from_secs(3600)) {
                last_prune = Some(std::time::Instant::now());
                let before = Timestamp::from_millis(Timestamp::now().as_millis() - RETENTION.as_millis() as i64);
                if let Err(error) = self.store.prune_deliveries(before).await {
                    tracing::warn!(%error, "could not forget old webhook attempts");
                }
            }
            // Reads only, until something is due: the claim writes.
            let now = Timestamp::now();
            let next_due = match self.store.next_attempt_due().await {
                Ok(next_due) => next_due,
                Err(error) => {
                    tracing::warn!(%error, "could not read when the next webhook attempt is due");
                    None
                }
            };
            let free = self.slots.available_permits();
            let claimed = if free == 0 || next_due.is_none_or(|at| at > now) {
                Vec::new()
            } else {
                match self.store.claim_due_attempts(self.node, now, free as i64).await {
                    Ok(claimed) => claimed,
                    Err(error) => {
                        tracing::warn!(%error, "could not claim due webhook attempts");
                        Vec::new()
                    }
                }
            };
            let more = !claimed.is_empty() && claimed.len() == free;
            for due in claimed {
                let Ok(slot) = Arc::clone(&self.slots).try_acquire_owned() else {
                    break;
                };
                let worker = Arc::clone(&self);
                let stop = shutdown.clone();
                tasks.spawn(async move {
                    let _slot = slot;
                    tokio::select! {
                        () = worker.attempt(due) => {}
                        // Left in flight: released and sent again, same
                        // delivery id, by the next start.
                        () = stop.cancelled() => {}
                    }
                    worker.wake();
                });
            }
            let wait = match next_due {
                _ if more => Duration::ZERO,
                Some(at) if at > now => Duration::from_millis((at.as_millis() - now.as_millis()) as u64).min(POLL),
                _ => POLL,
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Makes one attempt and records how it went.
    async fn attempt(&self, due: DueAttempt) {
        let outcome = self.post(&due).await;
        let outcome = match outcome {
            Ok(status) if (200..300).contains(&status) => AttemptOutcome::Succeeded {
                response_status: i64::from(status),
            },
            Ok(status) => {
                // A refusal for good: a 4xx other than timeouts and rate limits.
                let refused = (400..500).contains(&status) && !matches!(status, 408 | 409 | 425 | 429);
                self.not_delivered(&due, Some(status), format!("the receiver answered {status}"), refused)
            }
            Err(error) => self.not_delivered(&due, None, error, false),
        };
        self.metrics.webhook_attempt(match &outcome {
            AttemptOutcome::Succeeded { .. } => "succeeded",
            AttemptOutcome::NotDelivered { refused: true, .. } => "refused",
            AttemptOutcome::NotDelivered { retry_at: Some(_), .. } => "failed",
            AttemptOutcome::NotDelivered { .. } => "dead",
        });
        match &outcome {
            AttemptOutcome::Succeeded { .. } => {
                tracing::debug!(webhook = %due.webhook_id, delivery = %due.attempt.delivery_id, attempt = due.attempt.attempt, "webhook delivered");
            }
            AttemptOutcome::NotDelivered { error, retry_at, .. } => {
                tracing::info!(webhook = %due.webhook_id, delivery = %due.attempt.delivery_id, attempt = due.attempt.attempt, %error, retry = retry_at.is_some(), "webhook not delivered");
            }
        }
        for wait in [0, 1, 5] {
            tokio::time::sleep(Duration::from_secs(wait)).await;
            match self
                .store
                .finish_attempt(&due.attempt.id, &outcome, Timestamp::now())
                .await
            {
                Ok(()) => return,
                Err(error) => tracing::warn!(%error, attempt = %due.attempt.id, "could not record a webhook attempt"),
            }
        }
    }

    fn not_delivered(&self, due: &DueAttempt, status: Option<u16>, error: String, refused: bool) -> AttemptOutcome {
        let delays = &self.settings.retry_delays;
        let retry_at = usize::try_from(due.attempt.attempt - 1)
            .ok()
            .and_then(|index| delays.get(index))
            .filter(|_| !refused)
            .map(|wait| Timestamp::from_millis(Timestamp::now().as_millis() + wait.as_millis() as i64));
        AttemptOutcome::NotDelivered {
            response_status: status.map(i64::from),
            error,
            retry_at,
            refused,
        }
    }

    /// Posts the event; the receiver's status, or why there is none.
    async fn post(&self, due: &DueAttempt) -> Result<u16, String> {
        let url = Url::parse(&due.url).map_err(|error| format!("the URL is not valid: {error}"))?;
        let mut client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .timeout(self.settings.timeout)
            .connect_timeout(self.settings.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if self.settings.block_private_networks {
            if anchorage_core::network::is_private_url(&url) {
                return Err("the URL points at a private address, which this server refuses".to_owned());
            }
            // Connect to the addresses just checked, not to a second lookup.
            if let Some(host) = url
                .host_str()
                .filter(|_| matches!(url.host(), Some(url::Host::Domain(_))))
            {
                let addresses = public_addresses(&url).await?;
                client = client.resolve_to_addrs(host, &addresses);
            }
        }
        let client = client.build().map_err(|error| format!("no HTTP client: {error}"))?;
        let timestamp = Timestamp::now().as_millis() / 1000;
        let response = client
            .post(url)
            .header("Content-Type", "application/json")
            .header("Anchor-Event", &due.attempt.event_type)
            .header("Anchor-Delivery-Id", due.attempt.delivery_id.to_string())
            .header("Anchor-Timestamp", timestamp.to_string())
            .header("Anchor-Signature", signature_header(&due.secrets, timestamp, &due.body))
            .body(due.body.clone())
            .send()
            .await
            .map_err(|error| {
                if error.is_timeout() {
                    format!(
                        "the receiver did not answer within {} s",
                        self.settings.timeout.as_secs()
                    )
                } else if error.is_connect() {
                    "could not connect to the receiver".to_owned()
                } else {
                    format!("the request failed: {}", without_url(&error))
                }
            })?;
        Ok(response.status().as_u16())
    }
}

/// An error's text without the URL (which may carry a token in its path).
fn without_url(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), "the URL");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_follows_the_documented_formula() {
        let header = signature_header(&["secret".to_owned()], 1_716_544_084, "{\"id\":\"evt_1\"}");
        let mut mac = Hmac::<Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(b"v0:1716544084:{\"id\":\"evt_1\"}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(header, format!("t=1716544084,v1={expected}"));
        let both = signature_header(&["new".to_owned(), "old".to_owned()], 5, "{}");
        assert_eq!(both.matches(",v1=").count(), 2);
        assert_eq!(new_secret().len(), 64);
        assert_ne!(new_secret(), new_secret());
    }

    #[tokio::test]
    async fn targets_are_checked() {
        assert!(check_target("https://hooks.example.com/anchor", false).await.is_ok());
        assert!(check_target("http://127.0.0.1:9/x", false).await.is_ok());
        for bad in [
            "",
            "ftp://example.com/",
            "https://user:pass@example.com/",
            "not a url",
            "http://127.0.0.1:9/x",
            "http://localhost/x",
            "http://[::1]/",
            "http://10.0.0.8/",
        ] {
            let error = check_target(bad, true).await.expect_err(bad);
            assert!(!error.contains('\n'), "{error}");
        }
        let long = format!("https://example.com/{}", "a".repeat(2048));
        assert!(check_target(&long, false).await.is_err());
    }
}
