#!/usr/bin/env bash
# Opt-in browser check of the report (make test-browser): install Debian's chromium if
# missing, render a run's report.html (default: the committed fixture run, rendered into a
# temporary directory) and take a headless screenshot of it; fail if the PNG is empty.
# Usage: [RUN_DIR=results/<run_id>] [SCREENSHOT=out.png] tools/report_screenshot.sh
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
py="$repo/.venv/bin/python"
work="$(mktemp -d /tmp/kmlab-browser.XXXXXX)"
trap 'rm -rf "$work/profile"' EXIT

if ! command -v chromium >/dev/null 2>&1; then
    echo "chromium is missing: installing Debian's chromium package"
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium >/dev/null
fi

run_dir="${RUN_DIR:-}"
if [[ -z "$run_dir" ]]; then
    run_dir="$work/20261123T092845Z"
    cp -r "$repo/tests/fixtures/results/20261123T092845Z" "$run_dir"
fi
run_dir="$(realpath "$run_dir")"
out="$(realpath -m "${SCREENSHOT:-$work/report.png}")"
"$py" -m kmesh_lab.report render --run-dir "$run_dir" >/dev/null

mkdir -p "$work/profile"
timeout 120 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$work/profile" --hide-scrollbars --window-size=1280,4000 \
    --screenshot="$out" "file://$run_dir/report.html" >/dev/null 2>&1 || true

if [[ ! -s "$out" ]]; then
    echo "FAIL: no screenshot of $run_dir/report.html at $out (run chromium by hand with the flags above to see why)" >&2
    exit 1
fi
echo "screenshot of $run_dir/report.html: $out ($(stat -c %s "$out") bytes)"
