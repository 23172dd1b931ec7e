"""The old name of ``tasks/reward_model.py``, kept for the reward models registered before the rename: MLflow
stores each version's pyfunc as code (``tasks/reward_pyfunc.py``), and the copies logged then import
``RewardModel`` and ``trained_max_length`` from here. Nothing in the project imports it."""

from tasks.reward_model import RewardModel, trained_max_length

__all__ = ["RewardModel", "trained_max_length"]
