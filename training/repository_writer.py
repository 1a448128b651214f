"""Writes one model version into a Triton-layout repository (the model file and a
config.pbtxt rendered with protobuf text_format from tritonclient's ModelConfig), or into a
folder of versions of a model kept as one file."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import onnx
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from hanzo.server.models.model_folder import numeric_versions
from hanzo.server.models.production import pin_production


def write_version(root: Path, config: mc.ModelConfig, version: int, model: onnx.ModelProto,
                  extra_files: dict[str, bytes] | None = None, candidate: bool = False) -> Path:
    """Write <root>/<name>/<version>/ whole, then rename it into place, so a server polling
    the repository never loads a half-written version. `candidate`: the model keeps a
    production pointer (server/models/production.py), so the version serving now stays
    production and this one arrives as a candidate (a model's first version is production)."""
    model_dir = Path(root) / config.name
    model_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    try:
        onnx.save_model(model, str(staging / (config.default_model_filename or "model.onnx")))
        for name, data in (extra_files or {}).items():
            (staging / name).write_bytes(data)
        target = model_dir / str(version)
        if target.exists():
            shutil.rmtree(target)
        if candidate:
            pin_production(model_dir, by="train")
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    config_path = model_dir / "config.pbtxt"
    tmp = config_path.with_suffix(".pbtxt.tmp")
    tmp.write_text(text_format.MessageToString(config))
    os.replace(tmp, config_path)
    if candidate:
        pin_production(model_dir, by="train")
    return model_dir / str(version)


def write_file_version(model_dir: Path, file_name: str, write: Callable[[Path], None], by: str = "train") -> Path:
    """The next version of a model kept as one file per version folder (pricing's demand
    model): `write(path)` writes it into a staging folder that is renamed into place whole,
    as the version above the newest there. The version serving now stays production (a
    pointer is pinned first where there is none), so this one arrives as the candidate; a
    folder's first version is production."""
    model_dir = Path(model_dir)
    model_dir.mkdir(parents=True, exist_ok=True)
    pin_production(model_dir, by=by)
    version = max(numeric_versions(model_dir), default=0) + 1
    staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=model_dir))
    try:
        write(staging / file_name)
        os.rename(staging, model_dir / str(version))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    pin_production(model_dir, by=by)
    return model_dir / str(version)
