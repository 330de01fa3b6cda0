#!/usr/bin/env bash
# cmocka is packaged for Linux but not for mingw-w64. Build Debian's own source
# package of it with the cross compiler, once, into a prefix that the mingw
# cross file points at (static library, so test programs need no extra DLL).
set -euo pipefail

prefix=${IOCPSRV_MINGW_PREFIX:-/opt/iocpsrv-mingw}
if [ -f "$prefix/x86_64/lib/libcmocka.a" ] && [ -f "$prefix/i686/lib/libcmocka.a" ]; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  cat >/etc/apt/sources.list.d/iocpsrv-src.sources <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  apt-get update -qq
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
apt-get source -qq cmocka >/dev/null 2>&1 || { apt-get update -qq; apt-get source -qq cmocka >/dev/null; }
src=$(find . -maxdepth 1 -type d -name 'cmocka-*' | head -n 1)

for arch in x86_64 i686; do
  cat >"toolchain-$arch.cmake" <<EOF
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_C_COMPILER $arch-w64-mingw32-gcc)
set(CMAKE_RC_COMPILER $arch-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/$arch-w64-mingw32)
EOF
  cmake -S "$src" -B "build-$arch" -DCMAKE_TOOLCHAIN_FILE="$work/toolchain-$arch.cmake" \
    -DCMAKE_BUILD_TYPE=Release -DCMAKE_INSTALL_PREFIX="$prefix/$arch" \
    -DBUILD_SHARED_LIBS=OFF -DWITH_STATIC_LIB=ON -DUNIT_TESTING=OFF -DWITH_EXAMPLES=OFF \
    -DPICKY_DEVELOPER=OFF >/dev/null
  cmake --build "build-$arch" -j 2 >/dev/null
  cmake --install "build-$arch" >/dev/null
  # Depending on the cmocka version the static library is named libcmocka-static.a.
  # Keep only the static library, so -lcmocka can never pick the DLL.
  if [ ! -f "$prefix/$arch/lib/libcmocka.a" ]; then
    cp "$prefix/$arch/lib/libcmocka-static.a" "$prefix/$arch/lib/libcmocka.a"
  fi
  rm -f "$prefix/$arch/lib/libcmocka.dll.a" "$prefix/$arch/bin/cmocka.dll"
done
