"""Where the config goes: `python tests/cfg_walk.py [override ...]` runs the study from Python (as api.run does:
compose, validate, the pipeline) and lists, in order, each place in the project's code that reads the config (a key
of it, or a call handed it or a part of it). A stay is a run of such reads in one file; a climb back is a stay in a
file the walk has been in before. Fewer of both: a reader follows the config through fewer places."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from omegaconf import DictConfig

SRC = str(Path(__file__).resolve().parents[1] / "src" / "backprop_lab")


def _roots(frame) -> set[int]:
    code = frame.f_code
    names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
    found = set()
    for name in names:
        value = frame.f_locals.get(name)
        if isinstance(value, DictConfig):
            found.add(id(value._get_root()))
    return found


def walk(overrides: list[str]) -> list[tuple[str, str]]:
    from backprop_lab import api
    from backprop_lab.study import pipeline

    calls: list[tuple[str, str, set[int]]] = []
    handed: list[int] = []
    real_run = pipeline.run

    def spy(cfg, *args, **kwargs):
        handed.append(id(cfg))
        return real_run(cfg, *args, **kwargs)

    def profile(frame, event, arg):
        if event == "call" and frame.f_code.co_filename.startswith(SRC):
            roots = _roots(frame)
            if roots:
                where = frame.f_code.co_filename[len(SRC) + 1:]
                calls.append((where, frame.f_code.co_name, roots))

    def reading(method):
        def read(node, key, *args):
            caller = sys._getframe(1)
            if caller.f_code.co_filename.startswith(SRC) and not str(key).startswith("_"):
                where = caller.f_code.co_filename[len(SRC) + 1:]
                calls.append((where, f"{caller.f_code.co_name}:{key}", {id(node._get_root())}))
            return method(node, key, *args)

        return read

    real = {name: getattr(DictConfig, name) for name in ("__getattr__", "__getitem__", "get")}
    for name, method in real.items():
        setattr(DictConfig, name, reading(method))
    pipeline.run = spy
    with tempfile.TemporaryDirectory() as tmp:
        sys.setprofile(profile)
        try:
            api.run([*overrides, f"tracking.uri=sqlite:///{tmp}/mlflow.db"], launch_dir=tmp)
        finally:
            sys.setprofile(None)
            pipeline.run = real_run
            for name, method in real.items():
                setattr(DictConfig, name, method)
    return [(where, name) for where, name, roots in calls if handed[0] in roots]


def main() -> None:
    overrides = sys.argv[1:] or ["data=synthetic", "data.n_train=128", "data.n_valid=32", "timing=fast"]
    calls = walk(overrides)
    stays, seen, climbs = [], set(), 0
    for where, name in calls:
        if stays and stays[-1][0] == where:
            if name not in stays[-1][1]:
                stays[-1][1].append(name)
            continue
        climbs += where in seen
        seen.add(where)
        stays.append((where, [name]))
    for where, names in stays:
        print(f"{where}: {', '.join(names)}")
    print(f"{len(calls)} calls, {len(stays)} stays in {len(seen)} files, {climbs} climbs back")


if __name__ == "__main__":
    main()
