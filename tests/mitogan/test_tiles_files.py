"""The tiles file: modes that follow the umask, the preprocess folder accepted, pixel sizes read from inputs."""

import os
import stat

import numpy as np
import pytest
import tifffile

from mitogan.errors import InputError
from mitogan.tiles import TileSet, input_pixel_size, load_tiles, save_tiles, tile_pixel_size


def _tiles():
    return TileSet.from_array(np.zeros((3, 1, 8, 8), np.float32), meta={"pixel_size_um": 0.1})


def test_saved_tiles_follow_the_umask(tmp_path):
    old = os.umask(0o002)
    try:
        path = save_tiles(tmp_path / "tiles.npz", _tiles())
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o664  # not mkstemp's 0600


def test_load_tiles_accepts_the_folder_preprocess_wrote(tmp_path):
    save_tiles(tmp_path / "out" / "tiles.npz", _tiles())
    assert len(load_tiles(tmp_path / "out")) == 3
    (tmp_path / "other").mkdir()
    # never `mitogan preprocess --out other`, which would write into the folder given as data
    with pytest.raises(InputError, match=r"other: is a folder with no movies.*`mitogan preprocess MOVIES --out TILES`"):
        load_tiles(tmp_path / "other")


def test_tile_pixel_size_divides_by_the_tile_scale():
    assert tile_pixel_size({"pixel_size_um": 0.1, "config": {"preprocess.tile.scale": 0.5}}) == pytest.approx(0.2)
    assert tile_pixel_size({"config": {"preprocess.tile.scale": 0.5}}) is None


@pytest.mark.parametrize("kind, expected", [("imagej", 0.1), ("imagej_nm", 0.1), ("ome", 0.065), ("cm", 0.5),
                                            ("inch", None), ("none", None)])
def test_input_pixel_size_from_tiff_metadata(tmp_path, kind, expected):
    a = np.zeros((2, 16, 16), np.uint16)
    p = tmp_path / "v.tif"
    if kind == "imagej":
        tifffile.imwrite(p, a, imagej=True, resolution=(10.0, 10.0), metadata={"unit": "um", "axes": "TYX"})
    elif kind == "imagej_nm":
        tifffile.imwrite(p, a, imagej=True, resolution=(0.01, 0.01), metadata={"unit": "nm", "axes": "TYX"})
    elif kind == "ome":
        tifffile.imwrite(p, a, ome=True, metadata={"axes": "TYX", "PhysicalSizeX": 0.065, "PhysicalSizeXUnit": "µm"})
    elif kind == "cm":
        tifffile.imwrite(p, a, resolution=(20000.0, 20000.0), resolutionunit="CENTIMETER")
    elif kind == "inch":  # screen dpi says nothing about the sample
        tifffile.imwrite(p, a, resolution=(72.0, 72.0), resolutionunit="INCH")
    else:
        tifffile.imwrite(p, a)
    got = input_pixel_size([p])
    assert got == pytest.approx(expected) if expected else got is None


def test_input_pixel_size_needs_every_source_to_agree(tmp_path):
    for name, res in (("a.tif", 10.0), ("b.tif", 5.0)):
        tifffile.imwrite(tmp_path / name, np.zeros((2, 8, 8), np.uint16), imagej=True, resolution=(res, res),
                         metadata={"unit": "um", "axes": "TYX"})
    assert input_pixel_size([tmp_path / "a.tif", tmp_path / "a.tif"]) == pytest.approx(0.1)
    assert input_pixel_size([tmp_path / "a.tif", tmp_path / "b.tif"]) is None
    assert input_pixel_size([tmp_path / "a.tif", tmp_path / "frames"]) is None  # a folder: unknown


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta", "version"])
def test_damaged_tiles_file_is_one_line_input_error(tmp_path, damage):
    # a flipped byte used to escape as a BadZipFile traceback (when the array was read, after np.load)
    path = tmp_path / "tiles.npz"
    ts = TileSet.from_array(np.linspace(-1, 1, 4 * 16 * 16, dtype=np.float32).reshape(4, 1, 16, 16))
    if damage == "version":
        ts.meta = {"version": "1"}
    save_tiles(path, ts)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 3] ^= 0xFF  # inside the tiles array: its CRC no longer matches
    elif damage == "truncate":
        data = data[: len(data) - 40]
    elif damage == "meta":  # broken JSON
        np.savez(path, tiles=ts.tiles, meta=np.array('{"version": 1,'))
        data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))
    with pytest.raises(InputError) as e:
        load_tiles(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)
