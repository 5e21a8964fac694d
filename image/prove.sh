#!/usr/bin/env bash
# Proves the image image/build.sh built, without running a container
# (podman cannot run one on machines without a usable cgroup setup, such as
# the CI's): checks the image's config (user 65532, the binary as
# entrypoint) and that it holds the binary and nothing else (so no shell),
# takes the binary back out of it, and runs it from an otherwise empty root
# directory with chroot as uid 65532: the demo serves, /healthz answers over
# TLS, a real kube-apiserver review (tests/fixtures/defaults) is patched and
# counted in /metrics, and SIGTERM stops it cleanly. Run as root (chroot).
set -euo pipefail
cd "$(dirname "$0")/.."
source image/common.sh

need buildah "apt-get install -y buildah"
need curl "apt-get install -y curl"
need base64 "coreutils"
[ "$(id -u)" = 0 ] || die "run as root (buildah storage, chroot)"

work="$(mktemp -d)"
ctr=""
pid=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi
  if [ -n "$ctr" ]; then bah rm "$ctr" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

bah inspect --type image "$IMAGE_TAG" >/dev/null 2>&1 \
  || die "no image $IMAGE_TAG in $IMAGE_OUT/storage: build it first with bash image/build.sh"
user="$(bah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE_TAG")"
[ "$user" = "65532:65532" ] || die "the image runs as '$user', not 65532:65532"
entry="$(bah inspect --type image --format '{{.OCIv1.Config.Entrypoint}}' "$IMAGE_TAG")"
[ "$entry" = "[/persistence-webhook]" ] || die "the image's entrypoint is $entry, not [/persistence-webhook]: image/Containerfile's ENTRYPOINT must be the path it copies the binary to"
echo "image config: user $user, entrypoint $entry"

ctr="$(bah from "$IMAGE_TAG")"
mnt="$(bah mount "$ctr")"
files="$(cd "$mnt" && find . -mindepth 1 | sort | tr '\n' ' ')"
[ "$files" = "./persistence-webhook " ] || die "the image holds more than the binary: $files"
echo "image content: $files(no shell)"

# An empty root, the binary copied out of the image, and one directory the
# demo may write its CA to.
root="$work/root"
mkdir -m 755 "$root" "$root/demo"
cp "$mnt/persistence-webhook" "$root/persistence-webhook"
chown 65532:65532 "$root/demo"
bah umount "$ctr" >/dev/null

log="$work/serve.log"
chroot --userspec=65532:65532 "$root" /persistence-webhook serve --demo --demo-dir /demo \
  --addr 127.0.0.1:0 --metrics-addr 127.0.0.1:0 --log-format json --shutdown-delay 0s \
  2>"$log" &
pid=$!
for _ in $(seq 300); do
  grep -q '"message":"Listening"' "$log" && break
  kill -0 "$pid" 2>/dev/null || { cat "$log" >&2; die "the binary exited in the chroot"; }
  sleep 0.1
done
grep -q '"message":"Listening"' "$log" || { cat "$log" >&2; die "no Listening line within 30s"; }
addr="$(grep -o '"addr":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4)"
metrics="$(grep -o '"metrics_addr":"[^"]*"' "$log" | head -n 1 | cut -d'"' -f4)"
uid="$(awk '/^Uid:/ {print $2 " " $3 " " $4 " " $5}' "/proc/$pid/status")"
[ "$uid" = "65532 65532 65532 65532" ] || die "the server runs as uid $uid"
echo "serving in the chroot as uid 65532: webhook $addr, metrics $metrics"

ca="$root/demo/ca.crt"
port="${addr##*:}"
health="$(curl -sS --fail --cacert "$ca" "https://localhost:$port/healthz")"
echo "GET /healthz over TLS: $health"

answer="$(curl -sS --fail --cacert "$ca" -H 'Content-Type: application/json' \
  --data-binary @tests/fixtures/defaults/review.json "https://localhost:$port/mutate")"
grep -q '"allowed":true' <<<"$answer" || die "the review was not allowed: $answer"
grep -q '"patchType":"JSONPatch"' <<<"$answer" || die "the review was not patched: $answer"
patch="$(grep -o '"patch":"[^"]*"' <<<"$answer" | cut -d'"' -f4 | base64 -d)"
grep -q 'persistence-injected' <<<"$patch" || die "the patch records no injection: $patch"
grep -q '"path":"/spec/containers/0/volumeMounts/-"' <<<"$patch" || die "the patch mounts nothing: $patch"
echo "POST /mutate (tests/fixtures/defaults): patched, $(grep -o '"op"' <<<"$patch" | wc -l) operations"

page="$(curl -sS --fail "http://$metrics/metrics")"
grep -q '^persistence_webhook_reviews_total{outcome="patched",reason=""} 1$' <<<"$page" \
  || die "the patched review is not counted: $(grep reviews_total <<<"$page")"
echo "GET /metrics: the patched review counted"

kill -TERM "$pid"
status=0
wait "$pid" || status=$?
pid=""
[ "$status" = 0 ] || { cat "$log" >&2; die "exit status $status after SIGTERM"; }
echo "SIGTERM: exit 0"
echo "image proven: $IMAGE_TAG"
