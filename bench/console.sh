#!/usr/bin/env bash
# console.sh - the operator console's pages with a big queue: how long each takes to render.
# A throwaway PostgreSQL 15 cluster gets N messages (default 100 000) with one delivery each
# (90% delivered, 8% deferred, 2% bounced), an attempt and an event per delivery, spread over the
# last day; then `serve` runs on it (default settings but the ports), a session is opened over
# the login form, and each page is fetched REPS times with curl: median and worst time_total.
#
#   sudo bench/console.sh | tee /tmp/console.md
#   N=20000 REPS=5 bench/console.sh
#
# Needs root (PostgreSQL runs as its user) and postgresql-15 (bench/accept.sh installs it).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
: "${N:=100000}"
: "${REPS:=11}"
: "${BASE_PORT:=25600}"
BENCH_NAME=console
. "$HERE/postern-lib.sh"
[ -x "$PGBIN/initdb" ] || { echo "error: no $PGBIN/initdb: apt-get install postgresql-15" >&2; exit 1; }

pick_port P_PG
pick_port P_SMTP
pick_port P_SUB
pick_port P_SUBS
pick_port P_HTTP
pick_port P_HTTPS
TOKEN=bench-console-token-0123456789
postern_vars POSTERN_ADMIN_TOKEN=$TOKEN POSTERN_LOG_LEVEL=info

pg_start
postern_cli migrate
postern_cli domain add bench.test
log "filling $N messages"
pg_psql <<SQL
insert into messages (id, received_at, direction, mail_from, helo, client_ip, size, raw, message_id_header, subject)
select 'B' || lpad(i::text, 16, '0'), now() - (i % 86400) * interval '1 second', 'outbound',
       'app' || (i % 50) || '@bench.test', 'client.test', '127.0.0.1', 2048,
       convert_to('Subject: bench ' || i || E'\r\n\r\nhello\r\n', 'UTF8'),
       '<bench-' || i || '@bench.test>', 'bench ' || i
from generate_series(1, $N) as i;
insert into deliveries (message_id, rcpt, target, status, attempts, next_attempt_at, last_reply, delivered_at)
select 'B' || lpad(i::text, 16, '0'), 'user' || i || '@dest' || (i % 200) || '.test', 'mx',
       case when i % 50 = 0 then 'bounced' when i % 12 = 0 then 'deferred' else 'delivered' end, 1,
       now() + interval '1 hour',
       case when i % 50 = 0 then '550 5.1.1 no such user' when i % 12 = 0 then '451 4.3.0 try later' else '250 2.0.0 ok' end,
       case when i % 50 <> 0 and i % 12 <> 0 then now() end
from generate_series(1, $N) as i;
insert into attempts (delivery_id, at, host, reply, duration_ms, outcome)
select d.id, now() - (d.id % 86400) * interval '1 second', 'mx.dest.test', d.last_reply, 40,
       case d.status when 'delivered' then 'delivered' when 'bounced' then 'bounced' else 'deferred' end
from deliveries d;
insert into events (type, at, message_id, message_id_header, mail_from, rcpt, attempt)
select case d.status when 'delivered' then 'delivered' when 'bounced' then 'bounced' else 'deferred' end,
       now() - (d.id % 86400) * interval '1 second', d.message_id, '<x@bench.test>', 'app@bench.test', d.rcpt, 1
from deliveries d;
analyze;
SQL
postern_start console
BASE=http://127.0.0.1:$P_HTTP
JAR=$WORK/cookies
curl -s -c "$JAR" "$BASE/admin/login" >"$WORK/login.html"
NONCE=$(grep -o 'name="nonce" value="[^"]*"' "$WORK/login.html" | sed 's/.*value="//; s/"$//')
curl -s -b "$JAR" -c "$JAR" -o /dev/null -d "nonce=$NONCE" --data-urlencode "token=$TOKEN" "$BASE/admin/login"
grep -q postern_session "$JAR" || die "could not log in"

# time_page PATH: REPS fetches, "median worst" in ms; the first fetch (warm-up) is not counted
time_page() {
	local out=$WORK/times i
	curl -s -b "$JAR" -o /dev/null "$BASE$1"
	: >"$out"
	for ((i = 0; i < REPS; i++)); do
		curl -s -b "$JAR" -o "$WORK/page.html" -w '%{http_code} %{time_total}\n' "$BASE$1" >>"$out"
	done
	if grep -qv '^200 ' "$out"; then
		echo "| \`$1\` | HTTP $(grep -v '^200 ' "$out" | head -1 | cut -d' ' -f1) | |"
		return
	fi
	awk '{ print $2 * 1000 }' "$out" | sort -n | awk -v p="$1" '{ ms[NR] = $1 } END { printf "| `%s` | %.0f | %.0f |\n", p, ms[int((NR + 1) / 2)], ms[NR] }'
}

echo "## Console pages with $N messages ($(date -u +%F), $(nproc) cores)"
echo
echo "| page | median ms | worst ms |"
echo "|---|---|---|"
for p in /admin/overview "/admin/queue" "/admin/queue?status=deferred" "/admin/queue?status=bounced&domain=dest7.test" \
	"/admin/queue?q=%3Cbench-77777%40bench.test%3E" "/admin/queue?sender=app7%40bench.test" \
	"/admin/queue?before=50000" "/admin/messages/B$(printf '%016d' 77777)"; do
	time_page "$p"
done
