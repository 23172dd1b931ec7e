"""The registry holds MLflow models: policies load as transformers pipelines and pyfuncs by alias, the reward
model as a pyfunc, each with a signature and an input example, and each a byte copy of its DVC-tracked folder."""

import pytest

from tasks.mlmodels import verify_copy

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore")]


@pytest.fixture
def registry(built_project):
    import mlflow

    path = built_project[0]
    mlflow.set_tracking_uri(f"sqlite:///{path / 'mlruns.db'}")
    return path, mlflow.MlflowClient()


def test_the_champion_loads_by_alias_as_a_pipeline_and_a_pyfunc(registry):
    import mlflow

    path, client = registry
    assert int(client.get_model_version_by_alias("policy", "champion").version) == 1
    pipe = mlflow.transformers.load_model("models:/policy@champion")
    out = pipe("Q: How was the soup?\nA:", max_new_tokens=6, do_sample=False)
    assert out[0]["generated_text"].startswith("Q: How was the soup?\nA:")
    model = mlflow.pyfunc.load_model("models:/policy@champion")
    answers = model.predict(["How was the soup?", "And the service?"], params={"max_new_tokens": 6})
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    # The pyfunc applies the project's prompt template: greedy decoding gives the pipeline's continuation.
    greedy = model.predict(["How was the soup?"], params={"max_new_tokens": 6, "do_sample": False})
    assert greedy[0].strip() == out[0]["generated_text"][len("Q: How was the soup?\nA:"):].strip()


def test_versions_carry_a_signature_and_an_input_example(registry):
    from mlflow.models import get_model_info

    path, client = registry
    policy = get_model_info("models:/policy@challenger")
    # Prompt texts in, responses out: the string columns of MLflow's text-generation pyfunc.
    assert [t.name for t in policy.signature.inputs.input_types()] == ["string"]
    assert [t.name for t in policy.signature.outputs.input_types()] == ["string"]
    assert {p.name for p in policy.signature.params.params} == {"max_new_tokens", "temperature", "do_sample"}
    assert policy.saved_input_example_info is not None
    reward = get_model_info("models:/reward-model@challenger")
    assert [c.name for c in reward.signature.inputs.inputs] == ["prompt", "response"]
    assert [c.name for c in reward.signature.outputs.inputs] == ["reward"]
    assert reward.saved_input_example_info is not None


def test_the_pyfunc_samples_with_the_signatures_defaults_and_the_run_keeps_only_the_stages_params(registry):
    import mlflow

    path, client = registry
    model = mlflow.pyfunc.load_model("models:/policy@challenger")
    assert isinstance(model.predict(["How was the soup?"])[0], str)         # no params: the signature's defaults
    # MLflow logs a model_config as params of the run; the stage passes none, so its run holds its own only.
    run = client.get_run(client.get_model_version_by_alias("policy", "challenger").run_id)
    assert run.data.params and all("." in key for key in run.data.params), sorted(run.data.params)


def test_the_reward_model_pyfunc_scores_as_the_stages_do(registry):
    import mlflow
    import pandas as pd

    from tasks.reward_model import RewardModel, trained_max_length

    path, _ = registry
    rows = pd.DataFrame({"prompt": ["How was the soup?", "How was the soup?"],
                         "response": ["The soup was hot and fresh.", "bad bad bad"]})
    scores = mlflow.pyfunc.load_model("models:/reward-model@challenger").predict(rows)
    folder = path / "models/reward"
    direct = RewardModel(folder, trained_max_length(folder)).score_responses(list(rows.prompt), list(rows.response))
    assert list(scores.columns) == ["reward"] and scores["reward"].tolist() == pytest.approx(direct, abs=1e-5)


@pytest.mark.parametrize("alias,name,folder,kind", [
    ("champion", "policy", "models/champion", "policy"),
    ("challenger", "policy", "models/candidate", "policy"),
    ("challenger", "reward-model", "models/reward", "reward"),
])
def test_the_registry_copy_is_the_dvc_folder(registry, tmp_path, alias, name, folder, kind):
    import shutil

    import mlflow

    path, client = registry
    downloaded = mlflow.artifacts.download_artifacts(f"models:/{name}@{alias}", dst_path=str(tmp_path))
    assert verify_copy(path / folder, downloaded, kind) == []
    # The check can fail: a changed byte in the folder's weights is reported.
    weights = next((path / folder).glob("*.safetensors"))
    copy = tmp_path / "copy"
    shutil.copytree(path / folder, copy)
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    (copy / weights.name).write_bytes(bytes(data))
    assert verify_copy(copy, downloaded, kind) == [weights.name]
