//! `fieldcast`: the operator's command line for Fieldcast devices.
//!
//! A client of the MQTT contract (`docs/mqtt.md`) and nothing else: it
//! shares no code with the daemon, so it works with any broker and any
//! device that keeps the contract. A command travels
//! `cli` (parse) → `ops` (plan) → `request` (MQTT 5 request/response over
//! `session`) → `reply` → `render`; `fleet` and `watch` read what devices
//! publish.
//!
//! Exit status: 0 done, 1 the device refused, 2 anything else (usage,
//! broker, timeout, unknown or offline device).

mod broker;
mod cli;
mod error;
mod fleet;
mod ops;
mod render;
mod reply;
mod request;
mod session;
mod topics;
mod watch;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// Prints a line to standard output, at once (a `watch` piped to another
/// program must not sit in a buffer). A closed pipe (`fieldcast watch |
/// head`) ends the run quietly, as it does for any Unix filter.
pub fn say(text: &str) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = writeln!(out, "{text}").and_then(|()| out.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("fieldcast: writing to standard output: {e}");
        std::process::exit(2);
    }
}

fn main() -> ExitCode {
    // clap exits 2 on a usage error, as the errors below do.
    let cli = cli::Cli::parse();
    // rustls needs one process-wide crypto provider; ring, as the daemon.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("fieldcast: starting the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(ops::run(cli)) {
        Ok(ops::Outcome::Done) => ExitCode::SUCCESS,
        Ok(ops::Outcome::Refused) => ExitCode::from(1),
        Err(e) => {
            eprintln!("fieldcast: {e}");
            ExitCode::from(2)
        }
    }
}
