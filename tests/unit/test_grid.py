from __future__ import annotations

import numpy as np
import pytest

from streamgrid.core.geometry import GridGeometry, GridTooLarge
from streamgrid.core.grid import (
    compose_grid,
    decode_jpeg,
    encode_jpeg,
    fit_tile,
    jpeg_size,
)


def gray(level: int, w: int = 64, h: int = 48) -> np.ndarray:
    return np.full((h, w, 3), level, dtype=np.uint8)


def tile_mean(grid: np.ndarray, row: int, col: int, size: int = 300) -> float:
    tile = grid[row * size : (row + 1) * size, col * size : (col + 1) * size]
    centre = tile[size // 3 : 2 * size // 3, size // 3 : 2 * size // 3]
    return float(centre.mean())


def test_default_is_a_3x3_grid_of_300px_tiles() -> None:
    images = [gray(250 - 20 * i) for i in range(9)]
    grid = compose_grid(images, GridGeometry(), k=9)
    assert grid.shape == (900, 900, 3)
    means = [tile_mean(grid, r, c) for r in range(3) for c in range(3)]
    assert means == pytest.approx([250 - 20 * i for i in range(9)], abs=0.5)


def test_fewer_frames_than_k_make_a_smaller_grid() -> None:
    assert compose_grid([gray(100)] * 5, GridGeometry(), k=9).shape == (600, 900, 3)
    assert compose_grid([gray(100)] * 2, GridGeometry(), k=9).shape == (300, 600, 3)
    assert compose_grid([gray(100)], GridGeometry(), k=9).shape == (300, 300, 3)


def test_geometry_is_configurable() -> None:
    geometry = GridGeometry(cols=4, tile_width=100, tile_height=50)
    assert compose_grid([gray(9)] * 8, geometry, k=8).shape == (100, 400, 3)
    assert geometry.layout(frames=8, k=8) == (4, 2)
    assert GridGeometry().layout(frames=16, k=16) == (4, 4)


def test_tiles_keep_aspect_ratio_with_black_bars() -> None:
    tile = fit_tile(np.full((90, 160, 3), 200, dtype=np.uint8), 300, 300)
    assert tile.shape == (300, 300, 3)
    assert tile[0, 150].tolist() == [0, 0, 0]  # letterbox bar
    assert tile[150, 150].tolist() == [200, 200, 200]


def test_no_images_is_an_error() -> None:
    with pytest.raises(ValueError):
        compose_grid([], GridGeometry(), k=9)


@pytest.mark.parametrize(
    "geometry",
    [GridGeometry(cols=0), GridGeometry(tile_width=5), GridGeometry(tile_height=5000)],
)
def test_invalid_geometry_is_rejected(geometry: GridGeometry) -> None:
    with pytest.raises(ValueError):
        geometry.validate()


def test_jpeg_round_trip_and_garbage() -> None:
    image = decode_jpeg(encode_jpeg(gray(123)))
    assert abs(float(image.mean()) - 123) < 1.5
    with pytest.raises(ValueError):
        decode_jpeg(b"not a jpeg")


@pytest.mark.parametrize(("w", "h"), [(1920, 1080), (640, 480), (33, 17)])
def test_jpeg_size_reads_the_header(w: int, h: int) -> None:
    assert jpeg_size(encode_jpeg(gray(90, w, h))) == (w, h)
    assert jpeg_size(b"\x89PNG....") is None


def test_reduced_decode_still_covers_the_tile() -> None:
    data = encode_jpeg(gray(90, 1920, 1080))
    image = decode_jpeg(data, fit=(300, 300))
    assert image.shape == (270, 480, 3)  # 1/4 scale: the fit is 300x169
    assert decode_jpeg(data, fit=(1000, 1000)).shape == (1080, 1920, 3)
    assert decode_jpeg(data, fit=(960, 540)).shape == (540, 960, 3)


def test_grids_too_large_to_make_are_refused_with_the_reason() -> None:
    assert GridGeometry().check_size(9, 9).size(9, 9) == (900, 900)
    with pytest.raises(GridTooLarge, match="20000x20000 px for 100 frames: over 16384 px a side"):
        GridGeometry(None, 2000, 2000).check_size(100, 100)
    with pytest.raises(GridTooLarge, match="300x70000 px for 100 frames"):
        GridGeometry(1, 300, 700).check_size(100, 100)  # JPEG's limit is 65,535 px
    with pytest.raises(GridTooLarge, match="over 50 megapixels"):
        GridGeometry(None, 1800, 1800).check_size(25, 25)  # 9000x9000
