"""Rerun a logged run from MLflow alone, and prove the result is the same: the rerun floor (beside bench/, above
sweeps/). Here, the rerun (the logged config and code checked, the run again); compare.py sets it against the
original, show.py shows the verdict. How a user runs it, and what it promises: cli/rerun.py.

Add here what checks or compares a rerun; nothing here starts a study but through study/pipeline.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from backprop_lab import tracking
from backprop_lab.config import run_params, validation
from backprop_lab.core import tables
from backprop_lab.core.code_files import file_path, file_sha256, is_file
from backprop_lab.core.errors import ConfigError, UserError
from backprop_lab.core.names import CODE_CHANGED_TAG, CODE_TAG, CONFIG_TAG, EDITED_TAG, LOGGED_CODE_TAG, SWEEP_TAG
from backprop_lab.rerun.compare import Verdict, compare
from backprop_lab.rerun.show import print_verdict, sweep_table
from backprop_lab.sweeps import parent as sweep_parent
from backprop_lab.tracking import lifecycle, runs, store
from backprop_lab.tracking.runs import LoggedRun

TRUST_STORE = "code from the store, run it only if you trust the store"


def _changed_params(original: LoggedRun, logged: dict) -> list[str]:
    """The params the logged config no longer gives, as `key (logged value -> value now)`: the edit, where cheap."""
    try:
        now = tracking.flatten(run_params.requested(logged))
    except (KeyError, TypeError, AttributeError, ValueError):  # not even the shape of a config: no params to compare
        return []
    ran = tracking.flatten(run_params.computed(False))  # logged as the run did them, not as the config asked
    then = {k: v for k, v in original.record.params.items()
            if k.split(".")[0] not in run_params.NOT_PARAMS and k not in ran}  # fmt: skip
    return [f"{k} ({then.get(k, 'absent')[:40]} -> {now.get(k, 'absent')[:40]})"
            for k in sorted(now.keys() | then.keys()) if now.get(k) != then.get(k)]  # fmt: skip


def edited(original: LoggedRun, logged: dict) -> Optional[str]:
    """Why the logged config is not the one the run ran (its `config.sha256` tag, run_params.config_digest of its
    params, no longer matches), or None when it is."""
    tag = original.record.tags.get(CONFIG_TAG)
    if not tag:
        return f"it has no {CONFIG_TAG} tag to check its {validation.LOGGED_CONFIG} against"
    try:
        if run_params.config_digest(logged) == tag:
            return None
    except (KeyError, TypeError, AttributeError, ValueError):
        pass  # not even the shape of a config: edited, whatever it was
    changed = _changed_params(original, logged)
    where = f", at {', '.join(changed[:4])}{' ...' if len(changed) > 4 else ''}" if changed else ""
    mismatch = f"its {validation.LOGGED_CONFIG} does not hash to its {CONFIG_TAG} tag ({tag[:12]}...)"
    return f"{mismatch}: edited after the run{where}"


@dataclass
class CodeTrust:
    """What the user allowed for a run of their own file that is no longer the file it ran."""

    accept_changed: bool = False  # run today's file though it changed (--accept-changed-code)
    run_logged: bool = False  # run the copy logged with the run (--run-logged-code): code from the store
    scratch: Optional[Path] = None  # where logged copies are written to run; needed with run_logged


def _logged_copy(uri: str, run_id: str, code: str, then: Optional[str], scratch: Path) -> Path:
    """The copy of the user's file logged with the run, written under `scratch`, checked against the run's tag: a
    copy that does not hash to it is refused whatever the flags."""
    name = Path(code).name
    if not then:
        raise UserError(f"run {run_id}: impl.code: it has no {CODE_TAG} tag to check its logged copy code/{name} "
                        "against; refused")  # fmt: skip
    copy = runs.download_artifact(uri, run_id, f"code/{name}", scratch / run_id) if name not in ("", "..") else None
    if copy is None:
        raise UserError(f"run {run_id}: impl.code: no copy code/{name} was logged with the run; nothing to run")
    got = file_sha256(copy)
    if got != then:
        raise UserError(f"run {run_id}: impl.code: its logged copy code/{name} does not hash to its {CODE_TAG} tag "
                        f"({(got or 'not a file')[:12]}... logged, {then[:12]}... tagged): changed in the store; "
                        "refused")  # fmt: skip
    return copy


def check_code(uri: str, original: LoggedRun, code: str, launch_dir: Path,
               trust: CodeTrust) -> tuple[str, dict[str, str]]:  # fmt: skip
    """The user's file to run again, and the tags that say what was accepted: the file at the logged path when it
    hashes to the run's tag; otherwise what the flags allow, or a one-line refusal. Nothing is executed here."""
    run_id, then = original.record.run_id, original.record.tags.get(CODE_TAG)
    if trust.run_logged:
        copy = _logged_copy(uri, run_id, code, then, trust.scratch)
        return str(copy), {LOGGED_CODE_TAG: f"code/{copy.name} ({then})"}
    path = file_path(code, launch_dir)
    store_dir = next((d for d in runs.local_store_dirs(uri, run_id) if path.resolve().is_relative_to(d)), None)
    if store_dir is not None:  # the logged config edited to point at a copy in the store: code from the store
        raise UserError(f"impl.code: {code} is inside the tracking store ({store_dir}): code from the store runs only "
                        f"with --run-logged-code, checked against its tag")  # fmt: skip
    now = file_sha256(path)
    if now is not None and now == then:
        return code, {}
    if then is None:
        why = f"run {run_id} has no {CODE_TAG} tag to check {code} against"
    elif now is None:
        why = f"{code} is gone from {launch_dir} since run {run_id} (sha256 {then[:12]}... then)"
    else:
        why = f"{code} has changed since run {run_id} (sha256 {now[:12]}... now, {then[:12]}... then)"
    if trust.accept_changed and now is not None:
        return code, {CODE_CHANGED_TAG: why}
    today = "--accept-changed-code reruns today's file, " if now is not None else ""
    logged = f"--run-logged-code runs the copy logged with the run: {TRUST_STORE}" if then else "refused"
    raise UserError(f"impl.code: {why}; {today}{logged}")


@dataclass
class Prepared:
    original: LoggedRun
    cfg: DictConfig  # the logged config, checked, pointed at this store (and at the logged code, when asked)
    edited: Optional[str]  # why it is not the config the run ran, when --accept-edited-config let it through
    code_tags: dict[str, str] = field(default_factory=dict)  # what was accepted of the user's file, as tags


def prepare(uri: str, original: LoggedRun, accept_edited: bool, launch_dir: Path,
            trust: Optional[CodeTrust] = None) -> Prepared:  # fmt: skip
    """The run's own config, bounded, verified against its tag and checked, and the user's file it ran verified
    against its own, before anything runs."""
    run_id = original.record.run_id
    if not original.config_yaml:
        raise UserError(f"run {run_id} has no {validation.LOGGED_CONFIG} artifact: another program logged it; "
                        "nothing to rerun")  # fmt: skip
    commit = original.record.tags.get("git.commit", "unknown")
    try:
        validation.check_logged_bounds(original.config_yaml)
    except ConfigError as e:
        raise UserError(f"run {run_id}: {e}") from None
    try:
        logged = validation.read_logged(original.config_yaml)
        why = edited(original, logged)
        if why and not accept_edited:
            raise UserError(f"run {run_id}: {why}; refused (--accept-edited-config reruns it as it is now)")
        cfg = validation.checked_logged(logged)
    except ConfigError as e:
        raise UserError(f"run {run_id}: its config no longer validates ({e}); check out commit {commit} to rerun it"
                        ) from None  # fmt: skip
    cfg = OmegaConf.merge(cfg, {"tracking": {"uri": uri, "experiment": original.experiment}})
    code_tags = {}
    if is_file(cfg.impl.code):  # a module is code the environment installed, not a file to check
        code, code_tags = check_code(uri, original, cfg.impl.code, launch_dir, trust or CodeTrust())
        cfg = OmegaConf.merge(cfg, {"impl": {"code": code}})
    return Prepared(original, cfg, why, code_tags)


def rerun_one(prepared: Prepared, launch_dir: Path, console: Console, parent_run_id: Optional[str] = None):
    """Execute the pipeline again with the run's own config; return the new run, read back from the store."""
    from backprop_lab.study import pipeline

    original, run_id = prepared.original, prepared.original.record.run_id
    job_tags = {"rerun_of": run_id}
    if prepared.edited:
        console.print(f"note: run {run_id}: {prepared.edited}; rerunning it as it is now (--accept-edited-config)",
                      markup=False, highlight=False, soft_wrap=True)  # fmt: skip
        job_tags[EDITED_TAG] = prepared.edited
    for tag, what in prepared.code_tags.items():
        how = "the copy logged with the run (--run-logged-code)" if tag == LOGGED_CODE_TAG else (
            "today's file (--accept-changed-code)")  # fmt: skip
        console.print(f"note: run {run_id}: {what}; running {how}", markup=False, highlight=False, soft_wrap=True)
    job_tags |= prepared.code_tags
    overrides = original.record.tags.get("overrides", "").split()
    result = pipeline.run(
        prepared.cfg,
        [o for o in overrides if o != "(none)"],
        launch_dir,
        parent_run_id=parent_run_id,
        job_tags=job_tags,
        console=Console(stderr=True, quiet=True),
    )
    return runs.logged_run(prepared.cfg.tracking.uri, result.run.run_id)


def rerun(run_id: str, uri: str, launch_dir: Path, rtol: float, atol: float, console: Console,
          accept_edited: bool = False, trust: Optional[CodeTrust] = None) -> list[Verdict]:  # fmt: skip
    store.check_store(uri, existing=True)  # a reader: a mistyped path creates no store
    trust = trust or CodeTrust()
    if not trust.run_logged:
        return _rerun(run_id, uri, launch_dir, rtol, atol, console, accept_edited, trust)
    with tempfile.TemporaryDirectory(prefix="backprop-lab-logged-code-") as scratch:  # the copies, while they run
        trust = CodeTrust(trust.accept_changed, True, Path(scratch))
        return _rerun(run_id, uri, launch_dir, rtol, atol, console, accept_edited, trust)


def _rerun(run_id: str, uri: str, launch_dir: Path, rtol: float, atol: float, console: Console,
           accept_edited: bool, trust: CodeTrust) -> list[Verdict]:  # fmt: skip
    original = runs.logged_run(uri, run_id)
    if original.record.tags.get(SWEEP_TAG) != "parent":
        prepared = prepare(uri, original, accept_edited, launch_dir, trust)
        verdict = compare(original, rerun_one(prepared, launch_dir, console), rtol, atol)
        print_verdict(verdict, console)
        return [verdict]
    children = runs.child_statuses(uri, run_id)
    todo, not_rerun = [], []
    for child_id, status in sorted(children.items()):  # every child checked before any runs
        child = runs.logged_run(uri, child_id)
        if status != "FINISHED":  # nothing to reproduce: say so, and go on with the others
            not_rerun.append((child_id, status, child.record.tags.get("error", "")))
        else:
            todo.append(prepare(uri, child, accept_edited, launch_dir, trust))
    experiment_id = lifecycle.prepare_store(uri, original.experiment)
    name = f"rerun of {original.record.name}"[:250]
    parent = sweep_parent.open_parent(uri, experiment_id, name, {"rerun_of": run_id})
    verdicts = []
    try:
        for prepared in todo:
            child = prepared.original
            console.print(f"rerunning {child.record.name} ({child.record.run_id})", markup=False)
            verdicts.append(compare(child, rerun_one(prepared, launch_dir, console, parent), rtol, atol))
    finally:
        sweep_parent.close_parent(uri, parent)
    for verdict in verdicts:
        print_verdict(verdict, console)
    console.print(tables.to_rich(sweep_table(run_id, verdicts, not_rerun, len(children))))
    return verdicts
