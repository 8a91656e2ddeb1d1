//! The `anchorage` binary: parses arguments, sets up logging, and calls into
//! `anchorage-server` (`serve`, `keys`) or the HTTP client of [`client`]
//! (`batch`, `session`).

mod client;

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anchorage_server::{App, Config, Environment};
use clap::{Args, Parser, Subcommand};

/// A self-hosted browser fleet server that speaks the AnchorBrowser API.
#[derive(Debug, Parser)]
#[command(name = "anchorage", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// The server's settings file.
#[derive(Debug, Args)]
struct Settings {
    /// A TOML file of settings (environment variables win over it).
    #[arg(long, value_name = "FILE", global = true)]
    config: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        #[command(flatten)]
        settings: Settings,
    },
    /// Manage API keys (works on the database directly).
    Keys {
        #[command(flatten)]
        settings: Settings,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// List the nodes that share the database: state, capacity, sessions
    /// (works on the database directly).
    Nodes {
        #[command(flatten)]
        settings: Settings,
    },
    /// Create, watch, cancel, delete and retry batches on a running server.
    Batch {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::BatchCommand,
    },
    /// Start, list and end sessions on a running server.
    Session {
        #[command(flatten)]
        connection: client::Connection,
        #[command(subcommand)]
        command: client::SessionCommand,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Create a key for a team (made if missing); prints the key alone.
    Create {
        /// The team's name.
        #[arg(long)]
        team: String,
        /// A name for the key, shown in listings.
        #[arg(long, default_value = "cli")]
        name: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by its id or its prefix.
    Revoke {
        /// The id or prefix shown by `keys list`.
        key: String,
    },
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("ANCHORAGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("ANCHORAGE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// Resolves on SIGTERM or ctrl-c.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = App::build(config, &Environment).await?;
    tracing::info!("{}", app.summary());
    if let Some(key) = app.initial_key() {
        let base = app.public_url().as_str().trim_end_matches('/').to_owned();
        // A closed stderr must not stop the server: the write may fail.
        let _ = writeln!(
            std::io::stderr(),
            "\nFirst start: created the team \"default\" and this API key (shown once, stored only hashed):\n\n    {key}\n\n\
             Try it:\n    curl -s -X POST {base}/v1/sessions -H 'anchor-api-key: {key}' -H 'content-type: application/json' -d '{{}}'\n"
        );
    }
    app.run(shutdown_signal()).await?;
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { settings } => serve(Config::load(&Environment, settings.config.as_deref())?).await,
        Command::Keys { settings, command } => {
            let config = Config::load(&Environment, settings.config.as_deref())?;
            keys(&config, command).await
        }
        Command::Nodes { settings } => {
            let config = Config::load(&Environment, settings.config.as_deref())?;
            nodes(&config).await
        }
        Command::Batch { connection, command } => client::batch(connection, command).await,
        Command::Session { connection, command } => client::session(connection, command).await,
    }
}

async fn keys(config: &Config, command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { team, name } => {
            println!("{}", anchorage_server::keys::create(config, &team, &name).await?);
            Ok(())
        }
        KeysCommand::List => {
            println!(
                "{:<38} {:<14} {:<20} {:<20} {:<26} revoked",
                "id", "prefix", "team", "name", "created"
            );
            for key in anchorage_server::keys::list(config).await? {
                let revoked = key.revoked_at.map_or_else(|| "-".to_owned(), |at| at.to_string());
                println!(
                    "{:<38} {:<14} {:<20} {:<20} {:<26} {revoked}",
                    key.id.to_string(),
                    key.prefix,
                    key.team_name,
                    key.name,
                    key.created_at.to_string()
                );
            }
            Ok(())
        }
        KeysCommand::Revoke { key } => {
            match anchorage_server::keys::revoke(config, &key).await? {
                0 => anyhow::bail!("no live key has the id or prefix {key:?}"),
                count => eprintln!("revoked {count} key(s)"),
            }
            Ok(())
        }
    }
}

async fn nodes(config: &Config) -> anyhow::Result<()> {
    println!(
        "{:<38} {:<6} {:>8} {:>8} {:<26} url",
        "id", "state", "sessions", "capacity", "started"
    );
    for node in anchorage_server::nodes::list(config).await? {
        println!(
            "{:<38} {:<6} {:>8} {:>8} {:<26} {}",
            node.id.to_string(),
            anchorage_server::nodes::state(&node),
            node.live_sessions,
            node.max_sessions,
            node.started_at.to_string(),
            node.url
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("anchorage: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("anchorage: {error}");
            ExitCode::FAILURE
        }
    }
}
