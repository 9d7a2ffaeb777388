"""Column contract of the result parquet files that sweeps write and reports read.

`trials.parquet` holds one row per trial, `history.parquet` one row per history
event of every trial. Readers must tolerate missing columns (older schema versions)
and extra ones (newer outcomes); `explorer.analysis.load_results` unifies them.
"""

from __future__ import annotations

SCHEMA_VERSION = 1

# Status of a trial row.
COMPLETED = "completed"  # synthesis finished (target reached or not: see target_reached)
FAILED = "failed"  # crashed or NaN loss; `error` says why

# Columns every trials row has (config fields first, then outcomes, then bookkeeping).
CONFIG_COLUMNS = (
    "model",  # str: seed architecture name, e.g. "lenet300"
    "method",  # str: "nest" (grow + prune) or a pruning-only baseline
    "ratio",  # float: seed width ratio r
    "density",  # float: seed connection density d
    "alpha",  # float: birth strength
    "beta",  # float: growth ratio
    "seed",  # int: random seed of the trial
    "budget",  # str: smoke | quick | paper
    "target_error",  # float: validation error the growth phase aims at
)
OUTCOME_COLUMNS = (
    "growth_seconds",  # float: wall seconds of the growth phase
    "growth_samples",  # int: training samples processed in the growth phase
    "pruning_seconds",  # float
    "pruning_samples",  # int
    "post_growth_params",  # int: active connections after growth
    "post_growth_val_error",  # float
    "final_params",  # int: active connections after pruning
    "final_biases",  # int
    "final_flops",  # int: 2 x active MACs over all active connections
    "final_flops_nonzero",  # int: FLOPs skipping zero inputs (paper's Table 4 convention)
    "dense_params",  # int: weights of the dense reference network
    "dense_flops",  # int
    "compression",  # float: dense_params / final_params
    "val_error",  # float: final validation error
    "test_error",  # float: final test error
    "target_reached",  # bool: growth reached target_error on validation data
    "layers_json",  # str: JSON list of per-layer dicts (name, kind, weights, conv_pct,
    # act_pct, flops, flops_nonzero), the paper's Table 4 rows of the final model
)
BOOKKEEPING_COLUMNS = (
    "config_id",  # str: hash of the canonical synthesis config; keys rows across files
    "trial_id",  # str: Ray Tune's trial id
    "study",  # str
    "experiment_id",  # str
    "status",  # str: COMPLETED or FAILED
    "error",  # str: failure reason, "" when completed
    "attempt",  # int: 0 for the first try, +1 per retry
    "started_at",  # str: ISO time
    "finished_at",  # str: ISO time
    "schema_version",  # int
)
TRIAL_COLUMNS = CONFIG_COLUMNS + OUTCOME_COLUMNS + BOOKKEEPING_COLUMNS

# Where the trial's last attempt ran; sweeps write them, older results lack them (optional).
NODE_COLUMNS = (
    "node_id",  # str: Ray node id (hex)
    "node_ip",  # str: the node's IP address
    "hostname",  # str: the node's host name
)

# One row per history event (see nest_core.synthesis.history.Event).
HISTORY_COLUMNS = (
    "config_id",
    "trial_id",
    "phase",  # str: grow_connections | grow_neurons | grow_maps | train | prune | partial_area
    "step",  # int: synthesis iteration
    "layer",  # str: layer name, "" for whole-model events
    "added",  # int: connections (or neurons/maps, see phase) added
    "removed",  # int
    "params",  # int: active connections after the event
    "val_error",  # float
    "seconds",  # float: wall seconds since the synthesis started
    "samples",  # int: training samples processed since the synthesis started
    "schema_version",
)

# Keys of manifest.json, one per experiment folder.
MANIFEST_KEYS = (
    "study",  # str: study name
    "study_file",  # str: path of the study YAML
    "budget",  # str
    "search",  # str: grid | optuna
    "command",  # str: the command line
    "git_sha",  # str
    "git_dirty",  # bool
    "packages",  # dict: name -> version
    "device",  # str: e.g. "cpu (2 cores)" or the CUDA device name
    "data_hashes",  # dict: file name -> sha256
    "seeds",  # list[int]
    "created_at",  # str: ISO time
)
