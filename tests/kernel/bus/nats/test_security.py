"""NATS's own security, for real (issue 25, part 1: credentials, NKEYs, TLS): a nats-server
that admits one NKEY user, and one that speaks TLS with a certificate from a test CA."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import nkeys
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from loom_kernel import Agent, on_event, open_runtime
from loom_kernel.bus.nats.server import local_cluster
from loom_kernel.errors import BusError
from tests.support.nats import nats_toml

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0


class Greeter(Agent):
    @on_event("greet.*")
    async def greet(self, event, ctx):
        await ctx.reply(event, f"hello, {event.data}")


async def greets(config: Path) -> str:
    async with open_runtime(config) as rt:
        await rt.start(Greeter("greeter"))
        return (await rt.request("greet.x", "Ada", timeout=WAIT)).data


def user_nkey() -> tuple[bytes, str]:
    """A new NKEY user: its seed (the file's content) and its public key (the server's)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    return seed, nkeys.from_seed(bytearray(seed)).public_key.decode()


async def test_an_nkey_user_signs_in_and_a_stranger_is_refused(tmp_path: Path) -> None:
    seed, public = user_nkey()
    (tmp_path / "app.nk").write_bytes(seed)
    admit = f'authorization {{ users = [ {{ nkey: "{public}" }} ] }}'
    async with local_cluster(1, tmp_path / "nats", extra=admit) as server:
        config = tmp_path / "loom.toml"
        config.write_text(nats_toml(server.urls, 'nkey = "app.nk"\n'))
        assert await greets(config) == "hello, Ada"
        other, _ = user_nkey()
        (tmp_path / "app.nk").write_bytes(other)
        with pytest.raises(BusError, match="refused this client"):
            await greets(config)


def certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1 it signed: (ca.pem, server.pem, key)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loom test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
        .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    ip = x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([ip]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    paths = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))  # fmt: skip
    return paths


async def test_a_tls_server_is_reached_with_the_projects_ca(tmp_path: Path) -> None:
    _, cert, key = certificates(tmp_path)  # ca.pem: named in loom.toml
    tls = f'tls {{ cert_file: "{cert}", key_file: "{key}" }}'
    async with local_cluster(1, tmp_path / "nats", extra=tls) as server:
        urls = [url.replace("nats://", "tls://") for url in server.urls]
        config = tmp_path / "loom.toml"
        config.write_text(nats_toml(urls, 'tls_ca = "ca.pem"\n'))
        assert await greets(config) == "hello, Ada"
        config.write_text(nats_toml(urls))  # the system's CAs do not know the test CA
        with pytest.raises(BusError, match=r"TLS with NATS at .* CERTIFICATE_VERIFY_FAILED"):
            await greets(config)
