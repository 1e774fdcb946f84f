"""ttscale: train PRMs and revision models, and spend test-time compute with them.

The Python API (ttscale.api): `PRMConfig` and `PRMTrainer` (TRL's PRMTrainer call), `run_search`, `load_scorer`.
They load on first use, so `import ttscale` stays light.
"""

__version__ = "0.1.0"

_API = {"PRMConfig": "ttscale.api", "PRMTrainer": "ttscale.api", "run_search": "ttscale.api",
        "load_scorer": "ttscale.inference.scorers_load"}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'ttscale' has no attribute {name!r}")
