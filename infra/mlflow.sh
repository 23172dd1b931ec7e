#!/usr/bin/env bash
# Start an MLflow tracking server for the pipeline, bound to 127.0.0.1 by default.
#   infra/mlflow.sh                     SQLite store (./mlruns.db) and ./mlartifacts, port 5000
#   MLFLOW_BACKEND_URI=postgresql://rft:rft@127.0.0.1:5432/mlflow infra/mlflow.sh   PostgreSQL store
# Then set `tracking.uri: http://127.0.0.1:5000` in params.yaml.
set -euo pipefail
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
BACKEND="${MLFLOW_BACKEND_URI:-sqlite:///mlruns.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS:-./mlartifacts}"
export MLFLOW_DISABLE_TELEMETRY=true
exec mlflow server --host "$HOST" --port "$PORT" \
  --backend-store-uri "$BACKEND" --artifacts-destination "$ARTIFACTS" --serve-artifacts
