"""QR codes of otpauth:// URIs, as 200 px PNGs (qrcode + pillow, numpy for the mask choice)."""

from __future__ import annotations

import functools
import io
from typing import NamedTuple

import numpy as np
import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M

SIZE = 200
BORDER = 4

# ISO/IEC 18004 finder-like patterns (1:1:3:1:1 with four light modules on one
# side), read as 11-bit numbers, for the third penalty rule.
_WINDOW = 11
_FINDER_LIKE = (0b10111010000, 0b00001011101)


def qr_png(uri: str, size: int = SIZE) -> bytes:
    """A ``size`` x ``size`` PNG whose QR code reads back as exactly ``uri``.

    Drawn at one pixel per module (the border included), then scaled with
    nearest neighbour so every edge stays sharp enough for a phone camera.
    """
    if not isinstance(uri, str) or not uri:
        raise ValueError("a QR code needs a non-empty text")
    modules = qr_matrix(uri)
    light = np.pad(~modules, BORDER, constant_values=True)
    # A 1-bit image: a third of the PNG bytes and half the encoding time of greyscale.
    image = Image.fromarray(light).resize((size, size), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def qr_matrix(text: str) -> np.ndarray:
    """The modules of ``text``'s QR code (ECC level M, no border), ``True`` = dark.

    The same symbol as ``qrcode.QRCode(error_correction=M).make()``: qrcode
    encodes the data (codewords, error correction) and lays out each version;
    here the layout is kept per version and the eight masks are scored with
    the same penalty rules vectorised, because qrcode places and scores the
    eight candidates in pure Python (~6 ms, most of Add TOTP's first view).
    """
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M)
    code.add_data(text)
    code.best_fit()
    codewords = qrcode.util.create_data(code.version, code.error_correction, code.data_list)
    layout = _layout(code.version)
    # Bits in qrcode's placement order; the remainder bits after the last codeword are light.
    bits = np.zeros(len(layout.rows), dtype=bool)
    bits[:8 * len(codewords)] = np.unpackbits(np.asarray(codewords, dtype=np.uint8))
    unmasked = np.zeros(layout.data.shape, dtype=bool)
    unmasked[layout.rows, layout.cols] = bits
    # Scored as qrcode's best_mask_pattern scores them: format and version bits light.
    candidates = np.where(layout.data, unmasked ^ mask_patterns(len(layout.data)),
                          layout.function_test)
    best = int(np.argmin(penalties(candidates)))  # the first of equal scores, as qrcode
    return np.where(layout.data, candidates[best], _function_modules(code.version, best))


class _Layout(NamedTuple):
    data: np.ndarray           # (n, n): the modules that hold data (the ones a mask flips)
    rows: np.ndarray           # the data modules in the order qrcode fills them
    cols: np.ndarray
    function_test: np.ndarray  # (n, n): function patterns, format and version bits light


@functools.lru_cache(maxsize=None)
def _layout(version: int) -> _Layout:
    """Where ``version``'s data goes, recorded from qrcode's own ``map_data``."""
    code = _PlacementRecorder(version=version, error_correction=ERROR_CORRECT_M)
    code.data_cache = []  # placement only: no data needed
    code.makeImpl(True, 0)
    rows, cols = (np.array(axis, dtype=np.intp) for axis in zip(*code.placed))
    data = np.zeros((code.modules_count,) * 2, dtype=bool)
    data[rows, cols] = True
    return _Layout(_frozen(data), _frozen(rows), _frozen(cols),
                   _frozen(np.array(code.modules, dtype=bool)))


@functools.lru_cache(maxsize=None)
def _function_modules(version: int, mask: int) -> np.ndarray:
    """``version``'s function patterns with the format (and version) bits of ``mask``."""
    code = qrcode.QRCode(version=version, error_correction=ERROR_CORRECT_M)
    code.data_cache = []
    code.makeImpl(False, mask)
    return _frozen(np.array(code.modules, dtype=bool))


class _PlacementRecorder(qrcode.QRCode):
    """qrcode's QRCode noting each data module's position as ``map_data`` fills it."""

    placed: list[tuple[int, int]]

    def map_data(self, data, mask_pattern):
        self.placed = []
        self.modules = [_RecordingRow(row, r, self.placed) for r, row in enumerate(self.modules)]
        super().map_data(data, mask_pattern)
        self.modules = [list(row) for row in self.modules]


class _RecordingRow(list):
    def __init__(self, values, index: int, placed: list[tuple[int, int]]) -> None:
        super().__init__(values)
        self._index, self._placed = index, placed

    def __setitem__(self, col, value) -> None:
        self._placed.append((self._index, col))
        super().__setitem__(col, value)


def _frozen(array: np.ndarray) -> np.ndarray:
    array.flags.writeable = False  # shared by every session's thread
    return array


@functools.lru_cache(maxsize=None)
def mask_patterns(modules_count: int) -> np.ndarray:
    """The eight masks of a symbol this size, shape (8, n, n), from qrcode's own mask functions."""
    rows, cols = np.indices((modules_count, modules_count))
    return _frozen(np.stack([np.vectorize(qrcode.util.mask_func(k), otypes=[bool])(rows, cols)
                             for k in range(8)]))


def penalties(candidates: np.ndarray) -> np.ndarray:
    """ISO/IEC 18004 mask penalty of each (n, n) symbol in ``candidates``, as qrcode's ``lost_point``.

    Rules: runs of five or more same-colour modules in a row or column (length - 2),
    2x2 blocks of one colour (3 each), finder-like patterns (40 each), and the
    share of dark modules away from 50 % (10 per whole 5 %).
    """
    count, n, _ = candidates.shape
    lines = np.concatenate([candidates, candidates.transpose(0, 2, 1)])  # rows, then columns
    # Rule 1: run lengths along every line; a sentinel column keeps runs from
    # spilling into the next line.
    padded = np.full((2 * count * n, n + 1), 2, dtype=np.int8)
    padded[:, :n] = lines.reshape(-1, n)
    flat = padded.ravel()
    starts = np.concatenate(([0], np.flatnonzero(flat[1:] != flat[:-1]) + 1))
    lengths = np.diff(np.append(starts, flat.size))
    long = lengths >= 5
    owner = (starts[long] // (n + 1) // n) % count
    score = np.bincount(owner, weights=lengths[long] - 2, minlength=count)
    # Rule 2: 2x2 blocks.
    corner = candidates[:, :-1, :-1]
    blocks = ((corner == candidates[:, 1:, :-1]) & (corner == candidates[:, :-1, 1:])
              & (corner == candidates[:, 1:, 1:]))
    score += 3 * blocks.sum(axis=(1, 2))
    # Rule 3: finder-like patterns in every row and column, each window of
    # 11 modules read as an 11-bit number.
    width = n - _WINDOW + 1
    bits = lines.astype(np.uint16)
    windows = bits[..., :width] << (_WINDOW - 1)
    for k in range(1, _WINDOW):
        windows |= bits[..., k:k + width] << (_WINDOW - 1 - k)
    found = (windows == _FINDER_LIKE[0]) | (windows == _FINDER_LIKE[1])
    score += 40 * found.sum(axis=(1, 2)).reshape(2, count).sum(axis=0)
    # Rule 4: dark share, computed in qrcode's order so the float rounding matches.
    dark = candidates.sum(axis=(1, 2))
    score += 10 * np.floor(np.abs(dark / n**2 * 100 - 50) / 5)
    return score.astype(np.int64)
