"""`hanzo tune MODEL --p99-budget-ms X --rate R`: Model Analyzer's question asked of a live
server. For every configuration in the grid (max_batch_size x max queue delay x instance
count) the model's config.pbtxt is rewritten and reloaded through RepositoryModelLoad (the
server swaps versions without dropping a call in flight), then an open-loop load (constant arrivals) ramps from R
(R, 2R, 4R, ...) until the server's own p99 passes the budget, calls fail, or the server stops
keeping up, and bisects twice between the last rate inside and the first outside. A
configuration's score is the highest rate it answered inside the budget; the best is
recommended, and with `--apply` left in config.pbtxt (otherwise the original is put back).
The table, a plot (throughput against p99 per configuration) and a JSON report."""
from __future__ import annotations

import copy
import itertools
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import grpc
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from .openloop import LoadSpec
from .runner import measure
from .targets import model_infer


@dataclass(frozen=True)
class Candidate:
    max_batch_size: int
    queue_delay_us: int
    instances: int

    @property
    def label(self) -> str:
        return f"batch {self.max_batch_size}, delay {self.queue_delay_us} us, {self.instances} inst"


@dataclass
class Point:
    rate: float
    answered_rps: float
    server_p99_ms: float
    e2e_p99_ms: float
    errors: int


@dataclass
class Outcome:
    candidate: Candidate
    points: list[Point] = field(default_factory=list)
    best_rps: float = 0.0  # answered/s at the highest rate inside the budget (0: none)
    p99_at_best_ms: float = float("nan")
    error: str = ""


def render(base: mc.ModelConfig, candidate: Candidate) -> mc.ModelConfig:
    """The base config with the candidate's batching and instances; preferred sizes above the
    new max_batch_size dropped."""
    config = copy.deepcopy(base)
    config.max_batch_size = candidate.max_batch_size
    batching = config.dynamic_batching
    batching.max_queue_delay_microseconds = candidate.queue_delay_us
    kept = [s for s in batching.preferred_batch_size if s <= candidate.max_batch_size]
    del batching.preferred_batch_size[:]
    batching.preferred_batch_size.extend(kept)
    kind = config.instance_group[0].kind if len(config.instance_group) else mc.ModelInstanceGroup.KIND_CPU
    del config.instance_group[:]
    config.instance_group.add(count=candidate.instances, kind=kind)
    return config


def write_config(model_dir: Path, config: mc.ModelConfig) -> None:
    path = model_dir / "config.pbtxt"
    staging = path.with_suffix(".pbtxt.tuning")
    staging.write_text(text_format.MessageToString(config))
    os.replace(staging, path)


def reload(url: str, model: str, timeout_s: float = 120) -> None:
    """Load the model's changed config and wait until it serves."""
    with grpc.insecure_channel(url) as channel:
        stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
        stub.RepositoryModelLoad(service_pb2.RepositoryModelLoadRequest(model_name=model), timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while not stub.ModelReady(service_pb2.ModelReadyRequest(name=model), timeout=10).ready:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{model} not ready {timeout_s} s after its reload")
            time.sleep(0.2)


def ramp(candidate: Candidate, url: str, model: str, rate: float, budget_ms: float, duration_s: float,
         warmup_s: float, processes: int, max_rate: float, log, refine: int = 2) -> Outcome:
    """Double the rate until a step fails the budget, then bisect between the last good step
    and the failing one `refine` times."""
    target = model_infer(url, model, 1)
    outcome = Outcome(candidate)

    def step(current: float) -> bool:
        # constant arrivals: a short step's count is the rate's, not a Poisson draw around it
        spec = LoadSpec(url, target.method, target.request, mode="constant", rate=current, duration_s=duration_s,
                        warmup_s=warmup_s, processes=processes)
        phase = measure(spec, target, with_floor=False, log=lambda m: None).phases[0]
        server_p99 = phase.server_ms.get("p99", float("inf"))
        answered = phase.ok / duration_s
        errors = sum(phase.errors.values())
        outcome.points.append(Point(current, round(answered, 1), server_p99,
                                    phase.e2e_corrected_ms.get("p99", float("inf")), errors))
        log(f"    {current:>8.0f} req/s: answered {answered:>8.0f}/s, server p99 {server_p99:.3f} ms, "
            f"errors {errors}")
        inside = not errors and server_p99 <= budget_ms and answered >= 0.9 * current
        if inside and answered > outcome.best_rps:
            outcome.best_rps, outcome.p99_at_best_ms = answered, server_p99
        return inside

    good, bad, current = 0.0, 0.0, rate
    while current <= max_rate:
        if not step(current):
            bad = current
            break
        good, current = current, current * 2
    for _ in range(refine if good and bad else 0):
        middle = (good + bad) / 2
        if step(middle):
            good = middle
        else:
            bad = middle
    return outcome


def tune(url: str, model_repo: Path, model: str, budget_ms: float, rate: float, batch_sizes: list[int],
         delays_us: list[int], instances: list[int], duration_s: float = 4.0, warmup_s: float = 1.0,
         processes: int = 1, max_rate: float = 20000.0, apply: bool = False, log=print) -> dict:
    model_dir = Path(model_repo) / model
    original = (model_dir / "config.pbtxt").read_text()
    base = mc.ModelConfig()
    text_format.Parse(original, base)
    if base.max_batch_size == 0 and any(b > 0 for b in batch_sizes):
        raise ValueError(f"{model}: its config has max_batch_size 0 (inputs without a batch dimension); "
                         f"batching cannot be tuned")
    outcomes: list[Outcome] = []
    started = time.monotonic()
    try:
        for size, delay, count in itertools.product(batch_sizes, delays_us, instances):
            candidate = Candidate(size, delay, count)
            log(f"{candidate.label}:")
            try:
                write_config(model_dir, render(base, candidate))
                reload(url, model)
                outcome = ramp(candidate, url, model, rate, budget_ms, duration_s, warmup_s, processes, max_rate,
                               log)
            except (grpc.RpcError, TimeoutError) as exc:
                outcome = Outcome(candidate, error=str(exc.details() if isinstance(exc, grpc.RpcError) else exc))
                log(f"    failed: {outcome.error}")
            outcomes.append(outcome)
        fit = [o for o in outcomes if o.best_rps > 0]
        best = max(fit, key=lambda o: (o.best_rps, -o.p99_at_best_ms)) if fit else None
    finally:
        chosen = render(base, best.candidate) if apply and best is not None else None
        if chosen is not None:
            write_config(model_dir, chosen)
        else:
            (model_dir / "config.pbtxt").write_text(original)
        reload(url, model)
    return {"model": model, "url": url, "p99_budget_ms": budget_ms, "start_rate": rate, "duration_s": duration_s,
            "seconds": round(time.monotonic() - started, 1),
            "outcomes": [{**asdict(o), "label": o.candidate.label} for o in outcomes],
            "recommended": asdict(best.candidate) if best else None,
            "recommended_rps": best.best_rps if best else 0.0,
            "applied": chosen is not None,
            "config_pbtxt": text_format.MessageToString(render(base, best.candidate)) if best else ""}


def format_table(report: dict) -> str:
    lines = [f"{report['model']}: highest rate answered inside server p99 <= {report['p99_budget_ms']:g} ms",
             f"{'max_batch':>9} {'delay_us':>8} {'inst':>4} | {'best req/s':>10} {'p99 there':>10} | rates tried"]
    for o in report["outcomes"]:
        c = o["candidate"]
        tried = ", ".join(f"{p['rate']:.0f}:{p['server_p99_ms']:.2f}" for p in o["points"]) or o["error"]
        mark = " <- recommended" if report["recommended"] == c else ""
        lines.append(f"{c['max_batch_size']:>9} {c['queue_delay_us']:>8} {c['instances']:>4} | "
                     f"{o['best_rps']:>10.0f} {o['p99_at_best_ms']:>10.3f} | {tried}{mark}")
    if report["recommended"] is None:
        lines.append("no configuration kept p99 inside the budget at the starting rate")
    return "\n".join(lines)


def plot(report: dict, path: Path) -> None:
    from .plots import plt

    figure, ax = plt.subplots(figsize=(8, 4.5))
    for o in report["outcomes"]:
        if o["points"]:
            ax.plot([p["answered_rps"] for p in o["points"]], [p["server_p99_ms"] for p in o["points"]], marker="o",
                    label=o["label"], linewidth=2.5 if report["recommended"] == o["candidate"] else 1)
    ax.axhline(report["p99_budget_ms"], color="red", linestyle="--", label="p99 budget")
    ax.set_xlabel("answered req/s")
    ax.set_ylabel("server p99 ms")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    ax.set_title(f"hanzo tune {report['model']}")
    figure.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(figure)
