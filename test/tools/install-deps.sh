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
  # TLS: the Linux library links OpenSSL 3; the tests make their certificates
  # with the openssl tool.
  libssl-dev openssl
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
  # (pefile) and the wheel (Debian's python3 + setuptools + wheel, a venv).
  llvm lld clang g++ binutils
  python3-pefile python3-setuptools python3-wheel python3-venv
  # pip install ./sample_clients/python offline, with build isolation: the
  # build requirements as wheels in /usr/share/python-wheels.
  python3-pip-whl python3-setuptools-whl python3-wheel-whl
  # The asyncio layer's C accelerator: built by meson for Debian's python3
  # (and the pyenv CPythons, whose headers they carry) and by pip install.
  python3-dev
  # Benchmark peers and load tools (test/bench/bench.py); the library never
  # needs them, and test/bench builds baseline_uv only where libuv is found.
  libuv1-dev nginx-light wrk curl
  # ApacheBench (ab): the second HTTP client of bench.py's aiohttp section.
  apache2-utils
  # h2load (HTTP/1.1 keep-alive): the second HTTP client of the kestrel section.
  nghttp2-client
  # The 1.0.0 library against this one (test/check/check_abi_release.py).
  abigail-tools git
  # The Debian 13 chroot with Wine 10 for the Windows TLS server suites
  # (install-wine10.sh).
  debootstrap
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
"$here/install-wine10.sh"

# The .NET SDK's tests (test/csharp/IocpSrv.Tests, the Kestrel sample and
# its test) restore NuGet packages from the registry the machine reaches:
# fetched once here, so that the tests find them in the NuGet cache.
if command -v dotnet >/dev/null; then
  root=$(cd "$here/../.." && pwd)
  scratch=$(mktemp -d)
  for proj in "$root"/test/csharp/*/*.csproj "$root"/sample_clients/csharp/*/*.csproj; do
    DOTNET_CLI_TELEMETRY_OPTOUT=1 DOTNET_NOLOGO=1 dotnet restore "$proj" \
      --artifacts-path "$scratch" >/dev/null
  done
  rm -rf "$scratch"
fi
