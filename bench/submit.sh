#!/usr/bin/env bash
# submit.sh - Postern as the submission server of a domain, end to end: many clients log in over
# STARTTLS with AUTH PLAIN (bench/smtp-load.ts) and submit to a remote domain; Postern signs each
# message twice (DKIM RSA-2048 + Ed25519 with bench.test's keys), finds the MX of remote.test in
# a local DNS server (bench/dns-senders.ts: remote.test MX 10 mx.remote.test, A 127.0.0.1, TTL
# 300) and delivers to an smtp-sink there, which counts. Next to a private Postfix given the same
# load over PLAIN SMTP from a trusted network (mynetworks: no TLS, no AUTH, no DKIM, no MX look-up;
# peers.sh's postfix-relay, transport_maps to the same smtp-sink): the closest Postfix comes
# without a SASL backend and a milter, so it does much less per message than Postern.
# 20 sessions, 10 KiB bodies, 1 rcpt, modes reuse (one login per session) and newconn (a TLS
# handshake and a login per message), median of REPS timed runs after WARMUP messages.
#
#   sudo bench/submit.sh | tee /tmp/submit.md
#   SERVERS=postern MODES=reuse REPS=1 MSGS=1000 bench/submit.sh   # a quick look
#   PROFILE=1 SERVERS=postern MODES=reuse bench/submit.sh           # + Bun CPU profile in $PROFILE_OUT
#
# What it starts (127.0.0.1 only; stopped by PID / pg_ctl / postfix stop on exit and Ctrl-C;
# scratch in a mktemp dir under /tmp, removed unless KEEP=1):
#   * bench/dns-senders.ts on a free UDP port (TTL 300 on every answer)
#   * smtp-sink on a free port (counting: the end-to-end rate), the MX of remote.test for Postern
#     and Postfix's relay target
#   * a throwaway PostgreSQL 15 cluster (default settings: fsync=on, synchronous_commit=on),
#     `domain add bench.test` (RSA-2048 and Ed25519 DKIM keys), `user add user@bench.test
#     --password-stdin`, then `serve` with its defaults (DNS checks on, MTA-STS enforce, TLS-RPT on,
#     log level info, its self-signed RSA-2048 certificate) except: 127.0.0.1 and free ports,
#     POSTERN_DNS_SERVERS = the DNS server above, POSTERN_OUTBOUND_PORT = the sink's port,
#     POSTERN_ALLOW_PRIVATE_DESTINATIONS=on (remote.test's MX is 127.0.0.1), the per-client limits
#     lifted (POSTERN_MAX_CONNECTIONS[_PER_IP]=2000, POSTERN_INBOUND_PER_MINUTE=0: one load
#     generator stands for many clients)
#   * Postfix via ../shared/bench/peers.sh's pf_start in relay mode
# Load: smtp-load.ts; Postern: --starttls --auth user@bench.test:PASSWORD, MAIL FROM and From:
# user@bench.test, RCPT rcpt<n>@remote.test (a new recipient per message); Postfix: plain SMTP
# (HELO), the same sender, RCPT rcpt<n>@bench.test (its relay domain). Each run's CPU counts from
# the client's start until the sink has every message and the server has settled (Postern: every
# delivery `delivered`; Postfix: queue empty). Between runs Postern's rows are checked (every
# message stored, every delivery delivered, two DKIM signatures) and truncated + checkpointed.
# AUTH verifies an argon2id hash (Bun's defaults, ~150 ms of CPU on Bun's worker threads) the
# first time a login is seen; after that Postern's verified-logins cache answers (15 min).
# Where the time goes: CPU per message of Bun, PostgreSQL, the DNS server and the client apart;
# PROFILE=1 adds a Bun CPU profile of serve (its JS thread only: argon2id and the TLS crypto done
# on other threads show in the Bun column, not in the profile) and prints its top 10.
#
# Environment (defaults):
#   MSGS=5000 NEWCONN_MSGS=2000 SESSIONS=20 SIZE=10240 REPS=3 WARMUP=500 (warm-up before each
#   server's first mode)  MODES="reuse newconn"  SERVERS="postern postfix"
#   LOG_LEVEL=info   Postern's (info is its default)
#   E2E_TIMEOUT=300  seconds to wait for the sink to count a run's messages
#   PROFILE=0 PROFILE_OUT=/tmp/postern-submit-profile  BASE_PORT=26200  KEEP=0
# Needs root, postfix (smtp-sink), postgresql-15 (bench/accept.sh or peers.sh install them).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${BASE_PORT:=26200}"
: "${MODES:=reuse newconn}"
: "${SERVERS:=postern postfix}"
: "${LOG_LEVEL:=info}"
: "${PROFILE:=0}"
: "${PROFILE_OUT:=/tmp/postern-submit-profile}"
: "${MSGS:=5000}"
: "${WARMUP:=500}"
: "${NEWCONN_MSGS:=2000}"

BENCH_NAME=submit
# shellcheck source=bench/postern-lib.sh
. "$HERE/postern-lib.sh"
take_postfix_functions pf_start pf_stop pf_wait_empty pf_version
[ -x "$PGBIN/initdb" ] || die "no $PGBIN/initdb: apt-get install postgresql-15"
need_smtp_tools
for s in $SERVERS; do case $s in postern | postfix) ;; *) die "unknown server $s (postern, postfix)" ;; esac; done
for m in $MODES; do case $m in reuse | newconn) ;; *) die "unknown mode $m (reuse, newconn)" ;; esac; done

pick_ports P_PG P_SMTP P_SUB P_SUBS P_HTTP P_HTTPS P_DNS P_SINK P_PF
SENDER=user@bench.test
PASSWORD=bench-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')
HZ=$(getconf CLK_TCK)

SINKLOG=$WORK/sink.log
sink_start() {
	start_sink "$P_SINK" "$SINKLOG" # lib.sh: smtp-sink -c, sets SINK_PID
	EXTRA_PIDS+=("$SINK_PID")
}

# client SERVER MODE COUNT: smtp-load.ts against SERVER; sets L_RC, L_SECONDS (its own timing,
# first connect to last reply) and L_CPU_MS (its user+sys, Bun's start included)
client() {
	local args=(--mode "$2" --messages "$3" --sessions "$SESSIONS" --size "$SIZE" --first "$SEQ" --from "$SENDER")
	if [ "$1" = postern ]; then
		args+=(--port "$P_SUB" --starttls --auth "$SENDER:$PASSWORD" --rcpt 'rcpt{n}@remote.test')
	else
		args+=(--port "$P_PF" --rcpt 'rcpt{n}@bench.test')
	fi
	(
		"$BUN" "$HERE/smtp-load.ts" "${args[@]}" >"$WORK/load.json" 2>>"$WORK/smtp-load.err"
		echo $? >"$WORK/load.rc"
		times >"$WORK/load.times" # line 2: the children's (smtp-load's) user and sys time
	)
	L_RC=$(cat "$WORK/load.rc")
	L_SECONDS=$(sed -n 's/.*"seconds":\([0-9.]*\).*/\1/p' "$WORK/load.json")
	[ -n "$L_SECONDS" ] || [ "$L_RC" != 0 ] || L_RC=1
	L_CPU_MS=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { f = $i; sub(/s$/, "", f); split(f, a, "m"); t += a[1] * 60 + a[2] } printf "%.0f", t * 1000 }' "$WORK/load.times")
	SEQ=$((SEQ + $3))
}

# wait_sink TARGET: until the sink has counted TARGET messages in all; 1 after E2E_TIMEOUT s
wait_sink() {
	local deadline=$(($(date +%s) + E2E_TIMEOUT))
	while [ "$(sink_count "$SINKLOG")" -lt "$1" ]; do
		[ "$(date +%s)" -ge "$deadline" ] && return 1
		sleep 0.05
	done
}

postern_settle() { # every delivery of the run final (up to 60 s)
	local i pend
	for ((i = 0; i < 300; i++)); do
		pend=$(pg_psql -c "select count(*) from deliveries where status <> 'delivered'")
		[ "${pend:-1}" = 0 ] && return 0
		sleep 0.2
	done
}
# postern_check COUNT: CHECK = "ok" or what is wrong with the run's rows; DKIM = the signatures'
# algorithms on one message; then the queue is emptied for the next run
postern_check() {
	local row
	row=$(pg_psql -F ' ' -c "select (select count(*) from messages where direction = 'outbound'),
		(select count(*) from deliveries where status = 'delivered'),
		(select coalesce(string_agg(status || ':' || n, ','), '-') from (select status, count(*) n from deliveries group by 1) s)")
	local stored delivered statuses
	read -r stored delivered statuses <<<"$row"
	if [ "$stored" = "$1" ] && [ "$delivered" = "$1" ]; then CHECK=ok; else CHECK="$stored stored, deliveries $statuses"; fi
	DKIM=$(pg_psql -c "select string_agg(m[1], '+') from (select raw from messages limit 1) r,
		regexp_matches(convert_from(substring(r.raw from 1 for 4000), 'LATIN1'), '\ma=([a-z0-9]+-sha256)', 'g') m")
	pg_psql -c 'truncate messages, deliveries, attempts, events, hook_deliveries' -c 'checkpoint' >/dev/null
}

declare -A RES

# measure SERVER MODE WARM: [warm-up,] REPS timed runs; RES[SERVER:MODE] =
# "submitted med min max|delivered med min max|server ms/msg|first pid ms/msg|second pid ms/msg|DNS ms/msg|client ms/msg|failed runs|row checks"
measure() {
	local server=$1 mode=$2 warm=$3 n=$MSGS i count base t1 t2 s0 s1 f0 f1 d0 d1 pids
	local subs=() e2es=() srv=0 first=0 dns=0 cli=0 fails=0 checks=ok
	[ "$mode" = newconn ] && n=$NEWCONN_MSGS
	if [ "$server" = postern ]; then pids=("$POSTERN_PID" "$PG_PID"); else pids=("$PF_PID"); fi
	for ((i = 0; i <= REPS; i++)); do
		count=$n
		if [ "$i" = 0 ]; then
			if [ "$warm" != 1 ] || [ "$WARMUP" -le 0 ]; then continue; fi
			count=$WARMUP
		fi
		base=$(sink_count "$SINKLOG")
		s0=$(cpu_ticks "${pids[@]}")
		f0=$(cpu_ticks "${pids[0]}")
		d0=$(cpu_ticks "$DNS_PID")
		client "$server" "$mode" "$count"
		t1=$(now_ns)
		local e2e=
		if [ "$L_RC" = 0 ]; then
			if wait_sink $((base + count)); then
				t2=$(now_ns)
				e2e=$(awk -v n="$count" -v s="$L_SECONDS" -v d=$((t2 - t1)) 'BEGIN { printf "%.1f", n / (s + d / 1e9) }')
			fi
		else
			tail -1 "$WORK/smtp-load.err" >&2
		fi
		if [ "$server" = postern ]; then postern_settle; else pf_wait_empty; fi
		s1=$(cpu_ticks "${pids[@]}")
		f1=$(cpu_ticks "${pids[0]}")
		d1=$(cpu_ticks "$DNS_PID")
		local what="run $i"
		[ "$i" = 0 ] && what="warm-up"
		CHECK=ok
		DKIM=
		if [ "$server" = postern ]; then
			postern_check "$count"
			[ "$CHECK" = ok ] || log "  $server $mode $what: row check: $CHECK"
			DKIM_SEEN=$DKIM
		fi
		if [ "$L_RC" != 0 ] || [ -z "$e2e" ]; then
			log "  $server $mode $what FAILED (client exit $L_RC, sink $(($(sink_count "$SINKLOG") - base))/$count)"
			[ "$i" = 0 ] || fails=$((fails + 1))
			continue
		fi
		local sub
		sub=$(awk -v n="$count" -v s="$L_SECONDS" 'BEGIN { printf "%.1f", n / s }')
		log "  $server $mode $what: submitted $sub msg/s, delivered $e2e msg/s; CPU ms/msg: server $(per_msg $((s1 - s0)) "$count") ($([ "$server" = postern ] && echo "Bun $(per_msg $((f1 - f0)) "$count") / PostgreSQL $(per_msg $((s1 - s0 - f1 + f0)) "$count")" || echo "Postfix tree")), DNS server $(per_msg $((d1 - d0)) "$count"), client $(awk -v t="$L_CPU_MS" -v n="$count" 'BEGIN { printf "%.3f", t / n }')${DKIM:+; DKIM a= $DKIM}"
		[ "$i" = 0 ] && continue
		[ "$CHECK" = ok ] || checks="$CHECK"
		subs+=("$sub")
		e2es+=("$e2e")
		srv=$((srv + s1 - s0))
		first=$((first + f1 - f0))
		dns=$((dns + d1 - d0))
		cli=$((cli + L_CPU_MS))
	done
	local m=$((n * (REPS - fails)))
	RES[$server:$mode]="$(stats "${subs[@]}")|$(stats "${e2es[@]}")|$(per_msg "$srv" "$m")|$(per_msg "$first" "$m")|$(per_msg $((srv - first)) "$m")|$(per_msg "$dns" "$m")|$(awk -v t="$cli" -v n="$m" 'BEGIN { printf "%.3f", (n > 0) ? t / n : 0 }')|$fails|$checks"
}
per_msg() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { printf "%.3f", (n > 0) ? t * 1000 / hz / n : 0 }'; }

scenario_postern() {
	pg_start
	postern_vars POSTERN_DNS_CHECKS=on POSTERN_DNS_SERVERS="127.0.0.1:$P_DNS" POSTERN_LOG_LEVEL="$LOG_LEVEL" \
		POSTERN_OUTBOUND_PORT="$P_SINK" POSTERN_ALLOW_PRIVATE_DESTINATIONS=on
	postern_cli domain add bench.test
	echo "$PASSWORD" | postern_cli user add "$SENDER" --password-stdin
	postern_start submit
	wait_port "$P_SUB" 10 || { tail -5 "$WORK/postern-submit.log"; die "postern does not listen on $P_SUB"; }
	log "Postern $POSTERN_PID: submission on 127.0.0.1:$P_SUB, DNS 127.0.0.1:$P_DNS, remote.test MX -> smtp-sink 127.0.0.1:$P_SINK"
	local mode warm=1
	for mode in $MODES; do
		measure postern "$mode" "$warm"
		warm=0
	done
	POSTERN_RSS_AFTER=$(mem_tree "$POSTERN_PID")
	postern_stop
	pg_stop # nothing of Postern's runs on while Postfix is measured
	local l=$WORK/postern-submit.log
	POSTERN_LOG="$(wc -l <"$l") lines, $(grep -c '"level":"warn"' "$l") warn, $(grep -c '"level":"error"' "$l") error"
	log "Postern log: $POSTERN_LOG"
	grep -E '"level":"(warn|error)"' "$l" | cut -c1-300 | sort | uniq -c | sort -rn | head -5 >&2
}

scenario_postfix() {
	pf_start relay "$P_PF" relay "$P_SINK"
	log "Postfix (postfix-relay) on 127.0.0.1:$P_PF -> smtp-sink 127.0.0.1:$P_SINK"
	local mode warm=1
	for mode in $MODES; do
		measure postfix "$mode" "$warm"
		warm=0
	done
	pf_stop
}

report() {
	local mode server r sub e2e cpu bun pg dns cli fails checks row pe
	echo "## submit.sh $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) CPUs, $(uname -r)"
	echo
	if [[ " $SERVERS " == *" postern "* ]]; then
		echo "Postern $POSTERN_VERSION on Bun $("$BUN" --version), PostgreSQL ${PG_VERSION:-?} (default settings): submission port, STARTTLS (its self-signed RSA-2048 certificate) + AUTH PLAIN (argon2id) as user@bench.test, From user@bench.test, RCPT rcpt<n>@remote.test; every message DKIM-signed twice (seen: ${DKIM_SEEN:-?}), remote.test's MX looked up in dns-senders.ts (TTL 300), delivered to smtp-sink; serve defaults (DNS checks on, MTA-STS enforce, TLS-RPT on, log level $LOG_LEVEL) but POSTERN_ALLOW_PRIVATE_DESTINATIONS=on, POSTERN_OUTBOUND_PORT=sink, POSTERN_MAX_CONNECTIONS[_PER_IP]=2000."
	fi
	if [[ " $SERVERS " == *" postfix "* ]]; then
		echo "Postfix $(pf_version) (peers.sh postfix-relay): the same load over **plain SMTP from a trusted network** (mynetworks 127.0.0.0/8: no TLS, no AUTH, no DKIM, no MX look-up; RCPT rcpt<n>@bench.test, transport_maps to smtp:[127.0.0.1]:sink), the closest it does without a SASL backend and a DKIM milter."
	fi
	echo "smtp-load.ts: $SESSIONS sessions, ${SIZE}-byte bodies, 1 rcpt, no pipelining; reuse = one connection (and one login) per session, $MSGS msgs/run; newconn = connection, TLS handshake and login per message, $NEWCONN_MSGS msgs/run; $WARMUP warm-up msgs before the first mode; $REPS timed runs, median [min-max]."
	echo "submitted = msgs / client time (every 250 after DATA); delivered = msgs / time until the sink counted them all (end to end). CPU = user+sys ms per message from the client's start until the sink has every message and the server settled: server (Postern: Bun process + PostgreSQL postmaster tree; Postfix: master tree incl. smtpd, cleanup, qmgr, smtp), the DNS server (dns-senders.ts) and the load generator (smtp-load.ts, Bun's start included)."
	echo
	echo "| mode | server | submitted msgs/s | delivered msgs/s | server CPU ms/msg | Bun / PostgreSQL | DNS server | smtp-load client | Postern/Postfix delivered |"
	echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
	for mode in $MODES; do
		for server in postern postfix; do
			r=${RES[$server:$mode]:-}
			[ -n "$r" ] || continue
			IFS='|' read -r sub e2e cpu bun pg dns cli fails checks <<<"$r"
			row="| $mode | $([ "$server" = postern ] && echo Postern || echo Postfix) | $(fmt_stats "$sub")$([ "$fails" != 0 ] && echo " ($fails FAILED)") | $(fmt_stats "$e2e") | $cpu |"
			if [ "$server" = postern ]; then
				row="$row $bun / $pg$([ "$checks" = ok ] || echo " (row check: $checks)") | $dns | $cli |"
				pe=${RES[postfix:$mode]:-}
				if [ -n "$pe" ]; then
					IFS='|' read -r _ pe _ <<<"$pe"
					row="$row **$(ratio "${e2e%% *}" "${pe%% *}")** |"
				else
					row="$row - |"
				fi
			else
				row="$row - | - | $cli | |"
			fi
			echo "$row"
		done
	done
	if [ -n "${POSTERN_RSS_AFTER:-}" ]; then
		local rss
		read -r _ rss _ <<<"$POSTERN_RSS_AFTER"
		echo
		echo "Postern RSS after all load runs: $(kib_to_mib "$rss") MiB; its log ($LOG_LEVEL): ${POSTERN_LOG:-?}."
	fi
	if [ "$PROFILE" = 1 ] && [[ " $SERVERS " == *" postern "* ]]; then
		local md
		md=$(find "$PROFILE_OUT/prof-submit" -name '*.md' 2>/dev/null | head -1)
		echo
		echo "Bun CPU profile of serve's JS thread (all modes, warm-up included; argon2id and other work on Bun's threads are not in it): ${md:-$PROFILE_OUT/prof-submit (missing)}."
		[ -n "$md" ] && grep -m1 '^\*\*Top 10' "$md"
	fi
	return 0
}

take_rev
log "machine: $(nproc) cpus, load $(cut -d' ' -f1-3 /proc/loadavg); SERVERS=$SERVERS MODES=$MODES MSGS=$MSGS NEWCONN_MSGS=$NEWCONN_MSGS SESSIONS=$SESSIONS SIZE=$SIZE REPS=$REPS WARMUP=$WARMUP; scratch $WORK"
dns_start
sink_start
for s in $SERVERS; do
	SEQ=0 # both servers see the same recipients
	"scenario_$s"
done
report
log "done in $(($(date +%s) - T_START))s"
