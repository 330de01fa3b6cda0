#!/usr/bin/env bash
# Debian 13 (trixie) with its Wine 10.0 in a chroot, for the Windows engine's
# TLS suites that need server-side SChannel (Debian 12's Wine 8 has none):
# made once with debootstrap from the Debian mirror this machine's apt uses,
# then reused (test/tools/wine10.sh runs a program in it). Run as root; needs
# debootstrap (install-deps.sh installs it and calls this). About 1.2 GB; 5
# to 8 minutes the first time on a busy 2-core machine, nothing when it is
# there.
set -euo pipefail

root=/var/cache/iocpsrv/trixie
stamp="$root/.iocpsrv-wine10"
[ -f "$stamp" ] && exit 0

# The mirror of the host's own Debian suite (deb822 or one-line sources).
mirror=$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' |
         grep -v -e security -e '^$' | grep '/debian/\?$' | head -n 1 || true)
if [ -z "$mirror" ]; then
  mirror=$(grep -hs '^deb ' /etc/apt/sources.list | awk '{print $2}' |
           grep -v security | grep '/debian/\?$' | head -n 1 || true)
fi
mirror=${mirror:-http://deb.debian.org/debian}

# Whatever an interrupted run left (debootstrap mounts /proc inside).
unmount_under() {
  local m
  for m in $(findmnt -rn -o TARGET | grep "^$1/" | sort -r || true); do umount -l "$m"; done
}
for d in "$root" "$root.partial"; do
  if [ -e "$d" ]; then unmount_under "$d"; rm -rf "$d"; fi
done

mkdir -p "$(dirname "$root")"
log=$(mktemp)
if ! debootstrap --variant=minbase --include=wine64 trixie "$root.partial" "$mirror" >"$log" 2>&1; then
  tail -n 20 "$log" >&2
  rm -f "$log"
  unmount_under "$root.partial"
  exit 1
fi
rm -f "$log"
unmount_under "$root.partial"
rm -f "$root.partial"/var/cache/apt/archives/*.deb # 200 MB nothing reads again
mv "$root.partial" "$root"
chroot "$root" dpkg-query -W -f='wine64 ${Version}\n' wine64 >"$stamp"
