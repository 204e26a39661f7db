"""TLS for every listener (docs/tls.md).

* :class:`TlsManager` holds the server's one :class:`ssl.SSLContext` (TLS 1.2 at least) and
  builds a new one on :meth:`TlsManager.reload` (SIGHUP). Implicit-TLS listeners keep the
  context they were opened with, but its SNI callback hands every new handshake the current
  context, so a reload reaches new connections while established sessions carry on.
* :func:`prepare_upgrade` and :func:`upgrade` are the two halves of STARTTLS/STLS on an asyncio
  stream: stop reading and throw away plaintext the client pipelined after the command (the
  CVE-2011-0411 buffer-injection class), then hand the transport to TLS.
* :func:`is_secure` is the rule for plaintext logins: TLS, or a client on a loopback address.
* :func:`generate_certificate` makes the self-signed development certificate of
  ``pobox init --demo``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import ipaddress
import logging
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pobox.config import Config, load_config
from pobox.errors import ConfigError

log = logging.getLogger("pobox.tls")

#: Where ``pobox init --demo`` puts the development certificate, below the data directory.
DEV_DIR = "tls"
DEV_CERT = "cert.pem"
DEV_KEY = "key.pem"
#: Seconds a client gets to finish a TLS handshake.
HANDSHAKE_TIMEOUT = 30.0


def certificate_paths(config: Config) -> tuple[Path, Path] | None:
    """The certificate and key to serve: ``[tls]`` cert/key, else the development pair in
    ``<data_dir>/tls/`` when both files exist, else None (no TLS)."""
    cert, key = config.tls.cert, config.tls.key
    if cert or key:
        if not (cert and key):
            missing = "tls.key" if cert else "tls.cert"
            raise ConfigError(f"{config.source}: key {missing!r} must be set as well")
        return Path(cert), Path(key)
    directory = config.data_path / DEV_DIR
    dev_cert, dev_key = directory / DEV_CERT, directory / DEV_KEY
    if dev_cert.is_file() and dev_key.is_file():
        return dev_cert, dev_key
    return None


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server context with the certificate chain and key loaded; TLS 1.2 is the minimum."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise ConfigError(f"TLS: {exc.filename or cert}: file not found") from None
    except PermissionError as exc:
        raise ConfigError(f"TLS: {exc.filename or key}: permission denied") from None
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"TLS: cannot load the certificate {cert} with the key {key}: {exc}"
        ) from None
    return context


class TlsManager:
    """The current server context, and how to replace it without dropping sessions."""

    def __init__(self, config: Config, cert: Path, key: Path) -> None:
        self.config = config
        self.cert = cert
        self.key = key
        self._context = self._build(cert, key)

    @classmethod
    def from_config(cls, config: Config) -> TlsManager | None:
        paths = certificate_paths(config)
        if paths is None:
            return None
        return cls(config, *paths)

    @property
    def context(self) -> ssl.SSLContext:
        """The context for a new handshake (STARTTLS, STLS, SMTP STARTTLS, implicit TLS)."""
        return self._context

    def _build(self, cert: Path, key: Path) -> ssl.SSLContext:
        context = server_context(cert, key)
        context.sni_callback = self._select
        return context

    def _select(self, connection: ssl.SSLObject, server_name: str | None, used: object) -> None:
        """Called during every handshake: move it onto the newest context."""
        current = self._context
        if used is not current:
            connection.context = current

    def reload(self) -> bool:
        """Read the configuration's ``[tls]`` paths and the files again; on any error keep the
        context in use and log why. True when a new context is in place."""
        try:
            config = self.config
            if config.source != "(defaults)":
                config = load_config(config.source, data_dir=config.data_dir)
            paths = certificate_paths(config) or (self.cert, self.key)
            context = self._build(*paths)
        except ConfigError as exc:
            log.error("TLS reload failed, keeping the certificate in use: %s", exc)
            return False
        self.cert, self.key = paths
        self._context = context
        log.info("TLS certificate reloaded from %s", self.cert)
        return True


# -- the plaintext-login rule -------------------------------------------------------------------
def is_loopback(ip: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses."""
    try:
        address = ipaddress.ip_address(ip.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def is_tls(writer: asyncio.StreamWriter) -> bool:
    return writer.get_extra_info("ssl_object") is not None


def is_secure(writer: asyncio.StreamWriter, remote_ip: str) -> bool:
    """Whether a password may cross this connection: it is TLS, or the client is local."""
    return is_tls(writer) or is_loopback(remote_ip)


# -- STARTTLS on asyncio streams ----------------------------------------------------------------
def prepare_upgrade(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> int:
    """Call before answering OK to STARTTLS/STLS: stop reading plaintext and discard what was
    received already. Returns the number of octets thrown away (a client that pipelines after
    STARTTLS is broken or an attacker). Bytes still in the kernel reach the TLS layer and fail
    the handshake, which is what they deserve."""
    transport: Any = writer.transport  # uvloop's transports are not asyncio.ReadTransport
    if transport.is_reading():
        transport.pause_reading()
    buffer = getattr(reader, "_buffer", None)  # no public API empties a StreamReader
    if not isinstance(buffer, bytearray):  # pragma: no cover - CPython's layout
        return 0
    dropped = len(buffer)
    buffer.clear()
    return dropped


def resume_reading(writer: asyncio.StreamWriter) -> None:
    """After the upgrade: read again (a no-op over TLS; it matters when the handshake was left
    to someone else, as in tests of the STLS seam)."""
    transport: Any = writer.transport
    if not transport.is_closing() and not transport.is_reading():
        transport.resume_reading()


async def upgrade(
    writer: asyncio.StreamWriter, context: ssl.SSLContext, timeout: float = HANDSHAKE_TIMEOUT
) -> None:
    """Run the server side of the handshake on the stream's transport (the writer and its
    reader continue over TLS). A failed handshake closes the connection and raises
    :class:`ConnectionAbortedError`."""
    try:
        # the outer bound too: a client that vanishes in the middle of the handshake must not
        # leave the session waiting on a handshake that nothing will finish
        await asyncio.wait_for(
            writer.start_tls(context, ssl_handshake_timeout=timeout), timeout + 1
        )
    except (ssl.SSLError, OSError, TimeoutError, EOFError) as exc:
        writer.transport.abort()
        raise ConnectionAbortedError(f"TLS handshake failed: {exc}") from None


# -- the development certificate ----------------------------------------------------------------
def generate_certificate(
    directory: Path,
    names: Sequence[str] = ("localhost",),
    addresses: Sequence[str] = ("127.0.0.1", "::1"),
    days: int = 825,
) -> tuple[Path, Path]:
    """Write a self-signed certificate (``cert.pem``) and its ECDSA P-256 key (``key.pem``, mode
    0600) into *directory*; each file is replaced atomically."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, names[0] if names else "localhost"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "pobox development certificate"),
        ]
    )
    alternatives: list[x509.GeneralName] = [x509.DNSName(name) for name in names]
    alternatives += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    now = _dt.datetime.now(_dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alternatives), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    key_path = directory / DEV_KEY
    cert_path = directory / DEV_CERT
    _write_atomically(key_path, key_pem, 0o600)
    _write_atomically(cert_path, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert_path, key_path


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def ensure_dev_certificate(config: Config) -> Path | None:
    """For ``pobox init --demo``: create ``<data_dir>/tls/{cert,key}.pem`` when no certificate
    is configured and none is there. Returns the directory if one was created."""
    if config.tls.cert or config.tls.key:
        return None
    directory = config.data_path / DEV_DIR
    if (directory / DEV_CERT).is_file() and (directory / DEV_KEY).is_file():
        return None
    generate_certificate(directory)
    return directory
