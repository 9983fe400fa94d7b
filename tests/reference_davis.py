"""REFERENCE (not the kit's implementation): a faithful per-frame re-implementation of the official DAVIS-2017
evaluation (davisvideochallenge/davis2017-evaluation @ ac7c43f, ``davis2017/metrics.py`` and ``utils.py``),
written from ``docs/evaluation.md`` §1-§4.

It follows the official algorithm operation by operation (bool casts, the east/south/south-east XOR boundary map
with its last-row/last-column overrides, ``skimage.morphology.disk`` + ``cv2.dilate``, the boundary-emptiness
conventions, ``float64`` arithmetic in the same order), one frame at a time, so that the tests and
``benchmarks/bench_jf.py`` can hold :mod:`sparrow.eval.jf` to it at 1e-12. Keep it slow and literal: speed-ups
belong in the kit, never here.
"""

from __future__ import annotations

import warnings

import cv2
import numpy as np
from skimage.morphology import disk


def ref_iou(annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None):
    """Official ``db_eval_iou``: sums over the last two axes, J = 1 where the union is (close to) zero."""
    assert annotation.shape == segmentation.shape
    if void_pixels is None:
        void_pixels = np.zeros_like(segmentation)
    else:
        assert annotation.shape == void_pixels.shape
        void_pixels = void_pixels.astype(bool)
    gt = annotation.astype(bool)
    pred = segmentation.astype(bool)
    keep = np.logical_not(void_pixels)
    inters = np.sum((pred & gt) & keep, axis=(-2, -1))
    union = np.sum((pred | gt) & keep, axis=(-2, -1))
    with np.errstate(divide="ignore", invalid="ignore"):
        j = inters / union
    if j.ndim == 0:
        return 1 if np.isclose(union, 0) else j
    j[np.isclose(union, 0)] = 1
    return j


def ref_seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Official ``_seg2bmap`` (BSDS): boundary half a pixel towards the origin, image borders never count."""
    seg = seg.astype(bool)
    east = np.zeros_like(seg)
    south = np.zeros_like(seg)
    south_east = np.zeros_like(seg)
    east[:, :-1] = seg[:, 1:]
    south[:-1, :] = seg[1:, :]
    south_east[:-1, :-1] = seg[1:, 1:]
    b = seg ^ east | seg ^ south | seg ^ south_east
    b[-1, :] = seg[-1, :] ^ east[-1, :]
    b[:, -1] = seg[:, -1] ^ south[:, -1]
    b[-1, -1] = 0
    return b


def ref_f_measure(foreground_mask: np.ndarray, gt_mask: np.ndarray, void_pixels: np.ndarray | None = None,
                  bound_th: float = 0.008):
    """Official ``f_measure`` for one frame (note: the prediction is the "foreground mask")."""
    if void_pixels is None:
        void_pixels = np.zeros_like(foreground_mask).astype(bool)
    else:
        void_pixels = void_pixels.astype(bool)
    bound_pix = bound_th if bound_th >= 1 else np.ceil(bound_th * np.linalg.norm(foreground_mask.shape))
    fg_boundary = ref_seg2bmap(foreground_mask * np.logical_not(void_pixels))
    gt_boundary = ref_seg2bmap(gt_mask * np.logical_not(void_pixels))
    kernel = disk(bound_pix).astype(np.uint8)
    fg_dil = cv2.dilate(fg_boundary.astype(np.uint8), kernel)
    gt_dil = cv2.dilate(gt_boundary.astype(np.uint8), kernel)
    gt_match = gt_boundary * fg_dil
    fg_match = fg_boundary * gt_dil
    n_fg = np.sum(fg_boundary)
    n_gt = np.sum(gt_boundary)
    if n_fg == 0 and n_gt > 0:
        precision, recall = 1, 0
    elif n_fg > 0 and n_gt == 0:
        precision, recall = 0, 1
    elif n_fg == 0 and n_gt == 0:
        precision, recall = 1, 1
    else:
        precision = np.sum(fg_match) / float(n_fg)
        recall = np.sum(gt_match) / float(n_gt)
    if precision + recall == 0:
        return 0
    return 2 * precision * recall / (precision + recall)


def ref_boundary(annotation: np.ndarray, segmentation: np.ndarray, void_pixels: np.ndarray | None = None,
                 bound_th: float = 0.008):
    """Official ``db_eval_boundary``: a per-frame loop for 3-D input, a scalar for 2-D input."""
    assert annotation.shape == segmentation.shape
    if void_pixels is not None:
        assert annotation.shape == void_pixels.shape
    if annotation.ndim == 3:
        out = np.zeros(annotation.shape[0])
        for t in range(annotation.shape[0]):
            void_t = None if void_pixels is None else void_pixels[t]
            out[t] = ref_f_measure(segmentation[t], annotation[t], void_t, bound_th=bound_th)
        return out
    if annotation.ndim == 2:
        return ref_f_measure(segmentation, annotation, void_pixels, bound_th=bound_th)
    raise ValueError(f"db_eval_boundary does not support tensors with {annotation.ndim} dimensions")


def ref_statistics(per_frame: np.ndarray, n_bins: int = 4) -> tuple[float, float, float]:
    """Official ``db_statistics``: nanmean, recall at > 0.5, decay over 4 uint8-indexed bins sharing edges."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=RuntimeWarning)
        mean = np.nanmean(per_frame)
        recall = np.nanmean(per_frame > 0.5)
        ids = np.round(np.linspace(1, len(per_frame), n_bins + 1) + 1e-10) - 1
        ids = ids.astype(np.uint8)
        bins = [per_frame[ids[i]:ids[i + 1] + 1] for i in range(0, n_bins)]
        decay = np.nanmean(bins[0]) - np.nanmean(bins[3])
    return mean, recall, decay


def ref_evaluate_semisupervised(all_gt_masks, all_res_masks, metric=("J", "F")):
    """Official ``DAVISEvaluation._evaluate_semisupervised`` (sys.exit replaced by an exception), no void."""
    if all_res_masks.shape[0] > all_gt_masks.shape[0]:
        raise RuntimeError("index higher than the number of objects")
    if all_res_masks.shape[0] < all_gt_masks.shape[0]:
        pad = np.zeros((all_gt_masks.shape[0] - all_res_masks.shape[0], *all_res_masks.shape[1:]))
        all_res_masks = np.concatenate([all_res_masks, pad], axis=0)
    j = np.zeros(all_gt_masks.shape[:2])
    f = np.zeros(all_gt_masks.shape[:2])
    for ii in range(all_gt_masks.shape[0]):
        j[ii, :] = ref_iou(all_gt_masks[ii], all_res_masks[ii], None)
        f[ii, :] = ref_boundary(all_gt_masks[ii], all_res_masks[ii], None)
    return j, f


def ref_evaluate_unsupervised(all_gt_masks, all_res_masks, all_void_masks, max_n_proposals=20):
    """Official ``DAVISEvaluation._evaluate_unsupervised``: every proposal against every object, then Hungarian."""
    from scipy.optimize import linear_sum_assignment

    if all_res_masks.shape[0] > max_n_proposals:
        raise RuntimeError("more proposals than allowed")
    if all_res_masks.shape[0] < all_gt_masks.shape[0]:
        pad = np.zeros((all_gt_masks.shape[0] - all_res_masks.shape[0], *all_res_masks.shape[1:]))
        all_res_masks = np.concatenate([all_res_masks, pad], axis=0)
    j = np.zeros((all_res_masks.shape[0], all_gt_masks.shape[0], all_gt_masks.shape[1]))
    f = np.zeros_like(j)
    for ii in range(all_gt_masks.shape[0]):
        for jj in range(all_res_masks.shape[0]):
            j[jj, ii, :] = ref_iou(all_gt_masks[ii], all_res_masks[jj], all_void_masks)
            f[jj, ii, :] = ref_boundary(all_gt_masks[ii], all_res_masks[jj], all_void_masks)
    all_metrics = (np.mean(j, axis=2) + np.mean(f, axis=2)) / 2
    row_ind, col_ind = linear_sum_assignment(-all_metrics)
    return j[row_ind, col_ind, :], f[row_ind, col_ind, :]


def ref_read_sequence(ann_dir, res_dir, sequence, semi):
    """Official reading: ``DAVIS.get_all_masks(seq, True)`` and ``Results.read_masks`` (no error handling)."""
    from glob import glob
    import os

    from PIL import Image

    paths = np.sort(glob(os.path.join(ann_dir, sequence, "*.png"))).tolist()
    masks = np.zeros((len(paths), *np.array(Image.open(paths[0])).shape))
    ids = []
    for i, path in enumerate(paths):
        masks[i] = np.array(Image.open(path))
        ids.append("".join(path.split("/")[-1].split(".")[:-1]))
    void = np.zeros_like(masks)
    for i in range(masks.shape[0]):
        void[i] = masks[i] == 255
        masks[i, masks[i] == 255] = 0
    n = int(np.max(masks[0]))
    gt = np.ones((n, *masks.shape)) * np.arange(1, n + 1)[:, None, None, None] == masks[None]
    if semi:
        gt, ids = gt[:, 1:-1], ids[1:-1]
    res = np.zeros((len(ids), *masks.shape[1:]))
    for i, name in enumerate(ids):
        res[i] = np.array(Image.open(os.path.join(res_dir, sequence, f"{name}.png")))
    m = int(np.max(res))
    res = (np.ones((m, *res.shape)) * np.arange(1, m + 1)[:, None, None, None] == res[None]) > 0
    return gt, void, res


def ref_davis_table(ann_dir, res_dir, sequences, semi):
    """Official ``evaluate`` + ``evaluation_method.py`` global table (fractions) and per-object J/F means."""
    jm, jr, jd, fm, fr, fd, per_object = [], [], [], [], [], [], {}
    for seq in sequences:
        gt, void, res = ref_read_sequence(ann_dir, res_dir, seq, semi)
        if semi:
            j, f = ref_evaluate_semisupervised(gt, res)
        else:
            j, f = ref_evaluate_unsupervised(gt, res, void)
        for ii in range(gt.shape[0]):
            a, b, c = ref_statistics(j[ii])
            d, e, g = ref_statistics(f[ii])
            jm.append(a), jr.append(b), jd.append(c), fm.append(d), fr.append(e), fd.append(g)
            per_object[f"{seq}_{ii + 1}"] = (a, d)
    table = [(np.mean(jm) + np.mean(fm)) / 2.0, np.mean(jm), np.mean(jr), np.mean(jd), np.mean(fm), np.mean(fr),
             np.mean(fd)]
    return table, per_object
