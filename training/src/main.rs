//! `churn`: train, score, evaluate and compare churn models. The command line lives in the
//! library (`churn_training::cli`); this binary sets up the process and reports errors.

use clap::Parser;

fn main() -> std::process::ExitCode {
    // Rust ignores SIGPIPE, which turns a closed pipe (`churn drift … | head`) into a panic on
    // the next print; a command-line tool should just stop, as other Unix tools do.
    #[cfg(unix)]
    // SAFETY: called before any other thread exists; SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CHURN_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    // A corrupt input file is reported as that file's error, without a panic message first.
    churn_core::table::quiet_decoder_panics();
    // `{:#}` prints the error with its causes on one line, and never a backtrace: these are
    // messages for users, not crash reports.
    match churn_training::cli::run(churn_training::cli::Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
