"""Helpers for code that runs under ``accelerate launch`` (``tasks/launch.py`` starts it): the trainers of
the reward model and of the policy call them in every process, and in one process they change nothing."""

from __future__ import annotations


def gathered(trainer, build):
    """The model ``trainer`` trained, whole and unwrapped, on the main process; None on the others.

    Under ``accelerate launch`` every process takes part in gathering the full state dict (a collective, as in
    ``Trainer.save_model``): with FSDP or DeepSpeed ZeRO-3 each process holds only a shard of the parameters.
    The main process loads it into a fresh copy that ``build()`` makes (LoRA-wrapped like the trained one, so
    the keys match). In one process, the trained model itself.
    """
    acc = trainer.accelerator
    if acc.num_processes == 1:
        return acc.unwrap_model(trainer.model)
    state = acc.get_state_dict(trainer.model)
    if not acc.is_main_process:
        return None
    model = build()
    model.load_state_dict(state)
    return model
