#!/usr/bin/env bash
# Start an MLflow tracking server for the pipeline, bound to 127.0.0.1 by default.
#   infra/mlflow.sh                     SQLite store and artifacts under $RFT_DATA_DIR (default: .), port 5000
#   MLFLOW_BACKEND_URI=postgresql://rft:rft@127.0.0.1:5432/mlflow infra/mlflow.sh   PostgreSQL store
#   MLFLOW_ARTIFACTS=s3://mlflow infra/mlflow.sh                                    artifacts in S3/MinIO
#                                       (with MLFLOW_S3_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)
# Then set `tracking.uri: http://127.0.0.1:5000` in params.yaml. The default store is the one the embedded
# mode writes (./mlruns.db), so the server shows every cycle run before it.
# To expose it: MLFLOW_HOST=0.0.0.0, behind a reverse proxy with authentication (MLflow has none of its own).
set -euo pipefail
DATA="${RFT_DATA_DIR:-.}"
HOST="${MLFLOW_HOST:-127.0.0.1}"
PORT="${MLFLOW_PORT:-5000}"
BACKEND="${MLFLOW_BACKEND_URI:-sqlite:///$DATA/mlruns.db}"
ARTIFACTS="${MLFLOW_ARTIFACTS:-$DATA/mlartifacts}"
mkdir -p "$DATA"
export MLFLOW_DISABLE_TELEMETRY=true
exec mlflow server --host "$HOST" --port "$PORT" \
  --backend-store-uri "$BACKEND" --artifacts-destination "$ARTIFACTS" --serve-artifacts
