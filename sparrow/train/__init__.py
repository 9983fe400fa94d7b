"""Staged training of SPARROW on accelerate: host, proposer pretraining, stage 1 (TSF + LoRA), stage 2 (selector).

- :mod:`sparrow.train.config`: :class:`TrainConfig` per stage and profile (the released optimiser and schedule).
- :mod:`sparrow.train.trainer`: :class:`Trainer`, the accelerate loop with checkpoints, resume and the loss log.
- :mod:`sparrow.train.variants`: :func:`train_variant`, every stage of one table row, cached and resumable.
- :mod:`sparrow.train.cli`: ``sparrow train`` (:func:`main_train`).
- :mod:`sparrow.train.sampling`, :mod:`~sparrow.train.checkpoint`, :mod:`~sparrow.train.loss_log`,
  :mod:`~sparrow.train.schedule`: the loop's parts (data order and randomness as functions of (seed, step),
  atomic checkpoints, the CSV loss log, the warmup-decay schedule).
"""

from sparrow.train.config import TRAIN_STAGES, TrainConfig
from sparrow.train.trainer import NonFiniteLossError, Trainer, TrainResult
from sparrow.train.variants import RunResult, train_variant, variant_name, variant_stages

__all__ = [
    "TRAIN_STAGES",
    "NonFiniteLossError",
    "RunResult",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "train_variant",
    "variant_name",
    "variant_stages",
]
