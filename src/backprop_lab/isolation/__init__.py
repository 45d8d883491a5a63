"""A learner's code in a process of its own: the judge apart from the judged.

The lab's process holds what is trusted (the config, the data, the float64 truth, the checker, the diagnosis and
MLflow); a learner's code (`impl=user`: a file, a module, a `check()` cell, each file of a teacher's folder) runs in
a child process, a fresh one for each, forked from a clean fork server (processes.py). The child gets the inputs in
sealed shared memory and hands back plain data: its gradients, its loss, its timings (child.py, wire.py); the lab
turns them into plain tensors and checks them before it judges (submission.py), relays what the child prints
(output.py), and bounds its time and memory (limits.py); source.py reads the code, replies.py words what is not a
result, foresight.py foresees the memory a step would take on the full data. Nothing the child does changes the
lab's process.

Add here what a learner's process does or what the lab asks of it (the floor: above impls/, below study/); never
import a learner's code in the lab's process.
"""

from pathlib import Path
from typing import Optional


def open_submission(code: str, base: Optional[Path], time_limit_s: float, memory_limit_gib: Optional[float] = None):
    """A learner's code (a file or a module), started in a process of its own and loaded there:
    close it when done (it is a context manager)."""
    from backprop_lab.isolation.submission import Submission

    return Submission(code, base, time_limit_s, memory_limit_gib).open()
