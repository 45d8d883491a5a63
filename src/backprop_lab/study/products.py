"""The matrix products each pass of the model computes, and their work: what a run reports as time/*_gflop, and
what the bench times alone (each product both ways round), and the machine's best GEMM throughput beside them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from backprop_lab.impls.timing import measure


@dataclass(frozen=True)
class Product:
    """One matrix product of a layer `a -> b` over `rows` rows: `inp @ w` (forward), `w.g` or the input's gradient."""

    kind: str  # forward | weight grad | input grad
    rows: int
    a: int
    b: int

    @property
    def gflop(self) -> float:
        return 2 * self.rows * self.a * self.b / 1e9

    def orientations(self, device) -> list:
        """The product both ways round (the second gives the transpose, a free view): MKL runs them at different
        speeds, and an implementation may pick either; the input's gradient of a one-output layer also as the
        broadcast multiply it is."""
        rand = partial(torch.randn, device=device)
        if self.kind == "forward":
            inp, w = rand(self.rows, self.a), rand(self.a, self.b)
            return [lambda: inp @ w, lambda: w.t() @ inp.t()]
        if self.kind == "weight grad":
            inp, g = rand(self.rows, self.a), rand(self.rows, self.b)
            return [lambda: inp.t() @ g, lambda: g.t() @ inp]
        g, w = rand(self.rows, self.b), rand(self.a, self.b)
        ways = [lambda: g @ w.t(), lambda: w @ g.t()]
        return ways + ([lambda: g * w.t()] if self.b == 1 else [])  # one output: an outer product, as lean has it


def pass_products(widths: list[int], n: int, input_grad: bool) -> dict[str, list[Product]]:
    """The products of each pass: forward `inp @ w` per layer; backward `w.g` per layer and the input's gradient of
    every layer but the first, and the first's too when asked."""
    layers = list(enumerate(zip(widths[:-1], widths[1:])))
    forward = [Product("forward", n, a, b) for _, (a, b) in layers]
    back = [Product("weight grad", n, a, b) for _, (a, b) in layers]
    back += [Product("input grad", n, a, b) for i, (a, b) in layers if i > 0 or input_grad]
    return {"forward": forward, "backward": back, "forward+backward": forward + back}


def pass_flops(widths: list[int], n: int, input_grad: bool) -> dict[str, float]:
    """GFLOP of each pass's matrix products (elementwise work is not counted)."""
    return {name: sum(p.gflop for p in ps) for name, ps in pass_products(widths, n, input_grad).items()}


def gemm_peak(shapes: list[tuple[int, int, int]], min_run_time: float, threads: int, device) -> dict[str, float]:
    """GFLOP/s of `a @ b` for each (m, k, n); the best is the roofline's throughput."""
    out = {}
    for m, k, n in shapes:
        a, b = torch.randn(m, k, device=device), torch.randn(k, n, device=device)
        timed = measure(lambda a=a, b=b: a @ b, f"gemm {m}x{k}x{n}", min_run_time, threads)
        out[f"{m}x{k}x{n}"] = 2 * m * k * n / timed.median_ms / 1e6
    return out
