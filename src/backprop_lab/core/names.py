"""The names a run leaves in the store, and the product's sentinel: what the UI, the report, the rerun and any reader
of the store rely on, stated once. Nothing here imports anything."""

from __future__ import annotations

NONE = "none"  # no bug, no objective, no divergent node: the value a config and a tag say "nothing" with
# a run's verdict (the grad.verdict tag) in the word every line and table says it with
VERDICT_WORDS = {"ok": "ok", "wrong": "WRONG", "partial": "partial", "inconclusive": "inconclusive"}
# the config groups that say where a run is logged and how a sweep runs, not what the run asks: no params of a run,
# no part of a sweep's name
WHERE_AND_HOW = ("tracking", "sweep")
USER_IMPL = "user"  # the impl option whose code is a learner's (`impl.code=...`), run in a process of its own
REFERENCE_IMPL = "autograd"  # the impl every check and every timing ratio is against
RELU = "relu"  # model.activation: the lesson's ReLU, shifted by model.relu_shift; NONE: a linear stack
BUG_IMPL = "functional"  # the impl the bank's bugs are put into (bug.name)

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
# each metric name a reader of the store (the report, the UI's columns, the rerun) looks for, stated here once
ACT_ALL_FINITE = "act/all_finite"
ACT_LAST_HIDDEN_STD = "act/last_hidden_std"
ACT_MEAN = "act/mean"
ACT_RELU_MEAN = "act/relu_mean"
ACT_RELU_STD = "act/relu_std"
ACT_STD = "act/std"
ACT_STD_LOG10_GROWTH = "act/std_log10_growth"
BACK_STD = "back/std"
BACK_STD_LOG10_GROWTH = "back/std_log10_growth"
BACK_W_GRAD_STD = "back/w_grad_std"
BACK_W_GRAD_TO_W_STD = "back/w_grad_to_w_std"
DATA_NORMALIZED_OK = "data/normalized_ok"
DATA_TRAIN_MEAN = "data/train_mean"
DATA_TRAIN_MEAN_RAW = "data/train_mean_raw"
DATA_TRAIN_STD = "data/train_std"
DATA_TRAIN_STD_RAW = "data/train_std_raw"
DATA_VALID_MEAN = "data/valid_mean"
DATA_VALID_MEAN_RAW = "data/valid_mean_raw"
DATA_VALID_STD = "data/valid_std"
DATA_VALID_STD_RAW = "data/valid_std_raw"
GRAD_ALL_CLOSE = "grad/all_close"
GRAD_ALL_FINITE = "grad/all_finite"
GRAD_INCONCLUSIVE_NODES = "grad/inconclusive_nodes"
GRAD_NODES_NOT_GIVEN = "grad/nodes_not_given"
GRAD_WORST_ERROR_RATIO = "grad/worst_error_ratio"
GRAD_WORST_MAX_REL_DIFF = "grad/worst_max_rel_diff"
MEM_PEAK_RSS_MB = "mem/peak_rss_mb"
SEARCH_BEST_OBJECTIVE = "search/best_objective"
SEARCH_OBJECTIVE = "search/objective"
SWEEP_JOBS = "sweep/jobs"
SWEEP_JOBS_FAILED = "sweep/jobs_failed"
SWEEP_JOBS_FINISHED = "sweep/jobs_finished"
SWEEP_WALL_S = "sweep/wall_s"
THEORY_ACT_STD = "theory/act_std"
THEORY_BACK_STD = "theory/back_std"
THEORY_RELU_MEAN = "theory/relu_mean"
THEORY_RELU_STD = "theory/relu_std"
# a stack of square layers (model.depth): 02b_initializing's questions, one number each (forward.stack_summaries)
STACK_FIRST_NONFINITE = "stack/first_nonfinite_layer"  # NaN: none within the stack
STACK_FIRST_ZERO = "stack/first_zero_layer"  # every entry exactly 0 (underflow); NaN: none
STACK_LAST_STD = "stack/last_std"  # of the last square layer's output (after its activation)
STACK_THEORY_LAST_STD = "stack/theory_last_std"
STACK_FIRST_MEAN_SQ = "stack/first_mean_sq"  # of the first layer's a @ x
STACK_THEORY_FIRST_MEAN_SQ = "stack/theory_first_mean_sq"  # n_in x the weights' variance x E[x^2]
STACK_FIRST_RELU_MEAN_SQ = "stack/first_relu_mean_sq"  # after its ReLU (a ReLU stack only)
STACK_THEORY_FIRST_RELU_MEAN_SQ = "stack/theory_first_relu_mean_sq"  # half of a @ x's
TIME_BACKWARD_GFLOP = "time/backward_gflop"
TIME_BACKWARD_MS = "time/backward_ms"
TIME_BACKWARD_VS_AUTOGRAD = "time/backward_vs_autograd"
TIME_BACKWARD_VS_AUTOGRAD_NO_XG = "time/backward_vs_autograd_no_xg"
TIME_FORWARD_GFLOP = "time/forward_gflop"
TIME_FORWARD_MS = "time/forward_ms"
TIME_LOAD_AVG_1MIN = "time/load_avg_1min"
TIME_THREADS = "time/threads"
WALL_CHECK_S = "wall/check_s"
WALL_RUN_S = "wall/run_s"
WALL_STARTUP_S = "wall/startup_s"
WALL_TIMING_S = "wall/timing_s"

CONTRACT = [  # the metric names every run logs: a contract with whoever reads the store
    DATA_TRAIN_MEAN_RAW, DATA_TRAIN_STD_RAW, DATA_TRAIN_MEAN, DATA_TRAIN_STD,
    DATA_VALID_MEAN_RAW, DATA_VALID_STD_RAW, DATA_VALID_MEAN, DATA_VALID_STD,
    DATA_NORMALIZED_OK,
    *(f"init/{p}_{k}" for p in ("w", "b") for k in ("mean", "std")),  # at step = layer
    ACT_MEAN,
    ACT_STD,
    ACT_LAST_HIDDEN_STD,
    ACT_STD_LOG10_GROWTH,
    BACK_STD,
    BACK_STD_LOG10_GROWTH,
    "loss",
    GRAD_ALL_CLOSE,
    GRAD_INCONCLUSIVE_NODES,
    GRAD_ALL_FINITE,
    GRAD_WORST_ERROR_RATIO,
    GRAD_WORST_MAX_REL_DIFF,
    TIME_FORWARD_MS,
    TIME_BACKWARD_MS,
    "time/backward_autograd_ms",
    "time/forward_iqr_ms",
    "time/backward_iqr_ms",
    "time/backward_autograd_iqr_ms",
    TIME_BACKWARD_VS_AUTOGRAD,
    TIME_BACKWARD_VS_AUTOGRAD_NO_XG,
    TIME_THREADS,
    TIME_LOAD_AVG_1MIN,
]
