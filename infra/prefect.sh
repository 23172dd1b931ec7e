#!/usr/bin/env bash
# Start a Prefect server (UI and API) bound to 127.0.0.1, and optionally a worker for scheduled cycles.
#   infra/prefect.sh server            the UI at http://127.0.0.1:4200
#   infra/prefect.sh worker            a process worker on the `rft` work pool (created if missing)
# Point the pipeline at it with: export PREFECT_API_URL=http://127.0.0.1:4200/api
# Without a server, `rft cycle` runs Prefect in its ephemeral mode.
set -euo pipefail
export PREFECT_SERVER_ANALYTICS_ENABLED=false DO_NOT_TRACK=1
HOST="${PREFECT_HOST:-127.0.0.1}"
PORT="${PREFECT_PORT:-4200}"
case "${1:-server}" in
  server) exec prefect server start --host "$HOST" --port "$PORT" ;;
  worker)
    prefect work-pool inspect rft >/dev/null 2>&1 || prefect work-pool create rft --type process
    exec prefect worker start --pool rft ;;
  *) echo "usage: $0 [server|worker]" >&2; exit 2 ;;
esac
