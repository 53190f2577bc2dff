# daemon_env.sh - sourced by the tests that run a real docentd (daemon,
# daemon_work, daemon_batch, remote, cli_daemon) after `set -u` and
# `B=${1:-build}`: the paths they share, the skips every one of them needs
# (models, binaries, curl, sqlite3-doc: exit 77 saying which), and the
# helpers for counting checks (ok, bad, $fails) and reading JSON (j).
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $B in /*) BD=$B ;; *) BD=$root/$B ;; esac
D="$BD/docent"
DD="$BD/docentd"
EMB="$root/models/all-minilm-l6-v2"
GEN="$root/models/smollm2-135m-instruct-q4_1.gguf"
SQ=/usr/share/doc/sqlite3
[ -d "$EMB" ] && [ -f "$GEN" ] || { echo "skip: models missing (make models)"; exit 77; }
[ -x "$DD" ] && [ -x "$D" ] || { echo "skip: $D or $DD missing"; exit 77; }
command -v curl >/dev/null || { echo "skip: curl missing"; exit 77; }
[ -f "$SQ/wal.html" ] || { echo "skip: sqlite3-doc missing (make deps)"; exit 77; }
O=(-o models.embedder="$EMB" -o models.generator="$GEN" -o models.threads=2)
fails=0
bad() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { echo "ok: $*"; }
j() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
