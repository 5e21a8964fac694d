#!/usr/bin/env bash
# Builds the image without a Docker engine: the static binary with cargo
# (x86_64-unknown-linux-musl, release, stripped), then the image FROM scratch
# with buildah (image/Containerfile), into a storage of its own under
# target/image/, and an OCI archive of it at
# target/image/persistence-webhook.oci.tar. Prints the binary's and the
# image's sizes. image/prove.sh then runs the binary taken from the image.
# Needs: rustup target add x86_64-unknown-linux-musl; apt-get install -y
# buildah musl-tools binutils (.ci/run installs them).
set -euo pipefail
cd "$(dirname "$0")/.."
source image/common.sh

need buildah "apt-get install -y buildah"
need strip "apt-get install -y binutils"
need readelf "apt-get install -y binutils"
rustup target list --installed | grep -qx "$IMAGE_TARGET" \
  || die "the $IMAGE_TARGET target is missing: rustup target add $IMAGE_TARGET"

start=$(date +%s)
cargo build --release --locked --target "$IMAGE_TARGET" --bin persistence-webhook
echo "cargo build --release --target $IMAGE_TARGET: $(( $(date +%s) - start ))s"

mkdir -p "$IMAGE_OUT/context"
binary="$IMAGE_OUT/context/persistence-webhook"
strip -o "$binary" "target/$IMAGE_TARGET/release/persistence-webhook"
# Static: no program interpreter, no shared library (the image has no libc).
if readelf -l "$binary" | grep -q INTERP || readelf -d "$binary" | grep -q NEEDED; then
  die "$binary is not static (readelf shows an interpreter or shared libraries) and the image has no libc: check that nothing (RUSTFLAGS, .cargo/config.toml) sets target-feature=-crt-static for $IMAGE_TARGET"
fi

start=$(date +%s)
# The storage is this script's own: what an interrupted run left goes.
bah rm --all >/dev/null
bah rmi -f "$IMAGE_TAG" >/dev/null 2>&1 || true
bah bud --isolation chroot --layers=false -f image/Containerfile -t "$IMAGE_TAG" "$IMAGE_OUT/context"
rm -f "$IMAGE_OUT/persistence-webhook.oci.tar"
bah push "$IMAGE_TAG" "oci-archive:$IMAGE_OUT/persistence-webhook.oci.tar:$IMAGE_TAG"
echo "buildah bud + push: $(( $(date +%s) - start ))s"

echo "binary (stripped): $(stat -c %s "$binary") bytes"
echo "image $IMAGE_TAG: $(bah images --format '{{.Size}}' "$IMAGE_TAG") (buildah images)"
echo "OCI archive: $(stat -c %s "$IMAGE_OUT/persistence-webhook.oci.tar") bytes"
