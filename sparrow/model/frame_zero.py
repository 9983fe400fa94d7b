"""Frame 0 of a clip as the box branch sees it (docs/design.md §6, §7).

The proposer runs on frame 0 only, and the ROI helper's proposal tokens depend on frame 0 and the proposals, not on
the question. :class:`FrameZero` holds that frame and computes both on first use, so the texts of one video share
them at inference and a training batch can hand in proposals it computed for all its samples in one call.
"""

from __future__ import annotations

import torch

from sparrow.model.pixel_decoder import FrameFeatures, PixelDecoder
from sparrow.model.proposer import ClassAgnosticProposer, Proposals
from sparrow.model.roi_helper import ROIProposalHelper


def proposer_input(
    proposer: ClassAgnosticProposer, pixel_decoder: PixelDecoder, feats: FrameFeatures, pixels: torch.Tensor, t: int = 0
) -> torch.Tensor:
    """(1, C, h, w) proposer input for frame ``t`` of ``feats`` (``pixels``: that frame, for a re-encode); a proposer
    with its own backbone takes the frame itself, through its own input chain."""
    if proposer.owns_backbone:
        return proposer.preprocess(pixels)
    size = proposer.spec.image_size
    if size is None or size == pixel_decoder.image_size:
        return pixel_decoder.top_level(feats, t)
    with torch.no_grad():
        alt = pixel_decoder.encode(pixels.unsqueeze(0), image_size=size)
    return pixel_decoder.top_level(alt, 0)


class FrameZero:
    """Frame 0 of one clip: ``feats`` are the clip's SAM2 features (frame 0 first), ``pixels`` its (3, S, S) frame 0.

    ``proposals`` and ``roi_tokens`` are computed on first access and kept; ``proposals`` may be given up front."""

    def __init__(
        self,
        feats: FrameFeatures,
        pixels: torch.Tensor,
        proposer: ClassAgnosticProposer | None,
        pixel_decoder: PixelDecoder,
        roi_helper: ROIProposalHelper | None,
        proposals: Proposals | None = None,
    ):
        self.feats = feats
        self.pixels = pixels
        self._proposer = proposer
        self._pixel_decoder = pixel_decoder
        self._roi_helper = roi_helper
        self._proposals = proposals
        self._pyramid: list[torch.Tensor] | None = None
        self._roi_tokens: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def pyramid(self) -> list[torch.Tensor]:
        """The ROI helper's input levels of frame 0."""
        if self._pyramid is None:
            self._pyramid = self._pixel_decoder.roi_pyramid(self.feats, 0)
        return self._pyramid

    @property
    def proposals(self) -> Proposals:
        """The class-agnostic proposer's proposals on frame 0."""
        if self._proposals is None:
            self._proposals = self._proposer.propose(
                proposer_input(self._proposer, self._pixel_decoder, self.feats, self.pixels)
            )[0]
        return self._proposals

    @property
    def roi_tokens(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The ROI helper's query-independent tokens of the proposals: (N_p, T, hidden) and (N_p, hidden)."""
        if self._roi_tokens is None:
            self._roi_tokens = self._roi_helper.proposal_tokens(
                self.proposals.boxes, self.pyramid, self._pixel_decoder.image_size
            )
        return self._roi_tokens
