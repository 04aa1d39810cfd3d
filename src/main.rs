//! The `moment` binary: command line, logging, signals; everything else is in the library.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use moment::config::{Config, DEFAULT_TOML};

/// moment: a live video server. Without arguments it serves the embedded default config:
/// RTMP on 127.0.0.1:1935 with a demo stream at rtmp://127.0.0.1/live/demo.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// A TOML config file (start from `--print-config`).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Print the embedded default config, with comments, and exit.
    #[arg(long)]
    print_config: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.print_config {
        print!("{DEFAULT_TOML}");
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::embedded(),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(run(config))
}

async fn run(config: Config) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let started = moment::server::start(config, shutdown.clone()).await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), "moment started");
    tokio::spawn(signals(shutdown));
    started.task.await.context("server task failed")?;
    Ok(())
}

/// First SIGINT/SIGTERM: drain (players get a clean close). Second: exit at once.
async fn signals(shutdown: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::info!(
        drain_s = moment::server::DRAIN.as_secs(),
        "shutting down; signal again to exit at once"
    );
    shutdown.cancel();
    tokio::select! { _ = term.recv() => {}, _ = int.recv() => {} }
    tracing::warn!("second signal: exiting now");
    std::process::exit(130);
}
