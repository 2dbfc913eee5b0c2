#!/usr/bin/env bash
# install-deps.sh [fuzz]: installs the Debian packages moeplan needs, skipping
# what is already there (idempotent).  Runs `apt-get update` once per machine,
# before the first install.  With "fuzz" (make fuzz): also clang and its
# runtime libraries (libFuzzer, ASan, UBSan), which make check does not need.
set -euo pipefail
PKGS="gcc make libcjson-dev libglpk-dev libhwloc-dev libcmocka-dev libopenmpi-dev openmpi-bin gnuplot-nox"
if [ "${1:-}" = fuzz ]; then PKGS="$PKGS clang libclang-rt-dev"; fi
missing=""
for p in $PKGS; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
stamp=/var/lib/apt/periodic/moeplan-updated
if [ ! -f "$stamp" ]; then
    $SUDO apt-get update -qq
    $SUDO mkdir -p "$(dirname "$stamp")" && $SUDO touch "$stamp"
fi
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
