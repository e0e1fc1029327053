#!/usr/bin/env bash
# HTTP benchmark: palisade (mode http) vs HAProxy 2.6 `mode http`, same nginx
# backends on loopback, wrk as the client. Scenarios: keep-alive small
# responses, keep-alive 100 KiB responses, one request per connection.
# Runs alternate palisade/haproxy per round; medians over ROUNDS (>= 5).
# Prints per scenario: RPS ratio, p99 ratio, CPU-per-request ratio
# (palisade / haproxy; RPS >= 1 is better, p99 and CPU <= 1 are better).
#
# Env: ROUNDS (5) DURATION (5s) CONNS (50) THREADS (1)
#      SCENARIOS: subset, e.g. "ka-small close-small"
#      PALISADE_GOMAXPROCS: GOMAXPROCS for the default palisade command
#      PALISADE_CMD: command to start palisade; it gets $LISTEN and $SERVERS.
#      Default: proxy/l7/internal/benchsrv. With the daemon:
#      PALISADE_CMD='palisade run -c $CONF' where $CONF is written by this script.
#      DEFER_ACCEPT: 1 (default) both proxies accept a connection once its request
#      is in (palisade's defer_accept, its default in http mode; HAProxy's
#      bind ... defer-accept); 0: neither does.
#      CC: run in a network namespace of its own (root; unshare --net) whose TCP
#      congestion control is this, e.g. cubic; the host's is left alone.
#      PIN: PROXY_CPUS:LOAD_CPUS, e.g. 0:1: each proxy runs alone on the first
#      CPUs, nginx and wrk on the others (taskset), as on a host whose clients
#      and servers are other machines. Both proxies size their threads from
#      that affinity (palisade's GOMAXPROCS, HAProxy's default nbthread).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../../.." && pwd)
if [ -n "${CC:-}" ] && [ -z "${PALISADE_HTTPBENCH_NETNS:-}" ]; then
  PALISADE_HTTPBENCH_NETNS=1 exec unshare --net -- bash "$0" "$@"
fi
if [ -n "${CC:-}" ]; then
  ip link set lo up
  echo "$CC" > /proc/sys/net/ipv4/tcp_congestion_control
  [ "$(cat /proc/sys/net/ipv4/tcp_congestion_control)" = "$CC" ] || { echo "CC=$CC: could not set it" >&2; exit 1; }
fi
echo "TCP congestion control: $(cat /proc/sys/net/ipv4/tcp_congestion_control)${CC:+ (CC: a network namespace of its own)}"
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-5s}
CONNS=${CONNS:-50}
THREADS=${THREADS:-1}
DEFER_ACCEPT=${DEFER_ACCEPT:-1}
PROXY_ON=(); LOAD_ON=()
if [ -n "${PIN:-}" ]; then
  [[ "$PIN" =~ ^[0-9,-]+:[0-9,-]+$ ]] || { echo "PIN=$PIN: want PROXY_CPUS:LOAD_CPUS, e.g. 0:1" >&2; exit 2; }
  PROXY_ON=(taskset -c "${PIN%%:*}"); LOAD_ON=(taskset -c "${PIN##*:}")
  echo "pinned: proxies on CPUs ${PIN%%:*}, nginx and wrk on ${PIN##*:}"
fi
case "$DEFER_ACCEPT" in
  1) HAP_DEFER=" defer-accept"; PAL_DEFER=true ;;
  0) HAP_DEFER=""; PAL_DEFER=false ;;
  *) echo "DEFER_ACCEPT=$DEFER_ACCEPT: want 0 or 1" >&2; exit 2 ;;
esac
echo "defer accept: $PAL_DEFER (both proxies)"

for b in haproxy nginx wrk; do
  if ! command -v "$b" >/dev/null && ! [ -x "/usr/sbin/$b" ]; then
    bash "$ROOT/test/install-deps.sh" bench || true
  fi
done
for b in haproxy nginx wrk; do
  command -v "$b" >/dev/null || [ -x "/usr/sbin/$b" ] || { echo "SKIP: $b not installed (run test/install-deps.sh bench as root)"; exit 0; }
done
export PATH=$PATH:/usr/sbin

W=$(mktemp -d /tmp/palisade-httpbench.XXXXXX)
chmod 755 "$W"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$W"; }
trap cleanup EXIT

freeport() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1]);s.close()'; }
N1=$(freeport); N2=$(freeport); PP=$(freeport); HP=$(freeport)

# nginx backends: /small (13 bytes), /100k (100 KiB file), one worker each.
mkdir -p "$W/nginx/www" "$W/nginx/logs"
printf 'hello, world\n' > "$W/nginx/www/small"
head -c 102400 /dev/zero | tr '\0' 'x' > "$W/nginx/www/100k"
cat > "$W/nginx/nginx.conf" <<NG
worker_processes 1;
daemon off;
pid $W/nginx/nginx.pid;
error_log $W/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000;
  keepalive_timeout 75s;
  default_type text/plain;
  sendfile on;
  tcp_nopush on;
  client_body_temp_path $W/nginx/tmp;
  proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp;
  uwsgi_temp_path $W/nginx/tmp;
  scgi_temp_path $W/nginx/tmp;
  server { listen 127.0.0.1:$N1; root $W/nginx/www; }
  server { listen 127.0.0.1:$N2; root $W/nginx/www; }
}
NG
mkdir -p "$W/nginx/tmp"
"${LOAD_ON[@]}" nginx -p "$W/nginx" -c "$W/nginx/nginx.conf" &
NGPID=$!; PIDS+=($NGPID)

cat > "$W/haproxy.cfg" <<HA
global
  maxconn 4000
defaults
  mode http
  timeout connect 3s
  timeout client 60s
  timeout server 60s
  timeout http-request 10s
  timeout http-keep-alive 60s
  retries 2
frontend web
  bind 127.0.0.1:$HP$HAP_DEFER
  # the same four headers palisade's http.forwarded adds, so that both
  # proxies (and the nginx behind them) do the same work
  option forwardfor
  http-request set-header X-Forwarded-Proto http
  http-request set-header X-Forwarded-Host %[req.hdr(host)]
  http-request set-header Forwarded "for=%[src];host=\"%[req.hdr(host)]\";proto=http"
  default_backend app
backend app
  balance roundrobin
  server s1 127.0.0.1:$N1
  server s2 127.0.0.1:$N2
HA
"${PROXY_ON[@]}" haproxy -f "$W/haproxy.cfg" -db 2>"$W/haproxy.log" &
HPID=$!; PIDS+=($HPID)

LISTEN=127.0.0.1:$PP
SERVERS=127.0.0.1:$N1,127.0.0.1:$N2
CONF=$W/palisade.yaml
cat > "$CONF" <<PY
global: {log: {level: warn}}
frontends:
  - name: web
    mode: http
    listen: ["$LISTEN"]
    http: {forwarded: true, request_id: false}
    defer_accept: $PAL_DEFER
    default_backend: app
backends:
  - name: app
    balance: roundrobin
    health: {type: none}
    servers:
      - {name: s1, address: 127.0.0.1:$N1}
      - {name: s2, address: 127.0.0.1:$N2}
PY
if [ -n "${PALISADE_CMD:-}" ]; then
  # exec: $! is palisade itself (its CPU is read from /proc/$!/stat, and the
  # cleanup's kill reaches it), not a subshell around it
  eval "exec ${PROXY_ON[*]} ${PALISADE_CMD#exec }" &
else
  (cd "$ROOT" && go build -o "$W/benchsrv" ./proxy/l7/internal/benchsrv)
  GOMAXPROCS=${PALISADE_GOMAXPROCS:-} "${PROXY_ON[@]}" "$W/benchsrv" -listen "$LISTEN" -servers "$SERVERS" -defer-accept="$PAL_DEFER" 2>"$W/palisade.log" &
fi
PPID_=$!; PIDS+=($PPID_)

waitport() { for _ in $(seq 100); do curl -fs -o /dev/null "http://127.0.0.1:$1/small" && return 0; sleep 0.1; done; echo "port $1 not up" >&2; cat "$W"/*.log "$W"/nginx/logs/error.log >&2; exit 1; }
waitport "$N1"; waitport "$N2"; waitport "$HP"; waitport "$PP"

# utime+stime ticks of the given processes, summed
cputicks() { local p t=0; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo "$t"; }
NGW=$(pgrep -P "$NGPID" | tr '\n' ' ') # nginx's worker
# the whole machine's busy and idle (idle+iowait) ticks so far
machticks() { awk '/^cpu /{print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat; }
TCK=$(getconf CLK_TCK)
tous() { # wrk latency "1.23ms" -> microseconds
  awk -v v="$1" 'BEGIN{n=v+0; if (v ~ /us$/) print n; else if (v ~ /ms$/) print n*1000; else if (v ~ /s$/) print n*1000000; else print n}'
}

# run NAME PORT PID PATH EXTRA ->
#   "rps p99us cpu_us_per_req machine_idle_pct nginx_us_per_req wrk_us_per_req"
# (wrk's CPU is this shell's waited-for children's, /proc/$BASHPID/stat fields 16+17)
run() {
  local label=$1 port=$2 pid=$3 path=$4; shift 4
  local c0 c1 m0 m1 n0 n1 k0 k1 out me=$BASHPID
  c0=$(cputicks "$pid"); m0=$(machticks); n0=$(cputicks $NGW)
  k0=$(awk '{print $16+$17}' "/proc/$me/stat")
  out=$("${LOAD_ON[@]}" wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency "$@" "http://127.0.0.1:$port$path")
  k1=$(awk '{print $16+$17}' "/proc/$me/stat")
  c1=$(cputicks "$pid"); m1=$(machticks); n1=$(cputicks $NGW)
  local rps reqs p99 errs
  rps=$(awk '/^Requests\/sec/{print $2}' <<<"$out")
  reqs=$(awk '/requests in/{print $1}' <<<"$out")
  p99=$(awk '$1=="99%"{print $2}' <<<"$out")
  errs=$(awk '/Non-2xx|Socket errors/{print}' <<<"$out")
  [ -n "$errs" ] && echo "  ($label: $errs)" >&2
  echo "$rps $(tous "$p99") $(awk -v d=$((c1-c0)) -v n="$reqs" -v t="$TCK" 'BEGIN{printf "%.2f", d*1e6/t/n}')" \
    "$(awk -v a="$m0" -v b="$m1" 'BEGIN{split(a,x," "); split(b,y," "); bu=y[1]-x[1]; id=y[2]-x[2]; printf "%.1f", (bu+id>0)? id*100/(bu+id) : 0}')" \
    "$(awk -v n="$reqs" -v t="$TCK" -v a=$((n1-n0)) -v b=$((k1-k0)) 'BEGIN{printf "%.2f %.2f", a*1e6/t/n, b*1e6/t/n}')"
}

median() { sort -g | awk '{a[NR]=$1} END{print (NR%2)? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
# col WHO N: the median of field N of WHO's runs of the scenario $name
col() { printf '%s' "${R[$1/$name]}" | awk -v c="$2" 'NF{print $c}' | median; }

declare -A R
scen=()
for s in "ka-small|/small|" "ka-100k|/100k|" "close-small|/small|close"; do
  [[ -z "${SCENARIOS:-}" || " $SCENARIOS " == *" ${s%%|*} "* ]] && scen+=("$s")
done
for ((r=1; r<=ROUNDS; r++)); do
  for s in "${scen[@]}"; do
    IFS='|' read -r name path extra <<<"$s"
    # alternate which proxy goes first each round
    if (( r % 2 )); then order="pal hap"; else order="hap pal"; fi
    for who in $order; do
      if [ "$who" = pal ]; then port=$PP; pid=$PPID_; else port=$HP; pid=$HPID; fi
      # wrk needs "Connection: close" with the space, as one argument
      # (without it wrk keeps the connection open and sends the header raw)
      if [ "$extra" = close ]; then
        res=$(run "$who/$name" "$port" "$pid" "$path" -H "Connection: close")
      else
        res=$(run "$who/$name" "$port" "$pid" "$path")
      fi
      R[$who/$name]+="$res"$'\n'
      read -r rps p99 cpu idle ngx wrkc <<<"$res"
      echo "round $r $name $who: rps=$rps p99_us=$p99 cpu_us/req=$cpu machine_idle=$idle% nginx_us/req=$ngx wrk_us/req=$wrkc" >&2
    done
  done
done

echo
echo "Medians over $ROUNDS rounds (ratio = palisade/haproxy; 'paired' = median of per-round ratios, robust to load drift;"
echo "idle = the whole machine's idle share during the runs, from /proc/stat; nginx and wrk = their CPU per request behind each proxy):"
printf '%-12s %12s %12s %9s %10s %10s %9s %10s %10s %9s %8s %8s %9s %9s %9s %9s   %s\n' scenario pal_rps hap_rps rps_ratio pal_p99us hap_p99us p99_ratio pal_cpu_us hap_cpu_us cpu_ratio pal_idle hap_idle pal_nginx hap_nginx pal_wrk hap_wrk "paired rps/p99/cpu"
for s in "${scen[@]}"; do
  IFS='|' read -r name _ _ <<<"$s"
  pr=$(col pal 1); hr=$(col hap 1); pp=$(col pal 2); hp=$(col hap 2); pc=$(col pal 3); hc=$(col hap 3)
  pi=$(col pal 4); hi=$(col hap 4); pn=$(col pal 5); hn=$(col hap 5); pw=$(col pal 6); hw=$(col hap 6)
  awk -v n="$name" -v pr="$pr" -v hr="$hr" -v pp="$pp" -v hp="$hp" -v pc="$pc" -v hc="$hc" -v pi="$pi" -v hi="$hi" -v pn="$pn" -v hn="$hn" -v pw="$pw" -v hw="$hw" 'BEGIN{
    printf "%-12s %12.0f %12.0f %9.2f %10.0f %10.0f %9.2f %10.2f %10.2f %9.2f %7.1f%% %7.1f%% %9.2f %9.2f %9.2f %9.2f", n, pr, hr, pr/hr, pp, hp, pp/hp, pc, hc, pc/hc, pi, hi, pn, hn, pw, hw}'
  paired=""
  for col in 1 2 3; do
    m=$(paste <(printf '%s' "${R[pal/$name]}" | awk -v c=$col 'NF{print $c}') \
              <(printf '%s' "${R[hap/$name]}" | awk -v c=$col 'NF{print $c}') | awk '$2>0{print $1/$2}' | median)
    paired+=$(printf '%.2f/' "$m")
  done
  echo "   ${paired%/}"
done
