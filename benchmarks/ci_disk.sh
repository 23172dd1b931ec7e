#!/usr/bin/env bash
# The wall time and the peak disk use of a command, by default the CI run (docs/testing.md). Run it in a fresh clone:
#   bash benchmarks/ci_disk.sh                  # bash .ci/run
#   bash benchmarks/ci_disk.sh make test        # any other command
# Every 10 s it samples the free space (df) of the filesystem that holds the temporary folder, where the tests write,
# and prints at the end the largest fall from the free space at the start: everything the run wrote there, the venv,
# Label Studio's virtualenv and the tests' folders included, and anything else that wrote there meanwhile.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$#" -gt 0 ] || set -- bash .ci/run
where="${TMPDIR:-/tmp}"
avail() { df --output=avail -B1M "$where" | tail -1 | tr -d ' '; }
start=$(avail); low=$start; t0=$(date +%s)
"$@" & pid=$!
while kill -0 "$pid" 2>/dev/null; do
  now=$(avail); [ "$now" -lt "$low" ] && low=$now
  sleep 10
done
status=0; wait "$pid" || status=$?
echo "ci_disk: '$*' exited $status after $(( $(date +%s) - t0 )) s; free under $where: ${start} MB at the start," \
     "${low} MB at the lowest: peak use $(( start - low )) MB" >&2
exit "$status"
