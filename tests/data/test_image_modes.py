"""pil_loader on every PIL mode, written to every format Pillow can save it in: each file either becomes the right
8-bit RGB image (16-bit scaled, never a constant image) or is refused with an error naming the file and the mode."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from minidl.data.datasets import ImageFolder, UnsupportedImageError, pil_loader
from minidl.data.datasets.folder import _to_rgb

pytestmark = pytest.mark.filterwarnings("ignore:IM image format is deprecated:DeprecationWarning")

H, W = 6, 7
_FORMATS = ["PNG", "TIFF", "BMP", "PPM", "WEBP", "JPEG", "GIF", "TGA", "PCX", "SGI", "IM", "JPEG2000", "QOI", "DDS"]
_LOSSY = {"JPEG", "WEBP"}
_SIXTEEN = ("I;16", "I;16L", "I;16B", "I;16N")
_VALUES16 = np.linspace(0, 65535, H * W).round().astype(np.int64).reshape(H, W)  # 0 and 65535 included


def _source(mode: str) -> Image.Image:
    """A non-constant image of ``mode``."""
    if mode in _SIXTEEN or mode == "I":
        img = Image.new(mode, (W, H))
        img.putdata(_VALUES16.ravel().tolist())
        return img
    if mode == "F":
        return Image.fromarray((_VALUES16 / 65535).astype(np.float32), mode="F")  # values in [0, 1]
    i, j = np.mgrid[0:H, 0:W]
    rgb = np.stack([i * 255 // (H - 1), j * 255 // (W - 1), (i + j) * 255 // (H + W - 2)], axis=2).astype(np.uint8)
    return Image.fromarray(rgb, mode="RGB").convert(mode)


def _cases() -> list:
    cases = []
    for mode in Image.MODES:
        src = _source(mode)
        for fmt in _FORMATS:
            buffer = io.BytesIO()
            try:
                with warnings.catch_warnings():  # "IM image format is deprecated"
                    warnings.simplefilter("ignore", DeprecationWarning)
                    src.save(buffer, format=fmt)
                    reopened = Image.open(io.BytesIO(buffer.getvalue()))
                    reopened.load()
            except Exception:  # Pillow cannot write (or read back) this mode in this format
                continue
            sixteen_kept = (
                mode in _SIXTEEN + ("I",)
                and (reopened.mode in _SIXTEEN or (reopened.mode == "I" and fmt == "PPM"))
                and np.array_equal(np.asarray(reopened).astype(np.int64), _VALUES16)  # Pillow wrote it faithfully
            )
            if reopened.mode == mode or sixteen_kept:  # files that hold the source's pixels as they are
                cases.append(pytest.param(mode, fmt, buffer.getvalue(), id=f"{mode}-{fmt}"))
    return cases


_CASES = _cases()


def test_the_matrix_covers_every_mode_that_a_file_can_hold():
    modes = {p.values[0] for p in _CASES}
    assert {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "F", "I;16", "I;16B"} <= modes


@pytest.mark.parametrize(("mode", "fmt", "data"), _CASES)
def test_pil_loader_converts_or_refuses_every_mode(tmp_path, mode, fmt, data):
    path = tmp_path / f"img.{fmt.lower()}"
    path.write_bytes(data)
    src = _source(mode)
    if mode in ("I", "F") and not (mode == "I" and fmt == "PPM"):
        kind = "float" if mode == "F" else "integer"
        with pytest.raises(
            UnsupportedImageError,
            match=rf"pil_loader: .*img\.{fmt.lower()} has 32-bit {kind} pixels \(PIL mode '{mode}'\); expected an "
            r"8-bit or 16-bit image",
        ):
            pil_loader(path)
        return
    out = np.asarray(pil_loader(path))
    assert out.shape == (H, W, 3) and out.dtype == np.uint8
    assert out.min() < out.max() or mode == "1", f"{mode} via {fmt} became a constant image"
    if mode in _SIXTEEN or mode == "I":
        expected = np.round(_VALUES16 * 255 / 65535).astype(np.uint8)  # 16-bit 0..65535 -> 8-bit 0..255
        np.testing.assert_array_equal(out, np.repeat(expected[:, :, None], 3, axis=2))
    elif fmt in _LOSSY:
        assert np.abs(out.astype(int) - np.asarray(src.convert("RGB"), int)).mean() < 40
    else:
        np.testing.assert_array_equal(out, np.asarray(src.convert("RGB")))


@pytest.mark.parametrize("mode", ["La", "RGBa", "HSV", "RGBX", "I;16N"])
def test_modes_without_a_file_format_convert_in_memory(mode):
    out = np.asarray(_to_rgb(_source(mode), "<memory>"))
    assert out.shape == (H, W, 3) and out.min() < out.max()


def test_image_folder_names_the_file_and_skip_corrupt_leaves_float_images_out(tmp_path):
    (tmp_path / "a").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a" / "ok.png")
    _source("F").save(tmp_path / "a" / "depth.tif")
    folder = ImageFolder(tmp_path)
    with pytest.raises(UnsupportedImageError, match=r"ImageFolder: pil_loader: .*depth\.tif has 32-bit float pixels"):
        folder[0]
    with pytest.warns(UserWarning, match=r"skipped 1 corrupt or unreadable image\(s\) of 2: .*depth\.tif"):
        kept = ImageFolder(tmp_path, skip_corrupt=True)
    assert [p.rsplit("/", 1)[-1] for p, _ in kept.samples] == ["ok.png"]
