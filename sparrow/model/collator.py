"""SparrowCollator: :class:`SparrowExample` items -> a :class:`SparrowBatch`.

Per item: frames resized for each encoder; the conversation (training question/answer templates for expressions, the
item's own question/answer for QA and grounded captions) with the stage's rules: ``[BOX] [SEG]`` answers when the stage uses the dual
prompt (plain ``[SEG]`` otherwise), ``<tsf>`` placeholders and ground-truth-mask TSF crops (released variant, docs/design.md §4.2 b)
when the stage uses TSF; token ids truncated to ``model_max_length - visual_token_reserve`` (released: 2048 - 255).
Build one with ``model.collator(stage)``, which knows the encoders' real input sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from sparrow.model.batch import SparrowBatch, SparrowExample
from sparrow.model.config import ModelConfig, stage_behaviour
from sparrow.model.conversation import (
    CHAT_TEMPLATES,
    apply_box_rule,
    referring_turn,
    seg_texts,
    tokenize_conversation,
)
from sparrow.model.frames import encoder_frames, stretch, to_float
from sparrow.model.tokens import IGNORE_INDEX, SEG_TOKEN
from sparrow.tsf.crops import mask_box_crops


@dataclass(frozen=True)
class FrameSizes:
    spatial: int
    spatial_kind: str
    sam: int
    temporal: int | None = None
    temporal_kind: str = "clip"  # the temporal encoder's geometry: clip (VideoMAE) | stretch (InternVideo2)


class SparrowCollator:
    def __init__(self, cfg: ModelConfig, tokenizer, sizes: FrameSizes, stage: str = "stage1"):
        self.cfg = cfg
        self.tokenizer = tokenizer
        self.sizes = sizes
        self.stage = stage
        self.behaviour = stage_behaviour(cfg, stage)
        self.template = CHAT_TEMPLATES[cfg.chat_template]

    def conversation(self, example: SparrowExample) -> tuple[str, str]:
        """(question, answer) of one item after the stage's ``[BOX]`` rule."""
        if example.answer is not None:  # QA records and grounded captions carry their own turn
            question, answer = example.text, example.answer
        else:
            question, answer = referring_turn(example.text, example.query_id)
        if SEG_TOKEN in answer or "[BOX]" in answer:
            answer = apply_box_rule(answer, self.behaviour.dual_prompt)
        return question, answer

    def __call__(self, examples: list[SparrowExample]) -> SparrowBatch:
        if not examples:
            raise ValueError("cannot collate an empty list of examples")
        cfg, sizes = self.cfg, self.sizes
        num_tsf = cfg.num_tsf_placeholders if self.behaviour.tsf else 0
        max_len = max(8, cfg.llm.model_max_length - cfg.visual_token_reserve)
        ids, labels, frames, temporal, sam, masks, boxes, crops, orig = [], [], [], [], [], [], [], [], []
        located: list[list[str]] = []
        for ex in examples:
            question, answer = self.conversation(ex)
            located.append(seg_texts(answer, ex.text))
            turn = tokenize_conversation(self.tokenizer, self.template, question, answer, num_tsf, max_len)
            ids.append(torch.tensor(turn.input_ids, dtype=torch.long))
            labels.append(torch.tensor(turn.labels, dtype=torch.long))
            enc = to_float(ex.frames)
            sam_raw = to_float(ex.sam_frames)
            context = encoder_frames(enc, sizes.spatial, sizes.spatial_kind)
            llm_frames = context
            if cfg.llm_sees_sam_frames:
                llm_frames = torch.cat([context, encoder_frames(sam_raw, sizes.spatial, sizes.spatial_kind)])
            frames.append(llm_frames)
            if sizes.temporal is not None:
                # Frames of the CLIP rule at the CLIP size are the context frames themselves.
                same = sizes.temporal == sizes.spatial and sizes.spatial_kind == sizes.temporal_kind == "clip"
                temporal.append(context if same else encoder_frames(enc, sizes.temporal, sizes.temporal_kind))
            sam.append(stretch(sam_raw, sizes.sam))
            target = torch.from_numpy(np.asarray(ex.target_masks, dtype=np.float32))
            masks.append(target)
            boxes.append(torch.from_numpy(np.asarray(ex.object_boxes, dtype=np.float32).reshape(-1, 4)))
            crops.append(mask_box_crops(context, target)[0] if num_tsf else None)
            orig.append((int(ex.sam_frames.shape[1]), int(ex.sam_frames.shape[2])))
        pad = self.tokenizer.pad_token_id
        length = max(x.shape[0] for x in ids)
        input_ids = torch.full((len(ids), length), pad, dtype=torch.long)
        label_ids = torch.full((len(ids), length), IGNORE_INDEX, dtype=torch.long)
        attention = torch.zeros((len(ids), length), dtype=torch.long)
        for i, (x, y) in enumerate(zip(ids, labels)):
            input_ids[i, : x.shape[0]] = x
            label_ids[i, : y.shape[0]] = y
            attention[i, : x.shape[0]] = 1
        return SparrowBatch(
            input_ids=input_ids,
            labels=label_ids,
            attention_mask=attention,
            frames=torch.stack(frames),
            sam_frames=torch.stack(sam),
            target_masks=masks,
            object_boxes=boxes,
            orig_sizes=orig,
            temporal_frames=torch.stack(temporal) if temporal else None,
            tsf_crops=crops if num_tsf else None,
            video_ids=[e.video_id for e in examples],
            query_ids=[e.query_id for e in examples],
            stage=self.stage,
            texts=[e.text for e in examples],
            seg_texts=located,
        )
