#!/usr/bin/env bash
# Builds the dpunet image, localhost/dpunet:<version>, with no container registry:
#   1. a Debian base (bookworm, whatever the host's release) made by mmdebstrap from
#      Debian's packages: Python and the OVS/OVN daemons the manifests run from the image;
#   2. `podman import` of that tarball as localhost/dpunet-base:<suite>-<arch>-<key>;
#   3. a wheelhouse made here: dpunet's wheel from this tree (committed and uncommitted
#      changes of tracked files), its dependencies as wheels for the image's Python;
#   4. `podman build` of deploy/Containerfile on the base, offline (--network none).
# The base tarball is kept in $CACHE and the base image in podman's store, so a second
# run only repeats steps 3 and 4, and none when the image was built from the same files
# (label io.dpunet.source). Run as root (mmdebstrap, podman's system store).
#
# Usage: scripts/build-image.sh [--arch ARCH] [--tag IMAGE]
# ARCH is a Debian architecture (default: this machine's); a foreign one (arm64 for the
# DPU on an amd64 machine) needs qemu-user-static and binfmt_misc (docs/kubernetes.md).
# Prints the image's name as its last line.
set -euo pipefail
cd "$(dirname "$0")/.."

SUITE=bookworm # the image's Debian release (Python 3.11, OVS 3.1, OVN 23.03)
PY_VERSION=3.11
PACKAGES=(python3 python3-venv ca-certificates iproute2 openvswitch-switch ovn-host ovn-central)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
CACHE=${CACHE:-/var/cache/dpunet-ci}
VENV=${VENV:-.venv}
ARCH=$(dpkg --print-architecture)
IMAGE=""

while [ $# -gt 0 ]; do
    case "$1" in
        --arch) ARCH=${2:?--arch needs a Debian architecture}; shift 2 ;;
        --tag) IMAGE=${2:?--tag needs an image name}; shift 2 ;;
        *)
            echo "build-image: unknown argument $1 (usage: $0 [--arch ARCH] [--tag IMAGE])" >&2
            exit 2
            ;;
    esac
done
case "$ARCH" in
    amd64) MACHINE=x86_64 ;;
    arm64) MACHINE=aarch64 ;;
    *) echo "build-image: architecture $ARCH is not supported (amd64, arm64)" >&2; exit 2 ;;
esac
for tool in mmdebstrap podman git; do
    command -v "$tool" >/dev/null || {
        echo "build-image: $tool is missing; run scripts/install-deps.sh" >&2
        exit 1
    }
done
PIP=$VENV/bin/pip
[ -x "$PIP" ] || { echo "build-image: no $PIP; run make deps" >&2; exit 1; }

VERSION=$("$VENV/bin/python" -c \
    'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
IMAGE=${IMAGE:-localhost/dpunet:$VERSION}
KEY=$(printf '%s\n' "$SUITE" "$ARCH" "$MIRROR" "$SECURITY_MIRROR" "${PACKAGES[@]}" \
    | sha256sum | cut -c1-12)
BASE_TAR=$CACHE/dpunet-base-$SUITE-$ARCH-$KEY.tar
BASE_IMAGE=localhost/dpunet-base:$SUITE-$ARCH-$KEY

step_start=$SECONDS
step() { printf '==> [%ss] %s\n' "$((SECONDS - step_start))" "$*" >&2; }

if ! podman image exists "$BASE_IMAGE"; then
    if [ ! -f "$BASE_TAR" ]; then
        step "mmdebstrap $SUITE/$ARCH -> $BASE_TAR"
        mkdir -p "$CACHE"
        # docs, man pages and translations are left out; package lists are cleaned
        mmdebstrap --quiet --variant=apt --arch="$ARCH" --format=tar \
            --include="$(IFS=,; echo "${PACKAGES[*]}")" \
            --dpkgopt='path-exclude=/usr/share/doc/*' \
            --dpkgopt='path-include=/usr/share/doc/*/copyright' \
            --dpkgopt='path-exclude=/usr/share/man/*' \
            --dpkgopt='path-exclude=/usr/share/locale/*' \
            "$SUITE" "$BASE_TAR.tmp" \
            "deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" \
            "deb $SECURITY_MIRROR $SUITE-security main"
        mv "$BASE_TAR.tmp" "$BASE_TAR"
    fi
    step "podman import $BASE_TAR -> $BASE_IMAGE"
    podman import --quiet --arch "$ARCH" "$BASE_TAR" "$BASE_IMAGE" >/dev/null
fi

# The working tree's tracked files as they are now (a stash commit, or HEAD when clean);
# an image already built from the same files (the ones it is built from) on the same base
# is left as it is.
git rev-parse --git-dir >/dev/null 2>&1 || {
    echo "build-image: $PWD is not a git checkout of dpunet (the image is built from one)" >&2
    exit 1
}
# (git stash create writes a commit object: it needs an identity, any will do)
commit=$(GIT_AUTHOR_NAME=build-image GIT_AUTHOR_EMAIL=build-image@localhost \
    GIT_COMMITTER_NAME=build-image GIT_COMMITTER_EMAIL=build-image@localhost git stash create)
commit=${commit:-HEAD}
SOURCE=$(git ls-tree "$commit" src pyproject.toml README.md deploy/Containerfile \
    scripts/build-image.sh | sha256sum | cut -c1-12)-$KEY
if [ "$(podman image inspect --format '{{index .Labels "io.dpunet.source"}}' "$IMAGE" \
    2>/dev/null)" = "$SOURCE" ]; then
    step "$IMAGE is up to date (source $SOURCE)"
    echo "$IMAGE"
    exit 0
fi
OLD_ID=$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)

CONTEXT=$(mktemp -d /var/tmp/dpunet-image.XXXXXX)
trap 'rm -rf "$CONTEXT"' EXIT
step "wheelhouse for Python $PY_VERSION on $MACHINE"
mkdir "$CONTEXT/src" "$CONTEXT/wheels"
git archive "$commit" | tar -x -C "$CONTEXT/src"
"$PIP" wheel --quiet --no-deps --wheel-dir "$CONTEXT/wheels" "$CONTEXT/src"
# ovs is published as source only: built without its optional C extension (the compiler
# is made to fail, so setup.py falls back to pure Python), the wheel suits any Python 3
CC=false "$PIP" wheel --quiet --no-deps --no-binary ovs --wheel-dir "$CONTEXT/wheels" "ovs>=3.1"
# the image's glibc is 2.36: any manylinux wheel up to that (pip does not widen the list)
platforms=()
for glibc in $(seq 17 36); do platforms+=(--platform "manylinux_2_${glibc}_$MACHINE"); done
"$PIP" download --quiet --only-binary=:all: --dest "$CONTEXT/wheels" \
    --find-links "$CONTEXT/wheels" --python-version "$PY_VERSION" --implementation cp \
    --abi "cp${PY_VERSION/./}" "${platforms[@]}" --platform "manylinux2014_$MACHINE" \
    "$CONTEXT"/wheels/dpunet-*.whl
cp "$CONTEXT/src/deploy/Containerfile" "$CONTEXT/"

step "podman build $IMAGE"
# --no-cache: a cached RUN layer would not see new wheels in its bind mount
podman build --quiet --no-cache --arch "$ARCH" --network none --runtime runc \
    --ulimit nofile=1024:1024 --ulimit nproc=1024:1024 \
    --build-arg "BASE=$BASE_IMAGE" --label "org.opencontainers.image.version=$VERSION" \
    --label "io.dpunet.source=$SOURCE" --tag "$IMAGE" -f "$CONTEXT/Containerfile" \
    "$CONTEXT" >/dev/null
if [ -n "$OLD_ID" ] && [ "$(podman image inspect --format '{{.Id}}' "$IMAGE")" != "$OLD_ID" ]; then
    podman rmi "$OLD_ID" >/dev/null 2>&1 || true # the previous build, unless a container uses it
fi
step "built $IMAGE"
echo "$IMAGE"
