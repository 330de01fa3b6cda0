#!/usr/bin/env bash
# Installs everything the build and the tests need on a fresh Debian 12 machine
# (run as root). Safe to run again: apt-get skips what is already there, and
# the mingw build of cmocka is only made once (see build-cmocka-mingw.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

pkgs=(
  gcc-mingw-w64-x86-64 gcc-mingw-w64-i686 binutils-mingw-w64-x86-64 binutils-mingw-w64-i686
  wine wine64
  meson ninja-build pkgconf cmake gcc libc6-dev
  libcmocka-dev
  mono-mcs mono-runtime
  python3 python3-pytest python3-uvloop
  # The Python package's asyncio layer under unmodified third-party servers,
  # and its type hints checked (mypy --strict).
  python3-aiohttp uvicorn python3-mypy
  # pytest for the pyenv CPythons 3.9-3.10 (Debian's pytest needs it there).
  python3-exceptiongroup
  dpkg-dev
  # Packaging and its tests: the MSVC import library (llvm-dlltool), a
  # clang + lld-link consumer, the header as C++, the version resource
  # (pefile), the wheel (Debian's python3 + setuptools + wheel, a venv) and
  # the NuGet package.
  llvm lld clang g++ binutils
  python3-pefile python3-setuptools python3-wheel python3-venv
  # pip install ./sample_clients/python offline, with build isolation: the
  # build requirements as wheels in /usr/share/python-wheels.
  python3-pip-whl python3-setuptools-whl python3-wheel-whl
  nuget
  # Benchmark peers and load tools (test/bench/bench.py); the library never
  # needs them, and test/bench builds baseline_uv only where libuv is found.
  libuv1-dev nginx-light wrk curl
)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

"$here/build-cmocka-mingw.sh"
