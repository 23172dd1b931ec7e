"""The retrain flow's steps: new data from a folder or a URL (retried on I/O, never on a 404), and the notice a
failed run sends to the webhook."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import make_project
from tasks.config import parse_params
from tasks.errors import ConfigError
from tasks.retrain import FetchError, fetch


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append(self.path)
        status, body = self.server.answers.get(self.path, [(404, b"")])[0]
        if len(self.server.answers.get(self.path, [])) > 1:
            self.server.answers[self.path].pop(0)        # the next request gets the next answer
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        self.server.posts.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
        self.send_response(404 if self.path == "/nowhere" else 200)
        self.end_headers()


@pytest.fixture
def http():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests, server.posts, server.answers = [], [], {}
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()


def _cfg(**retrain):
    return parse_params({"retrain": {"backoff": 0.0, **retrain}}).retrain


def test_folder_source_copies_its_jsonl_files(tmp_path):
    src = tmp_path / "new"
    src.mkdir()
    (src / "prompts.jsonl").write_text('{"id": 1, "prompt": "hello there"}\n')
    (src / "notes.txt").write_text("not data")
    written = fetch(_cfg(source="folder", path=str(src)), tmp_path / "incoming")
    assert written == [str(tmp_path / "incoming/prompts.jsonl")]
    assert (tmp_path / "incoming/prompts.jsonl").read_bytes() == (src / "prompts.jsonl").read_bytes()
    assert not (tmp_path / "incoming/notes.txt").exists()


def test_a_missing_folder_or_file_is_named(tmp_path):
    with pytest.raises(FetchError, match="is not a folder"):
        fetch(_cfg(source="folder", path=str(tmp_path / "nowhere")), tmp_path / "incoming")
    (tmp_path / "new").mkdir()
    with pytest.raises(FetchError, match="new/labels.jsonl does not exist"):
        fetch(_cfg(source="folder", path=str(tmp_path / "new"), files=["labels.jsonl"]), tmp_path / "incoming")


def test_the_drop_folder_refuses_links_and_files_over_the_cap(tmp_path):
    """The drop folder is written by others: a link there would hand over any file this user can read (a key, the
    MLflow store), and an endless file would fill the disk. Both stop the run before anything is written."""
    src = tmp_path / "new"
    src.mkdir()
    secret = tmp_path / "id_rsa"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY-----\n")
    (src / "a.jsonl").write_text('{"id": 1, "prompt": "hello there"}\n')
    (src / "b.jsonl").symlink_to(secret)
    with pytest.raises(FetchError, match=r"new/b.jsonl is a symbolic link"):
        fetch(_cfg(source="folder", path=str(src)), tmp_path / "incoming")
    assert not (tmp_path / "incoming/b.jsonl").exists()
    (src / "b.jsonl").unlink()
    (src / "b.jsonl").write_bytes(b'{"id": 2, "prompt": "' + b"x" * 2000 + b'"}\n')     # 2 kB, over a 1 kB cap
    with pytest.raises(FetchError, match=r"new/b.jsonl is 0.0 MB, larger than retrain.max_file_mb \(0.001 MB\)"):
        fetch(_cfg(source="folder", path=str(src), max_file_mb=0.001), tmp_path / "incoming")
    assert not (tmp_path / "incoming/b.jsonl").exists()


def test_a_download_over_the_cap_is_refused_and_nothing_written(http, tmp_path):
    base = f"http://127.0.0.1:{http.server_port}/data"
    http.answers["/data/big.jsonl"] = [(200, b'{"id": 1}\n' * 200)]                    # 2 kB
    with pytest.raises(FetchError, match=r"download .*/data/big.jsonl: larger than retrain.max_file_mb"):
        fetch(_cfg(source="url", path=base, files=["big.jsonl"], max_file_mb=0.001), tmp_path / "in")
    assert not (tmp_path / "in/big.jsonl").exists() and not list((tmp_path / "in").glob(".*"))


def test_url_source_retries_a_503_and_never_a_404(http, tmp_path):
    base = f"http://127.0.0.1:{http.server_port}/data"
    http.answers["/data/prompts.jsonl"] = [(503, b""), (200, b'{"id": 1}\n')]
    fetch(_cfg(source="url", path=base, files=["prompts.jsonl"], max_retries=2), tmp_path / "in")
    assert (tmp_path / "in/prompts.jsonl").read_bytes() == b'{"id": 1}\n'
    assert http.requests == ["/data/prompts.jsonl"] * 2
    http.requests.clear()
    with pytest.raises(FetchError, match="missing.jsonl: HTTP 404"):
        fetch(_cfg(source="url", path=base, files=["missing.jsonl"], max_retries=3), tmp_path / "in")
    assert http.requests == ["/data/missing.jsonl"]                    # a 404 is not retried
    assert not (tmp_path / "in/missing.jsonl").exists()                # nor half-written


@pytest.mark.parametrize("retrain, key", [
    ({"source": "url", "path": "http://x"}, "retrain.files"),
    ({"source": "folder"}, "retrain.path"),
    ({"source": "ftp"}, "retrain.source"),
    ({"overlap": "maybe"}, "retrain.overlap"),
    ({"files": ["../secrets"]}, "retrain.files"),
    ({"notify_webhook": "https://hooks.example/T0/B0/secret"}, "retrain.notify_webhook: a webhook's URL is itself"),
    ({"notify_webhook_env": "https://hooks.example/T0"}, "retrain.notify_webhook_env: the name of an environment"),
])
def test_bad_retrain_settings_name_the_key(retrain, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_params({"retrain": retrain})


@pytest.mark.slow
def test_a_failed_retrain_run_notifies_the_webhook(http, tmp_path):
    hook = f"http://127.0.0.1:{http.server_port}/hook"
    path = make_project(tmp_path / "proj", {"retrain": {"source": "folder", "path": str(tmp_path / "gone"),
                                                        "notify_webhook_env": "RFT_TEST_WEBHOOK", "backoff": 0.0}})
    out = subprocess.run(["rft", "retrain"], cwd=path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "RFT_TEST_WEBHOOK": hook})
    assert out.returncode == 2 and "gone is not a folder" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr.split("error:")[-1]
    (notice,) = http.posts                          # the Custom Webhook notification block's JSON
    assert notice["subject"] == "rft retrain failed" and "gone is not a folder" in notice["body"]
    assert " ended Failed: " in notice["body"] and notice["text"] == f"{notice['subject']}\n{notice['body']}"
    assert not (path / "dvc.lock").exists()                            # no stage ran


@pytest.mark.slow
def test_dvc_source_pulls_the_named_data_from_the_remote(tmp_path, monkeypatch):
    """retrain.source dvc: `dvc pull` of the .dvc file brings the data back from the remote; an unknown target is
    named at once, not retried."""
    repo = tmp_path / "repo"
    (repo / "data/incoming").mkdir(parents=True)
    monkeypatch.chdir(repo)
    for cmd in (["git", "init", "-q"], ["dvc", "init", "-q"],
                ["dvc", "remote", "add", "-d", "store", str(tmp_path / "remote")]):
        subprocess.run(cmd, check=True, capture_output=True)
    data = repo / "data/incoming/new.jsonl"
    data.write_text('{"id": 1, "prompt": "this week"}\n')
    subprocess.run(["dvc", "add", "data/incoming/new.jsonl"], check=True, capture_output=True)
    subprocess.run(["dvc", "push", "-q"], check=True, capture_output=True)
    data.unlink()
    shutil.rmtree(repo / ".dvc/cache")
    assert fetch(_cfg(source="dvc", files=["data/incoming/new.jsonl.dvc"])) == ["data/incoming/new.jsonl.dvc"]
    assert data.read_text() == '{"id": 1, "prompt": "this week"}\n'
    with pytest.raises(FetchError, match="missing.dvc"):
        fetch(_cfg(source="dvc", files=["data/incoming/missing.dvc"], max_retries=3, backoff=5.0))


class _RacingClient:
    """A Prefect client whose pool does not exist at the read but does at the create: a worker started with
    ``--type process`` created it in between."""

    def __init__(self, exists_at_read: bool, exists_at_create: bool):
        self.exists_at_read, self.exists_at_create, self.created = exists_at_read, exists_at_create, []

    def read_work_pool(self, name):
        from prefect.exceptions import ObjectNotFound
        if not self.exists_at_read:
            raise ObjectNotFound(http_exc=Exception("404"))

    def create_work_pool(self, pool):
        from prefect.exceptions import ObjectAlreadyExists
        if self.exists_at_create:
            raise ObjectAlreadyExists(http_exc=Exception("409"))
        self.created.append((pool.name, pool.type))


@pytest.mark.parametrize("at_read,at_create,created", [
    (True, True, []),                              # there already: nothing to do
    (False, False, [("rft", "process")]),          # missing: created as a process pool
    (False, True, []),                             # created by the worker meanwhile: that is success
])
def test_deploy_creates_the_work_pool_once_even_when_the_worker_races_it(at_read, at_create, created):
    from flows.retrain import ensure_work_pool
    client = _RacingClient(at_read, at_create)
    ensure_work_pool(client, "rft")
    assert client.created == created


def test_notice_goes_through_the_webhook_notification_block(http, monkeypatch):
    from tasks.retrain import notify, webhook_block

    url = f"http://127.0.0.1:{http.server_port}/hook"
    monkeypatch.setenv("RFT_TEST_WEBHOOK", url)
    cfg = _cfg(notify_webhook_env="RFT_TEST_WEBHOOK")
    block = webhook_block(cfg)
    assert type(block).__name__ == "CustomWebhookNotificationBlock"
    # The URL is the block's secret: its URL field and what Prefect saves in plain text hold only the template.
    assert block.url == "{{webhook_url}}" and url not in block.model_dump_json()
    assert notify(cfg, "rft retrain failed", "flow run x ended Crashed: killed")
    assert http.posts == [{"text": "rft retrain failed\nflow run x ended Crashed: killed",
                           "subject": "rft retrain failed", "body": "flow run x ended Crashed: killed"}]
    assert not notify(_cfg(), "s", "b")                       # no webhook set: nothing sent
    monkeypatch.setenv("RFT_TEST_WEBHOOK", f"http://127.0.0.1:{http.server_port}/nowhere")
    with pytest.raises(FetchError) as err:                    # the receiver refuses: not retried
        notify(_cfg(notify_webhook_env="RFT_TEST_WEBHOOK", max_retries=3), "s", "b")
    assert str(err.value) == "notify the webhook in $RFT_TEST_WEBHOOK: HTTP 404"      # named, never shown
    monkeypatch.delenv("RFT_TEST_WEBHOOK")
    with pytest.raises(ConfigError, match=r"retrain.notify_webhook_env: the environment variable RFT_TEST_WEBHOOK "
                                          r"is not set"):
        notify(cfg, "s", "b")
