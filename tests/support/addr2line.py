"""binutils ``addr2line -f -i`` as the oracle of the symbolizer, and kcrash's answers spelled its way."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kcrash.debuginfo.symbolizer import SourceLocation


def addr2line(path: Path, addresses: list[int], section: str | None = None) -> list[list[tuple[str, str]]]:
    """binutils' answer per address: [(function, "file:line"), ...] innermost first."""
    extra = ["-j", section] if section else []
    out = subprocess.run(["addr2line", "-a", "-f", "-i", *extra, "-e", str(path), *map(hex, addresses)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    groups: list[list[str]] = []
    for line in out:
        if line.startswith("0x"):
            groups.append([])
        else:
            groups[-1].append(line)
    return [[(g[i], g[i + 1]) for i in range(0, len(g), 2)] for g in groups]


def as_addr2line(locations: tuple[SourceLocation, ...]) -> list[tuple[str, str]]:
    """kcrash's inline chain as addr2line prints it."""
    # addr2line prints the discriminator of the line-table row after *every* frame of the inline
    # chain (binutils addr2line.c keeps the variable from the first lookup while it walks
    # bfd_find_inliner_info); kcrash keeps it on the innermost location only. Normalized here.
    disc = f" (discriminator {locations[0].discriminator})" if locations and locations[0].discriminator else ""
    return [(loc.function, f"{loc.file}:{loc.line if loc.file != '??' else '?'}{disc}") for loc in locations]
