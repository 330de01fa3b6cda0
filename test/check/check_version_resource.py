#!/usr/bin/python3
"""The version resource of iocpsrv.dll says meson.build's version.

  check_version_resource.py DLL X.Y.Z LICENSE

Reads the DLL's VS_VERSIONINFO with pefile (Debian's python3-pefile, hence
/usr/bin/python3): the fixed file and product versions are X.Y.Z.0, the
FileVersion and ProductVersion strings are X.Y.Z, and the description,
product name, original file name and license are there. Prints one line per
check and 'N passed, M failed'."""
import sys

import pefile

from checks import check, finish



def main():
    dll, version, license_id = sys.argv[1:4]
    pe = pefile.PE(dll)
    fixed = getattr(pe, "VS_FIXEDFILEINFO", None)
    if not check("the DLL has a version resource", fixed):
        return 1
    major, minor, patch = (int(x) for x in version.split("."))
    want = ((major << 16) | minor, patch << 16)
    ff = fixed[0]
    check(f"FILEVERSION is {version}.0", (ff.FileVersionMS, ff.FileVersionLS) == want,
          f"{ff.FileVersionMS:#x} {ff.FileVersionLS:#x}")
    check(f"PRODUCTVERSION is {version}.0", (ff.ProductVersionMS, ff.ProductVersionLS) == want,
          f"{ff.ProductVersionMS:#x} {ff.ProductVersionLS:#x}")
    strings = {}
    for info in pe.FileInfo[0]:
        if info.Key == b"StringFileInfo":
            for table in info.StringTable:
                strings.update({k.decode(): v.decode() for k, v in table.entries.items()})
    for key in ("FileVersion", "ProductVersion"):
        check(f"{key} is \"{version}\"", strings.get(key) == version, repr(strings.get(key)))
    check("OriginalFilename is iocpsrv.dll", strings.get("OriginalFilename") == "iocpsrv.dll")
    check("ProductName and FileDescription name iocpsrv",
          strings.get("ProductName") == "iocpsrv" and "iocpsrv" in strings.get("FileDescription", ""))
    check(f"License is {license_id} and LegalCopyright names the Boost license",
          strings.get("License") == license_id and "Boost Software License" in strings.get("LegalCopyright", ""),
          f"{strings}")
    return finish()


if __name__ == "__main__":
    sys.exit(main())
