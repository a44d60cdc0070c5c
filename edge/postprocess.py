"""SSD post-processing in pure NumPy: score pre-filter, top-k, box decoding and class-aware NMS.

Inputs are one image's raw model outputs; no I/O, no camera, no interpreter.

Formats:
* ``box_deltas`` ``(N, 4)`` ``ty, tx, th, tw`` (see ``edge.boxes``);
* ``class_scores`` ``(N, C+1)`` probabilities with background at index 0;
* ``anchors`` ``(N, 4)`` ``cy, cx, h, w`` normalized;
* returned boxes ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` clipped to [0, 1],
  scores ``(K,)`` float32, class ids ``(K,)`` int32 0-based (background excluded), best first.

Semantics match ``tf.image.non_max_suppression`` run per class: a candidate needs
``score > score_threshold``, a box is suppressed by a kept box of the same class when their
``IoU > iou_threshold``, and equal scores keep the lower anchor index first (then the lower class).

Speed: a frame has ~10^2 candidates, so the cost is the number of NumPy calls (~1 us each), not arithmetic.
The code is written to keep that number small: one integer sort key per candidate carries its class, score
and index; per-anchor constants are gathered with one ``take`` (``SSDDecoder``); the IoU tests NMS can need
are one pass over a band of box pairs; operands of a ufunc have the same shape where possible (NumPy's
min/max are several times slower against a broadcast scalar).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from edge.boxes import MAX_LOG_SCALE, VARIANCES

PRE_NMS_TOP_K = 400
"""Candidates (anchor, class pairs) kept after the score filter, before NMS (whose work grows as candidates x
the largest class's candidates)."""

_EMPTY_BOXES = np.zeros((0, 4), dtype=np.float32)


def _empty() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return _EMPTY_BOXES.copy(), np.zeros((0,), dtype=np.float32), np.zeros((0,), dtype=np.int32)


_SIGNS = np.array([[-1.0], [-1.0], [1.0], [1.0]], dtype=np.float32)
"""Turns rows ``ymin, xmin, ymax, xmax`` into ``-ymin, -xmin, ymax, xmax`` ("signed corners"): one
``np.minimum`` of two boxes then gives ``-max(ymin), -max(xmin), min(ymax), min(xmax)``, the corners of their
intersection. Clipping a box to [0, 1] is clipping its signed corners to ``[_LOWER, _UPPER]``."""
_SIGN_ROW = _SIGNS.reshape(4)
_LOWER = np.array([[-1.0], [-1.0], [0.0], [0.0]], dtype=np.float32)
_UPPER = np.array([[0.0], [0.0], [1.0], [1.0]], dtype=np.float32)

_HALF = np.array(0.5, dtype=np.float32)
_ZEROS = np.zeros(1 << 16, dtype=np.float32)
_ZEROS.flags.writeable = False

_BAND_PAIRS = 1 << 18
"""Box pairs compared per vectorized step: bounds the temporary arrays to a few MiB."""

_ONE_PER_BYTE = [((1 << (8 * size)) - 1) // 255 for size in range(65)]
"""``_ONE_PER_BYTE[n]``: the int whose ``n`` low bytes are 1 (a class of ``n`` boxes, none decided yet)."""

_MAX_SCORE_BITS = np.int64(0x7FFFFFFF)
"""Above the bit pattern of any non-negative float32 but NaN: ``_MAX_SCORE_BITS - bits`` ranks such scores
best first."""


def _zeros(shape: tuple[int, int]) -> np.ndarray:
    """Read-only float32 zeros of ``shape`` (a view of one shared buffer when it is large enough)."""
    size = shape[0] * shape[1]
    return _ZEROS[:size].reshape(shape) if size <= _ZEROS.size else np.zeros(shape, dtype=np.float32)


def _suppressed(
    corners: np.ndarray, depth: int, lo: int, hi: int, iou_threshold: np.ndarray, areas: np.ndarray | None = None
) -> np.ndarray:
    """For boxes ``lo <= i < hi``: whether box ``i`` would suppress box ``i + r``, for ``0 <= r <= depth``.

    ``corners``: C-contiguous float32 ``(4, L)`` signed corners of ``L >= hi + depth`` boxes (columns past the
    real boxes hold anything finite or NaN: they are read, and their pairs mean nothing). ``areas``: the ``L``
    boxes' areas, or None when ``lo == 0`` and ``hi`` is the last real box (then they come out of the pass).
    Returns ``(depth + 1, hi - lo)`` bool, ``[r, i - lo]`` = ``IoU(box i, box i + r) > iou_threshold``
    (computed as ``inter > iou_threshold * union``, so zero-area pairs are never suppressed).
    """
    length = corners.shape[1]
    count = hi - lo
    flat = corners.reshape(-1)
    item = flat.itemsize
    # Rows of one window over all four coordinate rows at once: pairs[r, x] = (flat[lo + x], flat[lo + x + r]),
    # where x = c * length + i - lo is coordinate c of box i.
    width = 3 * length + count
    window = np.ndarray((depth + 1, width), np.float32, flat, lo * item, (item, item))
    bounds = np.minimum(flat[lo : lo + width], window)
    sides = np.add(bounds[:, 2 * length :], bounds[:, : length + count])  # heights, then (from `length`) widths
    np.maximum(sides, _zeros(sides.shape), out=sides)
    inter = sides[:, :count] * sides[:, length : length + count]  # row 0: each box's own area
    if areas is None:  # all boxes in one pass: row 0 has every area, and reading on past it only meets padding
        areas = inter.reshape(-1)
        lo = 0
    union = np.add(np.ndarray((depth + 1, count), np.float32, areas, lo * item, (item, item)), areas[lo:hi])
    union -= inter
    union *= iou_threshold
    return inter > union


def _suppression_bytes(corners: np.ndarray, num: int, depth: int, iou_threshold: float) -> bytes:
    """``_suppressed`` for all ``num`` boxes as bytes: byte ``r * num + i`` is 1 when box ``i`` suppresses box
    ``i + r``. Large bands are compared a few boxes at a time (``_BAND_PAIRS``)."""
    threshold = np.array(iou_threshold, dtype=np.float32)
    step = max(_BAND_PAIRS // (depth + 1), 1)
    if step >= num:
        return _suppressed(corners, depth, 0, num, threshold).tobytes()
    sides = corners[2:] + corners[:2]
    np.maximum(sides, 0.0, out=sides)
    areas = sides[0] * sides[1]
    band = np.empty((depth + 1, num), dtype=np.bool_)
    for lo in range(0, num, step):
        hi = min(lo + step, num)
        band[:, lo:hi] = _suppressed(corners, depth, lo, hi, threshold, areas)
    return band.tobytes()


def _greedy(band: bytes, num: int, counts: list[int]) -> list[int]:
    """Greedy NMS over ``num`` boxes grouped by class (``counts[c]`` boxes of class ``c``, best first inside a
    class), given ``band`` from ``_suppression_bytes``. Returns the kept positions, class by class.

    A class's state is one int with a byte per box (1: neither kept nor suppressed yet): the lowest set byte
    is its best remaining box, which is kept and clears the bytes of the boxes it suppresses (its column of
    ``band``, shifted to its position). The loop runs once per kept box.
    """
    kept: list[int] = []
    append = kept.append
    from_bytes = int.from_bytes
    start = 0
    for size in counts:
        if not size:
            continue
        append(start)  # a class's best box is always kept
        if size > 1:
            undecided = _ONE_PER_BYTE[size] if size < len(_ONE_PER_BYTE) else ((1 << (8 * size)) - 1) // 255
            remaining = (undecided - 1) & ~from_bytes(band[start::num], "little")
            while remaining:
                bit = (remaining & -remaining).bit_length() - 1
                box = start + (bit >> 3)
                append(box)
                remaining &= remaining - 1
                remaining &= ~(from_bytes(band[box::num], "little") << bit)
        start += size
    return kept


def grouped_nms(boxes: np.ndarray, classes: np.ndarray, iou_threshold: float = 0.5) -> list[int]:
    """Class-aware greedy NMS over candidates grouped by class (the NMS step of ``decode_and_nms``).

    Args:
        boxes: ``(K, 4)`` corner boxes ``ymin, xmin, ymax, xmax`` (``ymin <= ymax``, ``xmin <= xmax``, any
            consistent units).
        classes: ``(K,)`` non-negative ints in non-decreasing order; inside a class the candidates are
            sorted best first.
        iou_threshold: a box is suppressed by a kept box of its class when their IoU is ``> iou_threshold``.

    Returns:
        Positions of the kept candidates in ascending order (class by class, best first inside a class).

    Identical to greedy NMS run per class. A class's candidates are contiguous, so every same-class pair
    lies within ``D`` = (largest class size - 1) positions: one vectorized pass over that band of pairs
    does all the IoU tests NMS can need, and the greedy pass then loops over the kept boxes only.
    """
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"grouped_nms: boxes must have shape (K, 4), got {boxes.shape}")
    num = boxes.shape[0]
    if num == 0:
        return []
    counts = np.bincount(classes).tolist()
    depth = max(counts) - 1
    if depth == 0:
        return list(range(num))
    corners = np.zeros((4, num + depth), dtype=np.float32)
    np.multiply(boxes.T, _SIGNS, out=corners[:, :num])
    return _greedy(_suppression_bytes(corners, num, depth, float(iou_threshold)), num, counts)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.5, max_output: int = 100) -> np.ndarray:
    """Single-class greedy non-maximum suppression.

    Args:
        boxes: ``(K, 4)`` corner boxes ``ymin, xmin, ymax, xmax`` (any consistent units).
        scores: ``(K,)`` scores; higher is better.
        iou_threshold: a box is dropped when its IoU with an already kept box is ``> iou_threshold``.
        max_output: at most this many indices are returned.

    Returns:
        ``(M,)`` int64 indices into ``boxes``, best score first (ties: lower index first).
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"nms: boxes must have shape (K, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"nms: scores must have shape ({boxes.shape[0]},), got {scores.shape}")
    if boxes.shape[0] == 0 or max_output <= 0:
        return np.zeros((0,), dtype=np.int64)
    order = np.argsort(-scores, kind="stable")
    kept = grouped_nms(boxes[order], np.zeros(boxes.shape[0], dtype=np.intp), float(iou_threshold))
    return order[kept[:max_output]]


@dataclass(frozen=True)
class _KeyLayout:
    """Bit fields of a candidate's sort key ``column << class_shift | rank << flat_bits | flat`` for scores of
    shape ``(N, num_columns)``, as 0-d int64 arrays (NumPy's cheapest scalar operands)."""

    num_columns: np.ndarray
    flat_bits: np.ndarray
    class_shift: np.ndarray
    flat_mask: np.ndarray
    order_mask: np.ndarray

    @classmethod
    def of(cls, num_columns: int, flat_bits: int, rank_bits: int) -> _KeyLayout:
        class_shift = flat_bits + rank_bits
        if class_shift + max(num_columns - 1, 0).bit_length() > 63:
            raise ValueError(f"class_scores: too many (anchor, class) scores to rank ({num_columns} columns)")
        return cls(
            *(np.array(v, dtype=np.int64) for v in (num_columns, flat_bits, class_shift)),
            np.array((1 << flat_bits) - 1, dtype=np.int64),
            np.array((1 << class_shift) - 1, dtype=np.int64),
        )


def _float32_keys(shape: tuple[int, int]) -> _KeyLayout | None:
    """The key layout for float32 scores of ``shape`` (rank = 31-bit score bits), None when it needs > 63 bits."""
    flat_bits = max((shape[0] * shape[1] - 1).bit_length(), 1)
    if flat_bits + 31 + max(shape[1] - 1, 0).bit_length() > 63:
        return None
    return _KeyLayout.of(shape[1], flat_bits, 31)


def _key_base(flat: np.ndarray, layout: _KeyLayout) -> np.ndarray:
    """``column << class_shift | _MAX_SCORE_BITS << flat_bits | flat`` (int64) for float32 candidates at flat
    indices ``flat``: a candidate's key is this minus ``score_bits << flat_bits``."""
    flat = flat.astype(np.int64)
    return ((flat % layout.num_columns) << layout.class_shift) | (_MAX_SCORE_BITS << layout.flat_bits) | flat


def _candidate_keys(
    class_scores: np.ndarray,
    first_class: int,
    score_threshold: float,
    pre_nms_top_k: int,
    float32_keys: tuple[_KeyLayout, np.ndarray] | None = None,
) -> tuple[np.ndarray, _KeyLayout] | None:
    """The candidates of ``class_scores (N, columns)`` as sorted int64 keys, or None when there are none.

    A candidate is a flat index ``f = anchor * columns + column`` with ``score > score_threshold`` and
    ``column >= first_class``. Its key (``_KeyLayout``) has ``rank`` ascending as the score descends, so
    ascending keys are the NMS order (by class; best first; ties: lower ``f``) and ``key & order_mask`` is the
    output order (best first; ties: lower anchor, then lower class). At most ``pre_nms_top_k`` keys (``<= 0``:
    all), the best. ``float32_keys``: ``(_float32_keys(shape), _key_base(arange(N * columns), ...))``, kept
    by ``SSDDecoder``.
    """
    candidate = class_scores > score_threshold
    if first_class:
        candidate[:, :first_class] = False
    flat = candidate.reshape(-1).nonzero()[0]
    if not flat.size:
        return None
    scores = class_scores.reshape(-1).take(flat)
    layout = float32_keys[0] if float32_keys is not None else _float32_keys(class_scores.shape)
    if class_scores.dtype == np.float32 and float(score_threshold) >= 0 and layout is not None:
        # Scores > 0: their float32 bit patterns rank them exactly, ties included.
        keys = float32_keys[1].take(flat) if float32_keys is not None else _key_base(flat, layout)
        keys -= np.left_shift(scores.view(np.int32), layout.flat_bits, dtype=np.int64)
    else:  # any dtype or threshold: rank the distinct scores (np.unique sorts them ascending)
        distinct, rank = np.unique(scores, return_inverse=True)
        flat_bits = max((class_scores.size - 1).bit_length(), 1)
        layout = _KeyLayout.of(class_scores.shape[1], flat_bits, max((distinct.size - 1).bit_length(), 1))
        keys = (flat % layout.num_columns) << layout.class_shift
        keys |= (distinct.size - 1 - rank.reshape(-1)) << layout.flat_bits
        keys |= flat
    if keys.size > pre_nms_top_k > 0:
        # O(n) partition first (a low threshold can leave tens of thousands of candidates).
        keys = keys.take(np.argpartition(keys & layout.order_mask, pre_nms_top_k - 1)[:pre_nms_top_k])
    keys.sort()
    return keys, layout


def _class_aware_nms(
    class_scores: np.ndarray,
    first_class: int,
    corners_of: Callable[[np.ndarray], np.ndarray],
    score_threshold: float,
    iou_threshold: float,
    max_detections: int,
    pre_nms_top_k: int,
    float32_keys: tuple[_KeyLayout, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Score filter, top-k, class-aware NMS and output order over ``class_scores (N, columns)``; columns before
    ``first_class`` (a background) never qualify, class ids come back as ``column - first_class``.

    ``corners_of(anchors)``: ``anchors`` ``(L,)`` intp, the candidates' anchor indices and then padding
    (zeros); returns C-contiguous float32 ``(4, L)`` signed corners (``-ymin, -xmin, ymax, xmax``) of their
    boxes clipped to [0, 1].
    """
    found = _candidate_keys(class_scores, first_class, score_threshold, pre_nms_top_k, float32_keys)
    if found is None:
        return _empty()
    keys, layout = found
    num = keys.size
    columns = keys >> layout.class_shift
    counts = np.bincount(columns).tolist()
    depth = max(counts) - 1
    flat = keys & layout.flat_mask
    anchors = np.zeros(num + depth, dtype=np.intp)  # then `depth` padding columns, for the band's window
    np.floor_divide(flat, layout.num_columns, out=anchors[:num])
    corners = corners_of(anchors)
    if depth:
        kept = np.array(_greedy(_suppression_bytes(corners, num, depth, iou_threshold), num, counts), dtype=np.intp)
    else:  # one candidate per class: nothing to suppress
        kept = np.arange(num)
    kept = kept.take((keys.take(kept) & layout.order_mask).argsort()[:max_detections])  # best first
    boxes = np.multiply(corners.take(kept, 1).T, _SIGN_ROW, order="C")
    flat = flat.take(kept)
    return (
        boxes,
        class_scores.reshape(-1).take(flat).astype(np.float32, copy=False),
        np.subtract(columns.take(kept), first_class, dtype=np.int32),
    )


class SSDDecoder:
    """``decode_and_nms`` for one model's anchors, with the per-anchor constants computed once.

    ``SSDDecoder(anchors, variances)(box_deltas, class_scores, ...)`` returns what
    ``decode_and_nms(box_deltas, class_scores, anchors, ..., variances)`` does (``decode_and_nms`` keeps a few
    of these, keyed on the anchors array). Boxes are decoded with the float32 operations of
    ``edge.boxes.decode_boxes``, in the same order, so both give identical boxes.
    """

    # Rows of `_table` (one column per anchor): constants laid out so that every ufunc in the decode has two
    # operands of one shape.
    _VARIANCES, _SIZES, _CENTRES, _MAX_LOG, _LOWER, _UPPER = (
        slice(0, 4),
        slice(4, 6),
        slice(6, 8),
        slice(8, 10),
        slice(10, 14),
        slice(12, 16),
    )

    def __init__(self, anchors: np.ndarray, variances: Sequence[float] = VARIANCES) -> None:
        """``anchors``: ``(N, 4)`` ``cy, cx, h, w`` normalized; ``variances``: ``(v_y, v_x, v_h, v_w)``."""
        anchors = np.asarray(anchors, dtype=np.float32)
        if anchors.ndim != 2 or anchors.shape[1] != 4:
            raise ValueError(f"SSDDecoder: anchors must have shape (N, 4), got {anchors.shape}")
        if len(variances) != 4:
            raise ValueError(f"SSDDecoder: variances must be 4 numbers (v_y, v_x, v_h, v_w), got {variances!r}")
        self.num_anchors = anchors.shape[0]
        table = np.empty((16, self.num_anchors), dtype=np.float32)
        table[self._VARIANCES] = np.asarray(variances, dtype=np.float32)[:, None]
        table[self._SIZES] = anchors[:, 2:].T
        table[self._CENTRES] = anchors[:, :2].T
        table[self._MAX_LOG] = MAX_LOG_SCALE
        table[10:12], table[12:14], table[14:16] = -1.0, 0.0, 1.0  # _LOWER = -1, -1, 0, 0; _UPPER = 0, 0, 1, 1
        self._table = table
        # _delta_index[c, a]: where delta c of anchor a is in the flattened (N, 4) deltas.
        self._delta_index = np.arange(4 * self.num_anchors, dtype=np.intp).reshape(self.num_anchors, 4).T.copy()
        self._keys: dict[int, tuple[_KeyLayout, np.ndarray] | None] = {}

    def __call__(
        self,
        box_deltas: np.ndarray,
        class_scores: np.ndarray,
        score_threshold: float = 0.5,
        iou_threshold: float = 0.5,
        max_detections: int = 100,
        pre_nms_top_k: int = PRE_NMS_TOP_K,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One image's SSD outputs -> final detections; arguments and results as in ``decode_and_nms``."""
        class_scores = np.ascontiguousarray(class_scores)
        if class_scores.ndim != 2 or class_scores.shape[1] < 2 or class_scores.shape[0] != self.num_anchors:
            raise ValueError(
                f"decode_and_nms: class_scores must have shape ({self.num_anchors}, C+1) with C >= 1, "
                f"got {class_scores.shape}"
            )
        deltas = np.asarray(box_deltas, dtype=np.float32)
        if deltas.shape != (self.num_anchors, 4):
            raise ValueError(f"decode_and_nms: box_deltas must have shape ({self.num_anchors}, 4), got {deltas.shape}")
        if self.num_anchors == 0 or max_detections <= 0:
            return _empty()
        deltas = deltas.reshape(-1)

        def corners_of(anchors: np.ndarray) -> np.ndarray:
            corners = deltas.take(self._delta_index.take(anchors, 1))  # (4, length) ty, tx, th, tw
            table = self._table.take(anchors, 1)
            corners *= table[self._VARIANCES]
            centres = corners[:2] * table[self._SIZES]
            centres += table[self._CENTRES]
            half_sizes = corners[2:]
            np.minimum(half_sizes, table[self._MAX_LOG], out=half_sizes)
            np.exp(half_sizes, out=half_sizes)
            half_sizes *= table[self._SIZES]
            half_sizes *= _HALF
            np.subtract(half_sizes, centres, out=corners[:2])  # -ymin, -xmin
            half_sizes += centres  # ymax, xmax
            np.maximum(corners, table[self._LOWER], out=corners)
            np.minimum(corners, table[self._UPPER], out=corners)
            return corners

        return _class_aware_nms(
            class_scores,
            1,
            corners_of,
            score_threshold,
            iou_threshold,
            max_detections,
            pre_nms_top_k,
            self._float32_keys(class_scores.shape[1]),
        )

    def _float32_keys(self, num_columns: int) -> tuple[_KeyLayout, np.ndarray] | None:
        if num_columns not in self._keys:
            layout = _float32_keys((self.num_anchors, num_columns))
            self._keys[num_columns] = (
                None if layout is None else (layout, _key_base(np.arange(self.num_anchors * num_columns), layout))
            )
        return self._keys[num_columns]


_DECODERS: dict[tuple[int, tuple[float, ...]], tuple[np.ndarray, bytes, SSDDecoder]] = {}
"""``decode_and_nms``'s decoders: (id of the anchors array, variances) -> (that array, its bytes, decoder)."""
_MAX_DECODERS = 4


def _decoder(anchors: np.ndarray, variances: Sequence[float]) -> SSDDecoder:
    """The ``SSDDecoder`` of ``anchors``, built once per anchors array (and rebuilt if its values changed)."""
    if not isinstance(anchors, np.ndarray):
        return SSDDecoder(anchors, variances)
    key = (id(anchors), variances if variances is VARIANCES else tuple(float(v) for v in variances))
    entry = _DECODERS.get(key)
    data = anchors.tobytes()
    if entry is not None and entry[0] is anchors and entry[1] == data:
        return entry[2]
    decoder = SSDDecoder(anchors, variances)
    if len(_DECODERS) >= _MAX_DECODERS:
        del _DECODERS[next(iter(_DECODERS))]
    _DECODERS[key] = (anchors, data, decoder)
    return decoder


def decode_and_nms(
    box_deltas: np.ndarray,
    class_scores: np.ndarray,
    anchors: np.ndarray,
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    variances: Sequence[float] = VARIANCES,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Turn one image's SSD outputs into final detections.

    Args:
        box_deltas: ``(N, 4)`` ``ty, tx, th, tw``.
        class_scores: ``(N, C+1)`` class probabilities, background at index 0.
        anchors: ``(N, 4)`` float ``cy, cx, h, w`` normalized.
        score_threshold: an (anchor, class) pair is a candidate when its score is ``> score_threshold``
            (multi-label: one anchor can be a candidate for several classes).
        iou_threshold: same-class boxes with IoU ``> iou_threshold`` with a better kept box are suppressed.
        max_detections: at most this many detections are returned.
        variances: box coding variances ``(v_y, v_x, v_h, v_w)`` (from the model's metadata).
        pre_nms_top_k: only the best ``pre_nms_top_k`` candidates go through NMS (``<= 0``: all of them; equal
            scores at the cut: lower anchor index first).

    Returns:
        ``boxes`` ``(K, 4)`` float32 normalized ``ymin, xmin, ymax, xmax`` clipped to [0, 1],
        ``scores`` ``(K,)`` float32 and ``class_ids`` ``(K,)`` int32 (0-based, background excluded),
        sorted best first.

    The per-anchor constants are computed once per anchors array and kept (a few arrays at most; an array
    whose values changed is noticed); a caller with fixed anchors can hold an ``SSDDecoder`` instead.
    """
    class_scores = np.asarray(class_scores)
    if class_scores.ndim != 2 or class_scores.shape[1] < 2:
        raise ValueError(f"decode_and_nms: class_scores must have shape (N, C+1) with C >= 1, got {class_scores.shape}")
    if np.shape(anchors) != (class_scores.shape[0], 4):
        raise ValueError(
            f"decode_and_nms: anchors must have shape ({class_scores.shape[0]}, 4), got {np.shape(anchors)}"
        )
    return _decoder(anchors, variances)(
        box_deltas, class_scores, score_threshold, iou_threshold, max_detections, pre_nms_top_k
    )


def decode_yolo(
    predictions: np.ndarray,
    input_size: tuple[int, int],
    score_threshold: float = 0.5,
    iou_threshold: float = 0.5,
    max_detections: int = 100,
    pre_nms_top_k: int = PRE_NMS_TOP_K,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's Ultralytics-style YOLO output -> final detections, with the same NMS as ``decode_and_nms``.

    Args:
        predictions: ``(4 + C, N)`` (the export's layout) or ``(N, 4 + C)``, a leading batch axis of 1 allowed:
            per candidate ``cx, cy, w, h`` then ``C`` class scores in [0, 1] (no objectness, no background).
            Coordinates normalized to [0, 1], or in input pixels (told apart by a maximum above 2).
        input_size: ``(height, width)`` of the model input, to normalize pixel coordinates.
        score_threshold, iou_threshold, max_detections, pre_nms_top_k: as in ``decode_and_nms``.

    Returns the usual ``(boxes (K, 4) normalized ymin, xmin, ymax, xmax, scores (K,), class_ids (K,) int32)``.
    """
    array = np.asarray(predictions, dtype=np.float32)
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2 or min(array.shape) < 5:
        raise ValueError(f"decode_yolo: predictions must have shape (4 + C, N) or (N, 4 + C), got {array.shape}")
    if array.shape[0] < array.shape[1]:
        array = array.T
    if array.shape[0] == 0 or max_detections <= 0:
        return _empty()
    centers = array[:, :4]
    class_scores = np.ascontiguousarray(np.where(np.isfinite(array[:, 4:]), array[:, 4:], 0.0))
    height, width = input_size
    scale = np.array([width, height, width, height], np.float32) if np.nanmax(np.abs(centers)) > 2 else 1.0
    centers = centers / scale

    def corners_of(index: np.ndarray) -> np.ndarray:
        cx, cy, w, h = centers[index].T
        corners = np.stack([h / 2 - cy, w / 2 - cx, cy + h / 2, cx + w / 2]).astype(np.float32, copy=False)
        return np.clip(corners, _LOWER, _UPPER, out=corners)

    return _class_aware_nms(class_scores, 0, corners_of, score_threshold, iou_threshold, max_detections, pre_nms_top_k)


def select_detections(
    boxes: np.ndarray,
    classes: np.ndarray,
    scores: np.ndarray,
    count: np.ndarray | float,
    score_threshold: float = 0.5,
    max_detections: int = 100,
    num_classes: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's ``TFLite_Detection_PostProcess``-style outputs -> the detections worth keeping.

    Args:
        boxes: ``(K, 4)`` normalized ``ymin, xmin, ymax, xmax`` (a leading batch axis of 1 is dropped).
        classes: ``(K,)`` class ids as floats (0-based, background excluded).
        scores: ``(K,)`` scores in [0, 1].
        count: how many leading slots are valid (shape ``()``, ``(1,)`` or ``(1, 1)``).
        score_threshold: keep ``score > score_threshold``.
        max_detections: keep at most this many, in slot order (the op writes them best first).
        num_classes: when given, class ids outside ``[0, num_classes)`` are dropped.

    Returns the usual ``(boxes (M, 4) clipped to [0, 1], scores (M,) float32, class_ids (M,) int32)``. Slots
    past ``count`` and non-finite values are ignored, so a model that leaves slots unwritten is read safely.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scores = np.asarray(scores, dtype=np.float32).reshape(-1)
    classes = np.asarray(classes, dtype=np.float32).reshape(-1)
    if not boxes.shape[0] == scores.shape[0] == classes.shape[0]:
        raise ValueError(
            f"select_detections: boxes {boxes.shape}, classes {classes.shape} and scores {scores.shape} "
            "must have the same number of slots"
        )
    counted = float(np.asarray(count, dtype=np.float32).reshape(-1)[0])
    valid = int(min(max(counted, 0.0), scores.shape[0])) if np.isfinite(counted) else 0
    boxes, scores, classes = boxes[:valid], scores[:valid], classes[:valid]
    keep = np.isfinite(scores) & (scores > score_threshold) & np.isfinite(classes) & np.isfinite(boxes).all(axis=1)
    class_ids = np.rint(np.where(np.isfinite(classes), classes, -1)).astype(np.int32)
    keep &= class_ids >= 0
    if num_classes is not None:
        keep &= class_ids < num_classes
    index = np.flatnonzero(keep)[: max(int(max_detections), 0)]
    return np.clip(boxes[index], 0.0, 1.0), scores[index], class_ids[index]
