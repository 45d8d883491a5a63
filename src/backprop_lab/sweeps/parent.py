"""A sweep's parent run: opened before the first job, closed after the last with its jobs counted by outcome and
verdict, four numbers a runs table can sort, the best trial of a search, and a description that leads with the
answer."""

from __future__ import annotations

import math
from typing import Optional

from backprop_lab import tracking
from backprop_lab.core.names import (
    GRAD_WORST_ERROR_RATIO,
    GRAD_WORST_MAX_REL_DIFF,
    JOB_FAILED,
    NOTE_TAG,
    SEARCH_BEST_OBJECTIVE,
    SWEEP_JOBS,
    SWEEP_JOBS_FAILED,
    SWEEP_JOBS_FINISHED,
    SWEEP_TAG,
    TIME_BACKWARD_VS_AUTOGRAD,
    VERDICT_WORDS,
)
from backprop_lab.tracking import lifecycle, runs
from backprop_lab.tracking.mlflow_client import MAX_NOTE_CHARS

SWEPT_PARAM = "swept"  # on the parent: swept_keys, comma-separated


def open_parent(uri: str, experiment_id: str, run_name: str, tags: dict[str, str],
                params: Optional[dict] = None) -> str:  # fmt: skip
    """A sweep's parent run: the UI nests the jobs under it, the report finds it by its tag."""
    _, run_id = lifecycle.start_run(uri, experiment_id, run_name, tags | {SWEEP_TAG: "parent"})
    if params:
        tracking.log_params(params, run_id, uri)
    return run_id


def aggregates(children: list) -> dict[str, float]:
    """The sweep in four numbers a runs table can sort: the worst check among its jobs, the best and worst backward
    against autograd's. An infinite one is logged as `<name>_is_inf` = 1 instead: MLflow would store it as the
    largest double, and its UI would show 1.7976931348623157e+308."""
    from backprop_lab.core.tables import as_logged

    def values(key: str) -> list[float]:
        return [c.metrics[key] for c in children if key in c.metrics]

    out = {}
    for key, pick, name in ((GRAD_WORST_ERROR_RATIO, max, "worst_error_ratio"),
                            (GRAD_WORST_MAX_REL_DIFF, max, "worst_max_rel_diff"),
                            (TIME_BACKWARD_VS_AUTOGRAD, min, "best_backward_vs_autograd"),
                            (TIME_BACKWARD_VS_AUTOGRAD, max, "worst_backward_vs_autograd")):  # fmt: skip
        found = values(key)
        if found:
            value = pick(found)
            infinite = math.isinf(as_logged(value))
            out[f"sweep/{name}_is_inf" if infinite else f"sweep/{name}"] = 1.0 if infinite else value
    return out


def best_trial(parent, children: list) -> tuple[dict[str, float], dict[str, str], dict[str, str]]:
    """The best trial, as the parent's (metrics, params, tags): its objective, its swept values as `best.*` params, its
    run. Nothing when no job logged a finite objective (a sweep without one, or a search whose trials all failed)."""
    from backprop_lab.config.objectives import METRIC, for_search

    scored = [c for c in children if c.status == "FINISHED" and for_search(c.metrics.get(METRIC)) is not None]
    if not scored:
        return {}, {}, {}
    best = min(scored, key=lambda c: c.metrics[METRIC])
    swept = [k.strip() for k in parent.params.get(SWEPT_PARAM, "").split(",") if k.strip()]
    params = {f"best.{k}": best.params[k] for k in swept if k in best.params}
    return {SEARCH_BEST_OBJECTIVE: best.metrics[METRIC]}, params, {"search.best_run": best.run_id,
                                                                      "search.best_name": best.name}  # fmt: skip


def description(parent, children: list, counts: dict[str, int]) -> str:
    """The parent run's description: first the answer in a line (what its jobs found, counted, and the study's
    answer in a sentence: the UI shows a description's first two rows), then the report's tables, the study's answer
    first, and what their numbers are (markdown, rendered by the UI; an infinity reads `inf`, as the report writes
    it)."""
    from backprop_lab import report
    from backprop_lab.core.tables import md_text
    from backprop_lab.report.answers import lead as study_lead

    rows = report.to_rows(children, parent.run_id)
    found = study_lead(rows) if rows else ""
    lead = f"**{verdict_counts(counts)}**" + (f" {md_text(found)}" if found else "") + "\n\n"
    text = lead + report.with_notes_markdown(rows, parent.name, level=3)
    while len(text) > MAX_NOTE_CHARS and len(rows) > 1:  # a tag holds 8,000 characters
        rows = rows[: len(rows) // 2]
        text = lead + report.with_notes_markdown(rows, f"{parent.name} (first {len(rows)} jobs)", level=3)
    return text


def environment_tags() -> dict[str, str]:
    from backprop_lab.tracking.environment import git_state

    return git_state()


def close_parent(
    uri: str, parent_run_id: str, status: Optional[str] = None, metrics: Optional[dict[str, float]] = None
) -> dict[str, int]:
    """Count the jobs by outcome, end KILLED any child still RUNNING (the sweep is stopping early, or its process
    died), and end the parent: FAILED when a job failed, unless a status is given. A job failed when its run ended
    FAILED or KILLED, and also when it failed after its run ended FINISHED, or before it had one (`job_failed`)."""
    for run_id, status_now in runs.child_statuses(uri, parent_run_id).items():
        if status_now == "RUNNING":
            lifecycle.end_run(uri, run_id, "KILLED", "the sweep ended before this job did")
    parent, children = runs.sweep_records(uri, parent_run_id)
    failed_after = sum(c.status == "FINISHED" and JOB_FAILED + parent_run_id in c.tags for c in children)
    without_run = sum(key.startswith(JOB_FAILED + "job") for key in parent.tags)
    statuses = [c.status for c in children]
    counts = {"FINISHED": statuses.count("FINISHED") - failed_after,
              "FAILED": statuses.count("FAILED") + failed_after + without_run, "KILLED": statuses.count("KILLED")}
    jobs = len(children) + without_run
    failed = counts["FAILED"] + counts["KILLED"]
    judged = [c.tags.get("grad.verdict") for c in children
              if c.status == "FINISHED" and JOB_FAILED + parent_run_id not in c.tags]  # fmt: skip
    counts |= {f"verdict.{v}": judged.count(v) for v in VERDICT_WORDS}
    summary = {SWEEP_JOBS: jobs, SWEEP_JOBS_FAILED: failed, SWEEP_JOBS_FINISHED: counts["FINISHED"]}
    best_metrics, best_params, best_tags = best_trial(parent, children)
    tracking.log_metrics((metrics or {}) | summary | aggregates(children) | best_metrics, run_id=parent_run_id, uri=uri)
    if best_params:
        tracking.log_params(best_params, parent_run_id, uri)
    if children:
        tracking.set_tags({NOTE_TAG: description(parent, children, counts | {"jobs": jobs})} | best_tags, parent_run_id,
                          uri)  # fmt: skip
    lifecycle.end_run(uri, parent_run_id, status or ("FAILED" if failed else "FINISHED"))
    return counts | {"jobs": jobs}


def verdict_counts(counts: dict[str, int]) -> str:
    """"7 jobs: 2 ok, 3 WRONG, 1 partial, 1 failed to run": what the jobs found, in the report's words."""
    failed = counts.get("FAILED", 0) + counts.get("KILLED", 0)
    found = [f"{counts[f'verdict.{v}']} {word}" for v, word in VERDICT_WORDS.items() if counts.get(f"verdict.{v}")]
    found += [f"{failed} failed to run"] if failed else []
    return f"{counts.get('jobs', 0)} jobs: {', '.join(found) or 'none judged'}"
