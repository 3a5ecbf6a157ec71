//! Command line: the daemon, `check` and `check-config`; logging set-up; exit codes.
//!
//! Not here: anything the commands do (`scheduler`, `http`, `check`, `config`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use tracing::{error, info, warn};

use mailtls_exporter::admission::Admission;
use mailtls_exporter::check::{self, EXIT_USAGE};
use mailtls_exporter::config;
use mailtls_exporter::http::{self, App};
use mailtls_exporter::logging::{self, Format, Level};
use mailtls_exporter::metrics::{ExporterMetrics, Exposition};
use mailtls_exporter::scheduler::Scheduler;
use mailtls_exporter::shard::{self, Setting, ShardSpec};
use mailtls_exporter::status::WebPrefix;
use mailtls_exporter::transport::{self, Limits};
use mailtls_exporter::webconfig::WebState;

/// Default listen address: outside the full 9100-9999 exporter range.
const DEFAULT_LISTEN: &str = ":19725";
/// How long shutdown waits for running probes and open connections.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

#[derive(Parser, Debug)]
#[command(
    name = "mailtls_exporter",
    version,
    about = "Prometheus exporter for SMTP STARTTLS, certificates, DANE TLSA and DNSSEC of mail servers"
)]
struct Cli {
    /// YAML config file; without it, the embedded default probes the local MTA at 127.0.0.1:25.
    #[arg(long = "config.file", global = true, value_name = "PATH")]
    config_file: Option<PathBuf>,
    /// Address to listen on for /metrics, /probe and the status page.
    #[arg(long = "web.listen-address", default_value = DEFAULT_LISTEN, value_name = "ADDR")]
    listen: String,
    /// URL under which the exporter is reachable from outside (e.g. behind a reverse proxy);
    /// links on the status page use its path.
    #[arg(long = "web.external-url", value_name = "URL")]
    external_url: Option<String>,
    /// Prefix of every route (default: the path of --web.external-url, else "/").
    #[arg(long = "web.route-prefix", value_name = "PATH")]
    route_prefix: Option<String>,
    /// TLS and basic auth for the web endpoints (exporter-toolkit format).
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config: Option<PathBuf>,
    /// Connections served at once; beyond it new connections wait in the listen backlog.
    #[arg(long = "web.max-connections", default_value_t = transport::DEFAULT_MAX_CONNECTIONS as u32, value_parser = clap::value_parser!(u32).range(1..=1_000_000), value_name = "N")]
    max_connections: u32,
    /// Test hook: the response write deadline (default 60s); not part of the interface.
    #[arg(long = "web.write-timeout", hide = true, default_value = "60s", value_parser = humantime::parse_duration)]
    write_timeout: Duration,
    /// Scheduled mode across replicas: how many replicas share the configured targets
    /// (Prometheus' hashmod of the `target` label; README, "Scaling out"). Wins over `shard.count`.
    #[arg(long = "shard.count", global = true, value_parser = shard::parse_count_flag, value_name = "N")]
    shard_count: Option<Setting>,
    /// This replica's shard, 0..N-1, or a StatefulSet pod name ending in -<ordinal>
    /// (`--shard.index=$(POD_NAME)`). Wins over `shard.index`.
    #[arg(long = "shard.index", global = true, value_parser = shard::parse_index_flag, value_name = "K")]
    shard_index: Option<Setting>,
    #[arg(long = "log.level", value_enum, default_value = "info", global = true)]
    log_level: Level,
    #[arg(
        long = "log.format",
        value_enum,
        default_value = "logfmt",
        global = true
    )]
    log_format: Format,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Probe targets once and print a report (exit 0: all well, 1: a problem, 2: usage or config error).
    Check {
        #[arg(long = "output", value_enum, default_value = "text")]
        output: Output,
        /// Domains (MX lookup), [host], [host]:port or [address]:port.
        #[arg(required = true, value_name = "TARGET")]
        targets: Vec<String>,
    },
    /// Validate a config file (exit 0 valid, 2 invalid).
    CheckConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Text,
    Json,
}

impl Cli {
    fn shard_flags(&self) -> ShardSpec {
        ShardSpec {
            count: self.shard_count.clone(),
            index: self.shard_index.clone(),
        }
    }
}

fn listen_addr(s: &str) -> Option<SocketAddr> {
    // ":19725" means every address, as Go exporters accept it.
    let s = if s.starts_with(':') {
        format!("[::]{s}")
    } else {
        s.to_string()
    };
    s.parse().ok()
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE as u8 } else { 0 });
        }
    };
    logging::init(cli.log_level, cli.log_format);
    let load = || match &cli.config_file {
        Some(p) => config::load(p),
        None => config::embedded_default(),
    };
    match &cli.command {
        Some(Command::CheckConfig) => {
            if cli.config_file.is_none() {
                eprintln!("check-config needs --config.file=PATH");
                return ExitCode::from(EXIT_USAGE as u8);
            }
            match load() {
                Ok(c) => {
                    let shard = match c.shard_with(&cli.shard_flags()) {
                        Ok(s) => s,
                        Err(e) => {
                            eprintln!("{}: {e}", c.source);
                            return ExitCode::from(EXIT_USAGE as u8);
                        }
                    };
                    match shard {
                        None => println!("{}: valid, {} targets", c.source, c.targets.len()),
                        Some(s) => println!(
                            "{}: valid, {} targets, {} of them in shard {} of {}",
                            c.source,
                            c.targets.len(),
                            c.scheduled_targets(shard).count(),
                            s.index(),
                            s.count()
                        ),
                    }
                    if c.trusts_remote_ad_bit() {
                        eprintln!(
                            "warning: dns.resolver {}: {}",
                            c.dns.resolver,
                            mailtls_exporter::scheduler::REMOTE_AD_WARNING
                        );
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::from(EXIT_USAGE as u8)
                }
            }
        }
        Some(Command::Check { output, targets }) => {
            let cfg = match load() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::from(EXIT_USAGE as u8);
                }
            };
            let rt = match runtime() {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("cannot start runtime: {e}");
                    return ExitCode::from(EXIT_USAGE as u8);
                }
            };
            let code = rt.block_on(check::run(&cfg, targets, *output == Output::Json));
            ExitCode::from(code as u8)
        }
        None => daemon(&cli),
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

fn daemon(cli: &Cli) -> ExitCode {
    // Read before anything starts: an invalid web config is a start-up error (exit 2).
    let web = match &cli.web_config {
        None => None,
        Some(p) => match WebState::load(p) {
            Ok(w) => Some(Arc::new(w)),
            Err(e) => {
                eprintln!("invalid --web.config.file: {e}");
                return ExitCode::from(EXIT_USAGE as u8);
            }
        },
    };
    let prefix =
        match WebPrefix::from_flags(cli.external_url.as_deref(), cli.route_prefix.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_USAGE as u8);
            }
        };
    let Some(addr) = listen_addr(&cli.listen) else {
        eprintln!("invalid --web.listen-address {:?}", cli.listen);
        return ExitCode::from(EXIT_USAGE as u8);
    };
    let rt = match runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async {
        let stats = Arc::new(ExporterMetrics::default());
        let scheduler =
            Scheduler::with_shard_flags(cli.config_file.clone(), stats.clone(), cli.shard_flags());
        if let Err(e) = scheduler.reload() {
            error!(error = %e, "cannot start with this configuration");
            return ExitCode::from(EXIT_USAGE as u8);
        }
        let Some(listener) = bind_listener(cli, addr).await else {
            return ExitCode::FAILURE;
        };
        let exposition = Exposition::new(stats.registry(), scheduler.store());
        let app = Arc::new(App {
            scheduler: scheduler.clone(),
            exposition,
            admission: Admission::new(),
            limits: Limits {
                max_connections: cli.max_connections as usize,
                write_timeout: cli.write_timeout,
            },
            prefix,
        });
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        if let Some(w) = &web {
            let cfg = w.current();
            info!(file = %cfg.source, tls = cfg.tls.is_some(), basic_auth = cfg.auth.is_some(), "web config loaded");
            tokio::spawn(reload_web_on_hangup(w.clone()));
        }
        let server = tokio::spawn(http::serve_with(
            listener,
            app,
            web,
            stop_rx,
            SHUTDOWN_GRACE,
        ));
        wait_for_signals(&scheduler).await;
        info!("shutting down");
        let _ = stop_tx.send(true);
        scheduler.shutdown(SHUTDOWN_GRACE).await;
        let _ = tokio::time::timeout(SHUTDOWN_GRACE, server).await;
        ExitCode::SUCCESS
    })
}

/// Binds the listen address; the failure is logged and yields `None`.
async fn bind_listener(cli: &Cli, addr: SocketAddr) -> Option<tokio::net::TcpListener> {
    let bound = match tokio::net::TcpListener::bind(addr).await {
        // ":PORT" on a host without IPv6: every IPv4 address instead, as Go exporters do.
        Err(_) if cli.listen.starts_with(':') => {
            tokio::net::TcpListener::bind(SocketAddr::from(([0, 0, 0, 0], addr.port()))).await
        }
        other => other,
    };
    match bound {
        Ok(l) => Some(l),
        Err(e) => {
            error!(address = %addr, error = %e, "cannot listen");
            None
        }
    }
}

/// Re-reads the web config on SIGHUP (beside the config reload of `wait_for_signals`); an
/// invalid file is logged and the previous one keeps serving.
async fn reload_web_on_hangup(web: Arc<WebState>) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        error!("cannot install the SIGHUP handler for the web config");
        return;
    };
    while hup.recv().await.is_some() {
        let w = web.clone();
        match tokio::task::spawn_blocking(move || w.reload()).await {
            Ok(Ok(())) => info!("SIGHUP: web config reloaded"),
            Ok(Err(e)) => warn!(error = %e, "web config rejected, the previous one keeps running"),
            Err(e) => warn!(error = %e, "web config reload failed"),
        }
    }
}

/// Reloads on SIGHUP; returns on SIGINT or SIGTERM.
async fn wait_for_signals(scheduler: &Arc<Scheduler>) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                info!("SIGHUP: reloading configuration");
                let s = scheduler.clone();
                let _ = tokio::task::spawn_blocking(move || s.reload()).await;
            }
            _ = term.recv() => return,
            _ = int.recv() => return,
        }
    }
}
