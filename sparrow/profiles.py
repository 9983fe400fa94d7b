"""The three run profiles, and every value that differs between them.

- ``smoke``: seconds per notebook; what CI runs.
- ``mini``: the embedded default (``make reproduce``): SPARROW-Mini at 128 px and tiny models trained on CPU.
- ``paper``: the paper's sizes and real component ids, loaded from local directories, for GPU users with data.

This module is the one place that says what a profile is: :data:`SMOKE`, :data:`MINI` and :data:`PAPER` are
:class:`Profile` instances with one section per subsystem, and each subsystem's ``for_profile`` constructor builds
its config from its section (``SynthConfig`` from ``data``, ``ModelConfig`` from ``model``, ``TrainConfig`` from
``train``, the TSF configs from ``tsf``, the benchmark subsets and table plan from ``eval``). Sections hold plain
values (component specs as the keyword arguments of their dataclasses), so that every layer may import this module
and it imports none of them. What does not depend on the profile (a host's chat template, a stage's optimiser)
stays with its subsystem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

ProfileName = Literal["smoke", "mini", "paper"]
PROFILES: tuple[str, ...] = ("smoke", "mini", "paper")


def check_profile(name: str) -> str:
    """Return ``name`` if it is a known profile, else raise a ValueError that lists the choices."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; choose one of {', '.join(PROFILES)}")
    return name


@dataclass(frozen=True)
class RunContext:
    """What every notebook and CLI command runs under: a profile and a seed."""

    profile: str = "mini"
    seed: int = 0

    def __post_init__(self) -> None:
        check_profile(self.profile)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")


# -- sections ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataSection:
    """SPARROW-Mini's size (:class:`sparrow.data.synthetic.SynthConfig`): frames, objects, expressions per video,
    and ``videos`` per source split (the config's count fields, e.g. ``mevis_train``)."""

    height: int
    width: int
    num_frames: int
    min_objects: int
    max_objects: int
    max_expressions: int
    videos: Mapping[str, int]


@dataclass(frozen=True)
class HostModelSection:
    """One host's model at a profile's size: keyword arguments of the component specs of
    :mod:`sparrow.model.config` (their ``kind`` is the host's), and the frames per sample."""

    num_frames: int
    num_sam_frames: int
    llm: Mapping[str, Any]
    vision: Mapping[str, Any]
    sam: Mapping[str, Any]
    temporal: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ModelSection:
    """The model of every host (:mod:`sparrow.model.presets`). Under ``paper`` the ``path``/``checkpoint`` values
    are component names, found by :func:`sparrow.paths.component_path`."""

    hosts: Mapping[str, HostModelSection]
    proposer: Mapping[str, Any]
    max_new_tokens: int
    host_trainable_sam: str
    # The location channel (docs/design.md §14): a dense grounding of the text, pretrained once per dataset, gives
    # SAM2 a box prompt per frame. ``grounding``: keyword arguments of sparrow.model.config.GroundingSpec (None:
    # the profile has none); ``location_channel``: whether the hosts use it; ``grounding_foundation_seeds``: data
    # seeds of the generator whose whole SPARROW-Mini joins the grounding's training split (its foundation corpus,
    # never an evaluated seed).
    grounding: Mapping[str, Any] | None = None
    location_channel: bool = False
    grounding_foundation_seeds: tuple[int, ...] = ()


@dataclass(frozen=True)
class TrainSection:
    """:class:`sparrow.train.config.TrainConfig` fields per stage, over the stage's optimiser recipe; the host
    stage per host. A stage missing from ``stages`` (``sam`` under ``paper``) does not run at this profile."""

    stages: Mapping[str, Mapping[str, Any]]
    host_stage: Mapping[str, Mapping[str, Any]]
    # Share of grounded-caption conversations among the training items of the host stage and the SPARROW stages
    # (sparrow.model.dataset.SparrowDataset's gcg_share); 0.2 is the released mixture's. ``host_gcg_share``: the
    # host stage's own share where it differs (None: ``gcg_share``).
    gcg_share: float = 0.2
    host_gcg_share: float | None = None

    def gcg_share_for(self, stage: str) -> float:
        """The grounded-caption share of ``stage``'s training items."""
        if stage == "host" and self.host_gcg_share is not None:
            return self.host_gcg_share
        return self.gcg_share


@dataclass(frozen=True)
class TSFSection:
    """The TSF pass (:class:`sparrow.tsf.pipeline.TSFConfig` and its detector and tracker) and notebook 02's
    quality measurement (:class:`sparrow.tsf.quality.QualityConfig`). ``detector_training`` is None where the
    detector is a released checkpoint, not trained by the kit."""

    crop_size: int
    store_crop_features: bool
    threads: int | None
    detector: Mapping[str, Any]
    tracker: Mapping[str, Any]
    detector_training: Mapping[str, Any] | None
    tiny_detector: Mapping[str, Any]
    quality: Mapping[str, Any]


@dataclass(frozen=True)
class EvalSection:
    """Units scored per benchmark (None: the whole split), whether captions are scored, and notebook 04's
    training seeds, hosts and worker processes."""

    limits: Mapping[str, int | None]
    caption_metrics: bool
    seeds: int
    hosts: tuple[str, ...]
    workers: int


@dataclass(frozen=True)
class Profile:
    """One run profile: a section per subsystem."""

    name: str
    data: DataSection | None  # None: no synthetic counterpart (the paper uses the real releases)
    model: ModelSection
    train: TrainSection
    tsf: TSFSection
    eval: EvalSection


def get_profile(name: str) -> Profile:
    """The :class:`Profile` called ``name``."""
    return _TABLE[check_profile(name)]


# -- the table -----------------------------------------------------------------------------------------------------

_ALL_HOSTS = ("videoglamm", "unipixel", "glus")
_TABLE_HOSTS = ("unipixel", "glus", "videoglamm")  # the paper table's row order
_BENCHMARKS = ("mevis_valid", "mevis_valid_u", "ref_youtube_vos", "ref_davis17", "vidstg", "videogcg")


def _tiny_model(
    size: int,
    llm: dict,
    vision_hidden: int,
    vision_ffn: int,
    sam_size: int,
    proposer: dict,
    frames: Mapping[str, tuple[int, int]],
    grounding: Mapping[str, Any],
    grounding_foundation_seeds: tuple[int, ...] = (),
) -> ModelSection:
    """Tiny hosts: ``size``-px encoder frames, a tiny SAM2 at ``sam_size`` px (pretrained on box prompts by
    :mod:`sparrow.train.sam_pretrain`, its mask decoder fine-tuned by the host stage as at paper size);
    ``frames``: (encoder, SAM) frames per training sample per host."""
    clip = dict(
        image_size=size,
        patch_size=8,
        hidden_size=vision_hidden,
        num_layers=2,
        num_heads=2,
        intermediate_size=vision_ffn,
    )
    vision = {
        "videoglamm": clip,
        "glus": clip,
        "unipixel": dict(
            image_size=size, patch_size=8, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64
        ),
    }
    temporal = dict(
        image_size=size,
        patch_size=16,
        chunk_size=4,
        tubelet_size=1,
        hidden_size=32,
        num_layers=1,
        num_heads=2,
        intermediate_size=64,
    )
    hosts = {
        h: HostModelSection(
            num_frames=frames[h][0],
            num_sam_frames=frames[h][1],
            llm=llm,
            vision=vision[h],
            sam=dict(image_size=sam_size, tiny=True),
            temporal=temporal if h == "videoglamm" else None,
        )
        for h in _ALL_HOSTS
    }
    return ModelSection(
        hosts=hosts,
        proposer=proposer,
        max_new_tokens=12,
        host_trainable_sam="mask_decoder",
        grounding=grounding,
        location_channel=LOCATION_CHANNEL,
        grounding_foundation_seeds=grounding_foundation_seeds,
    )


# The released temporal encoder file, relative to the weights root as the official code expects it.
INTERNVIDEO2_RELEASE = "InternVideo2-Stage2_1B-224p-f4/InternVideo2-stage2_1b-224p-f4.pt"


def _paper_sam(config: str, checkpoint: str, image_size: int | None) -> dict:
    return dict(config=config, checkpoint=checkpoint, image_size=image_size, tiny=False, object_score_gating=True)


# Whether the tiny hosts (smoke, mini) prompt SAM2 with the location channel (docs/design.md §14): the boxes and
# dense prompt of a pretrained dense grounding of the text. Off: the hosts as the released code builds them, whose
# tiny versions draw one mask whatever the text.
LOCATION_CHANNEL = True

# The tiny GroundingDINO's sigmoid scores are less peaked than the released model's.
_TINY_DETECTOR = dict(box_threshold=0.2, text_threshold=0.1)
_TINY_TRACKER = dict(kind="appearance", sam2_tiny_size=256)

SMOKE = Profile(
    name="smoke",
    data=DataSection(
        height=48,
        width=64,
        num_frames=8,
        min_objects=2,
        max_objects=4,
        max_expressions=4,
        videos=dict(
            mevis_train=3,
            mevis_valid_u=2,
            mevis_valid=2,
            ytvos_train=2,
            ytvos_valid=2,
            ytvos_test=1,
            davis_train=2,
            davis_valid=2,
            got10k_train=2,
            lasot_train=1,
            a2d_train=2,
            vidstg_train=2,
            vidstg_val=1,
            vidstg_test=2,
            videogcg_train=2,
            videogcg_val=2,
            revos_train=2,
            revos_valid=1,
        ),
    ),
    model=_tiny_model(
        size=32,
        vision_hidden=32,
        vision_ffn=64,
        sam_size=64,
        llm=dict(
            hidden_size=32, num_layers=1, num_heads=4, num_kv_heads=2, intermediate_size=64, model_max_length=1024
        ),
        proposer=dict(d_model=32, num_queries=12, encoder_layers=1, decoder_layers=2, num_heads=2, ffn_dim=64, topk=8),
        frames={"videoglamm": (4, 2), "unipixel": (4, 2), "glus": (2, 2)},
        grounding=dict(input_size=32, dim=16),
    ),
    # A handful of steps without warmup, so that every step updates the weights.
    train=TrainSection(
        stages={
            "sam": dict(max_steps=2, warmup_steps=0, batch_size=2, checkpoint_every=2),
            "grounding": dict(max_steps=2, warmup_steps=0, batch_size=2, checkpoint_every=2, lr=2e-3),
            "proposer": dict(max_steps=2, warmup_steps=0, batch_size=1, checkpoint_every=2),
            "stage1": dict(max_steps=3, warmup_steps=0, batch_size=1, checkpoint_every=2),
            "stage2": dict(max_steps=2, warmup_steps=0, batch_size=1, checkpoint_every=2),
        },
        host_stage={h: dict(max_steps=3, warmup_steps=0, batch_size=1, checkpoint_every=2) for h in _ALL_HOSTS},
    ),
    tsf=TSFSection(
        crop_size=32,
        store_crop_features=True,
        threads=1,
        detector=_TINY_DETECTOR,
        tracker=_TINY_TRACKER,
        # smoke only checks the detector's plumbing (seconds)
        detector_training=dict(steps=12, batch_size=4),
        tiny_detector=dict(image_size=64),
        quality=dict(sam2_per_case=1, max_examples=2),
    ),
    # A CI check of the code path, not of the numbers: one seed of one host, in the notebook's own process.
    eval=EvalSection(
        limits={key: 1 for key in _BENCHMARKS}, caption_metrics=False, seeds=1, hosts=("videoglamm",), workers=1
    ),
)

MINI = Profile(
    name="mini",
    data=DataSection(
        height=128,
        width=128,
        num_frames=12,
        min_objects=3,
        max_objects=5,
        max_expressions=6,
        videos=dict(
            mevis_train=70,
            mevis_valid_u=50,
            mevis_valid=50,
            ytvos_train=50,
            ytvos_valid=50,
            ytvos_test=10,
            davis_train=30,
            davis_valid=50,
            got10k_train=30,
            lasot_train=15,
            a2d_train=30,
            vidstg_train=40,
            vidstg_val=10,
            vidstg_test=50,
            videogcg_train=30,
            videogcg_val=50,
            revos_train=25,
            revos_valid=10,
        ),
    ),
    # Trainable on 2 CPU cores in minutes. UniPixel takes 4 SAM frames per sample, not 8: its memory propagation
    # makes each cost about twice a framewise one, and 4 keep `make reproduce` within 20 minutes.
    model=_tiny_model(
        size=64,
        vision_hidden=64,
        vision_ffn=128,
        sam_size=128,
        llm=dict(
            hidden_size=128, num_layers=2, num_heads=4, num_kv_heads=2, intermediate_size=256, model_max_length=1024
        ),
        proposer=dict(
            d_model=64, num_queries=24, encoder_layers=1, decoder_layers=2, num_heads=4, ffn_dim=128, topk=16
        ),
        frames={"videoglamm": (8, 8), "unipixel": (8, 4), "glus": (4, 4)},
        # 128-px input (32 x 32 cells) and three foundation seeds (1,620 videos beside the 220 of the training
        # split): held-out referent accuracy of the grounding's own cells 0.793 after 3,000 steps (0.739 after a
        # 2,000-step schedule), against 0.634 at 64 px on the training split alone (docs/design.md §14).
        grounding=dict(input_size=128, dim=48, dense_prompt=True),
        grounding_foundation_seeds=(1001, 1002, 1003),
    ),
    # Mini models start from random weights, not a pretrained host, so a larger learning rate (1e-3) and a
    # warmup scaled to the step budget; the reason is that budget, not a tuned result.
    train=TrainSection(
        stages={
            "sam": dict(max_steps=600, warmup_steps=20, batch_size=8, checkpoint_every=200, lr=1e-3),
            "grounding": dict(max_steps=3000, warmup_steps=30, batch_size=3, checkpoint_every=500, lr=2e-3),
            "proposer": dict(max_steps=60, warmup_steps=5, batch_size=4, checkpoint_every=20, lr=1e-3),
            # 40 stage-1 and 24 stage-2 steps: + SPARROW and its control (the same stages without TSF and [BOX])
            # both train them for three seeds and three hosts, from each host's one checkpoint, inside the
            # `make reproduce` budget of 30 minutes on 2 cores
            "stage1": dict(max_steps=40, warmup_steps=4, batch_size=2, checkpoint_every=20, lr=1e-3),
            "stage2": dict(max_steps=24, warmup_steps=3, batch_size=2, checkpoint_every=12, lr=1e-3),
        },
        host_stage={
            h: dict(max_steps=150, warmup_steps=10, batch_size=2, checkpoint_every=50, lr=1e-3) for h in _ALL_HOSTS
        },
        # The host stage stands in for a released host, which writes grounded captions before SPARROW's stages
        # start from it (those keep the released fifth): half its items are grounded captions, since in 150 steps
        # at 0.2 every tiny host answers the caption question "sure, [SEG]." (no phrase, VideoGCG 0) and at 0.5
        # each writes "<p> phrase </p> [SEG]" (docs/design.md §10.3). The referring columns do not move: with the
        # location channel a referring [SEG] is located by its text, not by the LLM.
        host_gcg_share=0.5,
    ),
    tsf=TSFSection(
        crop_size=64,
        store_crop_features=True,
        threads=1,
        detector=_TINY_DETECTOR,
        tracker=_TINY_TRACKER,
        detector_training={},
        tiny_detector={},
        # The tiny SAM2 has random weights under mini (plumbing, not quality): 4 referents per case keep it to
        # about 6 s of notebook 02 instead of 15 s with 10.
        quality=dict(sam2_per_case=4),
    ),
    # Subsets sized so that notebook 04's 21 model evaluations fit its time budget; three training seeds, so that
    # every + SPARROW and control mean and every paired gain carries a seed-to-seed spread (the baseline is one
    # host checkpoint per host, as the paper's is the released one); the runs go two at a time (each after its
    # host checkpoint) on the 2-core target machine.
    eval=EvalSection(
        limits=dict(mevis_valid=3, mevis_valid_u=6, ref_youtube_vos=3, ref_davis17=2, vidstg=15, videogcg=4),
        caption_metrics=True,
        seeds=3,
        hosts=_TABLE_HOSTS,
        workers=2,
    ),
)

PAPER = Profile(
    name="paper",
    data=None,
    # The released component names; see sparrow.paths.component_path for where they are looked up.
    model=ModelSection(
        hosts={
            "videoglamm": HostModelSection(
                num_frames=16,
                num_sam_frames=8,
                llm=dict(path="Phi-3-mini-4k-instruct", model_max_length=2048, dtype="bfloat16"),
                vision=dict(path="clip-vit-large-patch14-336"),
                temporal=dict(
                    kind="internvideo2",
                    path=INTERNVIDEO2_RELEASE,
                    image_size=224,
                    patch_size=14,
                    chunk_size=4,
                    tubelet_size=1,
                    hidden_size=1408,
                    num_layers=40,
                    num_heads=16,
                    intermediate_size=6144,
                ),
                sam=_paper_sam("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt", None),
            ),
            "unipixel": HostModelSection(
                num_frames=16,
                num_sam_frames=8,
                llm=dict(path="Qwen2.5-VL-3B-Instruct", model_max_length=4096, dtype="bfloat16"),
                vision=dict(image_size=336, patch_size=14),
                sam=_paper_sam("configs/sam2.1/sam2.1_hiera_b+.yaml", "sam2.1_hiera_base_plus.pt", 768),
            ),
            "glus": HostModelSection(
                num_frames=4,
                num_sam_frames=4,
                llm=dict(path="lisa-7b-llama", model_max_length=512, dtype="bfloat16"),
                vision=dict(path="clip-vit-large-patch14"),
                sam=_paper_sam("configs/sam2/sam2_hiera_l.yaml", "sam2_hiera_large.pt", None),
            ),
        },
        proposer=dict(
            d_model=256,
            num_queries=300,
            encoder_layers=6,
            decoder_layers=6,
            num_heads=8,
            ffn_dim=1024,
            topk=100,
            image_size=448,
            kind="deformable_detr",
            num_points=4,
            backbone="configs/sam2/sam2_hiera_l.yaml",
            backbone_checkpoint="sam2_hiera_large.pt",
        ),
        max_new_tokens=512,
        host_trainable_sam="mask_decoder",
    ),
    # The released recipes: VideoGLaMM 10 x 500 steps at batch 2 x 10, GLUS 50 x 100, UniPixel's last stage
    # (one epoch of its mixture; 5000 steps is a placeholder) at 4 x 8 with lr 2e-5 and a cosine schedule.
    train=TrainSection(
        stages={
            "proposer": dict(max_steps=500_000, warmup_steps=100, batch_size=64, checkpoint_every=5_000),
            "stage1": dict(max_steps=30 * 500, warmup_steps=100, batch_size=1, checkpoint_every=500),
            "stage2": dict(max_steps=8 * 500, warmup_steps=100, batch_size=1, checkpoint_every=500),
        },
        host_stage={
            "videoglamm": dict(max_steps=10 * 500, warmup_steps=100, batch_size=2, grad_accum=10, checkpoint_every=500),
            "glus": dict(max_steps=50 * 100, warmup_steps=100, batch_size=2, grad_accum=10, checkpoint_every=500),
            "unipixel": dict(
                max_steps=5000,
                warmup_steps=150,
                batch_size=4,
                grad_accum=8,
                lr=2e-5,
                schedule="cosine",
                checkpoint_every=500,
            ),
        },
    ),
    # GroundingDINO's released thresholds and SAM2-L; every core and no per-crop features for the long pass.
    tsf=TSFSection(
        crop_size=336,
        store_crop_features=False,
        threads=None,
        detector={},
        tracker=dict(kind="sam2", sam2_config="configs/sam2.1/sam2.1_hiera_l.yaml"),
        detector_training=None,
        tiny_detector={},
        quality=dict(sam2_per_case=None),
    ),
    eval=EvalSection(
        limits={key: None for key in _BENCHMARKS}, caption_metrics=True, seeds=1, hosts=_TABLE_HOSTS, workers=1
    ),
)

_TABLE: dict[str, Profile] = {p.name: p for p in (SMOKE, MINI, PAPER)}
