"""backprop-lab: fast.ai lesson 8's backprop study as a Hydra + MLflow pipeline. From Python: `run`, `runs_frame`,
`check` (backprop_lab.api); the names resolve on first use, so `import backprop_lab` imports neither torch nor
MLflow."""

__all__ = ["check", "run", "runs_frame"]


def __getattr__(name: str):
    if name in __all__:
        from backprop_lab import api

        return getattr(api, name)
    raise AttributeError(f"module 'backprop_lab' has no attribute {name!r}")
