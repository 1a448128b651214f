"""Every server option in one place, built by the CLI or read from a TOML file."""
from __future__ import annotations

import dataclasses
import difflib
import tomllib
import types
import typing
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..api.access import AccessConfig
from ..api.admission import AdmissionConfig
from ..features.service import FeatureStoreConfig
from ..models.limits import FieldLimits
from ..surfaces.fraud import FraudConfig
from ..surfaces.inventory import InventoryConfig
from ..surfaces.customers import CustomersConfig
from ..surfaces.pricing import PricingConfig
from ..surfaces.recommend import RecommendConfig
from ..surfaces.search import SearchConfig
from ..surfaces.shadow import ShadowConfig
from ..experiments.config import ExperimentConfig

# The TOML tables beside [server], each one dataclass of options.
SECTIONS = {"features": FeatureStoreConfig, "recommend": RecommendConfig, "search": SearchConfig,
            "fraud": FraudConfig, "pricing": PricingConfig, "inventory": InventoryConfig, "customers": CustomersConfig,
            "limits": FieldLimits,
            "admission": AdmissionConfig, "access": AccessConfig, "shadow": ShadowConfig,
            "experiment": ExperimentConfig}

DEFAULT_PORT = 50051


@dataclass
class ServerConfig:
    # Loopback only by default: there are no TLS or credentials yet, so anyone who reaches the
    # port could ingest events, unload models and read the metrics.
    host: str = "127.0.0.1"
    # Listening on any other address without TLS and credentials is refused unless this is set.
    insecure_remote: bool = False
    port: int = DEFAULT_PORT  # 0: pick a free port (tests)
    model_repo: Path = field(default_factory=lambda: Path("model_repo"))
    # Build the demo models into an empty repository, so a fresh clone serves something.
    demo_models: bool = True
    device: str = "auto"  # auto | cpu | cuda
    # Seconds between repository scans that load new, changed or removed models; 0: off.
    poll_seconds: float = 0.0
    # Triton's --model-control-mode: "explicit" (RepositoryModelLoad / Unload; at start the models
    # of load_models), "poll" (every poll_seconds the repository is rescanned; explicit calls are
    # refused), "none" (what loads at start serves; nothing changes it). "": poll with
    # poll_seconds > 0, else explicit with every model loaded at start.
    model_control_mode: str = ""
    # explicit mode: the models loaded at start ("*": all; none named: none, as in Triton)
    load_models: list[str] = field(default_factory=list)
    # gRPC message limits, both directions; over it, RESOURCE_EXHAUSTED before the body is
    # read. gRPC keeps what large bodies cost in the process's memory long after the call, so
    # the default is gRPC's own; raise it for large tensors.
    max_message_bytes: int = 4 * 1024 * 1024
    # SIGTERM: seconds in-flight calls get to finish before they are cancelled.
    grace_seconds: float = 10.0
    # SIGTERM: seconds between health NOT_SERVING and refusing new calls UNAVAILABLE, while
    # calls are still served, so load balancers move away first (their health-check interval
    # times their failure threshold). SIGINT (Ctrl-C) drains without it.
    drain_delay_seconds: float = 1.0
    log_level: str = "INFO"
    log_format: str = "json"  # json | text
    # Several server processes on one port (SO_REUSEPORT).
    reuse_port: bool = False
    # Prometheus metrics over HTTP at http://host:metrics_port/metrics; 0: off (Triton uses 8002).
    metrics_port: int = 0
    # The KServe V2 HTTP/REST protocol (Triton's, with binary tensor data) on this port; 0: off
    # (Triton uses 8000). The same access rules as the gRPC port.
    http_port: int = 0
    # the per-model counters' names: "hanzo" (hanzo_inference_*_total) or "triton" (nv_inference_*,
    # as Triton writes them, so its dashboards and alerts work unchanged)
    metrics_names: str = "hanzo"
    # the response cache's byte budget, shared by the models whose config.pbtxt enables it
    # (Triton's --cache-config local,size=N); 0: no cache, and such a model does not load
    response_cache_bytes: int = 0
    # system shared memory: the /dev/shm names clients may register start with this ("/hanzo_";
    # "/" for any); "": not served
    shared_memory_prefix: str = ""
    # The event log and online feature store ([features] in a TOML file).
    features: FeatureStoreConfig = field(default_factory=FeatureStoreConfig)
    # The Recommend surface ([recommend]): candidates, ANN search depth, diversity, exploration.
    recommend: RecommendConfig = field(default_factory=RecommendConfig)
    # The Search surface ([search]): BM25 depth, caller candidates, configured synonyms.
    search: SearchConfig = field(default_factory=SearchConfig)
    # The ScoreFraud surface ([fraud], [fraud.merchants.<id>]): decision thresholds per merchant.
    fraud: FraudConfig = field(default_factory=FraudConfig)
    # QuotePrice ([pricing]): the demand model file, margin floor, price consistency, competitor parity.
    pricing: PricingConfig = field(default_factory=PricingConfig)
    # PlanInventory ([inventory]): the nightly plan file, defaults for requests that leave fields out.
    inventory: InventoryConfig = field(default_factory=InventoryConfig)
    # ScoreCustomers ([customers]): the learned model folder the nightly score-customers keeps.
    customers: CustomersConfig = field(default_factory=CustomersConfig)
    # What one field of a request may hold ([limits]): id and text lengths, repeated fields, k.
    limits: FieldLimits = field(default_factory=FieldLimits)
    # Which calls the server takes on ([admission]): adaptive concurrency limits per RPC, a
    # small queue, RESOURCE_EXHAUSTED at once for a call whose deadline cannot be met.
    admission: AdmissionConfig = field(default_factory=AdmissionConfig)
    # Who may call what ([access]): API keys with scopes, read again when their file changes.
    access: AccessConfig = field(default_factory=AccessConfig)
    # Shadow traffic ([shadow]): the share of live requests a model's candidate answers after
    # the primary answer is sent, within a CPU budget (off by default).
    shadow: ShadowConfig = field(default_factory=ShadowConfig)
    # Experiments ([experiment]): the shares of shoppers whose Recommend calls the candidate
    # answers and who are held out (the non-personalised list), by a stable hash (off by default).
    experiment: ExperimentConfig = field(default_factory=ExperimentConfig)

    def __post_init__(self) -> None:
        self.model_repo = Path(self.model_repo)
        for name, kind in SECTIONS.items():
            value = getattr(self, name)
            if isinstance(value, dict):
                setattr(self, name, kind(**checked_options(kind, value, f"[{name}]")))
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device must be auto, cpu or cuda, not {self.device!r}")
        if self.log_format not in ("json", "text"):
            raise ValueError(f"log_format must be json or text, not {self.log_format!r}")
        if self.model_control_mode not in ("", "explicit", "poll", "none"):
            raise ValueError(f"model_control_mode must be explicit, poll or none, not {self.model_control_mode!r}")
        if self.model_control_mode in ("explicit", "none") and self.poll_seconds > 0:
            raise ValueError(f"poll_seconds > 0 polls the repository: model_control_mode {self.model_control_mode} "
                             f"does not (use poll)")
        if self.load_models and self.control_mode != "explicit":
            raise ValueError("load_models (--load-model) names the models an explicit mode starts with: set "
                             "model_control_mode = \"explicit\"")
        if self.shared_memory_prefix and not re.match(r"^/[A-Za-z0-9_.-]{0,64}$", self.shared_memory_prefix):
            raise ValueError(f"shared_memory_prefix must be '/' and the start of a /dev/shm name (e.g. /hanzo_), "
                             f"not {self.shared_memory_prefix!r}")
        if not 0 <= self.response_cache_bytes <= 1 << 40:
            raise ValueError(f"response_cache_bytes must be in [0, 2**40], not {self.response_cache_bytes}")
        if self.metrics_names not in ("hanzo", "triton"):
            raise ValueError(f"metrics_names must be hanzo or triton, not {self.metrics_names!r}")
        for name in ("port", "metrics_port", "http_port"):
            if not 0 <= getattr(self, name) < 65536:
                raise ValueError(f"{name} must be in 0..65535, not {getattr(self, name)}")
        if self.experiment.enabled and not self.recommend.log_shown:
            raise ValueError("[experiment] needs [recommend] log_shown = true: outcomes are joined to the lists logged")

    @property
    def control_mode(self) -> str:
        """The model control mode in effect."""
        return self.model_control_mode or ("poll" if self.poll_seconds > 0 else "explicit")

    @property
    def models_at_start(self) -> list[str] | None:
        """The models loaded at start; None: all."""
        if self.control_mode != "explicit" or "*" in self.load_models:
            return None
        if self.model_control_mode == "explicit" or self.load_models:  # as Triton: none named, none loaded
            return list(self.load_models)
        return None

    @classmethod
    def from_toml(cls, path: Path, **overrides: Any) -> "ServerConfig":
        """A TOML file's [server] table and its sections' tables ([features], [recommend] ...),
        then the overrides (CLI flags) that are not None (a section's overrides are merged into
        its table). Every error names the file and the option."""
        try:
            document = tomllib.loads(Path(path).read_text())
        except tomllib.TOMLDecodeError as exc:
            raise ValueError(f"{path}: not TOML: {exc}") from None
        tables = {"server"} | set(SECTIONS)
        for table in document:
            if table not in tables:
                raise ValueError(f"{path}: unknown table [{table}]{_suggestion(table, tables)}")
        try:
            data = checked_options(cls, document.get("server", {}), "[server]", exclude=set(SECTIONS))
            sections = {}
            for name, kind in SECTIONS.items():
                sections[name] = checked_options(kind, document.get(name, {}), f"[{name}]")
                sections[name].update({k: v for k, v in overrides.pop(name, {}).items() if v is not None})
            data.update({k: v for k, v in overrides.items() if v is not None})
            return cls(**sections, **data)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{path}: {exc}") from None


def checked_options(kind: type, values: dict[str, Any], table: str, exclude: set[str] = frozenset()) -> dict:
    """`values` for the dataclass `kind`: a ValueError naming the first unknown option (with the
    nearest known name) or a value of the wrong type (for plain str, int, float, bool and path
    options)."""
    if not isinstance(values, dict):
        raise ValueError(f"{table} must be a table")
    hints = typing.get_type_hints(kind)
    known = {f.name for f in dataclasses.fields(kind)} - set(exclude)
    for key, value in values.items():
        if key not in known:
            raise ValueError(f"unknown option {key!r} in {table}{_suggestion(key, known)}")
        expected = _plain_type(hints.get(key))
        if expected is not None and not _is_a(value, expected):
            kind_name = "a path (a string)" if expected is Path else expected.__name__
            raise ValueError(f"{table} {key} must be {kind_name}, not {value!r}")
    return dict(values)


def _plain_type(hint: Any) -> type | None:
    """The scalar type an option takes (Path options take a string), or None when its type is
    richer than a scalar (tables, lists, unions of several kinds)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):  # Optional: the type it allows
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return _plain_type(args[0]) if len(args) == 1 else None
    return hint if hint in (str, int, float, bool, Path) else None


def _is_a(value: Any, expected: type) -> bool:
    if expected is Path:
        return isinstance(value, (str, Path))
    if expected is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def _suggestion(name: str, known: set[str]) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""
