//! `fieldcastd`: the Fieldcast daemon. Captures and encodes each configured
//! input, feeds the media core, and answers to MQTT.

mod adaptive;
mod broker_url;
mod command;
mod config;
mod controller;
mod error;
mod mqtt;
mod push;
mod store;
mod systemd;
mod topics;
mod triggers;
mod vars;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tracing::{error, info, warn};

#[derive(Parser)]
#[command(name = "fieldcastd", version, about = "Fieldcast encoder daemon")]
struct Args {
    /// The configuration file (TOML).
    #[arg(long, short, default_value = "/etc/fieldcast/fieldcast.toml")]
    config: PathBuf,
    /// Check the configuration and print the capture pipelines, then exit.
    #[arg(long)]
    check: bool,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .init();
    let args = Args::parse();

    let settings = match config::Config::load(&args.config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fieldcastd: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    if let Err(e) = gst::init() {
        eprintln!("fieldcastd: GStreamer failed to initialise: {e}");
        return ExitCode::FAILURE;
    }
    if let Some(ca) = &settings.tls.ca_file {
        let work = settings.device.data_dir.join("run");
        if let Err(e) = fieldcast_media::tls::trust_extra_ca(ca, &work) {
            eprintln!("fieldcastd: tls.ca_file: {e}");
            return ExitCode::from(2);
        }
    }
    if args.check {
        for input in &settings.inputs {
            println!(
                "input {}{}: {}",
                input.name,
                if input.template {
                    " (template of wildcard streams; runs as name+suffix)"
                } else {
                    ""
                },
                fieldcast_capture::describe::pipeline(input, &settings.board)
            );
        }
        for o in &settings.outputs {
            println!(
                "output {} ({}): stream {} -> {}",
                o.def.id,
                o.def.kind_name(),
                o.def.stream,
                o.def.shown_target()
            );
        }
        return ExitCode::SUCCESS;
    }
    // rustls needs one process-wide crypto provider; ring builds everywhere
    // Yocto does (aws-lc-rs needs cmake and NASM in the SDK).
    let _ = rustls::crypto::ring::default_provider().install_default();

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fieldcastd: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let (store, persisted, warning) = match store::Store::open(&settings.device.data_dir) {
            Ok(s) => s,
            Err(e) => {
                error!(error = %e, "opening the data directory");
                return ExitCode::FAILURE;
            }
        };
        let topics = topics::Topics::new(&settings.mqtt.prefix, &settings.device.id)
            .with_groups(&settings.mqtt.prefix, &settings.device.groups);
        info!(
            device = %settings.device.id,
            board = %settings.board.board.name,
            broker = %format!("{}:{}", settings.broker.host, settings.broker.port),
            topics = %topics.root(),
            "fieldcastd starting"
        );
        let (client, incoming, up) = match mqtt::start(&settings, topics) {
            Ok(c) => c,
            Err(e) => {
                error!(error = %e, "MQTT setup");
                return ExitCode::FAILURE;
            }
        };
        // The watcher lives as long as the daemon; without it, pushes still
        // notice a dead path when it stalls (3 s without acknowledgements).
        let net = if settings.pushes.reconnect_on_network_change {
            match fieldcast_media::netwatch::spawn(Duration::from_millis(300)) {
                Ok((rx, watch)) => Some((rx, watch)),
                Err(e) => {
                    warn!(error = %e, "cannot watch the network for changes; pushes reconnect when they stall");
                    None
                }
            }
        } else {
            None
        };
        let (net_rx, _net_watch) = match net {
            Some((rx, w)) => (Some(rx), Some(w)),
            None => (None, None),
        };
        let c = controller::Controller::start(settings, client, store, persisted, warning)
            .with_config_path(args.config.clone())
            .with_notifier(systemd::Notifier::from_env());
        c.run(incoming, up, net_rx).await;
        ExitCode::SUCCESS
    })
}
