//! Server configuration: typed, with a default for every key, read from the
//! environment (which wins) and an optional TOML file.
//!
//! Reading goes through a [`Source`] so that tests inject values instead of
//! changing the process environment. Every bad value is a one-line
//! [`ConfigError`] that names the setting and how to fix it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anchorage_browser::host::{self, SystemUser};
use serde::Deserialize;
use url::Url;

/// Where settings come from: a lookup by environment variable name.
pub trait Source {
    /// The value of `name`, if set.
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Environment;

impl Source for Environment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }
}

impl Source for std::collections::HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// A setting that cannot be used, said in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// The keys a `--config` TOML file may hold; each mirrors an `ANCHORAGE_*`
/// variable of the same name in upper case.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    public_url: Option<String>,
    node_url: Option<String>,
    data_dir: Option<String>,
    database_url: Option<String>,
    chromium: Option<String>,
    max_sessions: Option<u64>,
    launch_concurrency: Option<u64>,
    api_key: Option<String>,
    max_body_bytes: Option<u64>,
    max_upload_bytes: Option<u64>,
    max_profile_bytes: Option<u64>,
    max_extension_bytes: Option<u64>,
    launch_timeout_seconds: Option<u64>,
    max_batch: Option<u64>,
    team_max_sessions: Option<u64>,
    pool_size: Option<u64>,
    session_isolation: Option<String>,
    contexts_per_host: Option<u64>,
    hosts_shared_by_teams: Option<bool>,
    max_memory_mib: Option<u64>,
    host_max_memory_mib: Option<u64>,
    pool_refill_delay_ms: Option<u64>,
    pool_refill_priority: Option<String>,
    block_private_networks: Option<bool>,
    browser_user: Option<String>,
    browser_sandbox: Option<String>,
    webhook_retry_delays: Option<String>,
    default_headless: Option<bool>,
    default_recording: Option<bool>,
    recording_retention_hours: Option<u64>,
    code_runtime: Option<String>,
    node: Option<String>,
    code_sandbox: Option<String>,
    code_timeout_seconds: Option<u64>,
    code_memory_mib: Option<u64>,
    code_max_runs: Option<u64>,
    code_team_max_runs: Option<u64>,
    code_max_output_bytes: Option<u64>,
    code_warm: Option<u64>,
    code_cache: Option<String>,
    code_zygote: Option<String>,
    adblock_lists: Option<String>,
    adblock_extra_lists: Option<String>,
    host_resolver_rules: Option<String>,
    adblock_suffix_list: Option<String>,
    adblock_index_ahead: Option<String>,
    adblock_index_dir: Option<String>,
}

/// Where Debian's `webext-ublock-origin-chromium` puts the filter lists.
pub const DEBIAN_LISTS_DIR: &str = "/usr/share/chromium/extensions/ublock-origin/assets";

/// An `on`/`off` setting (default on) named `name`, as given.
fn on_off(name: &str, given: Option<String>) -> Result<bool, ConfigError> {
    match given.map(|value| value.trim().to_ascii_lowercase()).as_deref() {
        None | Some("on" | "true" | "1") => Ok(true),
        Some("off" | "false" | "0") => Ok(false),
        Some(other) => Err(ConfigError(format!(
            "{name}={other:?} is not valid: set it to on or off"
        ))),
    }
}

/// Ad blocking's filter lists (see `anchorage_browser::adblock`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdblockConfig {
    /// The list files, in order (`ANCHORAGE_ADBLOCK_LISTS`, then
    /// `ANCHORAGE_ADBLOCK_EXTRA_LISTS`); none: ad blocking is off on this
    /// node.
    pub lists: Vec<PathBuf>,
    /// The Public Suffix List (`ANCHORAGE_ADBLOCK_SUFFIX_LIST`).
    pub suffix_list: Option<PathBuf>,
    /// Whether a browser indexes the lists' network rules for the browsers'
    /// filter, once per compile (`ANCHORAGE_ADBLOCK_INDEX_AHEAD`); off, no
    /// request is blocked (elements are still hidden).
    pub index_ahead: bool,
    /// Where indexed rulesets are kept across restarts
    /// (`ANCHORAGE_ADBLOCK_INDEX_DIR`; `None`: `adblock-index` in the data
    /// dir).
    pub index_dir: Option<PathBuf>,
}

impl AdblockConfig {
    /// EasyList and EasyPrivacy as Debian ships them.
    pub fn debian_default() -> Self {
        let dir = Path::new(DEBIAN_LISTS_DIR);
        Self {
            lists: vec![
                dir.join("thirdparties/easylist/easylist.txt"),
                dir.join("thirdparties/easylist/easyprivacy.txt"),
            ],
            suffix_list: Some(dir.join("thirdparties/publicsuffix.org/list/effective_tld_names.dat")),
            index_ahead: true,
            index_dir: None,
        }
    }
}

/// Paths separated by commas (blanks around them ignored).
fn path_list(text: &str) -> Vec<PathBuf> {
    text.split(',')
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .map(PathBuf::from)
        .collect()
}

/// How users' code runs (`execute_code`, code tasks): see `crate::code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeConfig {
    /// The runtime dir: `runner.cjs` and its `node_modules`
    /// (`ANCHORAGE_CODE_RUNTIME`); found by `crate::code` when not set.
    pub runtime_dir: Option<PathBuf>,
    /// The Node executable (`ANCHORAGE_NODE`; `node` on `PATH`).
    pub node: PathBuf,
    /// Whether runs are isolated (`ANCHORAGE_CODE_SANDBOX`: on when the
    /// server is root; it needs root).
    pub sandbox: bool,
    /// Longest a run may take (`ANCHORAGE_CODE_TIMEOUT_SECONDS`).
    pub timeout: Duration,
    /// Memory one run may use (`ANCHORAGE_CODE_MEMORY_MIB`), bytes.
    pub memory_bytes: u64,
    /// Runs at once on this node (`ANCHORAGE_CODE_MAX_RUNS`).
    pub max_runs: usize,
    /// Runs at once of one team on this node (`ANCHORAGE_CODE_TEAM_MAX_RUNS`).
    pub team_max_runs: usize,
    /// Largest result a run may give (`ANCHORAGE_CODE_MAX_OUTPUT_BYTES`).
    pub max_output_bytes: usize,
    /// Runners kept started and waiting for a job (`ANCHORAGE_CODE_WARM`).
    pub warm: usize,
    /// Whether runs load their modules from a V8 code cache built at start
    /// (`ANCHORAGE_CODE_CACHE`): faster starts, more memory per run.
    pub cache: bool,
    /// Whether runs are forked from a zygote that loaded the runtime once
    /// (`ANCHORAGE_CODE_ZYGOTE`, on by default): a run starts in a few
    /// milliseconds instead of loading Playwright.
    pub zygote: bool,
}

/// Everything the server needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on (`ANCHORAGE_LISTEN`).
    pub listen: SocketAddr,
    /// Base URL clients reach us at (`ANCHORAGE_PUBLIC_URL`); derived from
    /// the bound address when unset.
    pub public_url: Option<Url>,
    /// Where the other nodes of a shared database reach this one
    /// (`ANCHORAGE_NODE_URL`; the public URL when not set).
    pub node_url: Option<Url>,
    /// Where the database and browser dirs live (`ANCHORAGE_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The database (`ANCHORAGE_DATABASE_URL`).
    pub database_url: String,
    /// The Chromium executable, if given (`ANCHORAGE_CHROMIUM`); otherwise
    /// looked up on `PATH` when serving.
    pub chromium: Option<PathBuf>,
    /// Running browsers at most (`ANCHORAGE_MAX_SESSIONS`).
    pub max_sessions: usize,
    /// Browsers launching at once at most (`ANCHORAGE_LAUNCH_CONCURRENCY`).
    pub launch_concurrency: usize,
    /// A key to ensure for the default team (`ANCHORAGE_API_KEY`).
    pub api_key: Option<String>,
    /// Largest request body (`ANCHORAGE_MAX_BODY_BYTES`).
    pub max_body_bytes: usize,
    /// Largest file one upload may carry (`ANCHORAGE_MAX_UPLOAD_BYTES`).
    pub max_upload_bytes: u64,
    /// Largest saved profile (`ANCHORAGE_MAX_PROFILE_BYTES`): a save above
    /// it fails and the profile keeps its previous copy.
    pub max_profile_bytes: u64,
    /// Largest extension, zipped and unpacked (`ANCHORAGE_MAX_EXTENSION_BYTES`).
    pub max_extension_bytes: u64,
    /// How long a browser may take to come up (`ANCHORAGE_LAUNCH_TIMEOUT_SECONDS`).
    pub launch_timeout: Duration,
    /// Most sessions one batch may ask for (`ANCHORAGE_MAX_BATCH`).
    pub max_batch: usize,
    /// Running and launching browsers of one team at most
    /// (`ANCHORAGE_TEAM_MAX_SESSIONS`); `None` for no limit but the server's.
    pub team_max_sessions: Option<usize>,
    /// Browsers launched ahead for default starts (`ANCHORAGE_POOL_SIZE`).
    pub pool_size: usize,
    /// How a start that does not say is isolated
    /// (`ANCHORAGE_SESSION_ISOLATION`: `browser`, the default, or `context`).
    pub session_isolation: anchorage_core::Isolation,
    /// Context sessions one host browser serves at most
    /// (`ANCHORAGE_CONTEXTS_PER_HOST`).
    pub contexts_per_host: usize,
    /// Whether one host browser may serve several teams' context sessions
    /// (`ANCHORAGE_HOSTS_SHARED_BY_TEAMS`; default: a host serves one team).
    pub hosts_shared_by_teams: bool,
    /// Memory this node's browsers may use together, in bytes
    /// (`ANCHORAGE_MAX_MEMORY_MIB`; `None` when set to 0).
    pub max_memory: Option<u64>,
    /// Memory past which a host browser takes no more context sessions, in
    /// bytes (`ANCHORAGE_HOST_MAX_MEMORY_MIB`; `None` when set to 0).
    pub host_max_memory: Option<u64>,
    /// How long pool refills wait after a handout
    /// (`ANCHORAGE_POOL_REFILL_DELAY_MS`).
    pub pool_refill_delay: Duration,
    /// Whether pool refills launch at the lowest CPU priority until handed
    /// out (`ANCHORAGE_POOL_REFILL_PRIORITY=low`, the default) or at the
    /// priority of browsers in use (`normal`).
    pub pool_refill_low_priority: bool,
    /// The length of one minute of `max_duration` and `idle_timeout`. Always
    /// sixty seconds when read from settings; tests that exercise timeouts
    /// shorten it instead of waiting minutes.
    pub timeout_minute: Duration,
    /// Whether sessions are kept from private addresses and the server's own
    /// host (`ANCHORAGE_BLOCK_PRIVATE_NETWORKS`).
    pub block_private_networks: bool,
    /// The user browsers run as (`ANCHORAGE_BROWSER_USER`): `nobody` by
    /// default when the server runs as root, else the server's own user.
    pub browser_user: Option<SystemUser>,
    /// Whether Chromium's sandbox is on (`ANCHORAGE_BROWSER_SANDBOX`).
    pub browser_sandbox: bool,
    /// How long a client may take to send a request's headers before its
    /// connection is closed (slow clients must not hold connections open).
    /// Thirty seconds when read from settings; tests shorten it.
    pub header_read_timeout: Duration,
    /// The waits before the second, third, … attempt of a webhook delivery
    /// (`ANCHORAGE_WEBHOOK_RETRY_DELAYS`); their count plus one is the
    /// number of attempts.
    pub webhook_retry_delays: Vec<Duration>,
    /// How long a receiver has to answer a delivery.
    pub webhook_timeout: Duration,
    /// Ad blocking's filter lists.
    pub adblock: AdblockConfig,
    /// Chromium `--host-resolver-rules` every browser gets
    /// (`ANCHORAGE_HOST_RESOLVER_RULES`), e.g. to map names to hosts of a
    /// private network; joined with those of `block_private_networks`.
    pub host_resolver_rules: Option<String>,
    /// Whether a start that does not say runs headless
    /// (`ANCHORAGE_DEFAULT_HEADLESS`; upstream's default is headful).
    pub default_headless: bool,
    /// Whether a start that does not say is recorded
    /// (`ANCHORAGE_DEFAULT_RECORDING`; upstream's default is on).
    pub default_recording: bool,
    /// How long finished recordings are kept.
    pub recording_retention: Duration,
    /// How users' code runs.
    pub code: CodeConfig,
}

/// The default webhook retry schedule: six attempts over about 2.6 hours.
pub const DEFAULT_WEBHOOK_RETRY_DELAYS: &str = "10s,1m,5m,30m,2h";

/// `10s,1m,5m`: waits in `ms`, `s`, `m` or `h`, each at most a day.
fn parse_delays(name: &str, text: &str) -> Result<Vec<Duration>, ConfigError> {
    let wrong = || {
        ConfigError(format!(
            "{name}={text:?} is not valid: give 1 to 20 comma-separated waits such as 10s,1m,5m,30m,2h (units ms, s, m, h; each at most 24h)"
        ))
    };
    let delays = text
        .split(',')
        .map(|item| {
            let item = item.trim();
            let digits = item.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            let value: u64 = digits.parse().map_err(|_| wrong())?;
            let millis = match &item[digits.len()..] {
                "ms" => Some(value),
                "s" => value.checked_mul(1000),
                "m" => value.checked_mul(60_000),
                "h" => value.checked_mul(3_600_000),
                _ => None,
            }
            .filter(|millis| *millis <= 86_400_000)
            .ok_or_else(wrong)?;
            Ok(Duration::from_millis(millis))
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    if delays.is_empty() || delays.len() > 20 {
        return Err(wrong());
    }
    Ok(delays)
}

/// The default of `ANCHORAGE_POOL_REFILL_DELAY_MS` (see BENCHMARKS.md).
const DEFAULT_POOL_REFILL_DELAY: Duration = Duration::ZERO;
/// Context sessions per host browser when the setting does not say: a host
/// of 20 pages stays far from what one Chromium process handles well, and
/// a host that dies takes few sessions with it (see BENCHMARKS.md).
const DEFAULT_CONTEXTS_PER_HOST: usize = 20;

/// The core count of this machine.
pub fn core_count() -> usize {
    std::thread::available_parallelism().map(usize::from).unwrap_or(1)
}

/// Total memory in MiB, from `/proc/meminfo`.
fn total_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

/// The default for `ANCHORAGE_MAX_SESSIONS`. With browser sessions: an idle
/// headless Chromium with a small page takes about 135 MiB, so one per
/// 300 MiB of memory (room for pages to grow), and at most 16 per core,
/// since every browser also costs CPU to launch and run. With context
/// sessions: one per 40 MiB (a context with a small page takes about
/// 34 MiB), with no cap per core (an idle context costs no CPU); the memory
/// limit (`ANCHORAGE_MAX_MEMORY_MIB`) stops starts before pages that grew
/// exhaust the machine.
pub fn default_max_sessions(isolation: anchorage_core::Isolation) -> usize {
    match isolation {
        anchorage_core::Isolation::Browser => {
            let by_memory = total_memory_mib().map_or(8, |mib| (mib / 300) as usize);
            by_memory.min(core_count() * 16).max(1)
        }
        anchorage_core::Isolation::Context => total_memory_mib().map_or(16, |mib| (mib / 40) as usize).max(1),
    }
}

/// The default for `ANCHORAGE_MAX_MEMORY_MIB`: 75% of the machine's memory.
/// The browsers' PSS leaves out what the kernel keeps for them (6–12% more,
/// measured), so this is about 85% of the machine; the fleet's own floor (a
/// tenth of the memory stays available) guards the rest. (At 85%, 169
/// browsers on 24 GiB brought the kernel's OOM killer out once.) `None`
/// where the total cannot be read.
pub fn default_max_memory_mib() -> Option<u64> {
    Some((total_memory_mib()? * 75 / 100).max(256))
}

/// The default for `ANCHORAGE_HOST_MAX_MEMORY_MIB`: a host of 20 context
/// sessions with small pages takes about 1.3 GiB; one three times that
/// large holds heavy pages or has grown over many sessions, and is better
/// replaced by a fresh one as its sessions end.
const DEFAULT_HOST_MAX_MEMORY_MIB: u64 = 4096;

/// `url` with its password, if it has one, replaced by `***`, for messages
/// and logs.
pub fn redacted_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => "(not a URL)".to_owned(),
    }
}

/// An `http` or `https` URL with a host, or an error naming the setting.
fn http_url(name: &str, value: &str, example: &str) -> Result<Url, ConfigError> {
    Url::parse(value)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.host().is_some())
        .ok_or_else(|| {
            ConfigError(format!(
                "{name}={value:?} is not valid: give an http or https URL such as {example}"
            ))
        })
}

fn parse_number(name: &str, text: &str, low: u64, high: u64) -> Result<u64, ConfigError> {
    match text.trim().parse::<u64>() {
        Ok(value) if (low..=high).contains(&value) => Ok(value),
        _ => Err(ConfigError(format!(
            "{name}={text:?} is not valid: set it to a whole number between {low} and {high}"
        ))),
    }
}

impl Config {
    /// Reads the configuration: `source` wins over the file at `file`.
    pub fn load(source: &dyn Source, file: Option<&Path>) -> Result<Self, ConfigError> {
        let from_file = match file {
            None => FileConfig::default(),
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|error| ConfigError(format!("--config {}: cannot read it: {error}", path.display())))?;
                toml::from_str(&text).map_err(|error| {
                    let message = error.message().replace('\n', " ");
                    ConfigError(format!("--config {}: {message}", path.display()))
                })?
            }
        };
        let text = |name: &str, file_value: Option<String>| source.get(name).or(file_value);
        let number = |name: &str, file_value: Option<u64>, low: u64, high: u64| -> Result<Option<u64>, ConfigError> {
            match source.get(name) {
                Some(value) => parse_number(name, &value, low, high).map(Some),
                None => match file_value {
                    Some(value) => parse_number(name, &value.to_string(), low, high).map(Some),
                    None => Ok(None),
                },
            }
        };

        let listen_text = text("ANCHORAGE_LISTEN", from_file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let listen: SocketAddr = listen_text.parse().map_err(|_| {
            ConfigError(format!(
                "ANCHORAGE_LISTEN={listen_text:?} is not valid: give an address and port such as 127.0.0.1:8080"
            ))
        })?;

        let public_url = text("ANCHORAGE_PUBLIC_URL", from_file.public_url)
            .map(|value| http_url("ANCHORAGE_PUBLIC_URL", &value, "http://browsers.example:8080"))
            .transpose()?;

        let node_url = text("ANCHORAGE_NODE_URL", from_file.node_url)
            .map(|value| http_url("ANCHORAGE_NODE_URL", &value, "http://10.0.0.5:8080"))
            .transpose()?;

        let data_dir =
            PathBuf::from(text("ANCHORAGE_DATA_DIR", from_file.data_dir).unwrap_or_else(|| "./data".to_owned()));
        let database_url = text("ANCHORAGE_DATABASE_URL", from_file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("anchorage.db").display()));
        let postgres = database_url.starts_with("postgres://") || database_url.starts_with("postgresql://");
        if !database_url.starts_with("sqlite:") && !postgres {
            return Err(ConfigError(format!(
                "ANCHORAGE_DATABASE_URL={:?} is not supported: use sqlite://PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE",
                redacted_url(&database_url)
            )));
        }
        let chromium = text("ANCHORAGE_CHROMIUM", from_file.chromium).map(PathBuf::from);
        let launch_concurrency = number("ANCHORAGE_LAUNCH_CONCURRENCY", from_file.launch_concurrency, 1, 256)?
            .map_or_else(core_count, |value| value as usize);
        let api_key = text("ANCHORAGE_API_KEY", from_file.api_key);
        if let Some(key) = &api_key {
            if key.len() < 8
                || key.len() > 256
                || key
                    .chars()
                    .any(|character| character.is_whitespace() || character.is_control())
            {
                return Err(ConfigError(
                    "ANCHORAGE_API_KEY is not valid: use 8 to 256 characters without spaces".to_owned(),
                ));
            }
        }
        let max_upload_bytes = number(
            "ANCHORAGE_MAX_UPLOAD_BYTES",
            from_file.max_upload_bytes,
            1,
            16 * 1024 * 1024 * 1024,
        )?
        .unwrap_or(100 * 1024 * 1024);
        let max_profile_bytes = number(
            "ANCHORAGE_MAX_PROFILE_BYTES",
            from_file.max_profile_bytes,
            1024 * 1024,
            64 * 1024 * 1024 * 1024,
        )?
        .unwrap_or(1024 * 1024 * 1024);
        let max_extension_bytes = number(
            "ANCHORAGE_MAX_EXTENSION_BYTES",
            from_file.max_extension_bytes,
            64 * 1024,
            4 * 1024 * 1024 * 1024,
        )?
        .unwrap_or(50 * 1024 * 1024);
        let max_body_bytes = number(
            "ANCHORAGE_MAX_BODY_BYTES",
            from_file.max_body_bytes,
            1024,
            64 * 1024 * 1024,
        )?
        .map_or(1024 * 1024, |value| value as usize);
        let launch_timeout = number(
            "ANCHORAGE_LAUNCH_TIMEOUT_SECONDS",
            from_file.launch_timeout_seconds,
            1,
            600,
        )?
        .map_or(Duration::from_secs(30), Duration::from_secs);
        let max_batch =
            number("ANCHORAGE_MAX_BATCH", from_file.max_batch, 1, 5000)?.map_or(1000, |value| value as usize);
        let team_max_sessions =
            number("ANCHORAGE_TEAM_MAX_SESSIONS", from_file.team_max_sessions, 1, 10_000)?.map(|value| value as usize);

        let boolean = |name: &str, file_value: Option<bool>, default: bool| -> Result<bool, ConfigError> {
            match source.get(name) {
                None => Ok(file_value.unwrap_or(default)),
                Some(text) => match text.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" => Ok(true),
                    "0" | "false" | "no" | "off" | "" => Ok(false),
                    _ => Err(ConfigError(format!(
                        "{name}={text:?} is not valid: set it to true or false"
                    ))),
                },
            }
        };
        let block_private_networks = boolean(
            "ANCHORAGE_BLOCK_PRIVATE_NETWORKS",
            from_file.block_private_networks,
            false,
        )?;
        let default_headless = boolean("ANCHORAGE_DEFAULT_HEADLESS", from_file.default_headless, true)?;
        let default_recording = boolean("ANCHORAGE_DEFAULT_RECORDING", from_file.default_recording, false)?;
        let recording_retention = number(
            "ANCHORAGE_RECORDING_RETENTION_HOURS",
            from_file.recording_retention_hours,
            1,
            24 * 3650,
        )?
        .map_or(Duration::from_secs(168 * 3600), |hours| {
            Duration::from_secs(hours * 3600)
        });
        let server_is_root = host::effective_uid() == Some(0);
        let browser_user = match text("ANCHORAGE_BROWSER_USER", from_file.browser_user) {
            Some(name) if name.trim().is_empty() => None,
            Some(name) => Some(SystemUser::look_up(name.trim()).ok_or_else(|| {
                ConfigError(format!(
                    "ANCHORAGE_BROWSER_USER={name:?} is not a user of this machine: give a name or uid from /etc/passwd, or \"\" to run browsers as the server's user"
                ))
            })?),
            None if server_is_root => SystemUser::look_up("nobody"),
            None => None,
        };
        let browsers_are_root = match &browser_user {
            Some(user) => user.uid == 0,
            None => server_is_root,
        };
        let browser_sandbox = match text("ANCHORAGE_BROWSER_SANDBOX", from_file.browser_sandbox)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("auto") => !browsers_are_root && host::user_namespaces_allowed(),
            Some("on" | "true" | "1") => {
                if browsers_are_root {
                    return Err(ConfigError(
                        "ANCHORAGE_BROWSER_SANDBOX=on needs browsers that do not run as root: set ANCHORAGE_BROWSER_USER".to_owned(),
                    ));
                }
                true
            }
            Some("off" | "false" | "0") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "ANCHORAGE_BROWSER_SANDBOX={other:?} is not valid: set it to auto, on or off"
                )))
            }
        };
        let pool_size = number("ANCHORAGE_POOL_SIZE", from_file.pool_size, 0, 1000)?.map_or(2, |value| value as usize);
        let session_isolation = match text("ANCHORAGE_SESSION_ISOLATION", from_file.session_isolation) {
            None => anchorage_core::Isolation::Browser,
            Some(value) => anchorage_core::Isolation::parse(&value).ok_or_else(|| {
                ConfigError(format!(
                    "ANCHORAGE_SESSION_ISOLATION={value:?} is not valid: set it to browser or context"
                ))
            })?,
        };
        let max_sessions = number("ANCHORAGE_MAX_SESSIONS", from_file.max_sessions, 1, 10_000)?
            .map_or_else(|| default_max_sessions(session_isolation), |value| value as usize);
        const MIB: u64 = 1024 * 1024;
        let max_memory = match number("ANCHORAGE_MAX_MEMORY_MIB", from_file.max_memory_mib, 0, 1 << 30)? {
            Some(0) => None,
            Some(mib) => Some(mib * MIB),
            None => default_max_memory_mib().map(|mib| mib * MIB),
        };
        let host_max_memory = match number(
            "ANCHORAGE_HOST_MAX_MEMORY_MIB",
            from_file.host_max_memory_mib,
            0,
            1 << 30,
        )? {
            Some(0) => None,
            Some(mib) => Some(mib * MIB),
            None => Some(DEFAULT_HOST_MAX_MEMORY_MIB * MIB),
        };
        let contexts_per_host = number("ANCHORAGE_CONTEXTS_PER_HOST", from_file.contexts_per_host, 1, 1000)?
            .map_or(DEFAULT_CONTEXTS_PER_HOST, |value| value as usize);
        let hosts_shared_by_teams = boolean(
            "ANCHORAGE_HOSTS_SHARED_BY_TEAMS",
            from_file.hosts_shared_by_teams,
            false,
        )?;
        let pool_refill_delay = number(
            "ANCHORAGE_POOL_REFILL_DELAY_MS",
            from_file.pool_refill_delay_ms,
            0,
            60_000,
        )?
        .map_or(DEFAULT_POOL_REFILL_DELAY, Duration::from_millis);
        let pool_refill_low_priority = match text("ANCHORAGE_POOL_REFILL_PRIORITY", from_file.pool_refill_priority)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("low") => true,
            Some("normal") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "ANCHORAGE_POOL_REFILL_PRIORITY={other:?} is not valid: set it to low or normal"
                )))
            }
        };

        let code_sandbox = match text("ANCHORAGE_CODE_SANDBOX", from_file.code_sandbox)
            .map(|value| value.trim().to_ascii_lowercase())
            .as_deref()
        {
            None | Some("auto") => server_is_root,
            Some("on" | "true" | "1") => {
                if !server_is_root {
                    return Err(ConfigError(
                        "ANCHORAGE_CODE_SANDBOX=on needs a server that runs as root (it gives each run a user and namespaces of its own); run as root, or set it to off".to_owned(),
                    ));
                }
                true
            }
            Some("off" | "false" | "0") => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "ANCHORAGE_CODE_SANDBOX={other:?} is not valid: set it to auto, on or off"
                )))
            }
        };
        let code_max_runs = number("ANCHORAGE_CODE_MAX_RUNS", from_file.code_max_runs, 1, 1000)?
            .map_or_else(|| (core_count() * 2).max(2), |value| value as usize);
        let code = CodeConfig {
            runtime_dir: text("ANCHORAGE_CODE_RUNTIME", from_file.code_runtime).map(PathBuf::from),
            node: PathBuf::from(text("ANCHORAGE_NODE", from_file.node).unwrap_or_else(|| "node".to_owned())),
            sandbox: code_sandbox,
            timeout: Duration::from_secs(
                number(
                    "ANCHORAGE_CODE_TIMEOUT_SECONDS",
                    from_file.code_timeout_seconds,
                    1,
                    86_400,
                )?
                .unwrap_or(300),
            ),
            memory_bytes: number("ANCHORAGE_CODE_MEMORY_MIB", from_file.code_memory_mib, 128, 1 << 20)?.unwrap_or(1024)
                * MIB,
            max_runs: code_max_runs,
            team_max_runs: number("ANCHORAGE_CODE_TEAM_MAX_RUNS", from_file.code_team_max_runs, 1, 1000)?
                .map_or(code_max_runs, |value| value as usize),
            max_output_bytes: number(
                "ANCHORAGE_CODE_MAX_OUTPUT_BYTES",
                from_file.code_max_output_bytes,
                1024,
                64 * MIB,
            )?
            .map_or(4 * MIB as usize, |value| value as usize),
            warm: number("ANCHORAGE_CODE_WARM", from_file.code_warm, 0, 64)?.map_or(1, |value| value as usize),
            cache: on_off(
                "ANCHORAGE_CODE_CACHE",
                text("ANCHORAGE_CODE_CACHE", from_file.code_cache),
            )?,
            zygote: on_off(
                "ANCHORAGE_CODE_ZYGOTE",
                text("ANCHORAGE_CODE_ZYGOTE", from_file.code_zygote),
            )?,
        };

        let webhook_retry_delays = parse_delays(
            "ANCHORAGE_WEBHOOK_RETRY_DELAYS",
            &text("ANCHORAGE_WEBHOOK_RETRY_DELAYS", from_file.webhook_retry_delays)
                .unwrap_or_else(|| DEFAULT_WEBHOOK_RETRY_DELAYS.to_owned()),
        )?;

        let debian = AdblockConfig::debian_default();
        let mut adblock_lists =
            text("ANCHORAGE_ADBLOCK_LISTS", from_file.adblock_lists).map_or(debian.lists, |text| path_list(&text));
        adblock_lists.extend(
            text("ANCHORAGE_ADBLOCK_EXTRA_LISTS", from_file.adblock_extra_lists)
                .map(|text| path_list(&text))
                .unwrap_or_default(),
        );
        let adblock = AdblockConfig {
            index_ahead: on_off(
                "ANCHORAGE_ADBLOCK_INDEX_AHEAD",
                text("ANCHORAGE_ADBLOCK_INDEX_AHEAD", from_file.adblock_index_ahead),
            )?,
            index_dir: text("ANCHORAGE_ADBLOCK_INDEX_DIR", from_file.adblock_index_dir).map(PathBuf::from),
            lists: adblock_lists,
            suffix_list: text("ANCHORAGE_ADBLOCK_SUFFIX_LIST", from_file.adblock_suffix_list)
                .map(PathBuf::from)
                .or(debian.suffix_list),
        };

        Ok(Self {
            listen,
            public_url,
            node_url,
            data_dir,
            database_url,
            chromium,
            max_sessions,
            launch_concurrency,
            api_key,
            max_body_bytes,
            max_upload_bytes,
            max_profile_bytes,
            max_extension_bytes,
            launch_timeout,
            max_batch,
            team_max_sessions,
            pool_size,
            session_isolation,
            contexts_per_host,
            hosts_shared_by_teams,
            max_memory,
            host_max_memory,
            pool_refill_delay,
            pool_refill_low_priority,
            timeout_minute: Duration::from_secs(60),
            block_private_networks,
            browser_user,
            browser_sandbox,
            header_read_timeout: Duration::from_secs(30),
            webhook_retry_delays,
            webhook_timeout: Duration::from_secs(10),
            default_headless,
            default_recording,
            recording_retention,
            code,
            adblock,
            host_resolver_rules: text("ANCHORAGE_HOST_RESOLVER_RULES", from_file.host_resolver_rules)
                .map(|rules| rules.trim().to_owned())
                .filter(|rules| !rules.is_empty()),
        })
    }

    /// The Chromium to run: the configured one, or the first of `chromium`,
    /// `chromium-browser`, `google-chrome` on `PATH` (the binary, when that
    /// is a distribution's launcher script; see `anchorage_browser::host`).
    pub fn resolve_chromium(&self, source: &dyn Source) -> Result<PathBuf, ConfigError> {
        if let Some(path) = &self.chromium {
            return if host::is_executable(path) {
                Ok(path.clone())
            } else {
                Err(ConfigError(format!(
                    "ANCHORAGE_CHROMIUM={} is not an executable file: point it at Chromium, or install it with `apt-get install chromium`",
                    path.display()
                )))
            };
        }
        host::find_chromium(&source.get("PATH").unwrap_or_default()).ok_or_else(|| {
            ConfigError(
                "no Chromium found on PATH (chromium, chromium-browser, google-chrome): install it with `apt-get install chromium` or set ANCHORAGE_CHROMIUM".to_owned(),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn source(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn defaults_need_nothing() {
        let config = Config::load(&source(&[]), None).expect("defaults");
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.data_dir, PathBuf::from("./data"));
        assert!(config.database_url.starts_with("sqlite://./data/"));
        assert!(config.max_sessions >= 1);
        assert!(config.launch_concurrency >= 1);
        let minutes: Vec<u64> = config.webhook_retry_delays.iter().map(|wait| wait.as_secs()).collect();
        assert_eq!(minutes, [10, 60, 300, 1800, 7200]);
        let quick = Config::load(&source(&[("ANCHORAGE_WEBHOOK_RETRY_DELAYS", "100ms, 1s")]), None).expect("load");
        assert_eq!(
            quick.webhook_retry_delays,
            [Duration::from_millis(100), Duration::from_secs(1)]
        );
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("ANCHORAGE_LISTEN", "nowhere"),
            ("ANCHORAGE_MAX_SESSIONS", "0"),
            ("ANCHORAGE_MAX_SESSIONS", "many"),
            ("ANCHORAGE_PUBLIC_URL", "ftp://x"),
            ("ANCHORAGE_NODE_URL", "somewhere"),
            ("ANCHORAGE_DATABASE_URL", "mysql://x"),
            ("ANCHORAGE_API_KEY", "short"),
            ("ANCHORAGE_MAX_BATCH", "5001"),
            ("ANCHORAGE_TEAM_MAX_SESSIONS", "0"),
            ("ANCHORAGE_WEBHOOK_RETRY_DELAYS", "soon"),
            ("ANCHORAGE_WEBHOOK_RETRY_DELAYS", "10s,,1m"),
            ("ANCHORAGE_WEBHOOK_RETRY_DELAYS", "25h"),
            ("ANCHORAGE_DEFAULT_RECORDING", "sometimes"),
            ("ANCHORAGE_RECORDING_RETENTION_HOURS", "0"),
        ] {
            let error = Config::load(&source(&[(name, value)]), None).expect_err(name);
            assert!(error.0.starts_with(name), "{error}");
            assert!(!error.0.contains('\n'));
        }
    }

    #[test]
    fn postgres_urls_are_taken_and_a_refused_url_never_shows_its_password() {
        for url in ["postgres://a:b@db:5432/anchorage", "postgresql://db/anchorage"] {
            let config = Config::load(&source(&[("ANCHORAGE_DATABASE_URL", url)]), None).expect(url);
            assert_eq!(config.database_url, url);
        }
        let error = Config::load(
            &source(&[("ANCHORAGE_DATABASE_URL", "mysql://user:hunter2@db/anchorage")]),
            None,
        )
        .expect_err("mysql");
        assert!(!error.0.contains("hunter2"), "{error}");
        assert!(error.0.contains("mysql://user:***@db/anchorage"), "{error}");
    }

    #[test]
    fn environment_wins_over_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("anchorage.toml");
        std::fs::write(&file, "listen = \"127.0.0.1:9000\"\nmax_sessions = 3\n").expect("write");
        let config = Config::load(&source(&[("ANCHORAGE_MAX_SESSIONS", "5")]), Some(&file)).expect("load");
        assert_eq!(config.listen.port(), 9000);
        assert_eq!(config.max_sessions, 5);
        std::fs::write(&file, "colour = 1\n").expect("write");
        let error = Config::load(&source(&[]), Some(&file)).expect_err("unknown key");
        assert!(error.0.contains("colour"), "{error}");
    }

    #[test]
    fn a_missing_chromium_says_how_to_install_it() {
        let config = Config::load(&source(&[("ANCHORAGE_CHROMIUM", "/nonexistent")]), None).expect("load");
        let error = config.resolve_chromium(&source(&[])).expect_err("missing");
        assert!(error.0.contains("apt-get install chromium"));
        let config = Config::load(&source(&[]), None).expect("load");
        assert!(config.resolve_chromium(&source(&[("PATH", "/nonexistent")])).is_err());
    }
}
