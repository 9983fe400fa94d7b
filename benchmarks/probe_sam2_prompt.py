"""Does a tiny SAM2 trained from scratch follow its box prompt? (The README's SAM2 prompt probe.)

Before the kit pretrained its tiny SAM2, every SPARROW-Mini model gave the same mask for every text of a video
(notebook 04's text-dependence check). This probe isolates the SAM2 half: the mini pixel decoder (tiny SAM2 at
128 px, random init) learns box prompt → mask on images of three overlapping discs on noise, the target one of them (its visible part), with the kit's mask losses
(2.0 BCE + 0.5 Dice), AdamW, gradient clip 1.0, batch 8. Every ``--every`` steps it reports, on 16 held-out images:

- ``target IoU``: the mask under the target's box against the target;
- ``same under other box``: IoU between that mask and the mask under another disc's box. 1.0 means the prompt is
  ignored (the decoder segments what is salient); near 0 means it follows the prompt.

``--train whole`` trains all of SAM2 as the mini host stage once did (``host_trainable_sam="all"``); ``--train decoder``
freezes the image encoder and trains the prompt encoder and mask decoder, which is what the kit's SAM2 pretraining
for the tiny profiles now does (:mod:`sparrow.train.sam_pretrain`). Not a speed benchmark (``make bench``
runs only ``bench_*.py``); about 45 s per 1,000 decoder-only steps on one core.

Run: ``.venv/bin/python benchmarks/probe_sam2_prompt.py --train whole decoder --seeds 0 1 --steps 1000``
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

SIZE = 128


def discs(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``n`` images (n, 3, S, S) of three discs, the target masks (n, S, S) and boxes of the target and of another
    visible disc (n, 4) in pixels."""
    yy, xx = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images = torch.rand(n, 3, SIZE, SIZE, generator=generator) * 0.3
    masks = torch.zeros(n, SIZE, SIZE)
    target_boxes, other_boxes = torch.zeros(n, 4), torch.zeros(n, 4)
    for b in range(n):
        drawn = []
        for _ in range(3):
            cx, cy = torch.randint(20, SIZE - 20, (2,), generator=generator).tolist()
            r = int(torch.randint(8, 20, (1,), generator=generator))
            disc = (xx - cx) ** 2 + (yy - cy) ** 2 < r * r
            images[b] = torch.where(disc, torch.rand(3, 1, 1, generator=generator).expand(3, SIZE, SIZE), images[b])
            drawn.append(disc)
        visible = [d & ~torch.stack(drawn[k + 1 :]).any(0) if k < 2 else d for k, d in enumerate(drawn)]
        usable = [k for k in range(3) if visible[k].sum() >= 10]
        k = usable[int(torch.randint(0, len(usable), (1,), generator=generator))]
        other = usable[(usable.index(k) + 1) % len(usable)]
        masks[b] = visible[k].float()
        target_boxes[b], other_boxes[b] = _box(visible[k]), _box(visible[other])
    return images, masks, target_boxes, other_boxes


def _box(mask: torch.Tensor) -> torch.Tensor:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return torch.tensor([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=torch.float32)


def _iou(a: torch.Tensor, b: torch.Tensor) -> float:
    inter = (a & b).flatten(1).sum(1).float()
    union = (a | b).flatten(1).sum(1).float()
    return float((inter / union.clamp(min=1)).mean())


def box_logits(decoder, images: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(n, S, S) mask logits, image ``i`` prompted with ``boxes[i]`` (pixels)."""
    feats = decoder.encode(images)
    return torch.stack(
        [decoder.box_masks(feats, boxes[i : i + 1] / SIZE, (SIZE, SIZE), t=i)[0] for i in range(images.shape[0])]
    )


def probe(train: str, seed: int, steps: int, every: int, lr: float) -> list[tuple[int, float, float]]:
    from sparrow.model.config import SamSpec
    from sparrow.model.losses import mask_bce_per_pair, mask_dice_per_pair
    from sparrow.model.pixel_decoder import PixelDecoder, build_sam

    torch.manual_seed(seed)
    decoder = PixelDecoder(build_sam(SamSpec(image_size=SIZE, tiny=True), None, None)).train()
    if train == "decoder":
        decoder.sam.image_encoder.requires_grad_(False)
    params = [p for p in decoder.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr)
    data = torch.Generator().manual_seed(1000 + seed)
    rows = []
    for step in range(steps + 1):
        if step % every == 0:
            with torch.no_grad():
                images, masks, boxes, others = discs(16, torch.Generator().manual_seed(5))
                own = box_logits(decoder, images, boxes) > 0
                rows.append((step, _iou(own, masks > 0), _iou(own, box_logits(decoder, images, others) > 0)))
        if step == steps:
            break
        images, masks, boxes, _ = discs(8, data)
        logits = box_logits(decoder, images, boxes)
        loss = 2.0 * mask_bce_per_pair(logits, masks).mean() + 0.5 * mask_dice_per_pair(logits, masks).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", nargs="+", choices=("whole", "decoder"), default=["whole", "decoder"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--lr", type=float, default=1e-3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for train in args.train:
        for seed in args.seeds:
            start = time.process_time()
            rows = probe(train, seed, args.steps, args.every, args.lr)
            print(f"\ntrain {train}, seed {seed} ({time.process_time() - start:.0f} s CPU)")
            print(f"{'step':>6} {'target IoU':>11} {'same under other box':>21}")
            for step, target, same in rows:
                print(f"{step:6d} {target:11.3f} {same:21.3f}")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
