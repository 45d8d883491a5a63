"""A password in every place a tracking URI can appear (a single run, a sweep, a joblib sweep, the report, a rerun,
error paths) never reaches the console, MLflow's params, tags or artifacts, the store, or any file the project or
Hydra writes; and a logged config is data, never resolved."""

from __future__ import annotations

import base64
import random
import string
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import preloaded
import pytest
from helpers import FAST, ROOT, MlflowServer
from hydra._internal.grammar.utils import escape_special_characters
from mlflow.tracking import MlflowClient

from backprop_lab.cli import USER_ERROR_EXIT
from backprop_lab.config.validation import from_logged
from backprop_lab.core.errors import ConfigError

# Every character a user can type in a password that an HTTP client takes bare: `@` (the userinfo ends at the last
# one), quotes, a space, `:`, `,`, `=`, Hydra's and a shell's specials; `#`, `/`, `?` and `\\` end or break the URI,
# so they are percent-encoded, as is an `@` once more. Between them, fragments that no spelling of the password
# changes (encoded, escaped, quoted): none may be left anywhere. Drawn here, not written, so that a dirty tree's
# logged git diff does not hold them; each with capitals and letters past `f`, so that no run id holds one by chance.
SPECIALS = ["@", "'", '"', " ", ":", ",", "%23", "%40", "=", "!", "$", "(", ")", "*", "%5C", "%2F", ";", "&", "+", "~",
            "|", "<", ">", "^", "`", "{", "}", "%3F", ""]  # fmt: skip
_draw = random.Random(18)
FRAGMENTS = ["".join(_draw.choice(chars) for chars in (string.ascii_uppercase, "ghijklmnopqrstuvwxyz", string.digits,
                                                       string.ascii_uppercase, "ghijklmnopqrstuvwxyz"))
             for _ in SPECIALS]  # fmt: skip
PASSWORD = "".join(f + special for f, special in zip(FRAGMENTS, SPECIALS))
BARE = ["@", " ", ":", ",", "%23", "%40", "=", "$", "(", ")", "*", "%5C", "%2F", "+", "|", "{", "}", "%3F", ""]  # Hydra
# takes these in a value unquoted, escaped
BARE_PASSWORD = "".join(f + special for f, special in zip(FRAGMENTS, BARE))
BASIC_AUTH = base64.b64encode(f"alice:{unquote(PASSWORD)}".encode())  # the header the client sends


def script(name: str, cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    import os

    return preloaded.run([sys.executable, str(ROOT / "scripts" / f"{name}.py"), *args], cwd=cwd, text=True,
                          capture_output=True, timeout=300, env=os.environ | (env or {}))  # fmt: skip


def hydra_quoted(key: str, value: str) -> str:
    """The override a user types for a value with quotes and spaces: Hydra's double-quoted string."""
    return f'{key}="{value.replace(chr(34), chr(92) + chr(34))}"'


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    store = tmp_path_factory.mktemp("server")
    srv = MlflowServer(f"sqlite:///{store / 'mlflow.db'}", store / "artifacts")
    srv.store = store
    yield srv
    srv.stop()


def authenticated(server) -> str:
    return server.url.replace("http://", f"http://alice:{PASSWORD}@")


def assert_no_leak(*places) -> None:
    """`places`: folders (every file under them, read as bytes) and texts (console output). Neither a fragment of
    the password, in whatever spelling, nor the basic-auth header that holds it."""
    for place in places:
        if isinstance(place, Path):
            for path in place.rglob("*"):
                if path.is_file():
                    held = path.read_bytes()
                    for secret in (*(f.encode() for f in FRAGMENTS), BASIC_AUTH):
                        assert secret not in held, f"{path} holds {secret!r} of the password"
        else:
            for fragment in FRAGMENTS:
                assert fragment not in place, place[-2000:]


@pytest.mark.slow
def test_a_single_run_against_a_server(server, tmp_path):
    done = script("run", tmp_path, *FAST, hydra_quoted("tracking.uri", authenticated(server)))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "alice:***@" in done.stdout  # the UI command, redacted
    assert "View run" not in done.stdout  # MLflow's own line, which holds the URI, is not printed
    assert_no_leak(done.stdout, done.stderr, tmp_path, server.store)
    assert list(tmp_path.glob("outputs/*/*/.hydra/overrides.yaml"))  # Hydra wrote its files, redacted


@pytest.mark.slow
@pytest.mark.parametrize("launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]])
def test_a_sweep_against_a_server(server, tmp_path, launcher):
    """The two ways to type such a URI, each in one launcher: escaped (`http\\://alice\\:PW\\ ...@`, as Hydra
    also writes it in a sweep's job overrides), and quoted (kept quoted there, its space bare: only the secret
    learnt from the command line hides it, in a joblib worker too). The child's overrides tag, the launch line,
    multirun.yaml and each job's .hydra/*.yaml all see that form."""
    if launcher:
        uri = hydra_quoted("tracking.uri", authenticated(server))
    else:
        uri = f"tracking.uri={escape_special_characters(authenticated(server).replace(PASSWORD, BARE_PASSWORD))}"
    done = script("run", tmp_path, "-m", *launcher, "impl=functional,nn", *FAST, uri)
    assert done.returncode == 0, done.stderr[-2000:]
    assert_no_leak(done.stdout, done.stderr, tmp_path, server.store)
    assert (tmp_path / "multirun").exists()
    client = MlflowClient(server.url)
    children = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id],
                                  "tags.`mlflow.parentRunId` != ''")  # fmt: skip
    assert children and all("***@" in c.data.tags["overrides"] for c in children)


@pytest.mark.slow
def test_report_and_rerun_against_a_server(server, tmp_path):
    uri = hydra_quoted("tracking.uri", authenticated(server))
    done = script("run", tmp_path, "-m", "impl=functional,nn", *FAST, uri)
    assert done.returncode == 0, done.stderr[-2000:]
    report = script("report", tmp_path, "--tracking-uri", authenticated(server), "--out", str(tmp_path / "report"))
    assert report.returncode == 0, report.stderr[-2000:]
    client = MlflowClient(server.url)
    (child, *_) = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id],
                                     "tags.`mlflow.parentRunId` != ''")  # fmt: skip
    rerun = script("rerun", tmp_path, child.info.run_id, "--tracking-uri", authenticated(server))
    assert rerun.returncode == 0, rerun.stdout[-2000:] + rerun.stderr[-2000:]
    assert_no_leak(report.stdout, report.stderr, rerun.stdout, rerun.stderr, tmp_path, server.store)


@pytest.mark.slow
@pytest.mark.parametrize(
    "args",
    [
        [hydra_quoted("tracking.uri", f"postgresql://u:{PASSWORD}@127.0.0.1:9/db")],
        ["-m", "impl=functional,nn", hydra_quoted("tracking.uri", f"postgresql://u:{PASSWORD}@127.0.0.1:9/db")],
        [hydra_quoted("tracking.uri", f"mysql://u:{PASSWORD}@127.0.0.1:9/db")],
        [hydra_quoted("tracking.uri", f"http://bob:{PASSWORD}@127.0.0.1:9")],
        ["-m", "impl=functional,nn", hydra_quoted("tracking.uri", f"http://bob:{PASSWORD}@127.0.0.1:9")],
        ["-m", "model.widths=[784,0,1],[784,8,1]", hydra_quoted("tracking.experiment", f"x{PASSWORD}")],  # elsewhere
    ],
)
def test_error_paths_print_no_secret(tmp_path, args):
    env = {"BACKPROP_LAB_SERVER_WAIT_S": "2", "MLFLOW_TRACKING_PASSWORD": f"x{PASSWORD}"}
    done = script("run", tmp_path, *FAST, *args, env=env)
    assert done.returncode != 0
    assert_no_leak(done.stdout, done.stderr, tmp_path)


@pytest.mark.slow
def test_report_on_an_unreachable_server_prints_no_secret(tmp_path):
    done = script("report", tmp_path, "--tracking-uri", f"http://bob:{PASSWORD}@127.0.0.1:9",
                  env={"BACKPROP_LAB_SERVER_WAIT_S": "2"})  # fmt: skip
    assert done.returncode == USER_ERROR_EXIT and len(done.stderr.strip().splitlines()) == 1
    assert "bob:***@127.0.0.1:9" in done.stderr
    assert_no_leak(done.stdout, done.stderr)


@pytest.mark.parametrize("value", ["${oc.env:HOME}", "${oc.decode:'1'}", "a ${now:%Y} b", "${whatever:x}"])
def test_a_logged_config_is_never_resolved(value):
    text = f"data: {{name: synthetic}}\ntracking: {{experiment: \"{value}\"}}\n"
    with pytest.raises(ConfigError, match=r"^tracking.experiment: the logged config holds an interpolation"):
        from_logged(text)


@pytest.mark.slow
def test_rerun_refuses_a_tampered_config_and_reads_no_environment(tmp_path):
    """A store anyone can write to: its config artifact asks for the rerunner's environment."""
    done = script("run", tmp_path, *FAST)
    assert done.returncode == 0, done.stderr
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id])
    config = Path(run.info.artifact_uri.removeprefix("file://")) / "config" / "config.yaml"
    config.write_text(config.read_text().replace("experiment: backprop-lab", "experiment: ${oc.env:REAL_SECRET}"))
    rerun = script("rerun", tmp_path, run.info.run_id, env={"REAL_SECRET": f"y{PASSWORD}"})
    assert rerun.returncode == USER_ERROR_EXIT
    assert rerun.stderr.strip().splitlines() == [
        f"error: run {run.info.run_id}: its config no longer validates (tracking.experiment: the logged config holds "
        "an interpolation ('${oc.env:REAL_SECRET}'); refused, not resolved); check out commit "
        f"{run.data.tags['git.commit']} to rerun it"
    ]
    assert len(client.search_runs([run.info.experiment_id])) == 1  # nothing ran
    assert_no_leak(rerun.stdout, rerun.stderr, tmp_path)


@pytest.mark.slow
def test_a_search_its_resume_and_a_dry_run_against_a_server(server, tmp_path):
    """The newer sweep paths (Optuna's sweeper, its optimization_results.yaml, reused runs, a dry run's listing)
    with the password in the URI."""
    uri = hydra_quoted("tracking.uri", authenticated(server))
    search = ["-m", "+experiment=shift_search", *FAST, "hydra.sweeper.n_trials=2", uri]
    done = script("run", tmp_path, *search)
    assert done.returncode == 0, done.stderr[-2000:]
    resumed = script("run", tmp_path, *search, "sweep.resume=true")
    assert resumed.returncode == 0 and resumed.stdout.count("reused run") == 2, resumed.stderr[-2000:]
    dry = script("run", tmp_path, "-m", "impl=functional,nn", *FAST, uri, "sweep.dry_run=true",
                 "tracking.experiment=dry")  # the server's other tests ran these configs in backprop-lab
    assert dry.returncode == 0 and "dry run: 2 jobs would run" in dry.stdout, dry.stderr[-2000:]
    assert list(tmp_path.glob("multirun/*/*/optimization_results.yaml"))
    assert_no_leak(done.stdout, done.stderr, resumed.stdout, resumed.stderr, dry.stdout, dry.stderr, tmp_path,
                   server.store)  # fmt: skip
