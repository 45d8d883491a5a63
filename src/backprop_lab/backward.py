"""Stage 4, backward: the chosen implementation's gradients against autograd's, on identical weights and inputs."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from backprop_lab.errors import ShapeError


@dataclass
class GradDiff:
    name: str  # w1, b1, ..., x
    shape: tuple[int, ...]
    max_abs_diff: float  # max |manual - autograd|
    max_rel_diff: float  # max |manual - autograd| / max |autograd|: comparable across tensors of any scale
    ref_max_abs: float  # max |autograd|, the scale
    close: bool  # never True when either gradient holds NaN or Inf
    finite: bool = True  # both gradients free of NaN and Inf

    @property
    def verdict(self) -> str:
        return "non-finite" if not self.finite else "ok" if self.close else "differs"

    def row(self) -> dict:
        return asdict(self) | {"shape": list(self.shape)}


def grad_diff(name: str, manual: torch.Tensor, ref: torch.Tensor, rtol: float, atol: float) -> GradDiff:
    if manual.shape != ref.shape:
        raise ShapeError(f"grad {name}: manual gradient is {tuple(manual.shape)}, autograd's is {tuple(ref.shape)}")
    diff = (manual - ref).abs().max().item() if manual.numel() else 0.0
    finite = ref[torch.isfinite(ref)].abs()  # exploded statistics are a result: judge the finite part's scale
    scale = finite.max().item() if finite.numel() else 0.0
    rel = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    # a NaN matching a NaN is not agreement: a non-finite gradient is its own verdict, never "close"
    finite = bool(torch.isfinite(manual).all() and torch.isfinite(ref).all())
    # atol is relative to the tensor's own scale: a fixed 1e-5 would pass any input gradient, whose entries are < 1e-4
    close = finite and torch.allclose(manual, ref, rtol=rtol, atol=atol * scale)
    return GradDiff(name, tuple(manual.shape), diff, rel, scale, close, finite)


def compare(
    manual: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], rtol: float, atol: float
) -> list[GradDiff]:
    missing = set(reference) - set(manual)
    if missing:
        raise ShapeError(f"backward returned no gradient for {', '.join(sorted(missing))}")
    return [grad_diff(name, manual[name], reference[name], rtol, atol) for name in reference]


def elementwise_diffs(manual: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """|manual - autograd| for every entry, on the CPU, for the difference figure."""
    return {name: (manual[name] - reference[name]).abs().flatten().cpu() for name in reference}


def metrics(diffs: list[GradDiff]) -> dict[str, float]:
    out = {}
    for d in diffs:
        out[f"grad/{d.name}/max_abs_diff"] = d.max_abs_diff
        out[f"grad/{d.name}/max_rel_diff"] = d.max_rel_diff
    out["grad/all_close"] = float(all(d.close for d in diffs))
    out["grad/all_finite"] = float(all(d.finite for d in diffs))
    return out
