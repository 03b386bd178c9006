#!/usr/bin/env bash
# tools/fortio.sh — the load wrapper every suite uses.
#
#   tools/fortio.sh load [-c N] [-t DUR] [-qps Q] [-keepalive=false] [-json FILE] [-H 'K: V']
#                        [-timeout DUR] [-p "50,75,90,99,99.9"] [-labels TEXT] [-quiet] URL
#
# Runs `fortio load` when fortio is on PATH (arguments passed through unchanged), otherwise
# wrk (Debian's wrk 4.x, LuaJIT) through tools/fortio_wrk.lua. Either way it writes
# fortio-format JSON to -json FILE (or stdout when -json is absent or "-"): ActualQPS,
# ActualDuration (ns), NumThreads (= connections), RequestedQPS, DurationHistogram {Count,
# Min, Max, Sum, Avg, StdDev, Percentiles[{Percentile, Value}]} in seconds, RetCodes
# {"200": n, "-1": socket errors}, SocketCount, plus "Runner": "fortio" | "wrk". It prints
# one human summary line on stderr. Parse the JSON with kmesh_lab.loadgen.parse().
#
# Defaults are fortio's: -c 4, -qps 8, -t 5s, -keepalive=true, -timeout 3s.
# Every run is bounded: -t must be > 0 and the load generator is killed at -t plus
# -timeout plus 15 s.
#
# The wrk fallback, and where it differs from fortio (written into the JSON as well):
#  - -keepalive=false sends "Connection: close": one TCP connection per request.
#  - wrk threads = the largest divisor of -c that is <= min(c, nproc) (wrk splits
#    connections evenly between threads); NumThreads reports -c like fortio.
#  - -t is rounded up to whole seconds (wrk's resolution).
#  - -qps > 0 is paced by a per-thread send schedule in Lua; latency is measured from the
#    send, so it is NOT coordinated-omission-free (use fortio or wrk2 for that).
#  - Count is the number of completed responses; socket errors (connect/read/write/timeout)
#    are counted under RetCodes "-1" in addition. SocketCount is derived: requests when
#    keepalive=false; otherwise connections plus one per response the server ended with
#    "Connection: close" (nginx does so every keepalive_requests, 1000 by default).
#    TcpActiveOpens is the namespace's kernel counter over the run, a measured
#    cross-check (it includes other processes there, and wrk's one address check).
#  - When wrk cannot connect at all it exits before running; the wrapper still writes a
#    fortio-format JSON (Count 0, RetCodes {"-1": 1}, "Error") and exits 1.
#  - fortio-only flags the suites may pass (-a, -r, -httpbufferkb, -uniform, -jitter,
#    -nocatchup) are accepted and ignored with a note; anything else is an error.
# Environment: KMESH_LAB_LOADGEN=wrk|fortio forces a runner.
set -euo pipefail

PROG=fortio.sh
HERE=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)

die() {
	echo "$PROG: $*" >&2
	exit 2
}

usage() {
	sed -n '4,5p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# Go-style duration (10s, 1m, 1m30s, 500ms, 1h, 2.5s) -> seconds (decimal), or fail.
duration_seconds() {
	local d=$1 total=0 num unit rest=$1
	[[ -n $d ]] || return 1
	if [[ $d =~ ^[0-9]+(\.[0-9]+)?$ ]]; then
		echo "$d"
		return 0
	fi
	while [[ -n $rest ]]; do
		[[ $rest =~ ^([0-9]+(\.[0-9]+)?)(ms|us|ns|s|m|h)(.*)$ ]] || return 1
		num=${BASH_REMATCH[1]}
		unit=${BASH_REMATCH[3]}
		rest=${BASH_REMATCH[4]}
		case $unit in
		h) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n*3600}') ;;
		m) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n*60}') ;;
		s) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n}') ;;
		ms) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n/1000}') ;;
		us) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n/1000000}') ;;
		ns) total=$(awk -v t="$total" -v n="$num" 'BEGIN{print t + n/1000000000}') ;;
		esac
	done
	echo "$total"
}

ceil() { awk -v x="$1" 'BEGIN{c = int(x); if (c < x) c++; print c}'; }

tcp_active_opens() {
	awk '/^Tcp: / { if (!h) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") col = i; h = 1 } else { print $col; exit } }' /proc/net/snmp 2>/dev/null || true
}

[[ $# -ge 1 ]] || usage
subcommand=$1
shift
[[ $subcommand == load ]] || {
	if [[ ${KMESH_LAB_LOADGEN:-} != wrk ]] && command -v fortio >/dev/null 2>&1; then
		die "only 'load' is wrapped; run 'fortio $subcommand' directly"
	fi
	die "unknown subcommand '$subcommand': only 'load' is supported (fortio is not installed; wrk is used)"
}

# ------------------------------------------------------------------ parse flags
# With fortio every flag goes through to it unchanged (fortio validates them); this parse
# only extracts what the wrapper needs (-t, -c, -json). The wrk fallback is strict.
runner=wrk
if [[ ${KMESH_LAB_LOADGEN:-} == fortio ]] || { [[ ${KMESH_LAB_LOADGEN:-} != wrk ]] && command -v fortio >/dev/null 2>&1; }; then
	runner=fortio
fi

conns=4
qps=8
dur=5s
keepalive=1
json_out=-
timeout_s=3
percentiles="50,75,90,99,99.9"
labels=""
headers=()
ignored=()
url=""
passthrough=("$@")
calls=""

need_value() {
	# $1 flag name, $2 number of remaining args
	[[ $2 -ge 2 ]] || die "flag -$1 needs a value"
}

while [[ $# -gt 0 ]]; do
	arg=$1
	case $arg in
	--*) arg=${arg#-} ;;
	esac
	if [[ $arg == -* && $arg == *=* ]]; then
		name=${arg%%=*}
		name=${name#-}
		value=${arg#*=}
		has_value=1
	else
		name=${arg#-}
		value=""
		has_value=0
	fi
	if [[ $arg != -* ]]; then
		[[ -z $url || $runner == fortio ]] || die "more than one URL given ('$url' and '$arg'); put flags before the URL"
		url=$arg
		shift
		continue
	fi
	case $name in
	c | qps | t | json | H | timeout | p | labels | n | r | httpbufferkb | payload-size)
		if [[ $has_value == 0 ]]; then
			need_value "$name" $#
			value=$2
			shift
		fi
		;;
	esac
	case $name in
	c)
		[[ $value =~ ^[1-9][0-9]*$ ]] || die "flag -c: '$value' is not a positive number of connections"
		conns=$value
		;;
	qps)
		[[ $value =~ ^[0-9]+(\.[0-9]+)?$ ]] || die "flag -qps: '$value' is not a number >= 0 (0 = as fast as possible)"
		qps=$value
		;;
	t)
		secs=$(duration_seconds "$value") || die "flag -t: '$value' is not a duration like 10s, 1m or 1m30s"
		awk -v s="$secs" 'BEGIN{exit !(s > 0)}' || die "flag -t: '$value' must be > 0 (runs are always bounded in time)"
		dur=$value
		;;
	keepalive)
		case ${value:-true} in
		true | 1) keepalive=1 ;;
		false | 0) keepalive=0 ;;
		*) die "flag -keepalive: '$value' is not true or false (write -keepalive=false)" ;;
		esac
		;;
	json) json_out=$value ;;
	H)
		[[ $value == *:* ]] || die "flag -H: '$value' is not a 'Name: value' header"
		headers+=("$value")
		;;
	timeout)
		timeout_s=$(duration_seconds "$value") || die "flag -timeout: '$value' is not a duration like 3s"
		;;
	p)
		[[ $value =~ ^[0-9]+(\.[0-9]+)?(,[0-9]+(\.[0-9]+)?)*$ ]] || die "flag -p: '$value' is not a list like 50,75,90,99,99.9"
		percentiles=$value
		;;
	labels) labels=$value ;;
	n) calls=$value ;;
	quiet) ;;
	a | r | httpbufferkb | uniform | jitter | nocatchup) ignored+=("-$name") ;;
	payload-size) [[ $runner == fortio ]] || die "flag -payload-size is not supported by the wrk fallback; install fortio for payload sweeps" ;;
	h | help) usage ;;
	*) [[ $runner == fortio ]] || die "unknown flag '$1' (supported: -c -t -qps -keepalive -json -H -timeout -p -labels -quiet)" ;;
	esac
	shift
done
[[ -n $url ]] || die "no URL given: tools/fortio.sh load [flags] URL"

dur_s=$(duration_seconds "$dur")
timeout_ceil=$(ceil "$timeout_s")
[[ $timeout_ceil -ge 1 ]] || timeout_ceil=1

# Where the JSON goes: a temp file next to the target, renamed into place at the end so
# a killed run never leaves half a file.
if [[ $json_out == - ]]; then
	tmp_json=$(mktemp "${TMPDIR:-/tmp}/fortio-sh.XXXXXX.json")
else
	out_dir=$(dirname -- "$json_out")
	[[ -d $out_dir ]] || die "flag -json: directory '$out_dir' does not exist"
	tmp_json=$(mktemp "$out_dir/.fortio-sh.XXXXXX.json")
fi
log=$(mktemp "${TMPDIR:-/tmp}/fortio-sh.XXXXXX.log")
cleanup() { rm -f -- "$tmp_json" "$log"; }
trap cleanup EXIT

deliver() {
	if [[ $json_out == - ]]; then
		cat -- "$tmp_json"
	else
		mv -f -- "$tmp_json" "$json_out"
	fi
}

# One descriptor per connection: lift a low soft limit (often 1024) up to the hard one.
need_fds=$((conns + 64))
soft_fds=$(ulimit -Sn)
if [[ $soft_fds != unlimited && $soft_fds -lt $need_fds ]]; then
	hard_fds=$(ulimit -Hn)
	if [[ $hard_fds == unlimited || $hard_fds -ge $need_fds ]]; then
		ulimit -Sn "$need_fds"
	else
		ulimit -Sn "$hard_fds"
		echo "$PROG: warning: -c $conns needs ~$need_fds file descriptors, the hard limit is $hard_fds" >&2
	fi
fi

# ------------------------------------------------------------------ fortio: pass through
if [[ $runner == fortio ]]; then
	command -v fortio >/dev/null 2>&1 || die "KMESH_LAB_LOADGEN=fortio but fortio is not on PATH"
	args=()
	skip=0
	for a in "${passthrough[@]}"; do
		# Replace the caller's -json target with our temp file (fortio writes it, we add
		# "Runner" and move it into place).
		if [[ $skip == 1 ]]; then
			skip=0
			continue
		fi
		case $a in
		-json | --json) skip=1 ;;
		-json=* | --json=*) ;;
		*) args+=("$a") ;;
		esac
	done
	if [[ -n $calls ]]; then
		bound=${KMESH_LAB_LOAD_MAX_S:-600}
	else
		bound=$(($(ceil "$dur_s") + timeout_ceil + 15))
	fi
	rc=0
	timeout --kill-after=5 "$bound" fortio load -json "$tmp_json" "${args[@]}" >"$log" 2>&1 || rc=$?
	if [[ $rc -ne 0 ]]; then
		tail -n 20 "$log" >&2
		[[ $rc -ne 124 ]] || echo "$PROG: fortio did not finish within ${bound}s and was stopped" >&2
		exit "$rc"
	fi
	python3 - "$tmp_json" <<'EOF' || die "fortio wrote no valid JSON (see its output above)"
import json, sys
path = sys.argv[1]
with open(path, encoding="utf-8") as f:
    data = json.load(f)
data["Runner"] = "fortio"
with open(path, "w", encoding="utf-8") as f:
    json.dump(data, f, indent=2)
h = data.get("DurationHistogram", {})
p = {x["Percentile"]: x["Value"] for x in h.get("Percentiles", [])}
print(
    f"fortio.sh[fortio]: {h.get('Count', 0)} requests in {data.get('ActualDuration', 0) / 1e9:.2f}s"
    f" = {data.get('ActualQPS', 0):.1f} qps, p50 {p.get(50, 0) * 1e3:.3f}ms"
    f" p99 {p.get(99, 0) * 1e3:.3f}ms, codes {data.get('RetCodes', {})}",
    file=sys.stderr,
)
EOF
	deliver
	exit 0
fi

# ------------------------------------------------------------------ wrk fallback
command -v wrk >/dev/null 2>&1 || die "neither fortio nor wrk is on PATH: install wrk (apt-get install wrk) or fortio"
[[ -z $calls ]] || die "flag -n (exact number of calls) is not supported by the wrk fallback; use -t"
if [[ ${#ignored[@]} -gt 0 ]]; then
	echo "$PROG: note: ${ignored[*]} ignored by the wrk fallback" >&2
fi
[[ $url == *://* ]] || url="http://$url"

nproc_n=$(nproc)
threads=$((conns < nproc_n ? conns : nproc_n))
while ((conns % threads != 0)); do
	threads=$((threads - 1))
done
wrk_dur=$(ceil "$dur_s")

wrk_args=(-t "$threads" -c "$conns" -d "${wrk_dur}s" --timeout "${timeout_ceil}s" -s "$HERE/fortio_wrk.lua")
[[ $keepalive == 1 ]] || wrk_args+=(-H "Connection: close")
for h in "${headers[@]}"; do
	wrk_args+=(-H "$h")
done

export KMLAB_OUT=$tmp_json KMLAB_CONNS=$conns KMLAB_THREADS=$threads KMLAB_QPS=$qps \
	KMLAB_KEEPALIVE=$keepalive KMLAB_URL=$url KMLAB_REQ_DURATION=$dur KMLAB_LABELS=$labels \
	KMLAB_PERCENTILES=$percentiles
KMLAB_START_TIME=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)
KMLAB_OPENS_BEFORE=$(tcp_active_opens)
export KMLAB_START_TIME KMLAB_OPENS_BEFORE

bound=$((wrk_dur + timeout_ceil + 15))
rc=0
timeout --kill-after=5 "$bound" wrk "${wrk_args[@]}" "$url" >"$log" 2>&1 || rc=$?
if [[ $rc -ne 0 || ! -s $tmp_json ]]; then
	cat "$log" >&2
	[[ $rc -ne 124 ]] || echo "$PROG: wrk did not finish within ${bound}s and was stopped" >&2
	# wrk gives up before its run when the first connect fails (done() never runs): still
	# leave a fortio-format result saying nothing completed, as fortio would.
	reason=$(head -n 1 "$log" | tr -d '"\\\t')
	if [[ $keepalive == 1 ]]; then ka=true; else ka=false; fi
	if [[ $qps == 0 ]]; then rq=max; else rq=$qps; fi
	cat >"$tmp_json" <<-JSON
		{
		  "RunType": "HTTP",
		  "Runner": "wrk",
		  "StartTime": "$KMLAB_START_TIME",
		  "RequestedQPS": "$rq",
		  "RequestedDuration": "$dur",
		  "ActualQPS": 0,
		  "ActualDuration": 0,
		  "NumThreads": $conns,
		  "KeepAlive": $ka,
		  "URL": "$url",
		  "DurationHistogram": {"Count": 0, "Min": 0, "Max": 0, "Sum": 0, "Avg": 0, "StdDev": 0, "Percentiles": []},
		  "RetCodes": {"-1": 1},
		  "SocketCount": 0,
		  "Error": "wrk exit $rc: $reason"
		}
	JSON
fi
# The Lua summary line went to wrk's stderr, captured in the log: show it.
grep '^fortio.sh\[wrk\]' "$log" >&2 || true
none_completed=0
grep -q '"Count": 0,' -- "$tmp_json" && none_completed=1
deliver
if [[ $none_completed == 1 ]]; then
	echo "$PROG: no request completed against $url (JSON still written)" >&2
	exit 1
fi
exit 0
