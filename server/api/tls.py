"""TLS for the gRPC port and the HTTP ports (metrics, KServe REST): the certificate and key
files are read again when they change, so a renewed certificate is served on the next
connection without a restart;
with a client CA, mutual TLS (every client shows a certificate that CA signed). A renewed file
that does not load keeps the certificate served before, and says so."""
from __future__ import annotations

import logging
import ssl
import tempfile
from pathlib import Path

import grpc

log = logging.getLogger(__name__)


class CertificateFiles:
    def __init__(self, cert: str, key: str, client_ca: str = "") -> None:
        if bool(cert) != bool(key):
            raise ValueError("[access] tls_cert and tls_key go together: give both, or neither")
        self.cert, self.key = Path(cert), Path(key)
        self.client_ca = Path(client_ca) if client_ca else None
        self.loaded = self.stamp()
        self.pem = self.read()  # a missing or broken file stops the start, naming it

    def paths(self) -> list[Path]:
        return [self.cert, self.key] + ([self.client_ca] if self.client_ca else [])

    def stamp(self) -> tuple:
        try:
            return tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in self.paths())
        except OSError:
            return ()

    def read(self) -> tuple[bytes, bytes, bytes | None]:
        """(certificate chain, key, client CA): each checked by loading it into an SSL context."""
        try:
            cert, key = self.cert.read_bytes(), self.key.read_bytes()
            ca = self.client_ca.read_bytes() if self.client_ca else None
        except OSError as exc:
            raise ValueError(f"TLS file {exc.filename}: {exc.strerror}") from None
        try:
            _context(cert, key, ca)
        except (ssl.SSLError, ValueError) as exc:
            raise ValueError(f"TLS files {self.cert} / {self.key}: they do not load as a certificate and its "
                             f"key ({exc})") from None
        return cert, key, ca

    def changed(self) -> tuple[bytes, bytes, bytes | None] | None:
        """The files again if they changed and load; None otherwise."""
        stamp = self.stamp()
        if stamp == self.loaded:
            return None
        self.loaded = stamp
        try:
            self.pem = self.read()
        except ValueError as exc:
            log.error("renewed TLS files do not load; the certificate served before stays", extra={"error": str(exc)})
            return None
        log.info("TLS certificate read again", extra={"cert": str(self.cert)})
        return self.pem


def grpc_credentials(files: CertificateFiles) -> grpc.ServerCredentials:
    def configuration(cert: bytes, key: bytes, ca: bytes | None):
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    served = [files.pem]  # what this port serves: the files are shared by every port

    def fetch():  # gRPC asks at each new connection: None keeps what it has
        files.changed()
        if files.pem is served[0]:
            return None
        served[0] = files.pem
        return configuration(*files.pem)

    return grpc.dynamic_ssl_server_credentials(configuration(*files.pem), fetch,
                                               require_client_authentication=files.client_ca is not None)


def metrics_context(files: CertificateFiles) -> ssl.SSLContext:
    """An SSL context for an HTTP port (metrics, KServe REST), its certificate renewed on the
    next connection that names the host (SNI, which curl, Prometheus and tritonclient send)."""
    context = _context(*files.pem)
    served = [files.pem, context]  # what this port serves: the files are shared by every port

    def renew(connection, server_name, _):  # SNI callback: runs in each handshake that names a host
        files.changed()
        if files.pem is not served[0]:
            served[0], served[1] = files.pem, _context(*files.pem)
        if served[1] is not context:
            connection.context = served[1]
        return None

    context.sni_callback = renew
    return context


def _context(cert: bytes, key: bytes, ca: bytes | None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory() as directory:  # the ssl module loads chains from files only
        cert_path, key_path = Path(directory) / "cert.pem", Path(directory) / "key.pem"
        cert_path.write_bytes(cert)
        key_path.write_bytes(key)
        key_path.chmod(0o600)
        context.load_cert_chain(cert_path, key_path)
    if ca is not None:
        context.load_verify_locations(cadata=ca.decode())
        context.verify_mode = ssl.CERT_REQUIRED
    return context
