"""What the learner's process hands back that is not a result, in the lab's words: its error replies (the lab's own
refusal, a memory foresight, an input changed in place, their traceback) and a gradient that cannot be judged; every
text from the child bounded, made printable and redacted first."""

from __future__ import annotations

import torch

from backprop_lab.core.errors import ConfigError, UserCodeError
from backprop_lab.core.streams import safe
from backprop_lab.impls import shapes
from backprop_lab.isolation import sealed, wire

# what a reply the child made (or forged) can raise while the lab reads it: a missing key, a wrong type, a number
# too large for a float (OverflowError), a file that is not a memfd (OSError)
UNREADABLE = (KeyError, TypeError, ValueError, AttributeError, ArithmeticError, OSError, wire.WireError)


def error(reply: dict, label: str, memory_limit_gib: float) -> Exception:
    """The child's error reply as the exception the lab raises: the lab's own refusal, a foresight, an input changed
    in place, or the learner's traceback. UNREADABLE where the reply is not what the child sends."""
    kind = reply.get("error")
    if kind == "config":
        return ConfigError(clean(str(reply.get("text", "")), 500).splitlines()[0])
    if kind == "foreseen":  # a shape that grows faster than its node's, seen on a few rows
        return _foreseen(reply, label, memory_limit_gib)
    if kind == "foreseen_made":  # a tensor larger than anything the net needs, made on the way
        return _foreseen_made(reply, label, memory_limit_gib)
    if kind == "in_place":
        changed = [str(k)[:20] for k in reply.get("changed", [])][:20]
        return UserCodeError(f"{label}: your code changed {', '.join(changed)} in place (an in-place op such "
                             "as +=, clamp_ or .data on an input or weight); the check needs them as they were: "
                             "compute into new tensors")  # fmt: skip
    text = clean(str(reply.get("text", "")), 16_000)
    if "allocate memory" in text.lower() or "MemoryError" in text:
        text += (f"\n(your code's process may use {memory_limit_gib:.1f} GiB: impl.memory_limit_gib)")
    return UserCodeError(text)


def _too_large(full: tuple[int, ...], gib: float, memory_limit_gib: float) -> str:
    return (f"so on the full data {full}: {gib:.1f} GiB, which with its temporaries and the check's copies is more "
            f"than your code's process may use ({memory_limit_gib:.1f} GiB, impl.memory_limit_gib); not run on the "
            "full data.")  # fmt: skip


def _foreseen(reply: dict, label: str, memory_limit_gib: float) -> UserCodeError:
    node, rows = str(reply["node"]), int(reply["rows"])
    shape, full, due = (tuple(int(d) for d in reply[k]) for k in ("shape", "full", "due"))
    gib = float(reply["bytes"]) / 2**30
    said = shapes.shape_words(node, shape, due, rows)
    return UserCodeError(f"{label}: on a preflight of {rows} rows your gradient at {clean(node, 20)} is {shape}, "
                         f"{_too_large(full, gib, memory_limit_gib)} {said}")


def _foreseen_made(reply: dict, label: str, memory_limit_gib: float) -> UserCodeError:
    rows, line, gib = int(reply["rows"]), int(reply["line"]), float(reply["bytes"]) / 2**30
    shape, full = (tuple(int(d) for d in reply[k]) for k in ("shape", "full"))
    file, function, source, weight = (clean(str(reply[k]), 120) for k in ("file", "function", "source", "per_example"))
    text = (f"{label}: on a preflight of {rows} rows, line {line} of {file} (in {function}) makes a tensor of "
            f"{shape}, {_too_large(full, gib, memory_limit_gib)}\n    {source}")
    if weight:
        text += (f"\nThat is {weight}'s gradient for every example at once, summed afterwards: a matrix product "
                 "(inp.t() @ out.g) sums over the examples as it multiplies, with no such tensor")  # fmt: skip
    return UserCodeError(text)


def unjudgeable(entry: dict, due: tuple, dtype: torch.dtype, device: torch.device) -> str:
    node = entry["node"]
    if "type" in entry:
        return f"backward gave {node} = {clean(str(entry['type']), 60)}, not a tensor (expected shape {tuple(due)})"
    if not sealed.is_shape(entry.get("shape")):
        raise ValueError
    given = str(entry.get("dtype"))
    if given != str(dtype).removeprefix("torch."):
        return (f"gradient at {node} is torch.{clean(given, 40)}; the run's dtype is {dtype} (a .double() or .float() "
                "too many?)")  # fmt: skip
    if str(entry.get("device")) != str(device):
        return f"gradient at {node} is on {clean(str(entry.get('device')), 40)}; the run's tensors are on {device}"
    return ""


def clean(text: str, limit: int) -> str:
    """Untrusted text for a line or a tag: bounded, no terminal control characters, secrets masked."""
    from backprop_lab.core.redaction import redact

    cut = text[:limit] + (" ... (cut)" if len(text) > limit else "")
    return redact(safe(cut))
