"""The reward model's MLflow pyfunc, logged as code (MLflow's "models from code"): ``tasks/mlmodels.py`` logs
this file with the reward-model folder as its ``reward_model`` artifact, and ``mlflow.pyfunc.load_model`` runs
it. ``predict`` takes rows with ``prompt`` and ``response`` and returns their Bradley-Terry scores, as the
stages score them (``tasks.reward_model.RewardModel``: this project's package must be installed)."""

import mlflow
import pandas as pd

from tasks.mlmodels import REWARD_ARTIFACT
from tasks.reward_model import RewardModel, trained_max_length
from tasks.runtime import setup_process


class RewardPyfunc(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        # An entry point: MLflow loads this model in a process of its own (a notebook, `mlflow models serve`).
        setup_process()
        path = context.artifacts[REWARD_ARTIFACT]
        self.model = RewardModel(path, trained_max_length(path))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        scores = self.model.score_responses(list(frame["prompt"]), list(frame["response"]))
        return pd.DataFrame({"reward": scores})


mlflow.models.set_model(RewardPyfunc())
