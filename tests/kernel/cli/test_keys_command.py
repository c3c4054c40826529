"""`loom keys generate` and `loom keys list`, run as a user runs them."""

from __future__ import annotations

import stat
from pathlib import Path

from tests.kernel.cli.test_init_command import fails, loom


def test_generate_writes_the_broker_and_the_identity_then_lists_them(tmp_path: Path) -> None:
    (tmp_path / "loom.toml").write_text('[bus]\nsecurity = "curve"\nallow = ["analyst"]\n')
    made = loom(tmp_path, "keys", "generate", "analyst", "dashboard")
    assert made.returncode == 0, made.stderr
    folder = tmp_path / ".loom" / "keys"
    for name in ("broker", "analyst", "dashboard"):
        assert f"wrote {name}:" in made.stderr
        assert stat.S_IMODE((folder / f"{name}.key_secret").stat().st_mode) == 0o600
    assert "security" not in made.stderr  # it is on already: no hint
    listed = loom(tmp_path, "keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if "│" in line[:2]}
    assert "yes" in rows["analyst"].split("│")[3]
    assert "no" in rows["dashboard"].split("│")[3]  # not in [bus] allow
    assert "it is the broker" in rows["broker"]


def test_list_says_what_the_guard_lets_each_identity_do(tmp_path: Path) -> None:
    (tmp_path / "loom.toml").write_text(
        '[bus]\nsecurity = "curve"\noperators = ["ops"]\n'
        '[acl.analyst]\ntools = ["quote"]\n[tenants.acme]\nidentities = ["acme-1"]\n'
    )
    assert loom(tmp_path, "keys", "generate", "ops", "analyst", "acme-1", "free").returncode == 0
    listed = loom(tmp_path, "keys", "list")  # COLUMNS=500: one line per key
    rows = {line.split()[1]: line for line in listed.stdout.splitlines() if "│" in line[:2]}
    assert "operator" in rows["ops"]
    assert "[acl.analyst]" in rows["analyst"]
    assert "tenant acme" in rows["acme-1"]
    assert "no ACL: anything" in rows["free"]


def test_generate_keeps_existing_keys(tmp_path: Path) -> None:
    (tmp_path / "loom.toml").write_text("")
    assert loom(tmp_path, "keys", "generate").returncode == 0  # the [bus] identity: loom
    secret = (tmp_path / ".loom" / "keys" / "loom.key_secret").read_bytes()
    assert "--overwrite" in fails(tmp_path, "keys", "generate", "loom")
    assert (tmp_path / ".loom" / "keys" / "loom.key_secret").read_bytes() == secret
    assert "bad key name" in fails(tmp_path, "keys", "generate", "../escape")
