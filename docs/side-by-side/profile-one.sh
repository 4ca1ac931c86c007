#!/bin/bash
# docs/side-by-side/profile-one.sh <outdir> <port> <query-json> <seconds> [extra autocannon args...] -- command to start the server (env must be set)
# Starts the server pinned to CPU 1 with --cpu-prof, loads it from CPU 0 with autocannon (32 connections), stops it.
set -e
out=$1; port=$2; body=$3; secs=$4; shift 4
extra=()
while [ "$1" != "--" ]; do extra+=("$1"); shift; done; shift
rm -rf "$out"; mkdir -p "$out"
taskset -c 1 node --cpu-prof --cpu-prof-dir="$out" "$@" > "$out/server.log" 2>&1 &
pid=$!
for i in $(seq 1 100); do curl -s -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.2; done
cannon="$(cd "$(dirname "$0")/../.." && pwd)/node_modules/.bin/autocannon"
taskset -c 0 $cannon -c 32 -d 3 -m POST -H content-type=application/json "${extra[@]}" -b "$body" "http://127.0.0.1:$port/graphql" > /dev/null 2>&1
taskset -c 0 $cannon -j -c 32 -d "$secs" -m POST -H content-type=application/json "${extra[@]}" -b "$body" "http://127.0.0.1:$port/graphql" > "$out/cannon.json" 2>/dev/null
kill -TERM $pid; wait $pid || true
node -e "const r=require('$out/cannon.json');console.log('requests',r.requests.total+3*0,'req/s',r.requests.average)"
