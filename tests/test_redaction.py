"""Redaction over every character a user can type, in the user name and the password of a URI, percent-encoded or
not, in every form the URI takes in a text here: the override the user typed (bare, Hydra-escaped or quoted), the
job's override as Hydra rewrites it in a sweep, the YAML of Hydra's `.hydra/*.yaml`, a repr (doubled backslashes),
JSON, a log line. The password is `Kq7v<c>Zx9w`: neither half may be left anywhere."""

from __future__ import annotations

import functools
import json
import shlex
import string
import subprocess
import sys
from urllib.parse import quote, urlsplit

import pytest
from helpers import FAST, SCRIPT
from hydra._internal.grammar.utils import escape_special_characters
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from backprop_lab.core import redaction

PARSER = OverridesParser.create()
HALVES = ("Kq7v", "Zx9w")
HOST = "127.0.0.1:9/api"
ENDS_AUTHORITY = "/?#"  # urllib.parse: the authority ends at the first of these; a password holds them encoded


@pytest.fixture(autouse=True)
def nothing_learnt(monkeypatch):
    monkeypatch.setattr(redaction, "_known", set())


def typed_forms(uri: str) -> list[str]:
    """The overrides a user can type for this URI, as Hydra's grammar reads them: each checked to give the URI."""
    single = "'" + uri.replace("\\'", "\\\\'").replace("'", "\\'") + "'"
    double = '"' + uri.replace('\\"', '\\\\"').replace('"', '\\"') + '"'
    forms = []
    for value in (uri, escape_special_characters(uri), single, double):
        try:
            parsed = PARSER.parse_override(f"tracking.uri={value}")
        except Exception:
            continue  # not one Hydra's grammar takes (a bare `'`, `{`, `,` ...)
        if parsed.value() == uri:
            forms.append(f"tracking.uri={value}")
    assert forms, uri
    return forms


@functools.cache
def texts(uri: str) -> dict[str, list[str]]:
    """Where the URI shows, for each override a user can type: what was typed, the job's override in a sweep,
    Hydra's saved files (YAML, which breaks a long line at a space, or anywhere in a double-quoted string), a repr,
    JSON, the command line as MLflow records it (shell-quoted), the launcher's log line, an error message."""
    shown = {}
    for typed in typed_forms(uri):
        job = f"tracking.uri={PARSER.parse_override(typed).get_value_element_as_str()}"
        saved = {"hydra": {"overrides": {"task": [typed, job]}, "job": {"override_dirname": f"impl=nn,{job}"}},
                 "tracking": {"uri": uri}, "folded": [f"{'x' * 70} {typed}", f"{'x' * 70}\t {uri}"]}  # fmt: skip
        shown[typed] = [typed, job, OmegaConf.to_yaml(saved), repr([typed, job]), json.dumps([typed, job, uri]),
                        shlex.join(["run.py", typed]), f"#0 : impl=nn {job}",
                        f"error: tracking server {uri} does not answer"]  # fmt: skip
    return shown


def uris(c: str) -> dict[str, str]:
    """URIs with `c` in the password, a token or the user name, bare where it can be and percent-encoded: each
    with what redaction shows of it."""
    password, user, encoded_user = f"{HALVES[0]}{c}{HALVES[1]}", f"al{c}ce", quote(f"al{c}ce", safe="")
    shown = {f"http://alice:{quote(password, safe='')}@{HOST}": f"http://alice:***@{HOST}",
             f"http://{encoded_user}:{HALVES[0]}-{HALVES[1]}@{HOST}": f"http://{encoded_user}:***@{HOST}"}  # fmt: skip
    if not set(c) & set(ENDS_AUTHORITY):
        shown[f"http://alice:{password}@{HOST}"] = f"http://alice:***@{HOST}"
    if not set(c) & set(ENDS_AUTHORITY + ":"):  # a `:` would make what is before it the user name
        shown[f"https://{password}@{HOST}"] = f"https://***@{HOST}"
        shown[f"http://{user}:{HALVES[0]}-{HALVES[1]}@{HOST}"] = f"http://{user}:***@{HOST}"
    return shown


# every printable ASCII character, space included, then a few together: a space stops the pattern, then the rest
# must be known in every spelling (a JSON of a Hydra-quoted override escapes a `"` twice)
CHARACTERS = [*string.printable[:-5], "@' \"", " '\\\"", "%40 :,=", "\"@'\\,(x) !$*"]


def assert_hidden(text: str, where: str) -> None:
    for half in HALVES:
        assert half not in text, f"{where}: {text!r}"


@pytest.mark.parametrize("c", CHARACTERS)
def test_a_secret_given_on_the_command_line_is_hidden_in_every_form(c):
    for uri, shown in uris(c).items():
        try:  # the URIs are as urllib.parse reads them: the userinfo ends at the last `@`, the password after the
            parts = urlsplit(uri)  # first `:` (it refuses an unbalanced `[`; so does requests)
            assert (parts.hostname, parts.port) == ("127.0.0.1", 9)
            assert all(half in (parts.password or parts.username) for half in HALVES)
        except ValueError:
            assert "[" in uri or "]" in uri
        for typed, seen in texts(uri).items():
            redaction.learn_arguments(["-m", "impl=nn,module", typed])
            for text in seen:
                assert_hidden(redaction.redact(text), typed)
            assert redaction.redact(uri) == shown or " " in c  # the rest is kept (a user name that a space cuts
            # short in running text, the pattern masks too)


@pytest.mark.parametrize("c", [c for c in CHARACTERS if " " not in c])
def test_a_secret_first_seen_in_a_text_is_hidden_there_and_after(c):
    """A URI from a config file, or a worker process that did not see the command line: the pattern alone, from
    each form, hides the secret there and learns it. A space, which ends a URI in running text, needs it learnt
    first, from the command line or the environment."""
    for uri, shown in uris(c).items():
        driver = f"the driver said: {HALVES[0]}{uri.split(HALVES[0])[1]} was refused"
        for seen in texts(uri).values():
            for text in seen:
                redaction._known.clear()
                assert_hidden(redaction.redact(text), text)
                assert_hidden(redaction.redact(driver), text)  # learnt, in whatever form it was seen
            assert redaction.redact(uri) == shown


@pytest.mark.parametrize(
    "text, expected",
    [
        ("http://alice:pw@h:5000/x", "http://alice:***@h:5000/x"),
        ("http://alice:p@ssw0rdXYZ@127.0.0.1:9", "http://alice:***@127.0.0.1:9"),  # the last `@` ends the userinfo
        ("tracking.uri=http\\://alice\\:pw@h\\:5000", "tracking.uri=http\\://alice\\:***@h\\:5000"),  # Hydra's escape
        ("['tracking.uri=http\\\\://alice\\\\:pw@h']", "['tracking.uri=http\\\\://alice\\\\:***@h']"),  # its repr
        ("postgresql+psycopg://u:p%40ss@db/mlflow", "postgresql+psycopg://u:***@db/mlflow"),
        ("postgresql://mlflow@db/mlflow", "postgresql://***@db/mlflow"),  # a lone user name may be a token too
        ("https://ghp_token123@host/x", "https://***@host/x"),
        ("https://h/x?token=abc&a=1", "https://h/x?token=***&a=1"),
        ("see http://h:5000/x and write to bob@example.com", "see http://h:5000/x and write to bob@example.com"),
        ("http://h:5000/a@b", "http://h:5000/a@b"),  # an `@` in the path is not userinfo
    ],
)
def test_redact(text, expected):
    assert redaction.redact(text) == expected


def test_a_secret_once_seen_is_redacted_wherever_it_appears():
    redaction.redact("mysql://u:hunter2-x@db/m")
    assert redaction.redact("the driver said: password hunter2-x rejected") == "the driver said: password *** rejected"
    redaction.learn_environment({"SOME_API_TOKEN": "tok-123456", "PATH": "/usr/bin", "X_URI": "http://a:pw-12@h"})
    assert redaction.redact("Authorization: tok-123456, pw-12") == "Authorization: ***, ***"
    assert redaction.redact("/usr/bin") == "/usr/bin"


def test_a_closed_descriptor_is_held_on_the_null_device(tmp_path):
    """Started with stdin, stdout and stderr closed, the process holds each on the null device, so that the next
    file it opens (the store, a log) does not take the number 1 and get what is written to stdout."""
    code = ("import os, sys; from backprop_lab.core import redaction; redaction.protect_process([]); "
            "f = open(sys.argv[1], 'w'); print('ok'); sys.stdout.flush(); "
            "f.write(' '.join([str(f.fileno() > 2)] + [os.readlink(f'/proc/self/fd/{n}') for n in (0, 1, 2)]))")
    command = f'{sys.executable} -c "{code}" {tmp_path / "fds"} <&- >&- 2>&-'
    assert subprocess.run(["bash", "-c", command], timeout=60).returncode == 0
    assert (tmp_path / "fds").read_text() == "True /dev/null /dev/null /dev/null"


@pytest.mark.slow
@pytest.mark.parametrize("shell", ["RUN >&-", "RUN <&- >&- 2>&-"])
def test_a_closed_stream_costs_its_output_not_the_run(tmp_path, shell):
    """Python sets sys.stdout to None when the process starts with its descriptor closed: the run completes and
    exits 0, its output asked for nowhere (the store and Hydra's files are whole)."""
    from mlflow.tracking import MlflowClient

    run = f"{sys.executable} {SCRIPT} {' '.join(FAST)}"
    done = subprocess.run(["bash", "-c", shell.replace("RUN", run)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    assert (done.returncode, done.stderr) == (0, ""), done.stderr[-3000:]
    (config,) = tmp_path.glob("outputs/*/*/.hydra/config.yaml")
    assert OmegaConf.load(config).data.name == "synthetic"
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("backprop-lab").experiment_id])
    assert run.info.status == "FINISHED"
