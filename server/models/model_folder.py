"""What a model folder holds, read for a load: its config, the version folders that hold a
model file, and a fingerprint per version that changes whenever its files or the config do."""
from __future__ import annotations

import hashlib
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from .config import CONFIG_FILE, ConfigError, load_config


def numeric_versions(model_dir: Path) -> list[int]:
    return sorted(int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isascii() and p.name.isdigit())


def fingerprint(config_bytes: bytes, version_dir: Path) -> str:
    """Changes when config.pbtxt or any file of the version folder changes."""
    digest = hashlib.sha256(config_bytes)
    for path in sorted(version_dir.rglob("*")):
        try:
            if not path.is_file():
                continue
            st = path.stat()
        except OSError:  # gone between the listing and the stat (a copy's temporary file)
            continue
        digest.update(f"{path.relative_to(version_dir)}:{st.st_size}:{st.st_mtime_ns}".encode())
    return digest.hexdigest()


def read_model_folder(model_dir: Path, override: mc.ModelConfig | None = None
                      ) -> tuple[mc.ModelConfig, bytes, list[int]]:
    """The config (config.pbtxt, or a load's override in its place), its bytes (for
    fingerprints) and the version folders that hold a model."""
    if override is not None:
        config, config_bytes = override, b"override:" + override.SerializeToString()
    else:
        config = load_config(model_dir)
        path = model_dir / CONFIG_FILE
        config_bytes = path.read_bytes() if path.exists() else b""
    present = [v for v in numeric_versions(model_dir)
               if (model_dir / str(v) / config.default_model_filename).is_file()]
    if not present:
        raise ConfigError(f"{model_dir}: no version folder holds {config.default_model_filename}")
    return config, config_bytes, present
