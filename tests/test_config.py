"""Every group option composes; the schema and validate() turn bad values into one-line errors naming the key."""

from __future__ import annotations

import re

import pytest
from helpers import CONF, composed, fashion_dir
from omegaconf.errors import ConfigAttributeError, ValidationError

from backprop_lab.config import run_params
from backprop_lab.config.validation import (
    MAX_FACTOR,
    MAX_LOGGED_CONFIG_BYTES,
    MAX_LOGGED_CONFIG_DEPTH,
    MAX_MIN_RUN_TIME,
    MAX_SEED,
    MAX_THREADS,
    from_logged,
    read_logged,
    validate,
)
from backprop_lab.core.errors import ConfigError

GROUPS = {g: sorted(p.stem for p in (CONF / g).glob("*.yaml")) for g in ("data", "init", "model", "impl", "timing")}
OPTIONS = [(group, option) for group, options in GROUPS.items() for option in options]


def test_every_group_has_the_documented_options():
    assert GROUPS["impl"] == sorted(["functional", "layers", "module", "module_einsum", "lean", "autograd", "nn",
                                     "user"])  # fmt: skip
    assert GROUPS["init"] == sorted(["normal", "xavier", "kaiming_normal", "kaiming_uniform", "torch_default"])
    assert GROUPS["data"] == sorted(["mnist", "synthetic", "fashion_mnist", "normal"])
    assert GROUPS["model"] == ["deep", "deep_stack", "seed"]
    assert GROUPS["timing"] == ["default", "fast", "thorough"]


@pytest.mark.parametrize("group, option", OPTIONS)
def test_every_option_composes_and_validates(group, option, tmp_path):
    # Fashion-MNIST's default directory is Debian's package, which a fresh machine lacks: tiny idx files stand in
    local_data = [f"data.path={fashion_dir(tmp_path)}"] if option == "fashion_mnist" else []
    # the deep stack's two options go together: 512 features in, a stack of 512 on them
    partners = {("data", "normal"): ["model.widths=[512,80,1]"], ("model", "deep_stack"): ["data=normal"]}
    partner = partners.get((group, option), [])
    cfg = composed(f"{group}={option}", *local_data, *partner)
    validate(cfg)
    if group == "timing":
        assert cfg.timing.min_run_time > 0
        return
    name_key = {"init": "scheme"}.get(group, "name")
    assert cfg[group][name_key] == option


def test_default_config_is_the_notebook_study():
    cfg = composed()
    assert (cfg.data.name, cfg.init.scheme, cfg.init.mode, cfg.impl.name) == (
        "mnist",
        "kaiming_uniform",
        "fan_out",
        "module",
    )
    assert list(cfg.model.widths) == [784, 80, 1] and cfg.model.relu_shift == 0.5
    assert cfg.device == "auto" and cfg.tracking.uri is None


@pytest.mark.parametrize(
    "override, error",
    [
        ("device=gpu", ValidationError),
        ("model.widths=[784,a,1]", ValidationError),
        ("seed=x", ValidationError),
        ("init.mode=sideways", ValidationError),
        ("data.n_trian=3", ConfigAttributeError),
    ],
)
def test_schema_rejects_types_and_keys(override, error):
    from hydra.errors import ConfigCompositionException

    with pytest.raises((error, ConfigCompositionException)) as info:
        composed(override, plain_config=False)
    cause = info.value.__cause__ or info.value
    assert isinstance(cause, error)


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.widths=[784,0,1]"], "model.widths"),
        (["model.widths=[784,-3,1]"], "model.widths"),
        (["model.widths=[100,80,1]"], r"model.widths\[0\]"),
        (["model.widths=[784,80,3]"], r"model.widths\[-1\]"),
        (["model.widths=[784]"], "model.widths"),
        (["data=synthetic", "data.n_features=10"], r"model.widths\[0\]: must be 10"),
        (["data=synthetic", "data.n_features=0"], "data.n_features"),
        (["data.n_train=0"], "data.n_train"),
        (["data.n_valid=-5"], "data.n_valid"),
        (["data=synthetic", "data.n_train=null"], "data.n_train: must be a positive integer for data=synthetic"),
        (["check.factor=0"], "check.factor"),
        (["check.factor=-8"], "check.factor"),
        (["data.near_zero_tol=0"], "data.near_zero_tol"),
        (["timing.min_run_time=0"], "timing.min_run_time"),
    ],
)
def test_validate_names_the_key(overrides, key):
    with pytest.raises(ConfigError, match=f"^{key}") as info:
        validate(composed(*overrides))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("study, expected", [("init_study", ("deep", 1.0)), ("impl_study", ("seed", 3.0))])
def test_studies_compose(study, expected):
    cfg = composed(f"+experiment={study}")
    assert (cfg.model.name, cfg.timing.min_run_time) == expected


def preset_jobs():
    """(preset, group, option) for each option a preset's sweep takes from a config group by glob."""
    import yaml
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.core.override_parser.types import Glob

    from backprop_lab.config import options

    for path in sorted((CONF / "experiment").glob("*.yaml")):
        params = yaml.safe_load(path.read_text()).get("hydra", {}).get("sweeper", {}).get("params", {})
        for group, spec in params.items():
            value = OverridesParser.create().parse_overrides([f"{group}={spec}"])[0].value()
            if isinstance(value, Glob):
                yield from ((path.stem, group, option) for option in value.filter(options(group)))


@pytest.mark.parametrize("preset, group, option", list(preset_jobs()))
def test_every_job_a_preset_sweeps_over_a_group_composes_and_validates(preset, group, option):
    """A preset that globs a group takes only the options a job can run without more input (impl=user needs the
    learner's file: an impl study over it would fail a job every time)."""
    cfg = composed(f"+experiment={preset}", f"{group}={option}")
    validate(cfg)
    assert "???" not in str(cfg), cfg


@pytest.mark.parametrize(
    "override, key",
    [
        ("model.relu_shift=nan", "model.relu_shift: must be a finite number"),
        ("model.relu_shift=inf", "model.relu_shift: must be a finite number"),
        ("timing.min_run_time=inf", "timing.min_run_time: must be > 0 and at most 600 seconds"),
        ("timing.min_run_time=nan", "timing.min_run_time"),
        ("timing.min_run_time=100000", "timing.min_run_time"),
        ("check.factor=inf", "check.factor: must be from 1 to 1000"),
        ("check.factor=0.9", "check.factor: must be from 1 to 1000"),
        ("data.near_zero_tol=nan", "data.near_zero_tol"),
        ("seed=-1", "seed: must be an integer from 0 to 2**64 - 1"),
        (f"seed={2**64}", "seed: must be an integer from 0 to 2**64 - 1"),
        ("tracking.experiment=''", "tracking.experiment: must be a name of 1 to 500 characters"),
        (f"tracking.experiment={'x' * 501}", "tracking.experiment: must be a name of 1 to 500 characters"),
        ("tracking.git_diff_max_bytes=-1", "tracking.git_diff_max_bytes"),
        ("model.widths=[784,100000000,1]", "model.widths: [784, 100000000, 1] on mnist needs about"),
    ],
)
def test_values_that_make_a_run_meaningless_or_endless_are_refused(override, key):
    with pytest.raises(ConfigError, match=f"^{re.escape(key)}") as info:
        validate(composed(override))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "key, edges, past, message",
    [
        ("check.factor", (1.0, MAX_FACTOR), (0.999, MAX_FACTOR + 0.001), "must be from 1 to 1000"),
        ("timing.min_run_time", (1e-6, MAX_MIN_RUN_TIME), (0.0, MAX_MIN_RUN_TIME + 0.001),
         "must be > 0 and at most 600 seconds"),
        ("timing.num_threads", (1, MAX_THREADS), (0, MAX_THREADS + 1), "must be an integer from 1 to 1024, or null"),
        ("seed", (0, MAX_SEED), (-1, MAX_SEED + 1), "must be an integer from 0 to 2**64 - 1"),
    ],
)  # fmt: skip
def test_each_bound_is_what_its_message_says(key, edges, past, message):
    """The edges the message names are allowed; one step past either is refused with that message."""
    for value in edges:
        validate(composed(f"{key}={value}"))
    for value in past:
        with pytest.raises(ConfigError, match=f"^{re.escape(f'{key}: {message}, got ')}"):
            validate(composed(f"{key}={value}"))


@pytest.mark.parametrize(
    "overrides",
    [[], ["data=synthetic", "init.gain=2", "model.relu_shift=0"], ["+experiment=init_study"], ["model=deep"],
     ["+experiment=bug_hunt", "bug=relu_unmasked", "impl=functional"], ["check.factor=1000", "timing.num_threads=3"]],
)  # fmt: skip
def test_a_logged_config_reads_back_to_the_digest_its_run_was_tagged_with(overrides):
    """The rerun checks a logged config against its `config.sha256` tag: the YAML the pipeline logs must read back
    to the very params it hashed, and hold nothing the bounds refuse."""
    from omegaconf import OmegaConf

    cfg = composed(*overrides)
    logged = read_logged(OmegaConf.to_yaml(cfg))
    assert run_params.config_digest(logged) == run_params.config_digest(OmegaConf.to_container(cfg))
    assert run_params.config_digest(logged) != run_params.config_digest(logged | {"check": {"factor": 999}})


BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi")
)  # 9**9 nodes from some 400 bytes


@pytest.mark.parametrize(
    "text, error",
    [
        (BOMB, "config/config.yaml: a YAML anchor or alias at line 1; a logged config never holds one"),
        ("data: &d {name: synthetic}\n", "config/config.yaml: a YAML anchor or alias at line 1"),
        ("[" * 5000 + "]" * 5000, f"config/config.yaml: nested deeper than {MAX_LOGGED_CONFIG_DEPTH} levels at line 1"),
        ("a:\n" + "".join(" " * i + f"k{i}:\n" for i in range(1, 40)), "config/config.yaml: nested deeper than"),
        ("seed: 0\n# " + "x" * MAX_LOGGED_CONFIG_BYTES, "config/config.yaml: 1,048,586 bytes; a logged config is"),
        ("data: [unclosed\n", "config/config.yaml: not valid YAML (while parsing a flow sequence"),
    ],
)
def test_a_logged_config_is_bounded_before_it_is_built(text, error):
    import signal

    def too_slow(signum, frame):
        raise TimeoutError("the logged config was parsed, not refused")

    previous = signal.signal(signal.SIGALRM, too_slow)
    signal.alarm(10)
    try:
        with pytest.raises(ConfigError) as info:
            from_logged(text)
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert str(info.value).startswith(error) and "\n" not in str(info.value), str(info.value)
