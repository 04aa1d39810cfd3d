//! The `moment` binary: parses the command line, loads the config and runs the server.

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    tracing::info!("moment {}", env!("CARGO_PKG_VERSION"));
    Ok(())
}
