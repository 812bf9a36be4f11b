"""
kcrash.lab.apt
==============

A private apt configuration for Debian suites the machine's apt does not carry (an older release's
security suite, unstable). The archive URIs and keyrings are read from the machine's own apt sources
(``/etc/apt/sources.list`` one-line entries and ``sources.list.d/*.list`` / ``*.sources`` deb822
stanzas), never hard-coded; the suites are written to a sources file under the kcrash cache, with
their own package lists, download cache and trusted keys, and apt runs with ``APT_CONFIG`` pointing
there. Nothing is added to the system's sources and nothing is installed. It does not choose
packages (see :mod:`kcrash.lab.debian`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kcrash.errors import KernelPackageError, LabToolMissingError
from kcrash.lab.locks import cache_lock

__all__ = [
    "AptSource",
    "PrivateApt",
    "archive_for_suite",
    "machine_suites",
    "parse_deb822_sources",
    "parse_one_line_sources",
    "private_apt",
    "system_sources",
]

#: the keyring of Debian's archive keys, used when the machine's source names none
DEBIAN_KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
#: package lists older than this are fetched again (old ABIs leave the archive, new ones arrive)
LISTS_MAX_AGE_S = 24 * 3600
# Settings carried over from the machine's apt configuration: how to reach the archive (a proxy),
# and whether an archive snapshot's expired Valid-Until is accepted.
_INHERITED = re.compile(r"^Acquire::(?:https?::Proxy|Check-Valid-Until|Check-Date|Retries)\b", re.I)


@dataclass(frozen=True, slots=True)
class AptSource:
    """One apt source entry: ``deb`` URIs serving ``suites`` (components, optional Signed-By keyring)."""

    uris: tuple[str, ...]
    suites: tuple[str, ...]
    components: tuple[str, ...]
    signed_by: str | None = None


def _deb822_stanzas(text: str) -> list[dict[str, str]]:
    stanzas: list[dict[str, str]] = []
    fields: dict[str, str] = {}
    last = ""
    for line in [*text.splitlines(), ""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if fields:
                stanzas.append(fields)
            fields, last = {}, ""
        elif line[0] in " \t" and last:
            fields[last] += "\n" + line.strip()
        elif ":" in line:
            key, value = line.split(":", 1)
            last = key.strip().lower()
            fields[last] = value.strip()
    return stanzas


def parse_deb822_sources(text: str) -> list[AptSource]:
    """The enabled ``Types: deb`` stanzas of a deb822 ``.sources`` file."""
    out = []
    for fields in _deb822_stanzas(text):
        if "deb" not in fields.get("types", "").split() or fields.get("enabled", "yes").lower() == "no":
            continue
        signed_by = fields.get("signed-by")
        if signed_by is not None and not signed_by.startswith("/"):
            signed_by = None  # an inline key block: not reusable as a path
        out.append(AptSource(tuple(fields.get("uris", "").split()), tuple(fields.get("suites", "").split()),
                             tuple(fields.get("components", "").split()), signed_by))
    return out


def parse_one_line_sources(text: str) -> list[AptSource]:
    """The ``deb`` lines of a one-line-style ``sources.list``."""
    out = []
    for line in text.splitlines():
        match = re.match(r"^\s*deb\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$", line.split("#", 1)[0])
        if not match:
            continue
        options = dict(o.split("=", 1) for o in (match.group(1) or "").split() if "=" in o)
        out.append(AptSource((match.group(2),), (match.group(3),), tuple(match.group(4).split()),
                             options.get("signed-by")))
    return out


def system_sources(etc: Path = Path("/etc/apt")) -> list[AptSource]:
    """Every ``deb`` source the machine's apt is configured with."""
    out: list[AptSource] = []
    if (etc / "sources.list").is_file():
        out += parse_one_line_sources((etc / "sources.list").read_text(errors="replace"))
    parts = etc / "sources.list.d"
    for path in sorted(parts.glob("*.list")) if parts.is_dir() else []:
        out += parse_one_line_sources(path.read_text(errors="replace"))
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        out += parse_deb822_sources(path.read_text(errors="replace"))
    return out


def _is_security(suite: str) -> bool:
    return suite.endswith(("-security", "/updates"))


def archive_for_suite(sources: list[AptSource], suite: str) -> AptSource:
    """The machine's Debian archive that serves ``suite``: a security suite comes from the source
    that carries the configured release's security suite, any other suite from the main archive.

    Returns an entry for ``suite`` alone, component ``main``, keyed like the source it came from.
    """
    wanted = _is_security(suite)
    for source in sources:
        if source.uris and "main" in source.components and any(_is_security(s) == wanted for s in source.suites):
            signed_by = source.signed_by or (str(DEBIAN_KEYRING) if DEBIAN_KEYRING.exists() else None)
            return AptSource(source.uris[:1], (suite,), ("main",), signed_by)
    kind = "security" if wanted else "main"
    raise KernelPackageError(f"no Debian {kind} archive in the machine's apt sources to fetch {suite} from")


@dataclass(frozen=True, slots=True)
class PrivateApt:
    """A private apt configuration rooted at ``root`` (``apt.conf`` there; use :meth:`env`)."""

    root: Path
    suites: tuple[str, ...]

    @property
    def config(self) -> Path:
        """The ``APT_CONFIG`` file."""
        return self.root / "apt.conf"

    def env(self) -> dict[str, str]:
        """The environment to run ``apt-get``/``apt-cache`` with."""
        return {**os.environ, "APT_CONFIG": str(self.config)}


def _sources_text(entries: list[AptSource]) -> str:
    stanzas = []
    for entry in entries:
        lines = ["Types: deb", f"URIs: {' '.join(entry.uris)}", f"Suites: {' '.join(entry.suites)}",
                 f"Components: {' '.join(entry.components)}"]
        if entry.signed_by:
            lines.append(f"Signed-By: {entry.signed_by}")
        stanzas.append("\n".join(lines) + "\n")
    return "\n".join(stanzas)


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _inherited_settings() -> list[str]:
    # `apt-config dump` of the machine's configuration prints one `Key "value";` per line.
    if shutil.which("apt-config") is None:
        return []
    env = {k: v for k, v in os.environ.items() if k != "APT_CONFIG"}
    proc = subprocess.run(["apt-config", "dump"], capture_output=True, text=True, check=False, env=env)
    return [line for line in proc.stdout.splitlines() if _INHERITED.match(line)]


def _config_text(root: Path, arch: str, inherited: list[str]) -> str:
    """The private ``apt.conf``: every directory apt reads or writes points under ``root``; the
    machine's ``apt.conf.d`` is not read (its hooks would run on the private update)."""
    d = {
        "Dir::Etc::main": root / "etc" / "apt.conf.none",
        "Dir::Etc::parts": root / "etc" / "apt.conf.d",
        "Dir::Etc::sourcelist": root / "etc" / "sources.list.none",
        "Dir::Etc::sourceparts": root / "etc" / "sources.list.d",
        "Dir::Etc::preferences": root / "etc" / "preferences.none",
        "Dir::Etc::preferencesparts": root / "etc" / "preferences.d",
        "Dir::Etc::trusted": root / "etc" / "trusted.gpg.none",
        "Dir::Etc::trustedparts": root / "etc" / "trusted.gpg.d",
        "Dir::State": root / "state",
        "Dir::State::lists": root / "state" / "lists",
        "Dir::State::status": root / "state" / "status",
        "Dir::Cache": root / "cache",
        "Dir::Cache::archives": root / "cache" / "archives",
        "Dir::Log": root / "log",
    }
    lines = [f"{key} {_quote(str(value))};" for key, value in d.items()]
    lines += [f"APT::Architecture {_quote(arch)};", f"APT::Architectures {{ {_quote(arch)}; }};",
              'Acquire::Languages "none";', 'Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled "false";']
    return "\n".join(lines + inherited) + "\n"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)


def _layout(root: Path, sources: str, config: str) -> None:
    for sub in ("etc/apt.conf.d", "etc/sources.list.d", "etc/preferences.d", "etc/trusted.gpg.d",
                "state/lists/partial", "cache/archives/partial", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    _write(root / "state" / "status", "")
    _write(root / "etc" / "sources.list.d" / "kcrash.sources", sources)
    _write(root / "apt.conf", config)


def _host_arch() -> str:
    if shutil.which("dpkg") is None:
        raise LabToolMissingError("dpkg", "dpkg")
    return subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          check=True).stdout.strip()


def _lists_fresh(root: Path, sources: str) -> bool:
    stamp = root / "state" / "updated"
    return _has_lists(root, sources) and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE_S


def _update(apt: PrivateApt, sources: str) -> None:
    if shutil.which("apt-get") is None:
        raise LabToolMissingError("apt-get", "apt")
    proc = subprocess.run(["apt-get", "update", "-q"], capture_output=True, text=True, check=False, env=apt.env())
    failed = [line for line in (proc.stdout + proc.stderr).splitlines() if line.startswith(("E:", "W:", "Err:"))]
    if proc.returncode != 0 or any(line.startswith(("E:", "Err:")) for line in failed):
        raise KernelPackageError(f"apt-get update of {' '.join(apt.suites)} failed: {' | '.join(failed[-3:])}")
    (apt.root / "state" / "updated").write_text(sources)


def machine_suites(sources: list[AptSource] | None = None) -> tuple[str, ...]:
    """The suites the machine's apt carries, in the order of its sources (``bookworm``, ...)."""
    out: list[str] = []
    for source in system_sources() if sources is None else sources:
        out += [s for s in source.suites if s not in out]
    return tuple(out)


def private_apt(cache: Path, suites: tuple[str, ...], sources: list[AptSource] | None = None,
                arch: str | None = None) -> PrivateApt:
    """The private apt configuration for ``suites`` under ``cache/apt``, its package lists fetched
    (again when older than :data:`LISTS_MAX_AGE_S`; older lists are kept when that fails).
    ``sources`` defaults to the machine's. ``arch`` is a Debian architecture (``arm64``) whose
    packages this configuration serves instead of the machine's (its directory is ``SUITES@ARCH``);
    they are only ever downloaded and unpacked, never installed."""
    machine = system_sources() if sources is None else sources
    host = _host_arch()
    name = "+".join(suites) + (f"@{arch}" if arch and arch != host else "")
    apt = PrivateApt(cache / "apt" / name, suites)
    text = _sources_text([archive_for_suite(machine, suite) for suite in suites])
    with cache_lock(cache, f"apt-{name}"):
        _layout(apt.root, text, _config_text(apt.root, arch or host, _inherited_settings()))
        if not _lists_fresh(apt.root, text):
            try:
                _update(apt, text)
            except KernelPackageError:
                # Lists of these very sources exist: an archive out of reach keeps the lab working
                # from them (a package gone since is still reported when its download fails).
                if not _has_lists(apt.root, text):
                    raise
    return apt


def _has_lists(root: Path, sources: str) -> bool:
    stamp = root / "state" / "updated"
    return stamp.exists() and stamp.read_text() == sources
