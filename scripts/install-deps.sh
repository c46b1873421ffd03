#!/usr/bin/env bash
# Installs what dpunet needs on a Debian 12 (bookworm) or Debian 13 (trixie)
# machine: the distro packages (OVS, OVN, podman, containerd, FUSE, ...) and a
# virtualenv with dpunet in it. Idempotent and quick when everything is already
# there. Run as root (the lab needs root).
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=/dev/null
. /etc/os-release
case "${VERSION_ID:-}" in
    12) LIBFUSE=libfuse3-3 ;;  # fuse 3.14
    13) LIBFUSE=libfuse3-4 ;;  # fuse 3.17 (a new soname)
    *)
        echo "dpunet supports Debian 12 and 13; this is ${PRETTY_NAME:-an unknown system}" >&2
        exit 1
        ;;
esac

APT_PACKAGES=(
    openvswitch-switch ovn-central ovn-host podman runc containerd busybox-static
    git iproute2 iputils-ping ethtool iperf3 tcpdump fuse3 "$LIBFUSE" util-linux
    python3 python3-venv python3-openvswitch graphviz containernetworking-plugins debootstrap mmdebstrap
)
VENV=${VENV:-.venv}

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # The packages' own services are not used (the lab starts its daemons in
    # namespaces); policy-rc.d stops the postinst scripts from starting them.
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    apt-get install -y -qq "${missing[@]}"
    rm -f /usr/sbin/policy-rc.d
fi

stamp="$VENV/.dpunet-installed"
if [ ! -x "$VENV/bin/python" ]; then
    echo "==> creating virtualenv $VENV"
    python3 -m venv "$VENV"
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    echo "==> installing dpunet into $VENV"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q -e '.[test]'
    touch "$stamp"
fi

# PyPI's `ovs` is pure Python, JSON parser included: every OVSDB message dpunet's daemons
# receive would be decoded in Python (12x slower than C on a 200 KB update). Debian's
# python3-openvswitch has the compiled parser, built for this same interpreter (the
# venv's python is the system's); python-ovs uses it when it can import `ovs._json`.
ext=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
ovs_dir=$("$VENV/bin/python" -c 'import os, ovs; print(os.path.dirname(ovs.__file__))')
if [ -e "/usr/lib/python3/dist-packages/ovs/_json$ext" ] && [ ! -e "$ovs_dir/_json$ext" ]; then
    ln -s "/usr/lib/python3/dist-packages/ovs/_json$ext" "$ovs_dir/_json$ext"
fi
