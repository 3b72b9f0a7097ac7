#!/usr/bin/env bash
# scale.sh - two Postern nodes on one PostgreSQL: the accept rate (route -> mailbox) and the relay
# rate (route -> relay:127.0.0.1:SINK, delivered end to end to a counting smtp-sink) with one
# `serve` and with two `serve` on the same database, the load split between their ports; every
# run is checked for lost and duplicated messages. Reports msgs/s 1 node vs 2 nodes and the
# ratio, CPU ms/msg split node 1 Bun / node 2 Bun / PostgreSQL / load generators, and what
# PostgreSQL did: write transactions committed per second and per message, WAL bytes per message.
#
#   sudo bench/scale.sh | tee /tmp/scale.md
#   REPS=1 MSGS=2000 WARMUP=200 bench/scale.sh            # a quick look
#   SCENARIOS=relay MODES="reuse newconn" bench/scale.sh   # relay only, both connection modes
#
# Load: always two smtp-source processes (Postfix's; HELO, no pipelining, 1 rcpt, SIZE-byte
# body) started together, each with half the sessions and half the messages: with 1 node both
# go to its port, with 2 nodes one goes to each node's port, so the client side is the same in
# both cases. Rate = messages / time until both smtp-source exited (accepted) or until the sink
# had counted them all (delivered). WARMUP messages (untimed, checked) before the first mode of
# each configuration, then REPS timed runs; the queue is truncated and checkpointed between runs.
#
# What it starts (all on 127.0.0.1, all stopped again by PID / pg_ctl stop on exit and on
# Ctrl-C; scratch data in a mktemp dir under /tmp, removed unless KEEP=1):
#   * a throwaway PostgreSQL 15 cluster (initdb/pg_ctl as the postgres user, default settings:
#     fsync=on, synchronous_commit=on, max_connections=100), database `postern`, used by every
#     configuration; `bun src/cli.ts domain add bench.test`, then per scenario
#     `route add '*@bench.test' mailbox` (accept) or `relay:127.0.0.1:SINK` (relay)
#   * per configuration one or two `bun src/cli.ts serve`, same DATABASE_URL, each with its own
#     ports (SMTP, submission(s), HTTP, HTTPS) and POSTERN_DATA_DIR (control socket, TLS key);
#     node 2 starts once node 1 listens (node 1 runs the migrations). Both with
#     POSTERN_LOG_LEVEL=warn, POSTERN_DNS_CHECKS=off (smtp-source's sender domain client.test
#     does not resolve; this benchmark is about the database and scale-out, bench/inbound.sh
#     measures the checks), POSTERN_DNS_SERVERS=127.0.0.1:9, POSTERN_MAX_CONNECTIONS[_PER_IP]=2000,
#     POSTERN_INBOUND_PER_MINUTE=0; logs in $WORK/node<i>-<scenario>-<n>nodes.log
#   * relay: one smtp-sink on SINK for the scenario (`-c`: it counts), to which both nodes'
#     schedulers deliver (each claims due deliveries from the shared queue, whichever node
#     accepted them)
# Checks after every run (warm-up too), once the queue is settled: messages stored = sent,
# deliveries = sent and all `delivered`; relay also: attempts with outcome delivered = sent, no
# delivery with more than one delivered attempt, the sink counted exactly the sent messages (more
# = duplicates). A failed check shows in the table's `checks` column.
# PostgreSQL's numbers come from the database itself, read before and after each run: write
# transactions = pg_snapshot_xmax(pg_current_snapshot()) difference (exact; pg_stat_database's
# xact_commit lags up to 10 s on idle backends in PostgreSQL 15 and also counts read-only
# queries, so it is only logged on stderr), WAL = pg_current_wal_lsn() difference. Per second =
# over the run: accept until the last 250, relay until the queue was settled.
#
# Environment (defaults):
#   MSGS=10000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=500 MODES=reuse
#   SCENARIOS="accept relay"   in this order
#   NODES="1 2"                configurations, in this order
#   E2E_TIMEOUT=300            seconds to wait for the sink to count a run / the queue to settle
#   BASE_PORT=26600            first port tried; free ports are taken upwards from it
#   KEEP=0                     1 = keep the scratch dir (node logs, smtp-source logs, database)
# Needs root (PostgreSQL runs as its user), postfix (smtp-source, smtp-sink) and postgresql-15
# installed (bench/accept.sh or ../shared/bench/peers.sh install them).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${BASE_PORT:=26600}"
: "${MODES:=reuse}"
: "${SCENARIOS:=accept relay}"
: "${NODES:=1 2}"
: "${MSGS:=10000}"
: "${WARMUP:=500}"
: "${E2E_TIMEOUT:=300}"

BENCH_NAME=scale
. "$HERE/postern-lib.sh" # checks, $WORK, ../shared/bench/lib.sh, then the helpers
[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb: apt-get install postgresql-15"
need_smtp_tools
for s in $SCENARIOS; do case $s in accept | relay) ;; *) die "unknown scenario $s (accept, relay)" ;; esac; done
for n in $NODES; do case $n in 1 | 2) ;; *) die "NODES: 1 and/or 2, not $n" ;; esac; done
[ "$SESSIONS" -ge 2 ] || die "SESSIONS must be at least 2 (split between two generators)"

pick_ports P_PG P_SINK
declare -A N_SMTP N_SUB N_SUBS N_HTTP N_HTTPS NODE_PID
for i in 1 2; do
	pick_ports "N_SMTP[$i]" "N_SUB[$i]" "N_SUBS[$i]" "N_HTTP[$i]" "N_HTTPS[$i]"
done
# postern_vars' defaults (the CLI's environment): node 1's
P_SMTP=${N_SMTP[1]} P_SUB=${N_SUB[1]} P_SUBS=${N_SUBS[1]} P_HTTP=${N_HTTP[1]} P_HTTPS=${N_HTTPS[1]}
HZ=$(getconf CLK_TCK)
SINK_LOG=$WORK/sink.log
SINK_PID=
GEN_PIDS=()

# the generators of a run cut short (Ctrl-C) go first, then the lib's cleanup (nodes, sink,
# PostgreSQL, scratch dir)
scale_cleanup() {
	local p
	for p in "${GEN_PIDS[@]}"; do kill_tree "$p"; done
	cleanup
}
trap scale_cleanup EXIT

# node_start I TAG: `serve` number I (own ports and data dir, the shared DATABASE_URL)
node_start() {
	local i=$1 log=$WORK/node$1-$2.log
	postern_vars POSTERN_DATA_DIR="$WORK/node$i" POSTERN_SMTP_PORT="${N_SMTP[$i]}" \
		POSTERN_SUBMISSION_PORT="${N_SUB[$i]}" POSTERN_SUBMISSIONS_PORT="${N_SUBS[$i]}" \
		POSTERN_HTTP_PORT="${N_HTTP[$i]}" POSTERN_HTTPS_PORT="${N_HTTPS[$i]}"
	port_listening "${N_SMTP[$i]}" && die "port ${N_SMTP[$i]} is already in use"
	(cd "$SRC" && exec env "${POSTERN_VARS[@]}" "$BUN" src/cli.ts serve >"$log" 2>&1) &
	NODE_PID[$i]=$!
	EXTRA_PIDS+=("${NODE_PID[$i]}")
	wait_port "${N_HTTP[$i]}" 60 || { cat "$log" >&2; die "node $i did not start"; }
	port_listening "${N_SMTP[$i]}" || { cat "$log" >&2; die "node $i does not listen on ${N_SMTP[$i]}"; }
}

node_stop() { # I
	stop_extra "${NODE_PID[$1]}"
	NODE_PID[$1]=
}

sink_start() {
	start_sink "$P_SINK" "$SINK_LOG" # lib.sh: smtp-sink -c, sets SINK_PID
	EXTRA_PIDS+=("$SINK_PID")
}

sink_stop() { stop_extra "$SINK_PID"; SINK_PID=; }

pg_counters() { # -> "next_xid wal_bytes xact_commit"
	pg_psql -F' ' -c "select pg_snapshot_xmax(pg_current_snapshot()), pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0'), xact_commit from pg_stat_database where datname = current_database()"
}

# settle SECONDS: until no delivery is waiting (relay: all delivered or bounced); 1 = timed out
settle() {
	local deadline=$(($(date +%s) + $1)) pend
	while :; do
		pend=$(pg_psql -c "select count(*) from deliveries where status in ('queued', 'deferred')")
		[ "${pend:-1}" = 0 ] && return 0
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

# check_run SCENARIO COUNT SINK_DELTA: CHECK = "ok" or what is wrong
check_run() {
	local scen=$1 n=$2 sink=$3 msgs dels settled att dup other
	read -r msgs dels settled att dup other < <(pg_psql -F' ' -c "select (select count(*) from messages),
		(select count(*) from deliveries), (select count(*) from deliveries where status = 'delivered'),
		(select count(*) from attempts where outcome = 'delivered'),
		(select count(*) from (select delivery_id from attempts where outcome = 'delivered' group by 1 having count(*) > 1) d),
		(select count(*) from attempts where outcome <> 'delivered')")
	CHECK=
	[ "$msgs" = "$n" ] || CHECK+=" stored $msgs/$n"
	[ "$dels" = "$n" ] || CHECK+=" deliveries $dels/$n"
	[ "$settled" = "$n" ] || CHECK+=" delivered $settled/$n"
	if [ "$scen" = relay ]; then
		[ "$att" = "$n" ] || CHECK+=" delivered-attempts $att/$n"
		[ "$dup" = 0 ] || CHECK+=" DUPLICATES $dup"
		[ "$other" = 0 ] || CHECK+=" failed-attempts $other"
		[ "$sink" = "$n" ] || CHECK+=" sink $sink/$n"
	fi
	CHECK=${CHECK# }
	: "${CHECK:=ok}"
}

truncate_queue() {
	pg_psql -c 'truncate messages, deliveries, attempts, events, hook_deliveries' -c 'checkpoint' >/dev/null
}

# gen TAG PORT SESSIONS COUNT MODE: one smtp-source in the background; its end time and exit
# status are written to $WORK/gen-TAG.done
gen() {
	local flags=()
	[ "$5" = reuse ] && flags=(-d)
	(
		smtp-source "${flags[@]}" -s "$3" -m "$4" -l "$SIZE" -M "$BENCH_HELO" -f "$BENCH_FROM" \
			-t "$BENCH_RCPT" "127.0.0.1:$2" >"$WORK/gen-$1.log" 2>&1
		echo "$? $(now_ns)" >"$WORK/gen-$1.done"
	) &
	GEN_PIDS+=("$!")
}

# run_once SCENARIO NODES MODE COUNT: one run with the load split over two generators; sets
# RUN ("fields" for the results file, see below), RUN_RC and CHECK
run_once() {
	local scen=$1 nodes=$2 mode=$3 n=$4 half rest sa sb pa pb base=0 t0 t1 t2 t3 rca rcb ta tb
	local g0 g1 s0 s1 o0 o1 c1a c1b c2a c2b cpa cpb cla clb e2e=- sink=0
	half=$(((n + 1) / 2)); rest=$((n - half))
	sa=$(((SESSIONS + 1) / 2)); sb=$((SESSIONS - sa))
	pa=${N_SMTP[1]}
	pb=${N_SMTP[$nodes]}
	[ "$scen" = relay ] && base=$(sink_count "$SINK_LOG")
	rm -f "$WORK"/gen-[ab].done
	g0=$(pg_counters)
	# shellcheck disable=SC2034 # read by own_ticks (lib.sh)
	SERVER_PIDS=$PG_PID # own_ticks: this script's tree (nodes, sink, generators) + PostgreSQL
	s0=$(stat_ticks); o0=$(own_ticks)
	c1a=$(cpu_ticks "${NODE_PID[1]}"); c2a=$(cpu_ticks "${NODE_PID[2]:-}"); cpa=$(cpu_ticks "$PG_PID"); cla=$(cpu_ticks $$)
	t0=$(now_ns)
	GEN_PIDS=()
	gen a "$pa" "$sa" "$half" "$mode"
	gen b "$pb" "$sb" "$rest" "$mode"
	wait "${GEN_PIDS[@]}"
	GEN_PIDS=()
	t1=$(now_ns)
	read -r rca ta <"$WORK/gen-a.done"
	read -r rcb tb <"$WORK/gen-b.done"
	RUN_RC=$((rca != 0 || rcb != 0))
	if [ "$scen" = relay ] && [ "$RUN_RC" = 0 ]; then
		local deadline=$(($(date +%s) + E2E_TIMEOUT))
		while [ "$(sink_count "$SINK_LOG")" -lt $((base + n)) ]; do
			[ "$(date +%s)" -ge "$deadline" ] && { e2e=timeout; break; }
			sleep 0.05
		done
		t2=$(now_ns)
		[ "$e2e" = timeout ] || e2e=$(rate "$n" $((t2 - t0)))
	fi
	settle "$E2E_TIMEOUT" || log "    queue not settled after ${E2E_TIMEOUT}s"
	t3=$(now_ns)
	[ "$scen" = accept ] && t3=$t1 # a mailbox copy is done when its 250 is sent
	c1b=$(cpu_ticks "${NODE_PID[1]}"); c2b=$(cpu_ticks "${NODE_PID[2]:-}"); cpb=$(cpu_ticks "$PG_PID"); clb=$(cpu_ticks $$)
	o1=$(own_ticks); s1=$(stat_ticks)
	g1=$(pg_counters)
	[ "$scen" = relay ] && sink=$(($(sink_count "$SINK_LOG") - base))
	check_run "$scen" "$n" "$sink"
	# load = this script's tree minus the nodes: the two smtp-source, the sink, psql polls
	local n1=$((c1b - c1a)) n2=$((c2b - c2a)) pg=$((cpb - cpa))
	local ld=$((clb - cla - n1 - n2))
	# fields: n accepted delivered active_s n1 n2 pg load busy total other xids wal commits gen_a_s gen_b_s
	RUN=$(awk -v n="$n" -v t0="$t0" -v t1="$t1" -v t3="$t3" -v ta="$ta" -v tb="$tb" -v e2e="$e2e" \
		-v n1="$n1" -v n2="$n2" -v pg="$pg" -v ld="$ld" -v s0="$s0" -v s1="$s1" -v own=$((o1 - o0)) \
		-v g0="$g0" -v g1="$g1" 'BEGIN {
		split(s0, a, " "); split(s1, b, " "); split(g0, x, " "); split(g1, y, " ")
		busy = b[1] - a[1]; total = b[2] - a[2]; other = busy - own; if (other < 0) other = 0
		printf "%d %.1f %s %.3f %d %d %d %d %d %d %d %d %.0f %d %.3f %.3f\n", n, n / ((t1 - t0) / 1e9), e2e,
			(t3 - t0) / 1e9, n1, n2, pg, ld, busy, total, other, y[1] - x[1], y[2] - x[2], y[3] - x[3],
			(ta - t0) / 1e9, (tb - t0) / 1e9 }')
}

# run_line LABEL: the stderr line for RUN
run_line() {
	# shellcheck disable=SC2086
	set -- $RUN
	awk -v l="$LABEL" -v hz="$HZ" -v c="$CHECK" -v n="$1" -v acc="$2" -v e2e="$3" -v st="$4" -v n1="$5" -v n2="$6" \
		-v pg="$7" -v ld="$8" -v busy="$9" -v total="${10}" -v other="${11}" -v xid="${12}" -v wal="${13}" \
		-v xc="${14}" -v ga="${15}" -v gb="${16}" 'BEGIN {
		ms = 1000 / hz / n
		printf "  %s: accepted %s msg/s%s (generators done at %.2f / %.2f s), CPU ms/msg node1 %.3f node2 %.3f PostgreSQL %.3f load %.3f, busy %.0f%% other %.0f%%, %d write txns (%.2f/msg, %.0f/s; xact_commit delta %d, lags), WAL %.1f KiB/msg, check: %s\n",
			l, acc, (e2e == "-" ? "" : ", delivered " e2e " msg/s"), ga, gb, n1 * ms, n2 * ms, pg * ms, ld * ms,
			(total > 0 ? 100 * busy / total : 0), (total > 0 ? 100 * other / total : 0), xid, xid / n, xid / st, xc,
			wal / n / 1024, c }' >&2
}

declare -A RESF # results file per scenario:nodes:mode
# measure SCENARIO NODES MODE WARMUP_COUNT
measure() {
	local scen=$1 nodes=$2 mode=$3 w=$4 n=$MSGS i f=$WORK/res-$1-$2-$3
	[ "$mode" = newconn ] && n=$NEWCONN_MSGS
	RESF[$scen:$nodes:$mode]=$f
	: >"$f"
	if [ "$w" -gt 0 ]; then
		LABEL="$scen $nodes node(s) $mode warm-up"
		run_once "$scen" "$nodes" "$mode" "$w"
		run_line
		truncate_queue
	fi
	for ((i = 1; i <= REPS; i++)); do
		LABEL="$scen $nodes node(s) $mode run $i"
		run_once "$scen" "$nodes" "$mode" "$n"
		[ "$RUN_RC" = 0 ] || { log "  $LABEL FAILED: $(tail -2 "$WORK"/gen-[ab].log | tr '\n' ' ')"; CHECK="FAILED $CHECK"; }
		run_line
		echo "$RUN $RUN_RC ${CHECK// /_}" >>"$f"
		truncate_queue
	done
}

scenario() { # SCENARIO
	local scen=$1 nodes i mode w
	postern_vars
	if [ "$scen" = relay ]; then
		postern_cli route add '*@bench.test' "relay:127.0.0.1:$P_SINK"
		sink_start
	else
		postern_cli route add '*@bench.test' mailbox
	fi
	for nodes in $NODES; do
		for ((i = 1; i <= nodes; i++)); do node_start "$i" "$scen-${nodes}nodes"; done
		log "$scen, $nodes node(s): SMTP on ${N_SMTP[1]}$([ "$nodes" = 2 ] && echo " and ${N_SMTP[2]}") (Bun PIDs ${NODE_PID[1]} ${NODE_PID[2]:-}), PostgreSQL $P_PG (postmaster $PG_PID)$([ "$scen" = relay ] && echo ", sink $P_SINK")"
		w=$WARMUP
		for mode in $MODES; do
			measure "$scen" "$nodes" "$mode" "$w"
			w=0
		done
		for ((i = nodes; i >= 1; i--)); do
			node_stop "$i"
			local l=$WORK/node$i-$scen-${nodes}nodes.log
			[ -s "$l" ] && { log "  node $i log: $(wc -l <"$l") lines (warnings and errors), last 3:"; tail -3 "$l" | cut -c1-300 >&2; }
		done
	done
	[ "$scen" = relay ] && sink_stop
	postern_cli route rm '*@bench.test'
}

# summary FILE -> "acc_med acc_min acc_max|e2e_med e2e_min e2e_max|n1 n2 pg load total ms/msg|
#   busy% other%max|xid/msg xid/s wal_kib/msg|checks"
summary() {
	local f=$1
	# shellcheck disable=SC2046
	printf '%s|%s|' "$(stats $(awk '$17 == 0 { print $2 }' "$f"))" "$(stats $(awk '$17 == 0 { print $3 }' "$f"))"
	awk -v hz="$HZ" '
		{ n += $1; st += $4; n1 += $5; n2 += $6; pg += $7; ld += $8; busy += $9; total += $10
		  o = (total > 0 && $10 > 0) ? 100 * $11 / $10 : 0; if (o > omax) omax = o
		  xid += $12; wal += $13; c = $18; gsub(/_/, " ", c); if (c != "ok") bad = bad (bad == "" ? "" : "; ") "run " NR ": " c }
		END {
			if (n == 0) { print "-|-|-|-"; exit }
			ms = 1000 / hz / n
			printf "%.3f %.3f %.3f %.3f %.3f|%.0f %.0f|%.2f %.0f %.1f|%s\n", n1 * ms, n2 * ms, pg * ms, ld * ms,
				(n1 + n2 + pg) * ms, (total > 0 ? 100 * busy / total : 0), omax, xid / n, xid / st, wal / n / 1024,
				(bad == "" ? "ok" : bad)
		}' "$f"
}

report() {
	local scen mode nodes f acc e2e cpu mach pgw chk one1 one2 r1 r2
	echo "## scale.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), PostgreSQL ${PG_VERSION:-?} (default settings: fsync=on, synchronous_commit=on), one database for 1 or 2 \`serve\` nodes (POSTERN_DNS_CHECKS=off, log level warn); accept = route \`*@bench.test\` -> mailbox, relay = -> \`relay:127.0.0.1:SINK\`, an smtp-sink counting, both nodes' schedulers delivering."
	echo "Load: two smtp-source at once, $((SESSIONS - SESSIONS / 2)) + $((SESSIONS / 2)) sessions and half the messages each (1 node: both to it; 2 nodes: one per node), ${SIZE}-byte body, 1 rcpt, HELO; reuse = -d, $MSGS msgs/run; newconn = one connection per message, $NEWCONN_MSGS msgs/run; $WARMUP warm-up msgs per configuration; $REPS timed runs; median [min-max]."
	echo "accepted = msgs / time until both generators got every 250; delivered = until the sink counted them all. CPU = user+sys ms per message from the start of the load to the settled queue: node 1 Bun, node 2 Bun, PostgreSQL (postmaster tree), total of those; load = the two smtp-source + smtp-sink (+ this script's polling). busy% = the machine's CPU use during the runs (2 cores = 100), other% = worst run's share taken outside the benchmark. write txns = PostgreSQL transactions that wrote (xid count), per message and per second of the run (accept: until the last 250; relay: until the queue was settled); WAL = KiB written per message. checks: stored = sent, every delivery delivered once, sink count = sent."
	echo
	echo "| scenario | mode | nodes | accepted msgs/s | delivered msgs/s | 2/1 | CPU ms/msg: node 1 / node 2 / PostgreSQL = total | load CPU ms/msg | busy% | other% | write txns/msg | write txns/s | WAL KiB/msg | checks |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	for scen in $SCENARIOS; do
		for mode in $MODES; do
			one1=; one2=
			for nodes in $NODES; do
				f=${RESF[$scen:$nodes:$mode]:-}
				[ -n "$f" ] || continue
				IFS='|' read -r acc e2e cpu mach pgw chk <<<"$(summary "$f")"
				local fails
				fails=$(awk '$17 != 0' "$f" | wc -l)
				[ "$nodes" = 1 ] && { one1=${acc%% *}; one2=${e2e%% *}; }
				local ratio_s=-
				if [ "$nodes" = 2 ] && [ -n "$one1" ]; then
					r1=$(ratio "${acc%% *}" "$one1")
					ratio_s="**$r1**"
					[ "$scen" = relay ] && { r2=$(ratio "${e2e%% *}" "$one2"); ratio_s="$r1 acc., **$r2** del."; }
				fi
				# shellcheck disable=SC2086
				set -- $cpu
				local cpu_s="$1 / - / $3 = **$5**"
				[ "$nodes" = 2 ] && cpu_s="$1 / $2 / $3 = **$5**"
				# shellcheck disable=SC2086
				set -- $mach
				local busy=$1 other=$2
				# shellcheck disable=SC2086
				set -- $pgw
				echo "| $scen | $mode | $nodes | $(fmt_stats "$acc")$([ "$fails" != 0 ] && echo " ($fails FAILED)") | $([ "$scen" = relay ] && fmt_stats "$e2e" || echo -) | $ratio_s | $cpu_s | $(awk -v c="$cpu" 'BEGIN { split(c, a, " "); print a[4] }') | $busy | $other | $1 | $2 | $3 | $chk |"
			done
		done
	done
}

take_rev
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); SCENARIOS=$SCENARIOS NODES=$NODES MODES=$MODES MSGS=$MSGS NEWCONN_MSGS=$NEWCONN_MSGS SESSIONS=$SESSIONS SIZE=$SIZE REPS=$REPS WARMUP=$WARMUP; scratch $WORK"
pg_start
postern_vars
postern_cli domain add bench.test
for s in $SCENARIOS; do scenario "$s"; done
pg_stop
report
log "done in $(($(date +%s) - T_START))s"
