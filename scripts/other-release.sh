#!/usr/bin/env bash
# Runs the unit tests and `make demo` in a chroot of the other Debian release
# dpunet supports: Debian 13 (trixie) on a Debian 12 host, Debian 12 (bookworm)
# on a Debian 13 host. CI runs it after `make test` (see .ci/run). Run as root,
# never beside a `make demo` on the host: both labs are named dpulab.
#
# The chroot ($CHROOT) is made afresh on every run and gets a clone of this
# repository's HEAD (committed work only) with its own .venv. Two tarballs in
# $CACHE make later runs quick: the debootstrap'd base, and the base after
# scripts/install-deps.sh (named after the script's hash; it holds pip's cache).
# Each step in the chroot runs in new mount and PID namespaces, so when it ends
# the kernel drops its mounts (/proc, /sys, /dev, /run, the lab's) and kills
# whatever it left running: nothing is left mounted under $CHROOT on the host.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD

# shellcheck source=/dev/null
. /etc/os-release
case "${VERSION_ID:-}" in
    12) SUITE=trixie ;;
    13) SUITE=bookworm ;;
    *)
        echo "other-release: the host must be Debian 12 or 13; this is ${PRETTY_NAME:-unknown}" >&2
        exit 1
        ;;
esac
MIRROR=${MIRROR:-http://deb.debian.org/debian}
CACHE=${CACHE:-/var/cache/dpunet-ci}
CHROOT=${CHROOT:-/var/tmp/dpunet-chroot-$SUITE}
# What runs there: CI's default, or e.g. TARGETS="test demo" for the whole suite.
TARGETS=${TARGETS:-unit demo}
BASE_TAR=$CACHE/$SUITE-base.tar
DEPS_TAR=$CACHE/$SUITE-deps-$(sha256sum scripts/install-deps.sh | cut -c1-12).tar

# The chroot's environment: a clean one, plus the host's proxy settings and
# package index if it has them. The host's pip configuration (local wheel
# directories, constraints) is not passed on; PyPI's certificate is checked
# against the chroot's CA bundle, which gets the host's local CAs below.
CHROOT_ENV=(
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}"
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt
)
for var in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY PIP_INDEX_URL; do
    if [ -n "${!var:-}" ]; then CHROOT_ENV+=("$var=${!var}"); fi
done

TIMINGS=()
stage_name="" stage_start=0
stage() { # stage [NAME]: ends the current stage's timing; with NAME, starts a stage
    if [ -n "$stage_name" ]; then TIMINGS+=("$stage_name $((SECONDS - stage_start))s"); fi
    stage_name=${1:-} stage_start=$SECONDS
    if [ -n "$stage_name" ]; then printf '\n===== other release (%s): %s =====\n' "$SUITE" "$1"; fi
}

SESSION="" # the pid of the running in_chroot session
in_chroot() { # in_chroot COMMAND: runs the shell COMMAND in the chroot's clone of the repo
    # The first bash is the PID namespace's init: it waits for the chroot and reaps
    # orphans; when it exits, the kernel kills the rest. `ip netns exec` needs the
    # chroot's / to be a mount point: the chroot is bind-mounted onto itself first.
    # shellcheck disable=SC2016 # the inner script's variables are its own
    unshare --mount --propagation private --pid --fork --kill-child -- bash -euc '
        root=$1; shift
        mount --bind "$root" "$root"
        mount -t proc proc "$root/proc"
        mount --rbind /sys "$root/sys"
        mount --rbind /dev "$root/dev"
        mount -t tmpfs tmpfs "$root/run"
        mkdir "$root/run/netns"
        chroot "$root" env -i "$@" || exit $?' \
        _ "$CHROOT" "${CHROOT_ENV[@]}" bash -euo pipefail -c "cd /dpunet && $1" &
    SESSION=$!
    local status=0
    wait "$SESSION" || status=$?
    SESSION=""
    return $status
}

# Prefixes each line with the time of day (where apt ends and pip starts, in the log).
# shellcheck disable=SC2016 # expanded by the chroot's shell
TIMESTAMPED='while IFS= read -r line; do printf "%(%T)T %s\n" -1 "$line"; done'

# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() { # on exit: ends a session still running (a signal), then removes the chroot
    if [ -n "$SESSION" ] && kill -KILL "$SESSION" 2>/dev/null; then
        echo "other-release: interrupted; the chroot session was killed" >&2
        wait "$SESSION" 2>/dev/null || true
    fi
    remove_chroot
}

remove_chroot() {
    [ -e "$CHROOT" ] || return 0
    if find /proc/[0-9]*/root -maxdepth 0 -lname "$CHROOT*" 2>/dev/null | grep -q .; then
        echo "other-release: processes run in $CHROOT; not removing it" >&2
        return 1
    fi
    if findmnt -rn -o TARGET | grep -q -e "^$CHROOT\$" -e "^$CHROOT/"; then
        echo "other-release: mounts remain under $CHROOT; not removing it" >&2
        return 1
    fi
    rm -rf --one-file-system "$CHROOT"
}

save_tar() { # save_tar TARBALL [TAR OPTIONS]: the chroot (no /dpunet) into the cache
    local tarball=$1
    shift
    tar -C "$CHROOT" --exclude=./dpunet "$@" -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
}

remove_chroot
trap cleanup EXIT
trap 'exit 1' INT TERM HUP
mkdir -p "$CACHE" "$CHROOT"

if [ -f "$DEPS_TAR" ]; then
    stage "restore $DEPS_TAR"
    tar -C "$CHROOT" -xf "$DEPS_TAR"
elif [ -f "$BASE_TAR" ]; then
    stage "restore $BASE_TAR"
    tar -C "$CHROOT" -xf "$BASE_TAR"
else
    stage "debootstrap $SUITE"
    # debootstrap mounts /proc and /sys in the target: a mount namespace drops them if it fails.
    unshare --mount --propagation private -- debootstrap --variant=minbase \
        --include=ca-certificates,make "$SUITE" "$CHROOT" "$MIRROR"
    save_tar "$BASE_TAR"
fi

stage "scripts/install-deps.sh"
cp /etc/resolv.conf /etc/hosts "$CHROOT/etc/"
mkdir -p "$CHROOT/usr/local/share/ca-certificates"
if [ -d /usr/local/share/ca-certificates ]; then
    cp -r /usr/local/share/ca-certificates/. "$CHROOT/usr/local/share/ca-certificates/"
fi
git clone -q "$REPO" "$CHROOT/dpunet"
in_chroot "update-ca-certificates >/dev/null && scripts/install-deps.sh 2>&1 | $TIMESTAMPED"
if [ ! -f "$DEPS_TAR" ]; then
    rm -f "$CACHE/$SUITE"-deps-*.tar
    save_tar "$DEPS_TAR" --exclude=./var/cache/apt/archives/*.deb
fi

# Each target runs even if an earlier one failed; the script fails if any does.
status=0
for target in $TARGETS; do
    stage "make $target"
    in_chroot "make $target" || status=1
done
stage
# What a bench target wrote (make bench-controller) comes back to the host's tree.
if [ -d "$CHROOT/dpunet/bench-results" ]; then
    mkdir -p "$REPO/bench-results/$SUITE"
    cp -r "$CHROOT/dpunet/bench-results/." "$REPO/bench-results/$SUITE/"
    echo "other-release: bench results in bench-results/$SUITE/"
fi

printf '\n===== other release (%s): %s =====\n' "$SUITE" "$([ $status = 0 ] && echo passed || echo FAILED)"
printf '  %s\n' "${TIMINGS[@]}"
exit $status
