//! `ztgate --config FILE`: the zero-trust reverse proxy.

use std::path::PathBuf;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: ztgate --config FILE [--check]\n\n  --config FILE  the TOML configuration\n  --check        only read and check the configuration, then exit\n\nSignals: SIGHUP reloads the configuration; SIGTERM or Ctrl-C drains requests and stops.\nLogs: RUST_LOG (default info).";

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let mut args = std::env::args().skip(1);
    let mut config: Option<PathBuf> = None;
    let mut check = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--config" | "-c" => config = args.next().map(PathBuf::from),
            "--check" => check = true,
            "--help" | "-h" => {
                tracing::info!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            other => {
                tracing::error!("unknown argument {other:?}\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let Some(config) = config else {
        tracing::error!("{USAGE}");
        return ExitCode::from(2);
    };
    if check {
        return match ztgate::Config::load(&config) {
            Ok(_) => {
                tracing::info!(file = %config.display(), "configuration ok");
                ExitCode::SUCCESS
            }
            Err(error) => {
                tracing::error!("{error}");
                ExitCode::from(1)
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(error) => {
            tracing::error!(%error, "cannot start the runtime");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async move {
        let gateway = match ztgate::Gateway::start(&config).await {
            Ok(g) => g,
            Err(error) => {
                tracing::error!("{error}");
                return ExitCode::from(1);
            }
        };
        match gateway.run_until_signal().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!(%error, "shutdown failed");
                ExitCode::from(1)
            }
        }
    })
}
