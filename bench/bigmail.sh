#!/usr/bin/env bash
# bigmail.sh - what a queue of big messages costs Postern's memory while it delivers them: `serve`
# on a throwaway PostgreSQL relays COUNT messages of SIZE octets (25 MiB, the default size limit)
# to an smtp-sink; the peak RSS of the Bun process over its idle RSS, divided by the bytes that can
# be in flight at once (all of them here: the scheduler's in-flight cap is 256 MiB), is the cost
# per byte of body. The messages are written straight into the queue by SQL (as if accepted
# earlier) so only the delivery side is measured: reading bodies back, DATA encoding, sending.
# Bodies are CRLF lines of random base64, as attachments are stored (PostgreSQL cannot compress
# them; encode() breaks its base64 with bare LFs, made CRLF here as a received message has them).
#
#   sudo bench/bigmail.sh | tee /tmp/bigmail.md
#   REV=HEAD~1 sudo bench/bigmail.sh    # an earlier commit, exported, for a before/after
#
# What it starts (127.0.0.1 only; stopped by PID / pg_ctl on exit and Ctrl-C; scratch in a mktemp
# dir under /tmp, removed unless KEEP=1): a throwaway PostgreSQL 15 cluster (default settings);
# an smtp-sink; for each COUNT a fresh `serve` (so its peak RSS is this queue's), route
# `*@bench.test` -> relay:127.0.0.1:SINK, default log level.
#
# Environment (defaults):
#   SIZE=26214400  COUNTS="1 8"  REPS=3 (a fresh serve each)  BASE_PORT=27000  KEEP=0
#   REV=  a commit to run instead of the working tree
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${BASE_PORT:=27000}"
: "${SIZE:=26214400}"
: "${COUNTS:=1 8}"
: "${REPS:=3}"

BENCH_NAME=bigmail
. "$HERE/postern-lib.sh"
[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb: apt-get install postgresql-15"
need_smtp_tools
take_rev

pick_ports P_PG P_SMTP P_SUB P_SUBS P_HTTP P_HTTPS P_SINK

rss_kib() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }

# queue_big COUNT: COUNT messages of SIZE octets, one delivery each to the sink, due now
queue_big() {
	local lines=$((SIZE / 178))
	pg_psql -c "insert into messages (id, direction, mail_from, size, raw)
		select 'BIG' || i, 'inbound', 'from@client.test', $SIZE, raw from generate_series(1, $1) i,
		lateral (select convert_to('From: <from@client.test>' || E'\\r\\n' || 'To: <to@bench.test>' || E'\\r\\n'
			|| 'Subject: big ' || i || E'\\r\\n\\r\\n'
			|| string_agg(replace(encode(sha512(convert_to(g || '.' || i, 'UTF8')) || sha512(convert_to(i || '.' || g, 'UTF8')), 'base64'), E'\\n', E'\\r\\n'), E'\\r\\n')
			|| E'\\r\\n', 'UTF8') as raw from generate_series(1, $lines) g) b" \
		-c "insert into deliveries (message_id, rcpt, target) select id, 'to@bench.test', 'relay:127.0.0.1:$P_SINK' from messages" \
		-c "update messages set size = octet_length(raw)" -c "select pg_notify('postern_queue', '')" >/dev/null
	QUEUED_BYTES=$(pg_psql -c 'select sum(octet_length(raw)) from messages')
}

# one_run COUNT: fresh serve, idle RSS, queue, wait until all delivered; sets PEAK and IDLE (KiB)
# and SECS
one_run() {
	local count=$1 t0 t1 pend i
	pg_psql -c 'truncate messages, deliveries, attempts, events' >/dev/null
	postern_start "big$count"
	sleep 3
	IDLE=$(rss_kib "$POSTERN_PID" VmRSS)
	t0=$(date +%s.%N)
	queue_big "$count"
	for ((i = 0; i < 3000; i++)); do
		pend=$(pg_psql -c "select count(*) from deliveries where status <> 'delivered'")
		[ "$pend" = 0 ] && break
		sleep 0.1
	done
	t1=$(date +%s.%N)
	PEAK=$(rss_kib "$POSTERN_PID" VmHWM)
	postern_stop
	[ "$pend" = 0 ] || die "$pend deliveries not delivered after 300 s (see $WORK/postern-big$count.log)"
	SECS=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
}

pg_start
start_sink "$P_SINK" "$WORK/sink.log"
EXTRA_PIDS+=("$SINK_PID")
postern_vars POSTERN_LOG_LEVEL=info
postern_cli domain add bench.test
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); SIZE=$SIZE COUNTS=$COUNTS REPS=$REPS; Postern $POSTERN_VERSION"

echo "## bigmail.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, Postern $POSTERN_VERSION, PostgreSQL ${PG_VERSION:-?}"
echo
echo "A fresh serve per run relays COUNT messages of $SIZE octets (random base64 lines) from the queue to an smtp-sink. Growth = peak RSS (VmHWM) - idle RSS; per body byte = growth / bytes queued."
echo
echo "| messages | MiB queued | idle RSS MiB | peak RSS MiB | growth MiB | growth per body byte | seconds |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for count in $COUNTS; do
	for ((r = 1; r <= REPS; r++)); do
		one_run "$count"
		log "  $count x $SIZE run $r: idle $((IDLE / 1024)) MiB, peak $((PEAK / 1024)) MiB, $SECS s"
		awk -v c="$count" -v q="$QUEUED_BYTES" -v i="$IDLE" -v p="$PEAK" -v s="$SECS" 'BEGIN {
			printf "| %d | %.1f | %.1f | %.1f | %.1f | **%.2f** | %s |\n", c, q / 1048576, i / 1024, p / 1024, (p - i) / 1024, (p - i) * 1024 / q, s }'
	done
done
log "done in $(($(date +%s) - T_START))s"
