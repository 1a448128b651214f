"""A seeded marketplace simulator writing Hanzo's canonical formats: `simulate(config, out)`."""
from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from hanzo.server.features.formats import write_catalog, write_records

from .world import Simulation, SimulationConfig, Truth

__all__ = ["Simulation", "SimulationConfig", "Truth", "simulate"]


def simulate(config: SimulationConfig, out: Path) -> Simulation:
    """Run the simulation and write out/events.jsonl.gz, out/catalog.jsonl (the catalog at the
    start; products launched later arrive as catalog_update events) and out/truth.json."""
    sim = Simulation(config).run()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_catalog(out / "catalog.jsonl", sim.initial_catalog())
    write_records(out / "events.jsonl.gz", sim.events)
    (out / "truth.json").write_text(json.dumps(asdict(sim.truth), indent=1, sort_keys=True))
    return sim
