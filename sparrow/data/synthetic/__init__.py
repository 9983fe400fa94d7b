"""SPARROW-Mini: a deterministic procedural benchmark of referential videos, written in the real source layouts.

Small videos of shapes on textured backgrounds, built so that temporal consistency matters (identical-looking
distractors that differ only by motion, crossings and occlusions, objects that leave and come back or appear
later), with unambiguous referring expressions, reasoning questions, relation sentences over time spans and
grounded captions. Each source is written exactly as its release unpacks (see the writer modules), so the real
loaders in :mod:`sparrow.data.sources` read it unchanged:

====================  ===============================  ==========================================
source name           folder under the output          layout
====================  ===============================  ==========================================
``mevis``             ``mevis``                        MeViS (``writers/mevis.py``)
``ref-youtube-vos``   ``ref-youtube-vos``              Ref-YouTube-VOS competition release
``ref-davis17``       ``ref-davis17``                  ReferFormer-converted Ref-DAVIS17 + ``DAVIS/`` root
``tracking``          ``tracking/VOT_dataset``         SPARROW TSF layout: GOT-10k, LaSOT, A2D-Sentences
``vidstg``            ``vidstg``                       raw VidSTG + VidOR + mp4
``videogcg``          ``videogcg``                     VideoGLaMM ``vidstg_gcg``-style GCG
``revos``             ``revos``                        ReVOS (referring + reasoning)
====================  ===============================  ==========================================

``manifest.json`` at the root lists each source's folder, per-split counts and the hard cases of every video.

Entry points: :func:`generate` (``sparrow synth`` calls :func:`main_synth`), :func:`ensure_generated` (cached
under ``sparrow.paths.data_dir``), :func:`scene_statistics` and :func:`hard_case_examples` (figure data).
"""

from sparrow.data.synthetic.config import SynthConfig
from sparrow.data.synthetic.generator import (
    GENERATOR_VERSION,
    HARD_CASES,
    WHY_HARD,
    ensure_generated,
    generate,
    hard_case_examples,
    is_complete,
    main_synth,
    scene_statistics,
)

__all__ = [
    "GENERATOR_VERSION",
    "HARD_CASES",
    "WHY_HARD",
    "SynthConfig",
    "ensure_generated",
    "generate",
    "hard_case_examples",
    "is_complete",
    "main_synth",
    "scene_statistics",
]
