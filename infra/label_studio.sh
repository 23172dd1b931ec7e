#!/usr/bin/env bash
# Label Studio for people labelling (label.source: label_studio), in its own virtualenv: its
# dependencies clash with the pipeline's. Binds to 127.0.0.1; never calls out for updates.
#
#   infra/label_studio.sh install   create the virtualenv (cached in $LS_VENV; ~1.5 min the first time)
#   infra/label_studio.sh start     install if needed, then start the server in the foreground
#   infra/label_studio.sh token     print the path of the file that holds the API token
#
# Settings (environment):
#   LS_PORT      port (8080)                     LS_DATA   data folder ($RFT_DATA_DIR/.label-studio)
#   LS_VENV      virtualenv (~/.cache/rft/label-studio-$LS_VERSION)
#   LS_CONSTRAINTS  pip constraints for its packages (infra/label-studio-constraints.txt, the versions known to run
#                1.23.2, when LS_VERSION is 1.23.2; empty: pip's newest); a changed file reinstalls the virtualenv
#   LS_USERNAME  admin e-mail (admin@rft.local)  LS_PASSWORD  admin password (generated into $LS_DATA/password)
#   LABEL_STUDIO_API_KEY  the admin's API token (generated into $LS_DATA/token when unset)
#
# The pipeline reads the token from the variable that params.yaml's label_studio.token_env names:
#   export LABEL_STUDIO_API_KEY="$(cat .label-studio/token)"
set -euo pipefail
LS_VERSION="${LS_VERSION:-1.23.2}"
LS_VENV="${LS_VENV:-$HOME/.cache/rft/label-studio-$LS_VERSION}"
LS_PORT="${LS_PORT:-8080}"
LS_DATA="${LS_DATA:-${RFT_DATA_DIR:-.}/.label-studio}"
LS_USERNAME="${LS_USERNAME:-admin@rft.local}"
PYTHON="${PYTHON:-python3}"
PINNED="$(cd -- "$(dirname -- "$0")" >/dev/null && pwd)/label-studio-constraints.txt"
if [ "$LS_VERSION" = 1.23.2 ]; then LS_CONSTRAINTS="${LS_CONSTRAINTS-$PINNED}"; else LS_CONSTRAINTS="${LS_CONSTRAINTS-}"; fi

digest() {   # the first 16 hex digits of a file's SHA-256 (sha256sum on Linux, shasum on macOS)
  if command -v sha256sum >/dev/null; then sha256sum < "$1"; else shasum -a 256 < "$1"; fi | cut -c1-16
}

install() {
  # .complete records what the virtualenv was made from: another version or constraints file makes it anew.
  local made="label-studio==$LS_VERSION constraints:none"
  if [ -n "$LS_CONSTRAINTS" ]; then
    [ -f "$LS_CONSTRAINTS" ] || { echo "LS_CONSTRAINTS: no file $LS_CONSTRAINTS" >&2; exit 1; }
    made="label-studio==$LS_VERSION constraints:$(digest "$LS_CONSTRAINTS")"
  fi
  if [ -f "$LS_VENV/.complete" ] && [ "$(cat "$LS_VENV/.complete")" = "$made" ]; then return 0; fi
  echo "installing label-studio $LS_VERSION into $LS_VENV" >&2
  rm -rf "$LS_VENV"          # a half-made one from an interrupted install, or one made from other versions
  mkdir -p "$(dirname "$LS_VENV")"
  "$PYTHON" -m venv "$LS_VENV"
  "$LS_VENV/bin/pip" install --quiet --upgrade pip
  "$LS_VENV/bin/pip" install --quiet ${LS_CONSTRAINTS:+--constraint "$LS_CONSTRAINTS"} "label-studio==$LS_VERSION"
  echo "$made" > "$LS_VENV/.complete"
}

secret() {   # a file in $LS_DATA holding a generated secret (40 hex characters), made once, readable by us only
  local f="$LS_DATA/$1"
  if [ ! -s "$f" ]; then
    mkdir -p "$LS_DATA"
    (umask 077; "$PYTHON" -c 'import secrets; print(secrets.token_hex(20))' > "$f")
  fi
  cat "$f"
}

start() {
  install
  # The data folder holds the database (every label), the password and the token: ours alone.
  (umask 077; mkdir -p "$LS_DATA")
  chmod 700 "$LS_DATA"
  local token="${LABEL_STUDIO_API_KEY:-$(secret token)}"
  local password="${LS_PASSWORD:-$(secret password)}"
  export LATEST_VERSION_CHECK=false COLLECT_ANALYTICS=false LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN=true
  export LABEL_STUDIO_BASE_DATA_DIR="$LS_DATA" DJANGO_DB=sqlite
  # No open sign-up: accounts come from an invite link the admin hands out (Organization page).
  export LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK=true
  # The admin's credentials reach Label Studio through its environment (LABEL_STUDIO_USERNAME, _PASSWORD,
  # _USER_TOKEN), which only this user can read, never its command line, which `ps` shows every local user.
  export LABEL_STUDIO_USERNAME="$LS_USERNAME" LABEL_STUDIO_PASSWORD="$password" LABEL_STUDIO_USER_TOKEN="$token"
  echo "Label Studio on http://127.0.0.1:$LS_PORT (user $LS_USERNAME; password in $LS_DATA/password;" \
       "API token in $LS_DATA/token)" >&2
  exec "$LS_VENV/bin/label-studio" start --no-browser --internal-host 127.0.0.1 --port "$LS_PORT" \
    --data-dir "$LS_DATA" --enable-legacy-api-token
}

case "${1:-start}" in
  install) install ;;
  start) start ;;
  token) echo "$LS_DATA/token" ;;
  *) echo "usage: $0 install|start|token" >&2; exit 2 ;;
esac
