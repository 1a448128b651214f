"""A load report as pictures and one self-contained HTML page: percentiles over time (each
measured second's p50 and p99 from due time, with the answers per second) for every phase,
throughput against p99 for a sweep of rates, and the tables, the PNGs embedded."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on a server
import matplotlib.pyplot as plt  # noqa: E402


def _png(figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def percentiles_over_time(report: dict) -> bytes:
    phases = report["phases"]
    figure, axes = plt.subplots(len(phases), 1, figsize=(9, 2.8 * len(phases)), sharex=True, squeeze=False)
    for ax, phase in zip(axes[:, 0], phases):
        rows = [r for r in phase["series"] if "p99_ms" in r]
        t = [r["t"] for r in rows]
        ax.plot(t, [r["p50_ms"] for r in rows], label="p50")
        ax.plot(t, [r["p99_ms"] for r in rows], label="p99")
        ax.set_ylabel("ms (from due time)")
        ax.set_title(f"{phase['name']} ({phase['url']})", fontsize=10)
        twin = ax.twinx()
        twin.plot([r["t"] for r in phase["series"]], [r["ok"] for r in phase["series"]], color="grey", alpha=0.4,
                  label="answers/s")
        twin.set_ylabel("answers/s")
        ax.legend(loc="upper left", fontsize=8)
    axes[-1, 0].set_xlabel("second of the measured window")
    figure.suptitle(f"{report['label']}: {report['mode']} {report['rate']:g} req/s", fontsize=11)
    return _png(figure)


def throughput_vs_p99(sweep: list[dict]) -> bytes:
    figure, ax = plt.subplots(figsize=(7, 4.2))
    names = [p["name"] for p in sweep[0]["phases"]]
    for name in names:
        points = [(p["ok"] / r["duration_s"], p) for r in sweep for p in r["phases"] if p["name"] == name]
        x = [rps for rps, _ in points]
        ax.plot(x, [p["e2e_corrected_ms"].get("p99", float("nan")) for _, p in points], marker="o",
                label=f"{name} e2e p99 (from due time)")
        if any(p["server_ms"] for _, p in points):
            ax.plot(x, [p["server_ms"].get("p99", float("nan")) for _, p in points], marker="s", linestyle="--",
                    label=f"{name} server p99")
    ax.set_xlabel("answers/s")
    ax.set_ylabel("p99 ms")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{sweep[0]['label']}: throughput against p99")
    return _png(figure)


def _table(report: dict) -> str:
    head = ("<tr><th>phase</th><th>ok</th><th>errors</th><th>req/s</th><th>e2e p50</th><th>p99</th><th>p99.9</th>"
            "<th>server p50</th><th>p99</th><th>p99.9</th></tr>")
    rows = []
    for p in report["phases"]:
        e, s = p["e2e_ms"], p["server_ms"]
        cells = [p["name"], p["ok"], sum(p["errors"].values()), f"{p['achieved_rps']:.0f}",
                 *(f"{e.get(k, float('nan')):.3f}" for k in ("p50", "p99", "p99.9")),
                 *(f"{s[k]:.3f}" if s else "-" for k in ("p50", "p99", "p99.9"))]
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        for label, k in p.get("kinds", {}).items():
            if len(p["kinds"]) < 2:
                break
            c, own = k["e2e_ms"], k.get("server_ms") or {}
            cells = [f"&nbsp;&nbsp;{html.escape(label)}", k["ok"], sum(k["errors"].values()), "",
                     *(f"{c.get(q, float('nan')):.3f}" for q in ("p50", "p99", "p99.9")),
                     *(f"{own[q]:.3f}" if own else "-" for q in ("p50", "p99", "p99.9"))]
            rows.append("<tr class=kind>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    title = f"{report['label']}: {report['mode']} {report['rate']:g} req/s, {report['duration_s']:g} s"
    return f"<h2>{html.escape(title)}</h2><table>{head}{''.join(rows)}</table>"


def write(reports: list[dict], out_dir: Path) -> list[Path]:
    """PNGs and report.html into `out_dir`; one report, or a sweep of several rates."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    images: list[tuple[str, bytes]] = []
    if len(reports) > 1:
        images.append(("throughput-vs-p99.png", throughput_vs_p99(reports)))
    for report in reports:
        if report["mode"] != "h2load":
            images.append((f"latency-over-time-{report['rate']:g}.png", percentiles_over_time(report)))
    written = []
    for name, data in images:
        (out_dir / name).write_bytes(data)
        written.append(out_dir / name)
    figures = "".join(f'<h3>{html.escape(name)}</h3><img src="data:image/png;base64,{base64.b64encode(data).decode()}">'
                      for name, data in images)
    first = reports[0]
    page = (f"<!doctype html><html><head><meta charset=utf-8><title>{html.escape(first['label'])} load</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}tr.kind td{color:#555}"
            "img{max-width:100%}</style></head><body>"
            f"<h1>{html.escape(first['label'])}</h1>"
            f"<p>{html.escape(first['machine'])}, {html.escape(first['started'])}; "
            "latencies in ms; the tables' e2e from each call's send, the plots' from its due time (corrected for "
            "coordinated omission); server from its own histogram.</p>"
            + "".join(_table(r) for r in reports) + figures + "</body></html>")
    (out_dir / "report.html").write_text(page)
    written.append(out_dir / "report.html")
    return written
