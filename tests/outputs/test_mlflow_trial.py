"""MLflow tracking as an outside trial used it: a URI with a user and password, malformed
URIs, an in-memory store, a second target, control characters in names, a resumed run's
final metrics, and a copy of a run directory (issue 28)."""

from __future__ import annotations

import base64
import http.server
import json
import os
import shutil
import socket
import threading

import pytest
from typer.testing import CliRunner

from runner.cli import app
from runner.outputs import tracking
from runner.outputs.tracking_uri import TrackingError, check_reachable, check_uri, mask, masked_copy
from runner.spec import SpecError, load_spec
from tests.outputs.test_mlflow import SPEC, _run_dir, _spec, needs_mlflow, pipe

PASSWORD = "s3cretPW"


def test_mask_hides_the_password_of_every_uri_in_a_text():
    assert mask(f"--set outputs.mlflow.tracking_uri=http://alice:{PASSWORD}@127.0.0.1:5917 --quiet") == \
        "--set outputs.mlflow.tracking_uri=http://alice:***@127.0.0.1:5917 --quiet"
    assert mask("http://alice@127.0.0.1:5917") == "http://alice@127.0.0.1:5917"
    assert mask("sqlite:///a:b@c.db") == "sqlite:///a:b@c.db"
    assert mask(3) == 3


@pytest.mark.parametrize("uri, message", [
    ("http://127.0.0.1:notaport", "http://127.0.0.1:notaport is not a valid tracking URI: "
                                  "Port could not be cast to integer value as 'notaport'"),
    (f"http://alice:{PASSWORD}@127.0.0.1:99999", "http://alice:***@127.0.0.1:99999 is not a valid tracking URI: "
                                                 "Port out of range 0-65535"),
    ("sqlite:///", "sqlite:/// is an in-memory database that keeps nothing: name its file (sqlite:///mlflow.db)"),
    ("sqlite:///:memory:", "sqlite:///:memory: is an in-memory database that keeps nothing: "
                           "name its file (sqlite:///mlflow.db)"),
])
def test_unusable_uris_are_refused_in_one_line(uri, message):
    with pytest.raises(TrackingError) as info:
        check_uri(uri)
    assert str(info.value) == message


class _BasicAuth(http.server.BaseHTTPRequestHandler):
    expected = "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()

    def do_GET(self):  # noqa: N802
        ok = self.path == "/health" and self.headers.get("Authorization") == self.expected
        self.send_response(200 if ok else 500)
        self.end_headers()
        self.wfile.write(b"OK" if ok else b"no")

    def log_message(self, *args):
        pass


@pytest.fixture
def auth_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _BasicAuth)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_health_check_sends_the_uris_user_and_password_as_basic_auth(auth_server):
    check_reachable(f"http://alice:{PASSWORD}@127.0.0.1:{auth_server}")  # no "Name or service not known"
    with pytest.raises(TrackingError) as info:
        check_reachable(f"http://alice:wrong@127.0.0.1:{auth_server}")
    assert str(info.value) == f"http://alice:***@127.0.0.1:{auth_server} answers its health check with HTTP 500"


def test_a_file_with_a_password_is_uploaded_as_a_masked_copy(tmp_path):
    plain, secret = tmp_path / "run" / "history.json", tmp_path / "run" / "spec.yaml"
    plain.parent.mkdir()
    plain.write_text('{"loss": [1.0]}')
    secret.write_text(f"tracking_uri: http://alice:{PASSWORD}@h:1\n")
    (tmp_path / "copies").mkdir()
    assert masked_copy(plain, tmp_path / "copies") == str(plain)
    copy = masked_copy(secret, tmp_path / "copies")
    assert copy != str(secret) and copy.endswith("spec.yaml")
    assert open(copy).read() == "tracking_uri: http://alice:***@h:1\n"


def _finished(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "manifest.json").write_text(json.dumps(
        {"name": "tracked", "status": "completed", "pid": os.getpid(), "host": socket.gethostname()}))
    return run_dir


def test_pipe_log_says_a_malformed_uri_in_one_line_as_a_usage_mistake(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "mlflow_available", lambda: True)
    run_dir = _finished(tmp_path)
    result = CliRunner().invoke(app, ["log", str(run_dir), str(run_dir), "--mlflow", "http://127.0.0.1:notaport"])
    assert result.exit_code == 2  # once for the command, not once per run
    assert result.stderr == ("pipe log: --mlflow http://127.0.0.1:notaport is not a valid tracking URI: "
                             "Port could not be cast to integer value as 'notaport'\n")
    result = CliRunner().invoke(app, ["log", str(run_dir), "--mlflow", "sqlite:///"])
    assert (result.exit_code, result.stderr.count("\n")) == (2, 1)
    assert "in-memory database that keeps nothing" in result.stderr


def test_pipe_log_refuses_an_experiment_with_control_characters(tmp_path, monkeypatch):
    monkeypatch.setattr(tracking, "mlflow_available", lambda: True)
    run_dir = _finished(tmp_path)
    result = CliRunner().invoke(app, ["log", str(run_dir), "--mlflow", "sqlite:///x.db", "--experiment", "a\x1b[31mb"])
    assert result.exit_code == 3
    assert result.stderr == (f"pipe log: {run_dir}: --experiment 'a\\x1b[31mb' holds control characters: "
                             "use a plain name\n")
    assert not (tmp_path / "x.db").exists()


def test_validate_refuses_control_characters_in_mlflow_names(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC + '  mlflow: {tracking_uri: "sqlite:///m.db", run_name: "r\\rforged"}\n')
    with pytest.raises(SpecError) as info:
        load_spec(path)
    assert [str(e) for e in info.value.errors] == [
        f"{path}:24:54: outputs.mlflow.run_name: holds control characters: use a plain name"]


def test_mlflow_json_keeps_each_target(tmp_path):
    tracking._remember(tmp_path, f"http://alice:{PASSWORD}@h:1", "1", "a" * 32)
    tracking._remember(tmp_path, "sqlite:///other.db", "2", "b" * 32)
    tracking._remember(tmp_path, f"http://alice:{PASSWORD}@h:1", "1", "a" * 32)
    assert json.loads((tmp_path / "mlflow.json").read_text()) == {
        "tracking_uri": "http://alice:***@h:1", "experiment_id": "1", "run_id": "a" * 32,
        "also": [{"tracking_uri": "sqlite:///other.db", "experiment_id": "2", "run_id": "b" * 32}]}
    assert [r["run_id"] for r in tracking._records(tmp_path)] == ["a" * 32, "b" * 32]


# ---------------------------------------------------------------------------- a real server


@pytest.fixture(scope="module")
def with_password(server, tmp_path_factory):
    """A run tracked at the server's URI with a user and password in it."""
    cwd = tmp_path_factory.mktemp("password")
    uri = server.uri.replace("http://", f"http://alice:{PASSWORD}@")
    spec = _spec(cwd, {"experiment": "credentials"})
    result = pipe("run", spec, "--set", f"outputs.mlflow.tracking_uri={uri}", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return result, _run_dir(result, cwd), uri


@pytest.mark.slow
@needs_mlflow
def test_a_uri_with_a_password_is_tracked_and_the_password_is_nowhere(server, with_password):
    from mlflow.tracking import MlflowClient

    result, run_dir, uri = with_password
    shown = server.uri.replace("http://", "http://alice:***@")
    assert result.stderr == ("pipe run: warning: outputs.mlflow.tracking_uri holds a password, which the run's "
                             "spec.yaml keeps (pipe shows it as ***): set MLFLOW_TRACKING_USERNAME and "
                             "MLFLOW_TRACKING_PASSWORD instead\n")
    assert f"in experiment 'credentials' at {shown}" in result.stdout
    assert PASSWORD not in result.stdout + result.stderr
    known = json.loads((run_dir / "mlflow.json").read_text())
    assert known["tracking_uri"] == shown
    assert PASSWORD not in (run_dir / "manifest.json").read_text()
    client = MlflowClient(server.uri)
    run = client.get_run(known["run_id"])
    assert run.data.params["outputs.mlflow.tracking_uri"] == shown
    assert all(PASSWORD not in v for v in [*run.data.params.values(), *run.data.tags.values()])
    for name in ("spec.yaml", "manifest.json"):
        assert PASSWORD not in open(client.download_artifacts(run.info.run_id, name, str(run_dir.parent))).read()
    again = pipe("log", run_dir, "--mlflow", uri, cwd=run_dir.parent)
    assert again.returncode == 0, again.stderr
    assert again.stdout == f"{run_dir}: mlflow: run {known['run_id']} in experiment 'credentials' at {shown} " \
                           "(already uploaded: unchanged)\n"


@pytest.mark.slow
@needs_mlflow
def test_a_copy_of_a_run_directory_does_not_upload_into_the_originals_run(server, with_password, tmp_path):
    _, run_dir, _ = with_password
    copy = tmp_path / "copy"
    shutil.copytree(run_dir, copy)
    (copy / "mlflow.json").unlink()
    result = pipe("log", copy, "--mlflow", server.uri, "--experiment", "credentials", cwd=tmp_path)
    run_id = json.loads((run_dir / "mlflow.json").read_text())["run_id"]
    assert result.returncode == 3
    assert result.stderr == (f"pipe log: {copy}: MLflow run {run_id} holds {run_dir.resolve()}, of which this run "
                             "directory is a copy (the same run key): upload that one, or copy the spec and "
                             "run it again\n")


def test_the_resume_line_shows_a_password_as_stars():
    import signal

    from runner.commands.run import command_line
    from runner.run.interrupts import RunInterrupted

    error = RunInterrupted(signal.SIGTERM)
    error.run_dir, error.epochs_done, error.resume_from = "runs/r/1", 2, "runs/r/1"
    error.command_line = command_line(["spec.yaml"], [f"outputs.mlflow.tracking_uri=http://alice:{PASSWORD}@h:1"], False)
    text = error.report("run")
    assert text.splitlines()[-1] == ("resume with: pipe run spec.yaml --set "
                                     "outputs.mlflow.tracking_uri=http://alice:***@h:1 --resume runs/r/1")
