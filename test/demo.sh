#!/usr/bin/env bash
# `make run`: two demo backends and palisade with configs/demo.yaml, on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM
bin/demo-backend -listen 127.0.0.1:9101 -name web1 & pids+=($!)
bin/demo-backend -listen 127.0.0.1:9102 -name web2 & pids+=($!)
cat <<MSG

  Palisade demo: two backends (web1 on :9101, web2 on :9102) behind palisade.
  Try, in another terminal:
    curl -s http://127.0.0.1:8081/          # tcp frontend, round robin: run it twice
    curl -si http://127.0.0.1:8080/web2/x   # http frontend, routed by path prefix
    bin/palisade ctl --token-file configs/demo.token backends
    bin/palisade ctl --token-file configs/demo.token drain demo/web1
    open http://127.0.0.1:9000/#token=\$(cat configs/demo.token)   # live dashboard
    curl -s http://127.0.0.1:9000/healthz   # admin API (token in configs/demo.token)
    curl -s -H "Authorization: Bearer \$(cat configs/demo.token)" http://127.0.0.1:9000/metrics | grep palisade_frontend
    kill -HUP \$(pgrep -f 'palisade run')    # reload without dropping a connection
  Ctrl-C stops everything.

MSG
bin/palisade run -c configs/demo.yaml
