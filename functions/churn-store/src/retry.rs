//! Bounded retries for the HTTP calls this crate makes itself (MLflow, S3 object reads): a
//! connection failure, a 5xx or a 429 is retried with doubling backoff; anything else is the
//! answer.

use std::time::Duration;

/// Attempts per call.
pub(crate) const ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// Why a call got no answer.
pub(crate) enum Failure {
    /// No connection or no response after every attempt.
    Unreachable(reqwest::Error),
    /// The response started but its body could not be read.
    Body(reqwest::Error),
}

/// Sends the request `make` builds (a fresh one per attempt) until it is answered with something
/// other than a transient error, or the attempts run out; returns the status and body.
/// `service` names the server in the retry log lines.
pub(crate) async fn send(service: &str, what: &str, make: impl Fn() -> reqwest::RequestBuilder) -> Result<(u16, Vec<u8>), Failure> {
    let mut backoff = FIRST_BACKOFF;
    for attempt in 1..=ATTEMPTS {
        let last = attempt == ATTEMPTS;
        match make().send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let transient = status >= 500 || status == 429;
                if !transient || last {
                    let body = resp.bytes().await.map_err(Failure::Body)?;
                    return Ok((status, body.to_vec()));
                }
                tracing::warn!(service, what, status, attempt, "transient error; retrying");
            }
            Err(e) if last => return Err(Failure::Unreachable(e)),
            Err(e) => tracing::warn!(service, what, error = %e, attempt, "unreachable; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff *= 2;
    }
    unreachable!("the last attempt returns")
}
