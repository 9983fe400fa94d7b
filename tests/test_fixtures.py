"""The shared fixtures are what the tests that use them assume."""

from __future__ import annotations

import numpy as np

from fixtures.toydata import COLOURS, write_toy_curated
from sparrow.data.boxes import mask_to_box


def test_toy_dataset_is_a_consistent_curated_set(tmp_path):
    from sparrow.data.curated import CuratedDataset

    root = write_toy_curated(tmp_path / "toy", videos=2, frames=5)
    dataset = CuratedDataset(root)
    videos = list(dataset.iter_videos(split="valid"))
    assert [v.video_id for v in videos] == ["toy/valid00", "toy/valid01"]
    frames = dataset.load_frames("toy/valid00")
    assert frames.shape == (5, 48, 64, 3)
    expression = dataset.expressions("toy/valid00")[0]
    colour = expression.text.split()[1]
    masks = dataset.expression_masks(expression)
    obj = dataset.objects("toy/valid00")[expression.object_ids[0]]
    for t in range(5):
        if masks[t].any():
            assert (frames[t][masks[t]] == np.array(COLOURS[colour], dtype=np.uint8)).all()
            assert obj.boxes[t] == mask_to_box(masks[t])
