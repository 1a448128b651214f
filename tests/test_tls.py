"""TLS on the gRPC and metrics ports, for real: a CA and certificates made with `cryptography`,
a server listening on every address with TLS and API keys (no insecure flag needed), clients
with grpc's secure channel; a renewed certificate served on the next connection without a
restart; mutual TLS refusing a client without a certificate; broken files stopping the start
in one line."""
from __future__ import annotations

import datetime
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

import grpc
import pytest
from helpers import ServerProcess

from hanzo.loadtest.targets import free_port
from hanzo.v1 import commerce_pb2, commerce_pb2_grpc

cryptography = pytest.importorskip("cryptography", reason="cryptography is not installed (pip install -e '.[test]')")
from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import NameOID  # noqa: E402

pytestmark = pytest.mark.slow


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def issue(subject: str, issuer=None, ca: bool = False, serial: int | None = None):
    """(certificate, key); self-signed when `issuer` (certificate, key) is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    signer_cert, signer_key = issuer if issuer else (None, key)
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(_name(subject))
               .issuer_name(signer_cert.subject if signer_cert else _name(subject))
               .public_key(key.public_key()).serial_number(serial or x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                                     x509.IPAddress(__import__("ipaddress").ip_address(
                                                                         "127.0.0.1"))]), critical=False)
    return builder.sign(signer_key, hashes.SHA256()), key


def pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


@pytest.fixture
def pki(tmp_path):
    ca = issue("hanzo test CA", ca=True)
    server = issue("localhost", issuer=ca, serial=1001)
    client = issue("gateway", issuer=ca)
    files = {"ca": pem(ca[0]), "cert": pem(server[0]), "key": key_pem(server[1]), "client_cert": pem(client[0]),
             "client_key": key_pem(client[1])}
    for name, data in files.items():
        (tmp_path / f"{name}.pem").write_bytes(data)
    return tmp_path, ca


def keys_file(tmp_path) -> tuple[str, str]:
    from hanzo.server.api.keys import KeyFile

    _, secret = KeyFile(tmp_path / "keys.json").add(["decide"], ["*"], "edge")
    return str(tmp_path / "keys.json"), secret


def features(url: str, credentials, secret: str | None, merchant: str = ""):
    channel = grpc.secure_channel(url, credentials)
    try:
        return commerce_pb2_grpc.CommerceStub(channel).GetFeatures(
            commerce_pb2.FeaturesRequest(merchant_id=merchant, entity="user", entity_ids=["u1"]),
            metadata=(("authorization", f"Bearer {secret}"),) if secret else (), timeout=10)
    finally:
        channel.close()


def scrape(url: str, context, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            assert b"hanzo_" in answer.read()
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def status(url: str, context, key: str | None = None) -> int:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, context=context, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


def served_serial(port: int, server_name: str | None = None) -> int:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=server_name) as tls:
        return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True)).serial_number


def test_tls_with_keys_listens_everywhere_renews_without_a_restart_and_serves_metrics(pki):
    tmp_path, ca = pki
    keys, secret = keys_file(tmp_path)
    from hanzo.server.api.keys import KeyFile

    admin_key = KeyFile(tmp_path / "keys.json").add(["admin"], ["*"], "ops")[1]
    scraper_key = KeyFile(tmp_path / "keys.json").add(["metrics"], ["*"], "prometheus")[1]
    infer_key = KeyFile(tmp_path / "keys.json").add(["infer"], ["*"], "triton-user")[1]
    (tmp_path / "repo").mkdir()
    metrics_port, http_port = free_port(), free_port()
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--host", "0.0.0.0", "--keys-file", keys,
                           "--tls-cert", str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"),
                           "--metrics-port", str(metrics_port), "--http-port", str(http_port))
    url = f"localhost:{server.port}"
    trusted = grpc.ssl_channel_credentials(root_certificates=(tmp_path / "ca.pem").read_bytes())
    try:
        deadline = time.monotonic() + 120
        while True:  # ServerProcess's readiness probe speaks plaintext: wait on TLS here instead
            try:
                features(url, trusted, secret)
                break
            except grpc.RpcError:
                assert server.proc.poll() is None, server.log()
                assert time.monotonic() < deadline, server.log()
                time.sleep(0.2)
        assert "listening with TLS and API keys" in server.log()
        with pytest.raises(grpc.RpcError) as plaintext:
            commerce_pb2_grpc.CommerceStub(grpc.insecure_channel(url)).GetFeatures(
                commerce_pb2.FeaturesRequest(entity="user", entity_ids=["u1"]), timeout=5)
        assert plaintext.value.code() == grpc.StatusCode.UNAVAILABLE
        context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
        metrics = f"https://localhost:{metrics_port}/metrics"
        # with keys, the metrics page is for the admin scope only; other paths are not the page
        assert scrape(metrics, context) == 401 and scrape(metrics, context, secret) == 401
        assert scrape(metrics, context, admin_key) == 200 and scrape(metrics, context, scraper_key) == 200
        assert scrape(f"https://localhost:{metrics_port}/v2/health/ready", context, admin_key) == 404
        # the HTTP/REST port: the same certificate and keys; health open, the rest behind a key
        http = f"https://localhost:{http_port}"
        assert status(f"{http}/v2/health/live", context) == 200
        assert status(f"{http}/v2", context) == 401 and status(f"{http}/v2", context, secret) == 403
        assert status(f"{http}/v2", context, infer_key) == 200
        with pytest.raises((urllib.error.URLError, ConnectionError)):  # no plaintext beside TLS
            urllib.request.urlopen(f"http://localhost:{http_port}/v2/health/live", timeout=5)
        assert served_serial(server.port) == 1001 and served_serial(http_port) == 1001
        renewed = issue("localhost", issuer=ca, serial=2002)
        (tmp_path / "key.pem").write_bytes(key_pem(renewed[1]))
        (tmp_path / "cert.pem").write_bytes(pem(renewed[0]))
        assert served_serial(server.port) == 2002  # the next connection, no restart
        assert served_serial(http_port, "localhost") == 2002  # renewed on a handshake that names the host
        features(url, trusted, secret)
    finally:
        server.terminate()


def test_mutual_tls_refuses_a_client_without_a_certificate_and_its_identity_stands_for_a_key(pki):
    tmp_path, _ = pki
    keys, secret = keys_file(tmp_path)
    from hanzo.server.api.keys import KeyFile

    KeyFile(tmp_path / "keys.json").add(["decide"], ["m1"], "gateway-eu", identity="gateway")
    (tmp_path / "repo").mkdir()
    server = ServerProcess(tmp_path / "repo", "--no-demo-models", "--keys-file", keys, "--tls-cert",
                           str(tmp_path / "cert.pem"), "--tls-key", str(tmp_path / "key.pem"), "--tls-client-ca",
                           str(tmp_path / "ca.pem"))
    url = f"localhost:{server.port}"
    root = (tmp_path / "ca.pem").read_bytes()
    with_cert = grpc.ssl_channel_credentials(root, (tmp_path / "client_key.pem").read_bytes(),
                                             (tmp_path / "client_cert.pem").read_bytes())
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                features(url, with_cert, secret)
                break
            except grpc.RpcError:
                assert server.proc.poll() is None and time.monotonic() < deadline, server.log()
                time.sleep(0.2)
        with pytest.raises(grpc.RpcError) as refused:
            features(url, grpc.ssl_channel_credentials(root), secret)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        # the certificate's name (CN "gateway") stands for the key bound to it: merchant m1 only
        features(url, with_cert, None, merchant="m1")
        with pytest.raises(grpc.RpcError) as other:
            features(url, with_cert, None, merchant="m2")
        assert other.value.code() == grpc.StatusCode.PERMISSION_DENIED and "'gateway-eu'" in other.value.details()
    finally:
        server.terminate()


def test_tls_files_that_do_not_load_stop_the_start_in_one_line(pki):
    tmp_path, _ = pki
    (tmp_path / "repo").mkdir()
    (tmp_path / "broken.pem").write_text("not a certificate")
    done = subprocess.run([sys.executable, "-m", "hanzo.server.commands", "serve", "--no-demo-models",
                           "--model-repo", str(tmp_path / "repo"), "--data-dir", str(tmp_path / "data"), "--port",
                           str(free_port()), "--tls-cert", str(tmp_path / "broken.pem"), "--tls-key",
                           str(tmp_path / "key.pem")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "do not load as a certificate" in done.stderr
    assert "Traceback" not in done.stderr
