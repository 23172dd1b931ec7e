#!/usr/bin/env bash
# Start a Prefect server (UI and API) bound to 127.0.0.1, and a worker for the scheduled retrain flow.
#   infra/prefect.sh server            the UI and API at http://127.0.0.1:4200 (its SQLite store under
#                                      $RFT_DATA_DIR/.prefect; PREFECT_API_DATABASE_CONNECTION_URL for PostgreSQL)
#   infra/prefect.sh worker            a process worker on the work pool $PREFECT_POOL (rft; created if missing)
# Point the pipeline at it with: export PREFECT_API_URL=http://127.0.0.1:4200/api, then `rft deploy`.
# Without a server, `rft cycle` runs Prefect in its ephemeral mode.
# To expose the UI: PREFECT_HOST=0.0.0.0 and PREFECT_UI_API_URL=http://<host>:4200/api, behind a proxy with
# authentication (the open-source server has none).
set -euo pipefail
DATA="${RFT_DATA_DIR:-.}"
export PREFECT_HOME="${PREFECT_HOME:-$DATA/.prefect}"
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
HOST="${PREFECT_HOST:-127.0.0.1}"
PORT="${PREFECT_PORT:-4200}"
POOL="${PREFECT_POOL:-rft}"
# The UI asks this URL for its data: the server's own address, whatever port it listens on.
export PREFECT_UI_API_URL="${PREFECT_UI_API_URL:-http://$HOST:$PORT/api}"
case "${1:-server}" in
  server) exec prefect server start --host "$HOST" --port "$PORT" ;;
  worker)
    : "${PREFECT_API_URL:?set PREFECT_API_URL to the server, e.g. http://127.0.0.1:4200/api}"
    exec prefect worker start --pool "$POOL" --type process ;;   # creates the pool when it is missing
  *) echo "usage: $0 [server|worker]" >&2; exit 2 ;;
esac
