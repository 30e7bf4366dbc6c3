//! The baseline of the cold-start benchmark: a hello-world `lambda_http` function built with
//! the same profile as `predict` (`cargo build --release -p predict --example hello`).

use lambda_http::{Body, Error, Request, Response, run, service_fn};

async fn hello(_: Request) -> Result<Response<Body>, Error> {
    Ok(Response::builder().status(200).header("content-type", "application/json").body(Body::from("{\"hello\":\"world\"}"))?)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    run(service_fn(hello)).await
}
