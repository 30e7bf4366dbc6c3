//! What every function binary does around its own start-up: JSON logs when running in Lambda
//! (plain text otherwise), a one-thread async runtime (a Lambda instance serves one event at a
//! time; more threads only add start-up time), and one ERROR line naming the cause when start-up
//! fails, which ends Lambda's init phase.

use std::fmt::Display;
use std::future::Future;
use std::process::ExitCode;

/// True inside Lambda (the runtime API is announced in the environment).
pub fn in_lambda() -> bool {
    std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some()
}

/// Sets up logging, runs `start` (init, then serving) to the end, and turns its outcome into the
/// process's exit code.
pub fn main<E: Display>(start: impl Future<Output = Result<(), E>>) -> ExitCode {
    init_logging(in_lambda());
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "could not start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(start) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "start-up failed");
            ExitCode::FAILURE
        }
    }
}

/// Levels from `RUST_LOG` as `target=level` directives (`info`, `warn,churn_api=debug`).
/// A `Targets` filter rather than an `EnvFilter`: the latter's span and field matching brings a
/// regex engine into the Lambda binary, which has a size budget.
fn init_logging(json: bool) {
    use tracing_subscriber::prelude::*;
    let default = || tracing_subscriber::filter::Targets::new().with_default(tracing::Level::INFO);
    let (filter, bad) = match std::env::var("RUST_LOG") {
        Ok(v) => match v.parse::<tracing_subscriber::filter::Targets>() {
            Ok(t) => (t, None),
            Err(e) => (default(), Some(format!("RUST_LOG={v} is not a list of target=level directives ({e}); logging at info"))),
        },
        Err(_) => (default(), None),
    };
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    if json {
        // CloudWatch reads JSON lines; no time (Lambda stamps every line).
        tracing_subscriber::registry().with(fmt.json().flatten_event(true).without_time()).with(filter).init();
    } else {
        tracing_subscriber::registry().with(fmt).with(filter).init();
    }
    if let Some(message) = bad {
        tracing::warn!("{message}");
    }
}
