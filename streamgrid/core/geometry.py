"""A grid's geometry: how many tiles a row, how large, and the bounds on
both. Pure arithmetic, so that whatever validates or names a grid (the
gateway's requests, the contract, the plugin) needs no image library."""

from __future__ import annotations

import math
from dataclasses import dataclass

MIN_TILE, MAX_TILE = 16, 2000
MAX_CELLS = 100
# The largest grid made: a side under JPEG's 65,535 px with room to spare, and
# about 150 MB of pixels (three bytes each) while it is composed.
MAX_GRID_SIDE = 16384
MAX_GRID_PIXELS = 50_000_000


class GridTooLarge(ValueError):
    """The grid asked for is over MAX_GRID_SIDE or MAX_GRID_PIXELS: the
    client's to change, a 400 with this reason."""


@dataclass(frozen=True)
class GridGeometry:
    """``cols`` None means ceil(sqrt(K)): 3 for the default K of 9."""

    cols: int | None = None
    tile_width: int = 300
    tile_height: int = 300

    def validate(self) -> GridGeometry:
        if self.cols is not None and not 1 <= self.cols <= MAX_CELLS:
            raise ValueError(f"grid_cols must be between 1 and {MAX_CELLS}")
        for name, v in (("tile_width", self.tile_width), ("tile_height", self.tile_height)):
            if not MIN_TILE <= v <= MAX_TILE:
                raise ValueError(f"{name} must be between {MIN_TILE} and {MAX_TILE}")
        return self

    def layout(self, frames: int, k: int) -> tuple[int, int]:
        """(cols, rows) for ``frames`` tiles out of a top-K of ``k``.

        Fewer frames than K give a smaller grid: never wider than the frame count.
        """
        cols = self.cols or math.ceil(math.sqrt(k))
        cols = max(1, min(cols, frames))
        return cols, max(1, math.ceil(frames / cols))

    def size(self, frames: int, k: int) -> tuple[int, int]:
        """(width, height) in pixels of the grid of ``frames`` out of ``k``."""
        cols, rows = self.layout(frames, k)
        return cols * self.tile_width, rows * self.tile_height

    def check_size(self, frames: int, k: int) -> GridGeometry:
        """Raises GridTooLarge, with the reason, for a grid too large to make."""
        width, height = self.size(frames, k)
        if max(width, height) > MAX_GRID_SIDE:
            raise GridTooLarge(
                f"{width}x{height} px for {frames} frames: over {MAX_GRID_SIDE} px a side"
            )
        if width * height > MAX_GRID_PIXELS:
            raise GridTooLarge(
                f"{width}x{height} px for {frames} frames: over "
                f"{MAX_GRID_PIXELS // 1_000_000} megapixels"
            )
        return self

    def name(self, frames: int, k: int) -> str:
        cols, rows = self.layout(frames, k)
        return f"grid_{cols}x{rows}_{self.tile_width}x{self.tile_height}_n{frames}.jpg"
