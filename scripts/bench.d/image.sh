# shellcheck shell=bash
# Image section of scripts/bench (issue 6): build and push an image with a 50 MiB layer,
# with ferry (`ferry image push`: build from the raw file, then push) and with
# `crane append -f layer.tar` (push of a prebuilt tar as a layer on an empty base), each
# to a new repository of the local registry, whole process each; then an unchanged re-push
# with ferry (goal: under 100 ms). The layer is 50 MiB of this machine's /usr/bin binaries
# (realistically compressible). Runs: IMAGE_BENCH_RUNS (default 5).
#
# Both tools push to one private docker-registry (Debian's distribution 2.8, the stack's
# registry server) that this section starts on 127.0.0.1 with its own storage, so other work
# on the shared stack cannot disturb the figures.

bench_image() {
  local runs=${IMAGE_BENCH_RUNS:-5} work registry_pid port
  # A counter of its own: median_ms has a local `n` that a nested function would change.
  image_seq=0
  work=$(mktemp -d)
  cat >"$work/registry.yml" <<YAML
version: 0.1
log: {level: info}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:0, secret: bench-only}
YAML
  docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
  registry_pid=$!
  # On return, and on the way out when a failed step exits the shell (set -e skips RETURN
  # traps). The registry's own status (143, killed) is not the benchmark's.
  # shellcheck disable=SC2064
  trap "image_stop $registry_pid '$work'" RETURN EXIT
  for _ in $(seq 100); do
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9][0-9]*\).*/\1/p' "$work/registry.log" | head -n1)
    [ -n "$port" ] && break
    sleep 0.1
  done
  [ -n "$port" ] || { echo "docker-registry did not start: $(cat "$work/registry.log")" >&2; return 1; }
  local FERRY_TEST_REGISTRY=127.0.0.1:$port
  mkdir -p "$work/project/bin"
  # head closes the pipe early: no pipefail here.
  (set +o pipefail; find /usr/bin -maxdepth 1 -type f -size +100k -print0 | sort -z |
    xargs -0 cat 2>/dev/null | head -c $((50 << 20)) >"$work/project/bin/payload")
  chmod 0755 "$work/project/bin/payload"
  # crane's input: the same file as a tar (made outside the timing, in crane's favour).
  tar -C "$work/project" --owner=0 --group=0 --mtime=@0 -cf "$work/layer.tar" bin/payload

  write_project() { # repository
    cat >"$work/project/ferry.yaml" <<YAML
app: bench
images:
  big:
    repository: $1
    tag: v1
    files:
      - {source: bin/payload, target: /app/payload}
    entrypoint: [/app/payload]
YAML
  }
  ferry_first_push() {
    image_seq=$((image_seq + 1))
    write_project "$FERRY_TEST_REGISTRY/bench/ferry-$$-$image_seq"
    rm -rf "$work/project/target"
    (cd "$work/project" && "$FERRY" image push --insecure --no-progress)
  }
  crane_first_push() {
    image_seq=$((image_seq + 1))
    crane append --insecure -f "$work/layer.tar" -t "$FERRY_TEST_REGISTRY/bench/crane-$$-$image_seq:v1" >/dev/null
  }
  ferry_repush() { (cd "$work/project" && "$FERRY" image push --insecure --no-progress); }

  local ferry_ms crane_ms repush_ms build_ms
  ferry_ms=$(median_ms "$runs" ferry_first_push)
  crane_ms=$(median_ms "$runs" crane_first_push)
  build_ms=$(median_ms "$runs" sh -c "rm -rf '$work/project/target' && cd '$work/project' && '$FERRY' image build")
  ferry_first_push >/dev/null 2>&1
  repush_ms=$(median_ms "$BENCH_RUNS" ferry_repush)
  local size
  size=$(du -k "$work/project/target/ferry/images/big/blobs/sha256" | cut -f1)
  printf '%-44s %10s\n' "image (50 MiB layer, median of $runs)" "ms"
  printf '%-44s %10s\n' "ferry image push (build + push)" "$ferry_ms"
  printf '%-44s %10s\n' "crane append -f layer.tar (push)" "$crane_ms"
  printf '%-44s %10s\n' "  ferry image build alone" "$build_ms"
  printf '%-44s %10s\n' "ferry image push, unchanged (median of $BENCH_RUNS)" "$repush_ms"
  printf 'ratio ferry/crane first push: %s (goal <= 1.0); unchanged re-push %s ms (goal < 100); layout %s KiB\n' \
    "$(ratio "$ferry_ms" "$crane_ms")" "$repush_ms" "$size"
}

# image_stop PID WORK: stops the section's registry and removes its files; always succeeds.
image_stop() {
  trap - RETURN EXIT
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
  rm -rf "$2"
}
