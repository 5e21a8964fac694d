# Shared by build.sh and prove.sh (sourced from the repository's root): the
# image's tag, and buildah with a storage of its own under target/image
# (vfs: no overlay mounts needed, so it works as root in a container too).
IMAGE_TARGET=x86_64-unknown-linux-musl
IMAGE_OUT=target/image
IMAGE_VERSION="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
IMAGE_TAG="${IMAGE_TAG:-localhost/persistence-webhook:$IMAGE_VERSION}"

die() {
  echo "image: $*" >&2
  exit 1
}

need() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is missing: $2"
}

bah() {
  buildah --root "$PWD/$IMAGE_OUT/storage" --runroot "$PWD/$IMAGE_OUT/run" \
    --storage-driver vfs "$@"
}
