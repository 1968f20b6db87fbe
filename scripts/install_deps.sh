#!/usr/bin/env bash
# Installs the build's Debian packages (Debian 12). Idempotent; skips apt when
# everything is present already. `install_deps.sh fuzz` adds clang, libFuzzer
# and the sanitizer runtimes, LLVM's OpenMP and llvm-symbolizer (scripts/fuzz.sh).
# `install_deps.sh server-tests` adds what tests/server needs: Node.js and npm
# (Debian's, only when no node is installed), Debian's chromium (the browser
# of the web page test; playwright never downloads one here), and the npm
# packages of tests/server/package-lock.json (openai, playwright-core) into
# tests/server/node_modules, reinstalled only when the lock file changes.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=(cmake ninja-build g++ pkg-config git libcli11-dev nlohmann-json3-dev libpcre2-dev libopenblas-dev
      libgtest-dev libbenchmark-dev libcpp-httplib-dev gnuplot-nox)
if [ "${1:-}" = fuzz ]; then
  pkgs+=(clang libclang-rt-14-dev libomp-dev llvm)
fi
if [ "${1:-}" = server-tests ]; then
  command -v node >/dev/null || pkgs+=(nodejs)
  command -v npm >/dev/null || pkgs+=(npm)
  pkgs+=(chromium)
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
if [ "${1:-}" = server-tests ]; then
  stamp=tests/server/node_modules/.lock-sha256
  want=$(sha256sum tests/server/package-lock.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing tests/server npm packages (npm ci)" >&2
    (cd tests/server && npm ci --no-audit --no-fund --loglevel=error)
    echo "$want" >"$stamp"
  fi
fi
