#!/usr/bin/env bash
# Installs those of the given Debian packages that are not installed (apt-get, through sudo when
# not root), printing the command first; does nothing when all are there.
# Usage: launch/install-missing.sh [--no-install-recommends] PACKAGE...
set -euo pipefail
options=()
[[ ${1:-} == --no-install-recommends ]] && { options+=("$1"); shift; }
missing=()
for p in "$@"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
echo "+ apt-get install ${missing[*]}"
sudo_cmd=()
(($(id -u) == 0)) || sudo_cmd=(sudo)
"${sudo_cmd[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${options[@]}" "${missing[@]}" >/dev/null
