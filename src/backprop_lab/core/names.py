"""The names a run leaves in the store, and the product's sentinel: what the UI, the report, the rerun and any reader
of the store rely on, stated once. Nothing here imports anything."""

from __future__ import annotations

NONE = "none"  # no bug, no objective, no divergent node: the value a config and a tag say "nothing" with
# a run's verdict (the grad.verdict tag) in the word every line and table says it with
VERDICT_WORDS = {"ok": "ok", "wrong": "WRONG", "partial": "partial", "inconclusive": "inconclusive"}
USER_IMPL = "user"  # the impl option whose code is a learner's (`impl.code=...`), run in a process of its own

# --- tags ------------------------------------------------------------------------------------------------------------
NOTE_TAG = "mlflow.note.content"  # the run's description, rendered as markdown in the UI
PARENT_TAG = "mlflow.parentRunId"  # what MLflow's own nested runs set, so the UI nests children under the sweep
SWEEP_TAG = "backprop_lab.sweep"  # "parent" on a sweep's run
JOB_NUM_TAG = "hydra.job.num"  # on a sweep's child: the number of the job that started it
ALSO_IN = "backprop_lab.also_in."  # + a parent's id, "reused": a run of an earlier sweep that a resumed one counts
# + a parent's id, on a FINISHED child whose job failed after the run ended (printing its line, say); + "job" and
# the job's number, on the parent, for a job that failed without a run: the error, for the parent to count
JOB_FAILED = "backprop_lab.job_failed."
OWNER_TAG = "backprop_lab.owner"  # host/boot/pid/start of the process that must end the run
ERROR_TAG = "error"  # why a run did not end FINISHED
CODE_TAG = "impl.code_sha256"  # the SHA-256 of the file a run ran, logged beside it as `code/<name>`
OWN_PROCESS_TAG = "impl.own_process"  # "true": a learner's code, run in a process of its own (isolation/)
CONFIG_TAG = "config.sha256"  # run_params.config_digest of the config the run ran, set when it started
SHAPE_TAG = "config.shape"  # run_params.shape_digest: runs that take about as long share it
EDITED_TAG = "rerun.config_edited"  # on a rerun of a config accepted though it was edited: what was found
CODE_CHANGED_TAG = "rerun.code_changed"  # on a rerun of today's file, accepted though it changed: what was found
LOGGED_CODE_TAG = "rerun.ran_logged_code"  # on a rerun of the copy logged with the run: which copy
THEORY_TAG = "theory.parted"  # theory.parted_note: each theory/* prediction beyond theory.FACTOR of its measurement

# --- metrics ---------------------------------------------------------------------------------------------------------
CONTRACT = [  # the metric names every run logs: a contract with whoever reads the store
    *(f"data/{s}_{k}" for s in ("train", "valid") for k in ("mean_raw", "std_raw", "mean", "std")),
    "data/normalized_ok",
    *(f"init/{p}_{k}" for p in ("w", "b") for k in ("mean", "std")),  # at step = layer
    "act/mean",
    "act/std",
    "act/last_hidden_std",
    "act/std_log10_growth",
    "back/std",
    "back/std_log10_growth",
    "loss",
    "grad/all_close",
    "grad/inconclusive_nodes",
    "grad/all_finite",
    "grad/worst_error_ratio",
    "grad/worst_max_rel_diff",
    "time/forward_ms",
    "time/backward_ms",
    "time/backward_autograd_ms",
    "time/forward_iqr_ms",
    "time/backward_iqr_ms",
    "time/backward_autograd_iqr_ms",
    "time/backward_vs_autograd",
    "time/backward_vs_autograd_no_xg",
    "time/threads",
    "time/load_avg_1min",
]
