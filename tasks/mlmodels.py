"""The registry's models as MLflow models: a policy is a transformers ``text-generation`` pipeline, a reward
model a ``pyfunc`` that scores (prompt, response) rows.

**One source of weights.** The DVC-tracked folder (``models/base``, ``models/candidate``, ``models/reward``)
is the source: every stage reads it, ``dvc.lock`` records its hash. The MLflow model is derived from it once,
when the stage registers the version, and is never written again:

- a policy's weights and configuration (``model.safetensors``, ``config.json``, ``generation_config.json``)
  and its ``tokenizer.json`` are byte-identical copies of the folder's files (MLflow saves the pipeline that
  was loaded from the folder); the flavor adds its own ``tokenizer_config.json``, the signature, an input
  example and the generation settings;
- a reward model's folder is copied as it is, as the pyfunc's ``reward_model`` artifact.

The folder's own metadata file (``rft_policy.json``, ``rft_reward.json``) is not part of the copy's promise:
the stage adds the version number to it after registering. ``verify_copy`` checks a version's files against a
folder; the tests check it for the base, the candidate, the champion and the reward model. To get a folder back from the registry, download the version
(``mlflow artifacts download -u models:/policy@champion``): the policy's weights lie under ``model/`` and its
tokenizer under ``components/tokenizer/``.

Loading ``models:/policy@champion`` with ``mlflow.transformers.load_model`` gives a text-generation pipeline;
``mlflow.pyfunc.load_model`` gives a model whose ``predict`` takes prompt texts (the project's prompt template
is applied for a policy without a chat template) and returns the responses. Loading the reward model's pyfunc
needs this project's package installed (the scoring code is ``tasks.reward_model``).
"""

from __future__ import annotations

from pathlib import Path

from tasks.io import REGISTRY_FILE
from tasks.policy import load_policy
from tasks.prompting import format_prompt, last_user_turn
from tasks.reward_model import META

POLICY_MODEL = "policy"               # the logged models' names: what they are, as the registry names them
REWARD_MODEL = "reward-model"
REWARD_ARTIFACT = "reward_model"      # the pyfunc's artifact: the reward-model folder as it is
POLICY_CONFIGS = ("config.json", "generation_config.json", "model.safetensors.index.json")


def requirements() -> list[str]:
    """The pinned packages a loaded model needs (given, so MLflow does not infer them in a subprocess)."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "transformers", "safetensors")]


FALLBACK_EXAMPLE = "What can you tell me?"     # the input example of a model made with no prompt at hand


def example_text(prompt) -> str:
    """A prompt as the text a pyfunc caller passes: a conversation's last user turn."""

    return FALLBACK_EXAMPLE if prompt is None else last_user_turn(prompt)


def policy_signature(max_new_tokens: int, temperature: float):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    # Unnamed string columns: what MLflow's text-generation pyfunc reads (prompt texts) and returns (responses).
    return ModelSignature(
        inputs=Schema([ColSpec("string")]), outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", int(max_new_tokens)),
                            ParamSpec("temperature", "double", float(temperature)),
                            ParamSpec("do_sample", "boolean", True)]))


def log_policy(folder: str | Path, example, *, max_new_tokens: int, temperature: float, source: str | Path,
               loaded=None, step: int = 0):
    """Log the policy in ``folder`` as a transformers text-generation model named ``POLICY_MODEL`` in the
    active run; return MLflow's ``ModelInfo``. ``example``: a prompt (text or conversation) for the input
    example. ``source``: the DVC-tracked folder the version stands for (``models/candidate``), which the
    flavor records as its ``source_model_name`` (``folder`` may be a scratch folder that is renamed into place).
    ``loaded``: the (model, tokenizer) that were just saved to ``folder``, when the caller holds them (a stage
    that trained the policy), so a large model is not loaded a second time beside itself. ``step``: the step
    whose metrics MLflow links to the logged model (the run's final figures; the stage logs the rest with the
    model's id)."""
    import mlflow
    import transformers

    model, tok = loaded or load_policy(folder)
    # The project's template ("Q: <prompt>\nA:") for a tokenizer without a chat template; a chat model's
    # pipeline applies its own template to the messages it is given.
    template = None if getattr(tok, "chat_template", None) else format_prompt("{prompt}")
    pipe = transformers.pipeline("text-generation", model=model, tokenizer=tok)
    # MLflow names the model's source after the folder it was loaded from (``name_or_path``): the scratch
    # folder of an atomic write, or the champion a candidate was trained from. The version's own folder instead.
    was = model.name_or_path
    model.name_or_path = Path(source).as_posix()
    try:
        # The sampling settings are the signature's param defaults, which the pyfunc applies when a caller
        # passes none; not a model_config, which MLflow would also log as params of the stage's run.
        return mlflow.transformers.log_model(
            pipe, name=POLICY_MODEL, signature=policy_signature(max_new_tokens, temperature), step=step,
            input_example=example_text(example), prompt_template=template, pip_requirements=requirements())
    finally:
        model.name_or_path = was


def reward_signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "prompt"), ColSpec("string", "response")]),
                          outputs=Schema([ColSpec("double", "reward")]))


def log_reward_model(folder: str | Path, example: tuple, step: int = 0):
    """Log the reward model in ``folder`` as a pyfunc named ``REWARD_MODEL`` in the active run; return MLflow's
    ``ModelInfo``. ``example``: one (prompt, response) pair for the input example; ``step``: as for
    :func:`log_policy`."""
    import mlflow
    import pandas as pd

    prompt, response = example
    return mlflow.pyfunc.log_model(
        name=REWARD_MODEL, step=step, python_model=str(Path(__file__).with_name("reward_pyfunc.py")),
        artifacts={REWARD_ARTIFACT: str(folder)}, signature=reward_signature(),
        input_example=pd.DataFrame({"prompt": [example_text(prompt)], "response": [response]}),
        pip_requirements=requirements())


def verify_copy(folder: str | Path, downloaded: str | Path, kind: str = "policy") -> list[str]:
    """The files of a policy or reward-model ``folder`` whose bytes differ from (or are missing in) the
    ``downloaded`` MLflow model: [] when the registry's copy matches the DVC-tracked folder."""
    folder, downloaded = Path(folder), Path(downloaded)
    if kind == "policy":
        pairs = [(f, downloaded / "model" / f.name) for f in sorted(folder.iterdir())
                 if f.suffix == ".safetensors" or f.name in POLICY_CONFIGS]
        pairs.append((folder / "tokenizer.json", downloaded / "components" / "tokenizer" / "tokenizer.json"))
    else:
        import yaml

        flavor = yaml.safe_load((downloaded / "MLmodel").read_text())["flavors"]["python_function"]
        root = downloaded / flavor["artifacts"][REWARD_ARTIFACT]["path"]
        pairs = [(f, root / f.relative_to(folder)) for f in folder.rglob("*")
                 if f.is_file() and f.name not in (REGISTRY_FILE, META)]
    return [str(a.relative_to(folder)) for a, b in pairs
            if a.exists() and (not b.is_file() or a.read_bytes() != b.read_bytes())]
