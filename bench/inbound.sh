#!/usr/bin/env bash
# inbound.sh - Postern as an MX is run: SPF/DKIM/DMARC checks on against a local DNS server, the
# default log level, PostgreSQL with fsync, next to a private Postfix (postfix-hold, doing no
# checks) given the same loads:
#   same   - smtp-source (../shared/bench/load.sh's way): every message from from@client.test,
#            so after the first message Postern's verdict cache answers
#   spread - bench/smtp-load.ts: message n comes from from<n>@s<n>.senders.test, a sender domain
#            never seen before (its A/MX, SPF and _dmarc records are new look-ups), as an MX with
#            many senders sees; the same generator drives Postfix
# 20 sessions, 10 KiB bodies, route `*@bench.test` -> mailbox, modes reuse and newconn, median of
# REPS timed runs after WARMUP messages.
#
#   sudo bench/inbound.sh | tee /tmp/inbound.md
#   LOADS=spread SERVERS=postern REPS=1 bench/inbound.sh     # a quick look
#   PROFILE=1 SERVERS=postern MODES=reuse bench/inbound.sh   # + Bun CPU profiles in $PROFILE_OUT
#
# What it starts (127.0.0.1 only; stopped by PID / pg_ctl / postfix stop on exit and Ctrl-C;
# scratch in a mktemp dir under /tmp, removed unless KEEP=1):
#   * bench/dns-senders.ts on a free UDP port (TTL 300 on every answer; see that file)
#   * a throwaway PostgreSQL 15 cluster (default settings), `domain add bench.test`,
#     `route add '*@bench.test' mailbox`, then `serve` with its defaults except: listen on
#     127.0.0.1 and free ports, POSTERN_DNS_SERVERS = the DNS server above, and the per-client
#     limits lifted (POSTERN_MAX_CONNECTIONS[_PER_IP]=2000, POSTERN_INBOUND_PER_MINUTE=0: the
#     one load generator stands for many clients)
#   * Postfix via ../shared/bench/peers.sh's pf_start (postfix-hold: queue file fsynced before 250)
#
# Environment (defaults):
#   MSGS=20000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=1000
#   MODES="reuse newconn"  LOADS="same spread"  SERVERS="postern postfix"
#   LOG_LEVEL=info   Postern's (info is its default)
#   PROFILE=0 PROFILE_OUT=/tmp/postern-inbound-profile  BASE_PORT=25800  KEEP=0
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${BASE_PORT:=25800}"
: "${MODES:=reuse newconn}"
: "${LOADS:=same spread}"
: "${SERVERS:=postern postfix}"
: "${LOG_LEVEL:=info}"
: "${PROFILE:=0}"
: "${PROFILE_OUT:=/tmp/postern-inbound-profile}"

BENCH_NAME=inbound
. "$HERE/postern-lib.sh"
take_postfix_functions pf_start pf_stop pf_delete_queue pf_version
[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb: apt-get install postgresql-15"
export MSGS SESSIONS SIZE REPS NEWCONN_MSGS
need_smtp_tools

pick_ports P_PG P_SMTP P_SUB P_SUBS P_HTTP P_HTTPS P_DNS P_PF

declare -A RES

# measure SERVER LOAD MODE BETWEEN SERVER_PIDS...: WARMUP then REPS runs; RES[...] = "med min max|cpu|dnscpu|fails"
measure() {
	local server=$1 load=$2 mode=$3 between=$4
	shift 4
	local n=$MSGS rates=() fails=0 cpu=0 dns=0 first=0 i c0 c1 d0 d1 f0 f1 x0
	[ "$mode" = newconn ] && n=$NEWCONN_MSGS
	for ((i = 0; i <= REPS; i++)); do
		local count=$n
		if [ "$i" = 0 ]; then
			[ "$WARMUP" -gt 0 ] || continue
			count=$WARMUP
		fi
		"$between"
		c0=$(cpu_ticks "$@")
		f0=$(cpu_ticks "$1")
		d0=$(cpu_ticks "$DNS_PID")
		[ "$server" = postern ] && x0=$(next_xid)
		if [ "$load" = same ]; then
			MSGS=$count measure_once "$P_TARGET" "$mode" "$count"
			rate=$M_ACCEPT
		else
			M_RC=0
			rate=$("$BUN" "$HERE/smtp-load.ts" --port "$P_TARGET" --mode "$mode" --messages "$count" --sessions "$SESSIONS" \
				--size "$SIZE" --first "$SEQ" --from 'from{n}@s{n}.senders.test' 2>>"$WORK/smtp-load.err" | sed -n 's/.*"rate":\([0-9.]*\).*/\1/p')
			[ -n "$rate" ] || { M_RC=1; tail -1 "$WORK/smtp-load.err" >&2; }
			SEQ=$((SEQ + count))
		fi
		c1=$(cpu_ticks "$@")
		f1=$(cpu_ticks "$1")
		d1=$(cpu_ticks "$DNS_PID")
		local commits=
		# PostgreSQL transactions that wrote (xids taken) per message: how many messages a commit carries
		[ "$server" = postern ] && commits=", $(awk -v x="$(($(next_xid) - x0))" -v n="$count" 'BEGIN { printf "%.3f", x / n }') write txns/msg"
		[ "$i" = 0 ] && continue
		if [ "$M_RC" != 0 ]; then
			fails=$((fails + 1))
			log "  $server $load $mode run $i FAILED"
			continue
		fi
		rates+=("$rate")
		cpu=$((cpu + c1 - c0))
		first=$((first + f1 - f0))
		dns=$((dns + d1 - d0))
		log "  $server $load $mode run $i: $rate msg/s, CPU $(per_msg $((c1 - c0)) "$n") ms/msg (first process tree $(per_msg $((f1 - f0)) "$n")), DNS server $(per_msg $((d1 - d0)) "$n") ms/msg$commits"
	done
	local split=
	[ $# -gt 1 ] && split=" ($(per_msg "$first" $((n * REPS))) / $(per_msg $((cpu - first)) $((n * REPS))))"
	RES[$server:$load:$mode]="$(stats "${rates[@]}")|$(per_msg "$cpu" $((n * REPS)))$split|$(per_msg "$dns" $((n * REPS)))|$fails"
}
next_xid() { pg_psql -c "select pg_snapshot_xmax(pg_current_snapshot())"; }
per_msg() { awk -v t="$1" -v n="$2" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.3f", (n > 0) ? t * 1000 / hz / n : 0 }'; }

postern_truncate() {
	pg_psql -c 'truncate messages, deliveries, attempts, events' -c 'checkpoint' >/dev/null
}
postern_check_rows() { # the last run stored every message, with its verdicts
	STORED=$(pg_psql -c "select count(*) || ' stored, spf ' || coalesce(string_agg(distinct auth_results->>'spf', ','), '-') || ', dmarc ' || coalesce(string_agg(distinct auth_results->'dmarc'->>'result', ','), '-') from messages")
}
postern_between() { postern_check_rows; [ -n "${STORED:-}" ] && log "    (previous run: $STORED)"; postern_truncate; }

scenario_postern() {
	pg_start
	postern_vars POSTERN_DNS_CHECKS=on POSTERN_DNS_SERVERS="127.0.0.1:$P_DNS" POSTERN_LOG_LEVEL="$LOG_LEVEL"
	postern_cli domain add bench.test
	postern_cli route add '*@bench.test' mailbox
	postern_start inbound
	log "Postern $POSTERN_PID on 127.0.0.1:$P_SMTP, DNS 127.0.0.1:$P_DNS"
	P_TARGET=$P_SMTP
	local load mode
	for load in $LOADS; do
		for mode in $MODES; do measure postern "$load" "$mode" postern_between "$POSTERN_PID" "$PG_PID"; done
	done
	postern_between
	log "Postern log: $(wc -l <"$WORK/postern-inbound.log") lines"
	postern_stop
	pg_stop
}

scenario_postfix() {
	pf_start hold "$P_PF" hold
	log "Postfix (postfix-hold) on 127.0.0.1:$P_PF"
	P_TARGET=$P_PF
	local load mode
	for load in $LOADS; do
		for mode in $MODES; do measure postfix "$load" "$mode" pf_delete_queue "$PF_PID"; done
	done
	pf_stop
}

report() {
	local load mode r pf acc cpu dns fails
	echo "## inbound.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), checks on, log level $LOG_LEVEL, PostgreSQL ${PG_VERSION:-?} (default settings); Postfix $(postconf -dh mail_version 2>/dev/null) (postfix-hold, no checks)."
	echo "$SESSIONS sessions, ${SIZE}-byte bodies, 1 rcpt; reuse: $MSGS msgs/run, newconn: $NEWCONN_MSGS msgs/run; $WARMUP warm-up msgs; $REPS timed runs, median [min-max]. same = smtp-source, one sender; spread = smtp-load.ts, a new sender domain per message. CPU = server tree user+sys ms/msg (Postern: total (Bun / PostgreSQL)); DNS = dns-senders.ts's CPU ms/msg."
	echo
	echo "| load | mode | Postern msgs/s | Postfix msgs/s | ratio | Postern CPU | Postfix CPU | DNS server CPU |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
	for load in $LOADS; do
		for mode in $MODES; do
			local pa=- pc=- pd=- fa=- fc=- ratio_s=-
			r=${RES[postern:$load:$mode]:-}
			[ -n "$r" ] && { IFS='|' read -r acc cpu dns fails <<<"$r"; pa="$(fmt_stats "$acc")$([ "$fails" != 0 ] && echo " ($fails FAILED)")"; pc=$cpu; pd=$dns; }
			pf=${RES[postfix:$load:$mode]:-}
			[ -n "$pf" ] && { IFS='|' read -r facc fc _ ffails <<<"$pf"; fa="$(fmt_stats "$facc")$([ "$ffails" != 0 ] && echo " ($ffails FAILED)")"; }
			[ -n "$r" ] && [ -n "$pf" ] && ratio_s=$(ratio "${acc%% *}" "${facc%% *}")
			echo "| $load | $mode | $pa | $fa | **$ratio_s** | $pc | $fc | $pd |"
		done
	done
}

take_rev
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); SERVERS=$SERVERS LOADS=$LOADS MODES=$MODES MSGS=$MSGS SESSIONS=$SESSIONS REPS=$REPS; scratch $WORK"
SEQ=0
dns_start
for s in $SERVERS; do
	SEQ=0 # both servers see the same senders
	case $s in postern | postfix) "scenario_$s" ;; *) die "unknown server $s" ;; esac
done
report
log "done in $(($(date +%s) - T_START))s"
