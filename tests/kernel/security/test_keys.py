"""Key pairs on disk: written private, read back, refused when unsafe, named clearly."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import zmq.auth

from loom_kernel.errors import ConfigError
from loom_kernel.security import generate_keys, key_names, load_keys, load_public_key


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_pair_is_written_private_and_reads_back(tmp_path: Path) -> None:
    folder = tmp_path / "keys"
    pair = generate_keys(folder, "analyst")
    assert mode(folder) == 0o700
    assert mode(folder / "analyst.key_secret") == 0o600
    assert mode(folder / "analyst.key") == 0o644
    assert load_keys(folder, "analyst") == pair
    assert load_public_key(folder, "analyst").public == pair.public
    assert load_public_key(folder, "analyst").secret is None
    # ZeroMQ's own format: its tools read them
    assert zmq.auth.load_certificate(folder / "analyst.key_secret") == (pair.public, pair.secret)
    assert len(pair.public) == len(pair.secret or b"") == 40
    assert key_names(folder) == ["analyst"]


def test_existing_keys_are_kept_unless_overwritten(tmp_path: Path) -> None:
    first = generate_keys(tmp_path, "a")
    with pytest.raises(ConfigError, match=r"exist already.*--overwrite"):
        generate_keys(tmp_path, "a")
    assert load_keys(tmp_path, "a") == first
    assert generate_keys(tmp_path, "a", overwrite=True) != first


@pytest.mark.parametrize("name", ["", "../x", "a b", "-a", "x" * 65])
def test_a_key_name_must_be_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="bad key name"):
        generate_keys(tmp_path, name)


def test_missing_keys_say_how_to_make_them(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="`loom keys generate bob`"):
        load_keys(tmp_path, "bob")
    with pytest.raises(ConfigError, match="`loom keys generate bob`"):
        load_public_key(tmp_path, "bob")
    assert key_names(tmp_path / "none") == []


def test_a_secret_any_user_can_read_is_refused(tmp_path: Path) -> None:
    pair = generate_keys(tmp_path, "a")
    (tmp_path / "a.key_secret").chmod(0o644)
    with pytest.raises(ConfigError, match=r"any user can read .*chmod 600"):
        load_keys(tmp_path, "a")
    (tmp_path / "a.key_secret").chmod(0o440)  # a Kubernetes Secret: the pod's group reads it
    assert load_keys(tmp_path, "a") == pair
