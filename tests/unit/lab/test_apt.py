"""The private apt configuration: sources parsing, archive choice, config contents (no network)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kcrash.errors import KernelPackageError
from kcrash.lab import apt
from kcrash.lab.apt import AptSource, archive_for_suite, parse_deb822_sources, parse_one_line_sources

DEB822 = """\
Types: deb
# http://snapshot.debian.org/archive/debian/20250520T000000Z
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
Enabled: no
URIs: http://disabled.example/debian
Suites: trixie
Components: main
"""


def test_deb822_keeps_enabled_deb_stanzas() -> None:
    sources = parse_deb822_sources(DEB822)
    assert [s.uris for s in sources] == [("http://mirror.example/debian",), ("http://mirror.example/debian-security",)]
    assert sources[0].suites == ("bookworm", "bookworm-updates")
    assert sources[1].components == ("main", "contrib")
    assert sources[0].signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_deb822_inline_key_is_not_taken_as_a_path() -> None:
    text = ("Types: deb\nURIs: http://m/debian\nSuites: sid\nComponents: main\n"
            "Signed-By: -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF...\n")
    assert parse_deb822_sources(text)[0].signed_by is None


def test_one_line_sources_with_options_and_comments() -> None:
    text = ("# comment\n"
            "deb [arch=amd64 signed-by=/etc/k.gpg] http://m.example/debian bookworm main contrib\n"
            "deb-src http://m.example/debian bookworm main\n"
            "deb http://m.example/debian-security bookworm-security main # trailing\n")
    sources = parse_one_line_sources(text)
    assert sources == [
        AptSource(("http://m.example/debian",), ("bookworm",), ("main", "contrib"), "/etc/k.gpg"),
        AptSource(("http://m.example/debian-security",), ("bookworm-security",), ("main",), None),
    ]


def test_system_sources_reads_every_file(tmp_path: Path) -> None:
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text("deb http://a.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "x.list").write_text("deb http://b.example/debian bookworm main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(DEB822)
    uris = [s.uris[0] for s in apt.system_sources(tmp_path)]
    assert uris == ["http://a.example/debian", "http://b.example/debian", "http://mirror.example/debian",
                    "http://mirror.example/debian-security"]


def test_security_suites_come_from_the_security_archive() -> None:
    sources = parse_deb822_sources(DEB822)
    entry = archive_for_suite(sources, "bullseye-security")
    assert entry.uris == ("http://mirror.example/debian-security",)
    assert entry.suites == ("bullseye-security",) and entry.components == ("main",)
    assert entry.signed_by == "/usr/share/keyrings/debian-archive-keyring.gpg"


def test_other_suites_come_from_the_main_archive() -> None:
    entry = archive_for_suite(parse_deb822_sources(DEB822), "sid")
    assert entry.uris == ("http://mirror.example/debian",) and entry.suites == ("sid",)


def test_no_matching_archive_is_an_error() -> None:
    only_main = [AptSource(("http://m/debian",), ("bookworm",), ("main",))]
    with pytest.raises(KernelPackageError, match="no Debian security archive"):
        archive_for_suite(only_main, "bullseye-security")


def test_private_sources_parse_back() -> None:
    entries = [archive_for_suite(parse_deb822_sources(DEB822), s) for s in ("sid", "bullseye-security")]
    assert parse_deb822_sources(apt._sources_text(entries)) == entries


def test_config_keeps_everything_under_its_root(tmp_path: Path) -> None:
    text = apt._config_text(tmp_path, "amd64", ['Acquire::Check-Valid-Until "false";'])
    dirs = [line for line in text.splitlines() if line.startswith("Dir::") and '""' not in line]
    assert len(dirs) >= 12
    assert all(f'"{tmp_path}/' in line for line in dirs)
    for key in ("Dir::Etc::parts", "Dir::Etc::sourceparts", "Dir::Etc::trustedparts", "Dir::State::lists"):
        assert any(line.startswith(key + " ") for line in dirs), key
    assert 'APT::Architectures { "amd64"; };' in text
    assert text.rstrip().endswith('Acquire::Check-Valid-Until "false";')


def test_only_network_settings_are_inherited() -> None:
    assert apt._INHERITED.match('Acquire::http::Proxy "http://p:3128";')
    assert apt._INHERITED.match('Acquire::Check-Valid-Until "false";')
    assert not apt._INHERITED.match('APT::Update::Post-Invoke-Success:: "appstreamcli refresh";')
    assert not apt._INHERITED.match('Dir::Etc::sourcelist "sources.list";')


def test_lists_are_fetched_once_and_again_when_the_sources_change(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    updates: list[str] = []

    def fake_update(private: apt.PrivateApt, sources: str) -> None:
        updates.append(sources)
        (private.root / "state" / "updated").write_text(sources)

    monkeypatch.setattr(apt, "_update", fake_update)
    monkeypatch.setattr(apt, "_host_arch", lambda: "amd64")
    monkeypatch.setattr(apt, "_inherited_settings", list)
    sources = parse_deb822_sources(DEB822)
    first = apt.private_apt(tmp_path, ("sid",), sources)
    apt.private_apt(tmp_path, ("sid",), sources)
    assert len(updates) == 1
    assert first.root == tmp_path / "apt" / "sid"
    assert first.env()["APT_CONFIG"] == str(first.root / "apt.conf")
    assert (first.root / "state" / "lists" / "partial").is_dir()
    moved = [AptSource(("http://other.example/debian",), ("bookworm",), ("main",))]
    apt.private_apt(tmp_path, ("sid",), moved)
    assert len(updates) == 2 and "other.example" in updates[1]


def test_stale_lists_are_kept_when_the_archive_is_out_of_reach(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_update(private: apt.PrivateApt, sources: str) -> None:
        raise KernelPackageError("apt-get update of sid failed: Err: no route")

    monkeypatch.setattr(apt, "_host_arch", lambda: "amd64")
    monkeypatch.setattr(apt, "_inherited_settings", list)
    monkeypatch.setattr(apt, "_update", failing_update)
    sources = parse_deb822_sources(DEB822)
    with pytest.raises(KernelPackageError, match="no route"):
        apt.private_apt(tmp_path, ("sid",), sources)  # no lists at all yet
    root = tmp_path / "apt" / "sid"
    stamp = root / "state" / "updated"
    stamp.write_text(apt._sources_text([archive_for_suite(sources, "sid")]))
    os.utime(stamp, (0, 0))  # lists from 1970
    assert apt.private_apt(tmp_path, ("sid",), sources).root == root


def test_a_foreign_architecture_gets_its_own_configuration(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_update(private: apt.PrivateApt, sources: str) -> None:
        (private.root / "state" / "updated").write_text(sources)

    monkeypatch.setattr(apt, "_update", fake_update)
    monkeypatch.setattr(apt, "_host_arch", lambda: "amd64")
    monkeypatch.setattr(apt, "_inherited_settings", list)
    sources = parse_deb822_sources(DEB822)
    host = apt.private_apt(tmp_path, ("sid",), sources)
    arm = apt.private_apt(tmp_path, ("sid",), sources, arch="arm64")
    assert host.root == tmp_path / "apt" / "sid" and arm.root == tmp_path / "apt" / "sid@arm64"
    assert apt.private_apt(tmp_path, ("sid",), sources, arch="amd64").root == host.root
    assert 'APT::Architectures { "arm64"; };' in arm.config.read_text()
    assert 'APT::Architecture "amd64";' in host.config.read_text()


def test_machine_suites_in_source_order() -> None:
    sources = [AptSource(("http://a",), ("bookworm", "bookworm-updates"), ("main",)),
               AptSource(("http://b",), ("bookworm-security",), ("main",)),
               AptSource(("http://c",), ("bookworm",), ("contrib",))]
    assert apt.machine_suites(sources) == ("bookworm", "bookworm-updates", "bookworm-security")
