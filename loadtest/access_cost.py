"""What TLS and API keys cost a call: Recommend and ScoreFraud at one open-loop rate against the
demo world served plaintext without keys, and served with TLS and an API key, in one run.

    python -m hanzo.loadtest.access_cost --out loadtest/reports/access-cost.json
        [--workdir DIR] [--rate 500] [--seconds 20] [--rounds 2] [--server-cpus 0 --client-cpus 1]

The two settings alternate (plain, secured, plain, secured, ...) on the same data directory, so a
drift of the machine shows as a difference between rounds of one setting rather than between
the settings; the summary gives the medians over the rounds. Each server is first left until its
CPU is quiet (the demo's start-up work done). Per setting and RPC: the callers' latency from each call's due time (p50, p99,
p99.9; it includes the TLS records and the key check) and the server's own histogram (Admin
GetLatency: from the edge to the answer written, so after the key check), with the floor, a
do-nothing server (plaintext), from the same run. The certificates (a CA and a
server certificate for 127.0.0.1) are made here with `cryptography`."""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import statistics
import sys
import time
from pathlib import Path

from . import targets
from .fuzz_server import start_demo, stop
from .overload import settle
from .openloop import LoadSpec, parse_cpus, run_load
from .reports import write_report

RPCS = ("Recommend", "ScoreFraud")


def make_pki(directory: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 / localhost it signed, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def issue(subject: str, signer=None, ca: bool = False):
        key = ec.generate_private_key(ec.SECP256R1())
        signer_cert, signer_key = signer or (None, key)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (x509.CertificateBuilder().subject_name(name)
                   .issuer_name(signer_cert.subject if signer_cert else name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if not ca:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return builder.sign(signer_key, hashes.SHA256()), key

    ca = issue("hanzo access-cost CA", ca=True)
    server = issue("localhost", ca)
    directory.mkdir(parents=True, exist_ok=True)
    files = {"ca": directory / "ca.pem", "cert": directory / "cert.pem", "key": directory / "key.pem"}
    files["ca"].write_bytes(ca[0].public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(server[0].public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(server[1].private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return files


def server_latency(url: str, tls_ca: str, key: str, reset: bool) -> dict[str, dict]:
    """The server's own histograms per method (Admin GetLatency), in milliseconds."""
    import grpc

    from hanzo.v1 import admin_pb2, admin_pb2_grpc

    if tls_ca:
        channel = grpc.secure_channel(url, grpc.ssl_channel_credentials(Path(tls_ca).read_bytes()))
    else:
        channel = grpc.insecure_channel(url)
    with channel:
        report = admin_pb2_grpc.AdminStub(channel).GetLatency(
            admin_pb2.LatencyRequest(reset=reset), timeout=10,
            metadata=(("authorization", f"Bearer {key}"),) if key else ())
    return {m.method.rsplit("/", 1)[-1]: {"count": m.count, "p50_ms": round(m.p50_us / 1000, 3),
                                          "p99_ms": round(m.p99_us / 1000, 3), "p999_ms": round(m.p999_us / 1000, 3)}
            for m in report.methods}


def measure(url: str, workdir: Path, args: argparse.Namespace, tls_ca: str = "", key: str = "") -> dict:
    manifest = workdir / "demo_world" / "demo.json"
    out = {}
    for rpc in RPCS:
        target = targets.commerce(rpc, demo_manifest=manifest)
        server_latency(url, tls_ca, key, reset=True)
        result = run_load(LoadSpec(url, target.method, target.request, requests=target.requests, rate=args.rate,
                                   duration_s=args.seconds, warmup_s=2.0, timeout_s=1.0, seed=args.seed,
                                   cpus=parse_cpus(args.client_cpus), tls_ca=tls_ca, api_key=key))
        h = result.corrected
        served = server_latency(url, tls_ca, key, reset=False).get(rpc, {})
        out[rpc] = {"sent": result.sent, "ok": result.ok, "errors": result.errors,
                    "achieved_rps": round(result.sent / result.elapsed_s, 1),
                    "client_p50_ms": round(h.get_value_at_percentile(50) / 1000, 3),
                    "client_p99_ms": round(h.get_value_at_percentile(99) / 1000, 3),
                    "client_p999_ms": round(h.get_value_at_percentile(99.9) / 1000, 3),
                    "server": served}
        print(f"  {rpc}: p99 {out[rpc]['client_p99_ms']} ms (server {served.get('p99_ms')} ms), "
              f"errors {result.errors or 0}", file=sys.stderr)
        time.sleep(1.0)
    return out


def floor(args: argparse.Namespace) -> dict:
    """The same loads on a do-nothing server (plaintext, no keys) pinned where the server runs."""
    import os

    from .floor import FloorServer

    print("floor", file=sys.stderr)
    methods = [(targets.commerce(rpc, demo_manifest=args.workdir / "demo_world" / "demo.json").method,
                f"hanzo.v1.{request}", b"") for rpc, request in zip(RPCS, ("RecommendRequest", "FraudRequest"))]
    with FloorServer(methods) as server:
        os.sched_setaffinity(server._proc.pid, parse_cpus(args.server_cpus))
        return measure(server.url, args.workdir, args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/hanzo-access-cost"))
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--client-cpus", default="1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    from hanzo.server.api.keys import KeyFile

    pki = make_pki(args.workdir / "pki")
    keys_path = args.workdir / "pki" / "keys.json"
    keys_path.unlink(missing_ok=True)
    _, secret = KeyFile(keys_path).add(["decide", "admin"], ["*"], "bench")
    settings = {"plain": ((), "", ""),
                "tls_and_key": (("--tls-cert", str(pki["cert"]), "--tls-key", str(pki["key"]), "--keys-file",
                                 str(keys_path)), str(pki["ca"]), secret)}
    rounds: list[dict] = []
    for n in range(args.rounds):
        rounds.append({"round": n + 1, "setting": "floor", "rpcs": floor(args)})
        for name, (extra, ca, key) in settings.items():
            print(f"round {n + 1}, {name}", file=sys.stderr)
            served = start_demo(args.workdir, f"serve-{name}.log", extra, parse_cpus(args.server_cpus), tls_ca=ca)
            try:
                settle(served.pid)  # the demo's start-up work done before anything is measured
                rounds.append({"round": n + 1, "setting": name, "rpcs": measure(served.url, args.workdir, args,
                                                                                ca, key)})
            finally:
                stop(served.process)
    summary = {}
    for name in ("floor", *settings):
        for rpc in RPCS:
            rows = [r["rpcs"][rpc] for r in rounds if r["setting"] == name]
            summary.setdefault(name, {})[rpc] = {  # medians over the rounds
                "client_p50_ms": round(statistics.median(r["client_p50_ms"] for r in rows), 3),
                "client_p99_ms": round(statistics.median(r["client_p99_ms"] for r in rows), 3),
                "client_p999_ms": round(statistics.median(r["client_p999_ms"] for r in rows), 3),
                "server_p99_ms": round(statistics.median(r["server"].get("p99_ms", 0.0) for r in rows), 3)}
    for rpc in RPCS:
        plain, secured = summary["plain"][rpc], summary["tls_and_key"][rpc]
        summary.setdefault("ratio", {})[rpc] = {
            "client_p99": round(secured["client_p99_ms"] / plain["client_p99_ms"], 3),
            "server_p99": round(secured["server_p99_ms"] / max(plain["server_p99_ms"], 1e-9), 3)}
    write_report(args.out, {"rate": args.rate, "seconds": args.seconds, "server_cpus": args.server_cpus,
                            "client_cpus": args.client_cpus, "rounds": rounds, "summary": summary})
    print(summary, file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
