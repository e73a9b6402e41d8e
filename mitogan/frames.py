"""The unit of data between the readers and the preprocessing: one video (a stack of frames).

A ``Video`` is what any reader returns, whatever the file format: frames ``(T, H, W)`` in the file's own
dtype (uint8, uint16 or float32; float16 is widened to float32), plus where each frame came from.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Video"]


@dataclass
class Video:
    """Frames of one acquisition with their provenance.

    Attributes:
        frames: ``(T, H, W)`` array, dtype uint8, uint16 or float32; T >= 1, H, W >= 2.
        source: path of the file the frames were read from.
        frame_index: ``(T,)`` int array, index of each frame inside ``source`` (after channel/z selection).
        meta: free-form facts about the acquisition (original shape, axes, channel picked, ...).
    """

    frames: np.ndarray
    source: str
    frame_index: np.ndarray = None  # type: ignore[assignment]
    meta: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.frames.ndim != 3:
            raise ValueError(f"{self.source}: frames must be (T, H, W), got shape {self.frames.shape}")
        if self.frame_index is None:
            self.frame_index = np.arange(self.frames.shape[0])
        self.frame_index = np.asarray(self.frame_index, dtype=np.int64)
        if self.frame_index.shape != (self.frames.shape[0],):
            raise ValueError(f"{self.source}: frame_index must have one entry per frame")

    @property
    def n_frames(self) -> int:
        return int(self.frames.shape[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of every frame."""
        return int(self.frames.shape[1]), int(self.frames.shape[2])
