#!/usr/bin/env bash
# Installs what dpagent's tests and its no-Docker stack need on a fresh Debian
# machine: Prometheus (with promtool), Alertmanager (with amtool), the Pushgateway
# and docker-compose (to validate docker-compose.yml offline) where they are
# missing, then the package itself with the given pip extras (default: test).
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v promtool >/dev/null || missing+=(prometheus)
command -v prometheus-alertmanager >/dev/null || missing+=(prometheus-alertmanager)
command -v prometheus-pushgateway >/dev/null || missing+=(prometheus-pushgateway)
command -v docker-compose >/dev/null || missing+=(docker-compose)
command -v openssl >/dev/null || missing+=(openssl)
if ((${#missing[@]})); then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "installing Debian packages: ${missing[*]}"
    $sudo apt-get update -q
    # --no-install-recommends: the recommends pull ~400 MB nobody here uses.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore
python3 -m pip install -q -e ".[${1:-test}]"
