#!/usr/bin/env bash
# Installs what tapegrad needs to build, test and benchmark, from Debian/Ubuntu packages.
# Only missing packages are installed; uses sudo when not root. Extra package names given as
# arguments are installed too (.ci/run passes clang for its second compiler).
set -euo pipefail
packages=(g++ make cmake libeigen3-dev libfmt-dev nlohmann-json3-dev catch2 libbenchmark-dev libopenblas-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present (${packages[*]})"
  exit 0
fi
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  sudo_cmd=(sudo)
fi
echo "install-deps: installing ${missing[*]}"
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
"${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
