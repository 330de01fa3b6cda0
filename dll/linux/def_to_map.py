#!/usr/bin/env python3
"""Writes a GNU ld version script exporting exactly the names in iocpsrv.def,
so libiocpsrv.so and iocpsrv.dll export the same list."""
import sys


def export_lines(def_path):
    """The lines of the EXPORTS section, comments and blanks left out."""
    lines, in_exports = [], False
    with open(def_path, encoding="ascii") as f:
        for raw in f:
            line = raw.split(";", 1)[0].strip()
            if not line:
                continue
            if line.upper() == "EXPORTS":
                in_exports = True
            elif in_exports:
                lines.append(line)
    return lines


def exports(def_path):
    return [line.split()[0] for line in export_lines(def_path)]


def main():
    src, dst = sys.argv[1], sys.argv[2]
    names = exports(src)
    with open(dst, "w", encoding="ascii") as out:
        out.write("IOCPSRV_1 {\n  global:\n")
        for n in names:
            out.write(f"    {n};\n")
        out.write("  local:\n    *;\n};\n")


if __name__ == "__main__":
    main()
