//! Building and running the server: [`App::build`] opens the store, cleans
//! up after a previous run, ensures an API key and binds the listener;
//! [`App::run`] serves until its shutdown future resolves, then ends every
//! browser before returning.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anchorage_browser::{host, BrowserDirs, ChromiumLauncher, ChromiumSettings};
use anchorage_core::Timestamp;
use anchorage_store::{Store, StoreError};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use url::Url;

use crate::auth::{generate_api_key, hash_api_key, key_prefix, TokenSigner};
use crate::config::{Config, ConfigError, Source};
use crate::fleet::{Fleet, FleetParts, FleetSettings};
use crate::profiles::ProfileFiles;
use crate::state::AppState;

/// Name of the team made on first start.
pub const DEFAULT_TEAM: &str = "default";
/// How long shutdown waits for sessions to end.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);

/// Why the server could not start; one line each.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is wrong.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store failed.
    #[error("ANCHORAGE_DATABASE_URL: the database cannot be used: {0}")]
    Store(#[from] StoreError),
    /// The listener could not bind.
    #[error("ANCHORAGE_LISTEN={address}: cannot listen there: {source}")]
    Bind {
        /// Where.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A server ready to run.
pub struct App {
    listener: TcpListener,
    /// Where sandboxed runs of users' code reach the API (see `crate::code`).
    code_listener: Option<tokio::net::UnixListener>,
    state: AppState,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    initial_key: Option<String>,
    summary: String,
}

/// Opens the store named by the configuration, creating the data dir.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    ensure_writable_dir(&config.data_dir, "ANCHORAGE_DATA_DIR")?;
    Ok(anchorage_store::open(&config.database_url).await?)
}

fn ensure_writable_dir(dir: &Path, setting: &str) -> Result<(), ConfigError> {
    let fail = |error: std::io::Error| {
        ConfigError(format!(
            "{setting}={}: the directory is not writable ({error}): choose another or fix its permissions",
            dir.display()
        ))
    };
    std::fs::create_dir_all(dir).map_err(fail)?;
    let probe = dir.join(".anchorage-write-probe");
    std::fs::write(&probe, b"ok").map_err(fail)?;
    let _ = std::fs::remove_file(probe);
    Ok(())
}

/// Readies the data dir for browsers that run as another user (see
/// `anchorage_browser::host::prepare_for_user`); `None` when browsers run as
/// the server's own user.
fn prepare_browser_user(
    config: &Config,
    data_dir: &Path,
    browsers_dir: &Path,
) -> Result<Option<anchorage_browser::RunAs>, ConfigError> {
    let Some(user) = &config.browser_user else {
        return Ok(None);
    };
    host::prepare_for_user(user, data_dir, browsers_dir)
        .map(Some)
        .map_err(|error| match error {
            host::PrepareError::CannotPass { blocked } => ConfigError(format!(
                "ANCHORAGE_DATA_DIR={}: browsers run as {} and cannot pass through {}; choose a data dir elsewhere (such as /var/lib/anchorage) or set ANCHORAGE_BROWSER_USER=\"\"",
                data_dir.display(),
                user.name,
                blocked.display()
            )),
            host::PrepareError::Io { what, source } => ConfigError(format!(
                "ANCHORAGE_BROWSER_USER={}: cannot {what} ({source}); set ANCHORAGE_BROWSER_USER=\"\" to run browsers as the server's user",
                user.name
            )),
        })
}

/// Makes sure the configured key exists, or on a first start makes a key;
/// returns a key that must be shown to the operator.
/// Compiles ad blocking's filter lists (off when none are set); a list that
/// cannot be used stops the start, naming it.
async fn load_adblock(
    config: &crate::config::AdblockConfig,
    data_dir: &Path,
    chromium: &Path,
) -> Result<Option<Arc<anchorage_browser::adblock::Adblock>>, StartError> {
    if config.lists.is_empty() {
        tracing::warn!("ANCHORAGE_ADBLOCK_LISTS is empty: ad blocking is off on this node");
        return Ok(None);
    }
    let (lists, suffix_list) = (config.lists.clone(), config.suffix_list.clone());
    // The browsers' extension, and the lists' ruleset (written again on a
    // reload).
    let extension_root = data_dir.join("adblock");
    let loaded = tokio::task::spawn_blocking(move || {
        anchorage_browser::adblock::Adblock::load(lists, suffix_list, extension_root)
    })
    .await
    .map_err(|error| ConfigError(format!("ANCHORAGE_ADBLOCK_LISTS: compiling the lists failed: {error}")))?;
    let adblock = loaded.map_err(|error| {
        ConfigError(format!(
            "ANCHORAGE_ADBLOCK_LISTS: {error} (install Debian's webext-ublock-origin-chromium, or set the \
             setting to lists that exist, or to nothing to turn ad blocking off)"
        ))
    })?;
    // A ruleset indexed by another Chromium build is not used.
    let build = std::fs::metadata(chromium)
        .map(|metadata| {
            let modified = metadata
                .modified()
                .ok()
                .and_then(|time| time.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |since| since.as_secs());
            format!("{} {} {modified}", chromium.display(), metadata.len())
        })
        .unwrap_or_else(|_| chromium.display().to_string());
    adblock.set_index(config.index_ahead.then(|| {
        anchorage_browser::adblock::IndexSetting {
            dir: config
                .index_dir
                .clone()
                .unwrap_or_else(|| data_dir.join("adblock-index")),
            build,
        }
    }));
    let engine = adblock.engine();
    for list in engine.lists() {
        tracing::info!(list = %list.path.display(), title = list.title.as_deref().unwrap_or(""), rules = list.rules,
            skipped = list.skipped, "filter list");
    }
    let (translated, left_out) = engine.browser_rules();
    tracing::info!(
        compile_ms = engine.compile_time().as_millis() as u64,
        translated,
        left_out,
        "ad blocking's filter lists compiled, and their network lines written as the browsers' filter's ruleset"
    );
    Ok(Some(Arc::new(adblock)))
}

/// How often the filter lists' files are checked for a change.
const ADBLOCK_RELOAD_CHECK: Duration = Duration::from_secs(30);

/// Compiles the filter lists again when their files change, until `stop`.
async fn reload_adblock(adblock: Arc<anchorage_browser::adblock::Adblock>, fleet: Arc<Fleet>, stop: CancellationToken) {
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            () = tokio::time::sleep(ADBLOCK_RELOAD_CHECK) => {}
        }
        let checking = Arc::clone(&adblock);
        match tokio::task::spawn_blocking(move || checking.reload_if_changed()).await {
            Ok(Ok(true)) => {
                tracing::info!(
                    compile_ms = adblock.engine().compile_time().as_millis() as u64,
                    "a filter list changed: compiled again"
                );
                // Browsers get the ruleset before until this one is indexed.
                fleet.begin_index();
            }
            Ok(Ok(false)) | Err(_) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "a filter list changed and cannot be used; the lists before stay in use")
            }
        }
    }
}

async fn ensure_keys(store: &dyn Store, configured: Option<&str>) -> Result<Option<String>, StartError> {
    let team = match store.team_by_name(DEFAULT_TEAM).await? {
        Some(team) => Some(team),
        None if configured.is_some() || store.team_count().await? == 0 => Some(store.create_team(DEFAULT_TEAM).await?),
        None => None,
    };
    if let Some(key) = configured {
        if store.authenticate(&hash_api_key(key)).await?.is_some() {
            return Ok(None);
        }
        let Some(team) = team else { return Ok(None) };
        return match store
            .create_api_key(team.id, "ANCHORAGE_API_KEY", &hash_api_key(key), &key_prefix(key))
            .await
        {
            Ok(_) => Ok(None),
            Err(StoreError::AlreadyExists(_)) => {
                Err(ConfigError("ANCHORAGE_API_KEY names a revoked key: choose a new value".to_owned()).into())
            }
            Err(error) => Err(error.into()),
        };
    }
    match team {
        Some(team) if store.list_api_keys().await?.is_empty() => {
            let key = generate_api_key();
            store
                .create_api_key(team.id, "first key", &hash_api_key(&key), &key_prefix(&key))
                .await?;
            Ok(Some(key))
        }
        _ => Ok(None),
    }
}

impl App {
    /// Prepares everything and binds; nothing is served until [`App::run`].
    pub async fn build(config: Config, source: &dyn Source) -> Result<Self, StartError> {
        let chromium = config.resolve_chromium(source)?;
        let store = open_store(&config).await?;
        // Absolute, so that the browsers' command lines name it unambiguously.
        let data_dir = std::fs::canonicalize(&config.data_dir).map_err(|error| {
            ConfigError(format!(
                "ANCHORAGE_DATA_DIR={}: cannot resolve it: {error}",
                config.data_dir.display()
            ))
        })?;
        let browsers_dir: PathBuf = data_dir.join("browsers");
        ensure_writable_dir(&browsers_dir, "ANCHORAGE_DATA_DIR")?;
        let run_as = prepare_browser_user(&config, &data_dir, &browsers_dir)?;
        let browser_dirs = BrowserDirs::new(browsers_dir);

        // Whatever a previous run left is gone before anything new starts.
        let reap_dirs = browser_dirs.clone();
        let reaped = tokio::task::spawn_blocking(move || anchorage_browser::reap_leftovers(&reap_dirs))
            .await
            .unwrap_or_default();
        let node = crate::cluster::nodes::node_id(&data_dir).map_err(|error| {
            StartError::Config(ConfigError(format!(
                "ANCHORAGE_DATA_DIR={}: cannot keep this node's id there: {error}",
                data_dir.display()
            )))
        })?;
        let recovered = store
            .recover_node(
                node,
                "the server stopped while this session was live; its browser was ended",
                Timestamp::now(),
            )
            .await?;
        if reaped.process_groups_killed > 0 || recovered.sessions_failed > 0 || recovered.requests_requeued > 0 {
            tracing::warn!(
                browsers_killed = reaped.process_groups_killed,
                directories_removed = reaped.directories_removed,
                sessions_failed = recovered.sessions_failed,
                requests_requeued = recovered.requests_requeued,
                "cleaned up after the previous run"
            );
        }

        let initial_key = ensure_keys(store.as_ref(), config.api_key.as_deref()).await?;
        let tokens = TokenSigner::load(store.as_ref()).await?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|source| StartError::Bind {
                address: config.listen,
                source,
            })?;
        let bound = listener.local_addr().map_err(|source| StartError::Bind {
            address: config.listen,
            source,
        })?;
        let public_url = match &config.public_url {
            Some(url) => url.clone(),
            None => derive_public_url(bound),
        };

        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let launcher = Arc::new(ChromiumLauncher::new(ChromiumSettings {
            executable: chromium.clone(),
            dirs: browser_dirs.clone(),
            ready_timeout: config.launch_timeout,
            run_as: run_as.clone(),
            sandbox: config.browser_sandbox,
            low_priority_ahead: config.pool_refill_low_priority,
            host_resolver_rules: {
                let blocking = config.block_private_networks.then(|| {
                    // The server's own names too, as clients reach it.
                    let own_host = public_url.host_str().map(str::to_owned).into_iter().collect::<Vec<_>>();
                    anchorage_core::network::blocking_rules(&own_host)
                });
                // The operator's own rules come first: Chromium takes the
                // first rule that matches a name.
                match (config.host_resolver_rules.clone(), blocking) {
                    (Some(own), Some(blocking)) => Some(format!("{own}, {blocking}")),
                    (own, blocking) => own.or(blocking),
                }
            },
        }));
        let profiles = Arc::new(ProfileFiles::new(data_dir.join("profiles"), config.max_profile_bytes));
        profiles.sweep(store.as_ref()).await?;
        let recordings = anchorage_browser::host::find_in_path("ffmpeg").map(|ffmpeg| {
            Arc::new(crate::recordings::Recordings::new(
                data_dir.join("recordings"),
                ffmpeg,
                config.recording_retention,
                node,
            ))
        });
        if config.default_recording && recordings.is_none() {
            return Err(StartError::Config(ConfigError(
                "ANCHORAGE_DEFAULT_RECORDING=true needs ffmpeg, which is not on PATH: install Debian's ffmpeg package (./scripts/serve does)".to_owned(),
            )));
        }
        if let Some(recordings) = &recordings {
            let recovered = recordings.recover(store.as_ref()).await?;
            if recovered > 0 {
                tracing::warn!(recovered, "finished recordings a stopped server left unfinished");
            }
        }
        let adblock = load_adblock(&config.adblock, &data_dir, &chromium).await?;
        let extensions_root = data_dir.join("extensions");
        crate::extensions::sweep(store.as_ref(), &extensions_root).await?;
        let metrics = Arc::new(crate::metrics::Metrics::default());
        // Only PostgreSQL can be shared by several nodes.
        let cluster: Arc<dyn crate::cluster::Cluster> = if anchorage_store::is_shared(&config.database_url) {
            Arc::new(crate::cluster::Network::new(
                node,
                tokens.node_key(),
                Arc::clone(&store) as Arc<dyn anchorage_store::NodeStore>,
                Arc::clone(&metrics),
                tasks.clone(),
            ))
        } else {
            Arc::new(crate::cluster::SingleNode::new(node))
        };
        let files = crate::files::SessionFiles {
            profiles: Some(profiles),
            recordings: recordings.clone(),
            extensions_root: Some(extensions_root),
        };
        let settings = FleetSettings {
            max_sessions: config.max_sessions,
            launch_concurrency: config.launch_concurrency,
            team_max_sessions: config.team_max_sessions,
            pool_size: config.pool_size,
            pool_refill_delay: config.pool_refill_delay,
            timeout_minute: config.timeout_minute,
            default_recording: config.default_recording,
            default_headless: config.default_headless,
            session_isolation: config.session_isolation,
            contexts_per_host: config.contexts_per_host,
            hosts_shared_by_teams: config.hosts_shared_by_teams,
            max_memory: config.max_memory,
            host_max_memory: config.host_max_memory,
        };
        let node_url = config
            .node_url
            .clone()
            .unwrap_or_else(|| public_url.clone())
            .to_string();
        // Registered before the fleet claims work: a claim holds while its
        // node's lease does.
        crate::cluster::nodes::register(store.as_ref(), node, &node_url, config.max_sessions).await?;
        let fleet = Fleet::new(
            FleetParts {
                store: Arc::clone(&store),
                queue: Arc::clone(&store) as Arc<dyn anchorage_store::QueueStore>,
                launcher,
                cluster: Arc::clone(&cluster),
                metrics: Arc::clone(&metrics),
                files: files.clone(),
                adblock: adblock.clone(),
            },
            settings,
            shutdown.clone(),
            tasks.clone(),
        );
        fleet.start().await?;
        if let Some(adblock) = &adblock {
            // The ruleset is indexed now (or found kept), before the first
            // start needs it.
            fleet.begin_index();
            tasks.spawn(reload_adblock(
                Arc::clone(adblock),
                Arc::clone(&fleet),
                shutdown.clone(),
            ));
        }
        tasks.spawn(crate::cluster::nodes::keep_lease(
            Arc::clone(&store),
            node,
            node_url,
            Arc::clone(&fleet),
            shutdown.clone(),
        ));
        let deliverer = crate::webhooks::Deliverer::new(
            Arc::clone(&store),
            node,
            Arc::clone(&metrics),
            crate::webhooks::DeliverySettings {
                retry_delays: config.webhook_retry_delays.clone(),
                timeout: config.webhook_timeout,
                block_private_networks: config.block_private_networks,
            },
        );
        tasks.spawn(Arc::clone(&deliverer).run(shutdown.clone(), tasks.clone()));
        if let Some(recordings) = recordings.clone() {
            // Finished recordings past their retention go, hour by hour.
            let (store, stop) = (Arc::clone(&store), shutdown.clone());
            tasks.spawn(async move {
                loop {
                    match recordings.sweep(store.as_ref()).await {
                        Ok(0) => {}
                        Ok(removed) => tracing::info!(removed, "recordings past their retention removed"),
                        Err(error) => tracing::warn!(%error, "could not remove old recordings"),
                    }
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_secs(3600)) => {}
                    }
                }
            });
        }
        let (code_listener, socket_problem) = match bind_code_socket(&data_dir) {
            Ok(listener) => (Some(listener), None),
            Err(error) => (None, Some(error)),
        };
        let code = crate::code::CodeRunner::new(
            &config.code,
            &data_dir,
            socket_problem,
            format!("--anchorage-runs-of={}", data_dir.display()),
            Arc::clone(&metrics),
        );
        let reaped_runs = {
            let code = Arc::clone(&code);
            tokio::task::spawn_blocking(move || code.reap_leftovers())
                .await
                .unwrap_or_default()
        };
        let cancelled_runs = store
            .cancel_executions_of(
                node,
                Timestamp::now(),
                "the server stopped while this code ran; run it again",
            )
            .await?;
        if reaped_runs > 0 || cancelled_runs > 0 {
            tracing::warn!(
                reaped_runs,
                cancelled_runs,
                "cleaned up the runs of code of the previous run"
            );
        }
        {
            let code = Arc::clone(&code);
            tokio::spawn(async move { code.prepare().await });
        }
        let summary = format!(
            "anchorage listening on {bound} (public URL {public_url}); node {node}; chromium {} as {}, sandbox {}; max sessions {}; memory for browsers {}; launch concurrency {}; pool {}; code {}; data in {}",
            chromium.display(),
            config
                .browser_user
                .as_ref()
                .map_or_else(|| "the server's user".to_owned(), |user| format!("{} (uid {})", user.name, user.uid)),
            if config.browser_sandbox { "on" } else { "off" },
            config.max_sessions,
            config
                .max_memory
                .map_or_else(|| "unlimited".to_owned(), |bytes| format!("{} MiB", bytes / (1024 * 1024))),
            config.launch_concurrency,
            config.pool_size,
            code.describe(),
            config.data_dir.display()
        );
        let state = AppState {
            browser_dirs,
            events: Arc::default(),
            deliverer,
            max_batch: config.max_batch,
            store,
            fleet,
            cluster,
            metrics,
            files,
            tokens,
            public_url,
            max_body_bytes: config.max_body_bytes,
            max_upload_bytes: config.max_upload_bytes,
            max_extension_bytes: config.max_extension_bytes,
            header_read_timeout: config.header_read_timeout,
            block_private_networks: config.block_private_networks,
            code,
            node,
            snapshots: Arc::default(),
        };
        Ok(Self {
            listener,
            code_listener,
            state,
            shutdown,
            tasks,
            initial_key,
            summary,
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        // The listener was bound in `build`, which already read its address.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// The base URL clients use.
    pub fn public_url(&self) -> &Url {
        &self.state.public_url
    }

    /// A key made on first start, to be shown once.
    pub fn initial_key(&self) -> Option<&str> {
        self.initial_key.as_deref()
    }

    /// One line saying what the server runs with.
    pub fn summary(&self) -> &str {
        &self.summary
    }

    /// Serves until `shutdown` resolves, then stops accepting, ends every
    /// browser and waits for the server's tasks.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let Self {
            listener,
            code_listener,
            state,
            shutdown: token,
            tasks,
            ..
        } = self;
        let browser_dirs = state.browser_dirs.clone();
        let header_read_timeout = state.header_read_timeout;
        let code = Arc::clone(&state.code);
        let router = crate::routes::router(state);
        if let Some(code_listener) = code_listener {
            let (router, token) = (router.clone(), token.clone());
            tasks.spawn(async move {
                let stopped = token.clone();
                let _ = serve(
                    code_listener,
                    router,
                    header_read_timeout,
                    token,
                    stopped.cancelled_owned(),
                )
                .await;
            });
        }
        let served = serve(listener, router, header_read_timeout, token.clone(), shutdown).await;
        code.stop();
        tracing::info!("shutting down: ending every session");
        token.cancel();
        tasks.close();
        let finished = tokio::time::timeout(SHUTDOWN_GRACE, tasks.wait()).await;
        browser_dirs.remove_empty_roots();
        if finished.is_err() {
            tracing::warn!(
                remaining = tasks.len(),
                "some tasks did not finish within the shutdown grace period"
            );
        }
        served
    }
}

/// Accepts connections and serves each until `shutdown` resolves or the
/// token is cancelled; then stops accepting, cancels the token (so that
/// sessions, waiting starts and event streams end and release their
/// requests) and gives open connections a moment to finish.
///
/// This is `axum::serve` with two additions: TCP_NODELAY on every
/// connection (CDP is many small messages both ways) and a deadline for a
/// request's headers, so that a slow client cannot hold a connection open.
async fn serve<L: Listener>(
    listener: L,
    router: axum::Router,
    header_read_timeout: Duration,
    stop: CancellationToken,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut builder = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
            () = stop.cancelled() => break,
        };
        let tcp = match accepted {
            Ok(tcp) => tcp,
            Err(error) => {
                // Out of descriptors, say: wait a little instead of spinning.
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        L::tune(&tcp);
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let connection = builder
            .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(tcp), service)
            .into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    // Sessions, launches, waiting starts and event streams end now, so that
    // no open request holds the shutdown up.
    stop.cancel();
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open at the end of the shutdown grace period");
    }
    Ok(())
}

/// What [`serve`] accepts connections from: TCP, and the Unix socket of
/// sandboxed runs.
trait Listener: Send {
    /// A connection.
    type Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static;
    /// The next connection.
    fn accept(&self) -> impl std::future::Future<Output = std::io::Result<Self::Io>> + Send;
    /// Sets what a new connection needs.
    fn tune(_connection: &Self::Io) {}
}

impl Listener for TcpListener {
    type Io = tokio::net::TcpStream;

    async fn accept(&self) -> std::io::Result<Self::Io> {
        TcpListener::accept(self).await.map(|(stream, _)| stream)
    }

    fn tune(connection: &Self::Io) {
        // CDP is many small messages both ways.
        if let Err(error) = connection.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
    }
}

impl Listener for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;

    async fn accept(&self) -> std::io::Result<Self::Io> {
        tokio::net::UnixListener::accept(self).await.map(|(stream, _)| stream)
    }
}

/// Listens on the socket sandboxed runs reach the API through: a dir only
/// root may change, a socket any local user may connect to (as they may to
/// the TCP port; every request still needs a key).
fn bind_code_socket(data_dir: &Path) -> Result<tokio::net::UnixListener, String> {
    use std::os::unix::fs::PermissionsExt;
    let dir = crate::code::socket_dir(data_dir);
    let path = dir.join(crate::code::SOCKET_NAME);
    let made = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711)));
    let bound = made.and_then(|()| {
        match std::fs::remove_file(&path) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
            _ => {}
        }
        let listener = tokio::net::UnixListener::bind(&path)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
        Ok(listener)
    });
    bound.map_err(|error| format!("the runs' socket {} cannot be made: {error}", path.display()))
}

fn derive_public_url(bound: SocketAddr) -> Url {
    let host = match bound.ip() {
        ip if ip.is_unspecified() => "127.0.0.1".to_owned(),
        std::net::IpAddr::V6(ip) => format!("[{ip}]"),
        std::net::IpAddr::V4(ip) => ip.to_string(),
    };
    Url::parse(&format!("http://{host}:{}/", bound.port()))
        .unwrap_or_else(|_| unreachable!("a socket address is a valid host"))
}
