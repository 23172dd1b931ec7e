"""Credentials never leave in what the project logs or prints (tasks/redact.py): the password of a URL's user
part, a lone token there, and credential-like query values are masked; where the URL points stays readable."""

import pytest

from tasks.redact import redact_params, redact_text, redact_url


@pytest.mark.parametrize("url, shown", [
    # A database store with a password (MLflow's backend, infra/compose.yaml's Postgres).
    ("postgresql://rft:s3cret@db:5432/mlflow", "postgresql://rft:***@db:5432/mlflow"),
    # A token as the whole user part (a git or registry URL).
    ("https://ghp_abc123@github.com/org/data.git", "https://***@github.com/org/data.git"),
    # Signed URLs: an Azure SAS signature, AWS's signature and credential; other parameters stay.
    ("https://acct.blob.core.windows.net/c/f.jsonl?sv=2022-11-02&sig=AbC%2Bd&se=2026",
     "https://acct.blob.core.windows.net/c/f.jsonl?sv=2022-11-02&sig=***&se=2026"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=ff00&x-id=GetObject",
     "https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&x-id=GetObject"),
    ("http://judge:8000/v1?api_key=k1", "http://judge:8000/v1?api_key=***"),
    # Nothing secret: unchanged, byte for byte.
    ("http://127.0.0.1:5000", "http://127.0.0.1:5000"),
    ("sqlite:///mlruns.db", "sqlite:///mlruns.db"),
    ("https://data.example/drop?week=49&page=2", "https://data.example/drop?week=49&page=2"),
    ("models/champion", "models/champion"),
])
def test_redact_url(url, shown):
    assert redact_url(url) == shown


def test_urls_inside_messages_and_params_are_redacted():
    msg = "error: The MLflow tracking server at postgresql://a:pw@h/db is down; see http://x/y?token=t9 (retry)"
    assert redact_text(msg) == ("error: The MLflow tracking server at postgresql://a:***@h/db is down; see "
                                "http://x/y?token=*** (retry)")
    flat = {"tracking.uri": "https://u:p@mlflow.example", "generate.k": 4, "retrain.path": None,
            "judges.api.url": "http://127.0.0.1:8000/v1"}
    assert redact_params(flat) == {**flat, "tracking.uri": "https://u:***@mlflow.example"}


def test_the_clis_error_names_the_server_without_its_password(project, capsys):
    from pathlib import Path

    import yaml

    from tasks.cli import main

    params = yaml.safe_load(Path("params.yaml").read_text())
    params["tracking"]["uri"] = "http://rft:planted-pw-31@127.0.0.1:9"          # nothing listens on port 9
    Path("params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert main(["stage", "prepare"]) == 2
    err = capsys.readouterr().err
    assert "http://rft:***@127.0.0.1:9" in err and "planted-pw-31" not in err, err
