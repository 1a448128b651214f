"""Build for Hanzo: one import root `hanzo` mapped from the top-level folders.

`hanzo.server`, `hanzo.kernels`, `hanzo.training`, `hanzo.loadtest` come from the
folders of the same names; `hanzo.v1` holds the gRPC stubs generated from proto/ at
build time; `hanzo._native` is the pybind11 extension from cpp_ext/.

GPU users: onnxruntime and onnxruntime-gpu both provide the `onnxruntime` module and must
never be installed together. `HANZO_ONNXRUNTIME=onnxruntime-gpu pip install .` builds a
package that depends on the GPU wheel instead of the CPU one (see README).
"""
from __future__ import annotations

import os
from pathlib import Path

from pybind11.setup_helpers import Pybind11Extension, build_ext
from setuptools import Command, find_packages, setup
from setuptools.command.build_py import build_py
from setuptools.command.develop import develop

VERSION = "0.1.0"
ROOT = Path(__file__).resolve().parent
PROTO_ROOT = ROOT / "proto"

# The gRPC family and protobuf must agree with tritonclient (../shared/notes/dependencies.md);
# tests/test_packaging.py fails if the installed set drifts from these pins.
GRPC_VERSION = "1.81.1"
ONNXRUNTIME = os.environ.get("HANZO_ONNXRUNTIME", "onnxruntime")
if ONNXRUNTIME not in ("onnxruntime", "onnxruntime-gpu"):
    raise SystemExit(f"HANZO_ONNXRUNTIME must be onnxruntime or onnxruntime-gpu, not {ONNXRUNTIME!r}")

INSTALL_REQUIRES = [
    f"grpcio=={GRPC_VERSION}",
    f"grpcio-reflection=={GRPC_VERSION}",
    f"grpcio-health-checking=={GRPC_VERSION}",
    "protobuf>=6.33,<7",
    "tritonclient[grpc]==2.73.0",
    "numpy>=2.0,<3",
    "numba>=0.61",
    "hnswlib==0.8.0",
    f"{ONNXRUNTIME}>=1.20",
    "onnx>=1.17",
    "msgpack>=1.0",
    "orjson>=3.9",
    "uvloop>=0.19",
    "hdrhistogram>=0.10",
    "prometheus-client>=0.20",
    "aiohttp>=3.9",  # the KServe V2 HTTP/REST port
    "matplotlib>=3.8",  # load reports' plots
    "tqdm>=4.66",  # load progress
]

EXTRAS = {
    "redis": ["redis>=5", "hiredis>=2"],
    # xgboost-cpu: the same `xgboost` module without the 350 MB CUDA collective library
    # statsforecast: the standard statistical forecasters the nightly forecast combines with its
    # own regression (server/inventory/stat_models.py); it brings pandas, so it rides with the
    # training tools rather than the server's core
    "train": ["torch==2.13.0", "xgboost-cpu>=2.1", "onnxmltools>=1.13", "scikit-learn>=1.5", "statsforecast==2.1.1"],
    # tritonclient's HTTP client, the one NVIDIA's HTTP examples use, against the HTTP port
    "test": ["pytest>=8", "pytest-asyncio>=0.24", f"grpcio-tools=={GRPC_VERSION}", "tritonclient[http]==2.73.0",
             "redis>=5", "hiredis>=2",
             "cryptography>=42",
             # the reference the customer-base models are checked against (tests/test_customers.py):
             # unmaintained, so a test dependency only, never the server's
             "lifetimes==0.11.3"],
}


def generate_stubs() -> None:
    """Generate hanzo/v1/*_pb2*.py beside the .proto files (ignored by git)."""
    from grpc_tools import protoc
    import grpc_tools

    well_known = Path(grpc_tools.__file__).parent / "_proto"
    for proto in sorted((PROTO_ROOT / "hanzo" / "v1").glob("*.proto")):
        rel = proto.relative_to(PROTO_ROOT)
        args = [
            "grpc_tools.protoc",
            f"-I{PROTO_ROOT}",
            f"-I{well_known}",
            f"--python_out={PROTO_ROOT}",
            f"--pyi_out={PROTO_ROOT}",
            f"--grpc_python_out={PROTO_ROOT}",
            str(rel),
        ]
        if protoc.main(args) != 0:
            raise SystemExit(f"protoc failed on {rel}")


class GenerateStubs(Command):
    description = "generate gRPC stubs from proto/"
    user_options: list = []

    def initialize_options(self) -> None:
        pass

    def finalize_options(self) -> None:
        pass

    def run(self) -> None:
        generate_stubs()


class BuildPyWithStubs(build_py):
    def run(self) -> None:
        generate_stubs()
        super().run()


class DevelopWithStubs(develop):
    def run(self) -> None:
        generate_stubs()
        super().run()


FOLDERS = {
    "hanzo.server": "server",
    "hanzo.kernels": "kernels",
    "hanzo.training": "training",
    "hanzo.loadtest": "loadtest",
    "hanzo.v1": "proto/hanzo/v1",
}


def packages() -> tuple[list[str], dict[str, str]]:
    found: list[str] = []
    mapping: dict[str, str] = {}
    for package, folder in FOLDERS.items():
        if not (ROOT / folder / "__init__.py").exists():
            continue
        mapping[package] = folder
        found.append(package)
        for sub in find_packages(where=folder):
            found.append(f"{package}.{sub}")
            mapping[f"{package}.{sub}"] = f"{folder}/{sub.replace('.', '/')}"
    return found, mapping


PACKAGES, PACKAGE_DIR = packages()
# The root `hanzo` is a namespace package (no __init__.py) whose own folder is cpp_ext/:
# the extension lands there when an editable install builds it in place.
PACKAGES.insert(0, "hanzo")
PACKAGE_DIR["hanzo"] = "cpp_ext"

ext_modules = [
    Pybind11Extension(
        "hanzo._native",
        sorted(str(p.relative_to(ROOT)) for p in (ROOT / "cpp_ext").glob("*.cpp")),
        include_dirs=["cpp_ext"],
        define_macros=[("HANZO_VERSION", f'"{VERSION}"')],
        cxx_std=17,
        extra_compile_args=["-O3"],
    ),
]

setup(
    name="hanzo",
    version=VERSION,
    description="Hanzo: an AI-first commerce inference server (gRPC, dynamic batching, ONNX Runtime)",
    python_requires=">=3.11",
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={"hanzo.v1": ["*.proto", "*.pyi"], "hanzo.server.features": ["*.lua"]},
    ext_modules=ext_modules,
    cmdclass={"build_ext": build_ext, "build_py": BuildPyWithStubs, "develop": DevelopWithStubs,
              "generate_stubs": GenerateStubs},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={"console_scripts": ["hanzo = hanzo.server.commands:main"]},
    zip_safe=False,
)
