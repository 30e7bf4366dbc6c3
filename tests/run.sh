#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs the real tools the tests talk to
# (onnxruntime, MLflow, an S3 server, cargo-lambda, cfn-lint, SAM CLI) into a Python venv kept
# outside the project, builds the workspace once in the test profile, then runs every test.
# It also starts a local MLflow server and S3 server (infra/local/servers.sh) and stops them
# when it ends. Extra arguments go to `cargo test` (e.g. `bash tests/run.sh -p churn-core`).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${CHURN_VENV:-$HOME/.cache/churn-test-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
fi
# The tools install while the workspace builds (pip waits on the network and unpacks; cargo
# uses the CPUs): the build does not need them, the tests do.
echo "== installing test tools into $VENV (beside the build)" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check -r infra/requirements-test.txt &
pip_pid=$!
export PATH="$VENV/bin:$PATH"
export CHURN_PYTHON="$VENV/bin/python"
# `sam build` cross-compiles the functions to arm64 (tests/deploy.rs); the standard library for
# that target comes from rustup. Added here, once, because cargo-lambda's own attempt races when
# SAM builds both functions in parallel.
rustup target add aarch64-unknown-linux-gnu >&2
echo "== building (test profile)" >&2
# The benchmark tools (`predict-bench`, `batch-bench`) are built, and linted, with everything
# else, so that the commands the README cites keep compiling; the Lambda artifacts are built
# without them (`sam build`, `cargo lambda`).
BENCH_FEATURES="predict/bench,batch-score/bench"
cargo build --workspace --bins --locked --features "$BENCH_FEATURES"
if ! wait "$pip_pid"; then
  echo "installing the test tools failed (pip install -r infra/requirements-test.txt, above)" >&2
  exit 1
fi
if [ "${CHURN_REMOTE:-0}" = 1 ]; then
  # Real AWS S3 and a remote MLflow: the environment says where (MLFLOW_TRACKING_URI, AWS_*,
  # CHURN_TEST_BUCKET); nothing is started.
  echo "== using MLflow at ${MLFLOW_TRACKING_URI:?set MLFLOW_TRACKING_URI} and S3 bucket ${CHURN_TEST_BUCKET:?set CHURN_TEST_BUCKET}" >&2
else
  echo "== starting local MLflow and S3 servers" >&2
  STATE="$(mktemp -d "${TMPDIR:-/tmp}/churn-servers.XXXXXX")"
  trap 'bash infra/local/servers.sh stop "$STATE"' EXIT
  bash infra/local/servers.sh start "$STATE"
  # shellcheck disable=SC1091
  source "$STATE/env"
fi
echo "== testing" >&2
cargo test --workspace --locked --features "$BENCH_FEATURES" "$@"
