"""Certificates for local TLS (tests, the SASL_SSL lane): a private certificate
authority and server or client certificates it signs, made with the ``openssl`` command
(installed from the OS packages when missing and running as root). For loopback use
only: the keys are not protected by a passphrase."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from infra.process import run
from infra.system import require_command

VALID_DAYS = 30


@dataclass(frozen=True)
class Authority:
    cert: Path
    key: Path


@dataclass(frozen=True)
class Certificate:
    cert: Path
    key: Path
    ca: Path
    """The authority's certificate: what a peer trusts to accept this one."""


def openssl(folder: Path) -> str:
    return require_command("openssl", "openssl", folder / "openssl.log", "certificates")


def authority(folder: Path, name: str = "Perisai local CA") -> Authority:
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / "ca.pem", folder / "ca.key"
    run(
        [openssl(folder), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-days", str(VALID_DAYS), "-subj", f"/CN={name}", "-keyout", str(key),
         "-out", str(cert), "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        what="openssl: make the local CA",
        timeout=60,
    )  # fmt: skip
    return Authority(cert, key)


def issue(
    ca: Authority,
    folder: Path,
    name: str,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> Certificate:
    """A certificate for ``name`` (its CN), valid for ``hosts`` (IPs and DNS names),
    usable as a server's and as a client's."""
    folder.mkdir(parents=True, exist_ok=True)
    key, request, cert = folder / f"{name}.key", folder / f"{name}.csr", folder / f"{name}.pem"
    command = openssl(folder)
    run(
        [command, "req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={name}",
         "-keyout", str(key), "-out", str(request)],
        what=f"openssl: key and request of {name}",
        timeout=60,
    )  # fmt: skip
    names = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}"
                     for h in hosts)  # fmt: skip
    extensions = folder / f"{name}.ext"
    extensions.write_text(
        f"subjectAltName={names}\n"
        "extendedKeyUsage=serverAuth,clientAuth\n"
        "basicConstraints=CA:FALSE\n"
    )
    run(
        [command, "x509", "-req", "-in", str(request), "-CA", str(ca.cert),
         "-CAkey", str(ca.key), "-CAcreateserial", "-days", str(VALID_DAYS), "-sha256",
         "-extfile", str(extensions), "-out", str(cert)],
        what=f"openssl: sign the certificate of {name}",
        timeout=60,
    )  # fmt: skip
    return Certificate(cert, key, ca.cert)
