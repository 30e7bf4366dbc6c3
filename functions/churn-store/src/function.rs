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

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if json {
        // CloudWatch reads JSON lines; no ANSI colours, no time (Lambda stamps every line).
        builder.json().flatten_event(true).without_time().with_ansi(false).init();
    } else {
        builder.with_ansi(false).init();
    }
}
