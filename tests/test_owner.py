"""Whether a run's process is alive: what lets a later process end the runs of one killed by SIGKILL."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from backprop_lab.tracking import owner


def test_this_process_is_alive():
    assert not owner.is_dead(owner.this_process())


def test_a_finished_process_is_dead_and_a_reused_pid_is_not_mistaken_for_it():
    code = "from backprop_lab.tracking import owner; print(owner.this_process())"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert owner.is_dead(child.stdout.strip())
    host, boot, _, start = owner.this_process().split("/")
    assert owner.is_dead(f"{host}/{boot}/{os.getpid()}/{int(start) + 1}")  # same pid, another start: another process


def test_another_host_or_boot_or_nonsense():
    host, boot, pid, start = owner.this_process().split("/")
    assert not owner.is_dead(f"{socket.gethostname()}-elsewhere/{boot}/{pid}/{start}")  # cannot be seen from here
    assert owner.is_dead(f"{host}/another-boot/{pid}/{start}")  # the machine rebooted since
    assert not owner.is_dead("garbage") and owner.describe(owner.this_process()) == f"pid {pid} on {host}"
