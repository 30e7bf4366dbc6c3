#!/usr/bin/env bash
# Starts or stops the real local servers the end-to-end tests talk to, on 127.0.0.1 only:
#   - an MLflow tracking server (sqlite backend, artifact serving through the server's proxy);
#   - an S3-protocol server (moto's server mode; see infra/README.md for why this one).
#
#   infra/local/servers.sh start STATE_DIR   # installs mlflow + moto[server] into a venv if missing
#   infra/local/servers.sh stop STATE_DIR    # stops exactly the processes `start` launched, by PID
#
# `start` waits until both answer, then writes STATE_DIR/env with the variables that point the
# code at them (source it): MLFLOW_TRACKING_URI, AWS_ENDPOINT_URL_S3, AWS_REGION, credentials.
set -euo pipefail
cmd="${1:?usage: servers.sh start|stop STATE_DIR}"
state="${2:?usage: servers.sh start|stop STATE_DIR}"
mkdir -p "$state"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

wait_for() { # url seconds name log
  local i
  for ((i = 0; i < $2 * 5; i++)); do
    if curl -fsS -o /dev/null "$1" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$3 did not answer at $1 within $2 s; its log:" >&2
  tail -n 40 "$4" >&2 || true
  return 1
}

case "$cmd" in
start)
  if ! command -v mlflow >/dev/null || ! command -v moto_server >/dev/null; then
    # Not installed: put the pinned versions into the project's test venv (outside the repo).
    venv="${CHURN_VENV:-$HOME/.cache/churn-test-venv}"
    echo "installing mlflow and moto's S3 server into $venv" >&2
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    here="$(cd "$(dirname "$0")/.." && pwd)"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      $(grep -E '^(mlflow|moto|flask|flask-cors|boto3)==' "$here/requirements-test.txt")
    export PATH="$venv/bin:$PATH"
  fi
  s3_port=$(free_port)
  setsid moto_server -H 127.0.0.1 -p "$s3_port" >"$state/s3.log" 2>&1 &
  echo $! >"$state/s3.pid"
  mlflow_port=$(free_port)
  mkdir -p "$state/mlflow-artifacts"
  setsid mlflow server --backend-store-uri "sqlite:///$state/mlflow.db" --artifacts-destination "$state/mlflow-artifacts" \
    --host 127.0.0.1 --port "$mlflow_port" --workers 1 >"$state/mlflow.log" 2>&1 &
  echo $! >"$state/mlflow.pid"
  wait_for "http://127.0.0.1:$s3_port/" 30 "the S3 server" "$state/s3.log"
  wait_for "http://127.0.0.1:$mlflow_port/health" 90 "MLflow" "$state/mlflow.log"
  cat >"$state/env" <<ENV
export MLFLOW_TRACKING_URI=http://127.0.0.1:$mlflow_port
export AWS_ENDPOINT_URL_S3=http://127.0.0.1:$s3_port
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=local-test
export AWS_SECRET_ACCESS_KEY=local-test
ENV
  echo "MLflow at http://127.0.0.1:$mlflow_port, S3 at http://127.0.0.1:$s3_port (env in $state/env)" >&2
  ;;
stop)
  for name in mlflow s3; do
    if [ -f "$state/$name.pid" ]; then
      pid=$(cat "$state/$name.pid")
      # Each server was started with setsid, so it leads its own process group: stopping the
      # group also stops the workers mlflow spawns, and nothing else.
      kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
      rm -f "$state/$name.pid"
    fi
  done
  ;;
*)
  echo "usage: servers.sh start|stop STATE_DIR" >&2
  exit 2
  ;;
esac
