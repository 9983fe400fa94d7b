"""The SPARROW model on three host presets (VideoGLaMM, UniPixel, GLUS).

Contract for training code (stable):

- ``SparrowModel.from_config(cfg)`` with ``cfg = ModelConfig.for_preset(host, profile, **overrides)``;
  ``model.save_pretrained(dir)`` / ``SparrowModel.from_pretrained(dir)`` (safetensors + config JSON + tokenizer,
  atomic, strict loading; :class:`CheckpointError` names the file and the missing/unexpected keys).
- ``SparrowDataset(curated_root, split, cfg)`` yields :class:`SparrowExample`; ``model.collator(stage)`` (a
  :class:`SparrowCollator`) turns a list of them into a :class:`SparrowBatch`.
- ``model(batch) -> SparrowOutput`` with ``.loss`` and ``.losses`` (``ce``, ``bce``, ``dice``, ``prop``, ``box``).
- ``model.configure_stage(stage, fold_lora=False)`` and ``model.trainable_parameters(stage)`` for the stages in
  ``MODEL_STAGES`` (``host``, ``proposer``, ``stage1``, ``stage2``); ``model.merge_lora()`` between stages.
- ``model.predict(frames, text) -> Prediction``; ``model.predict_many(frames, texts, tsf_boxes=None,
  raw_question=False, max_new_tokens=None) -> list[Prediction]`` for all the texts of one video (the per-video work
  done once; each prediction equals ``predict``'s); ``model.encode_crops(crops) -> (N, D)`` for TSF.
"""

from sparrow.model.batch import LOSS_KEYS, Prediction, SparrowBatch, SparrowExample, SparrowOutput
from sparrow.model.checkpoint import CheckpointError
from sparrow.model.collator import FrameSizes, SparrowCollator
from sparrow.model.config import HOSTS, MODEL_STAGES, ModelConfig, stage_behaviour
from sparrow.model.dataset import SparrowDataset
from sparrow.model.sparrow_model import SparrowModel

__all__ = [
    "HOSTS",
    "LOSS_KEYS",
    "MODEL_STAGES",
    "CheckpointError",
    "FrameSizes",
    "ModelConfig",
    "Prediction",
    "SparrowBatch",
    "SparrowCollator",
    "SparrowDataset",
    "SparrowExample",
    "SparrowModel",
    "SparrowOutput",
    "stage_behaviour",
]
