#!/usr/bin/env bash
# Installs the build's Debian packages (Debian 12). Idempotent; skips apt when
# everything is present already. `install_deps.sh fuzz` adds clang, libFuzzer
# and the sanitizer runtimes, LLVM's OpenMP and llvm-symbolizer (scripts/fuzz.sh).
set -euo pipefail
pkgs=(cmake ninja-build g++ pkg-config git libcli11-dev nlohmann-json3-dev libpcre2-dev libopenblas-dev
      libgtest-dev libbenchmark-dev libcpp-httplib-dev gnuplot-nox)
if [ "${1:-}" = fuzz ]; then
  pkgs+=(clang libclang-rt-14-dev libomp-dev llvm)
fi
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}" >&2
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
