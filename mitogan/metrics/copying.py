"""Data copying: is a generated tile a reproduction of a TRAINING tile, or new data?

A GAN trained on a few hundred images can learn to replay them: exactly, blurred, shifted by a pixel or two,
flipped, turned by any angle, cropped or rescaled. Such a generator is as "realistic" as the
training data itself, so fidelity alone would crown it. This module finds, for every query tile, its nearest
training tile **up to those transformations**, and compares that distance with how close *honest* new real
data gets to the training tiles.

Matching (``CopyIndex``), two stages so that it stays cheap:

    coarse   every tile blurred and area-averaged to 8 x 8, zero mean, unit norm; the training side in all
             8 orientations (rotations by 90 degrees and flips). Each query keeps its ``candidates`` most
             correlated (training tile, orientation) pairs.
    fine     32 x 32 grids (blur sigma = S/64 px, so camera noise and fine detail still count) of the query and
             of each candidate, at zoom 1 and 1.1 on either side (a 10 % crop or rescale), compared over
             shifts of up to +-2 grid cells (S/16 px) as the correlation of the overlapping windows.
             distance = 1 - the best correlation: 0 for a copy, ~1 for unrelated content.
    turned   copies turned by any angle and rescaled by 0.63-1.58, not only quarter turns and 10 % zooms
             (``_rotated_match``): each query's 3 nearest training tiles over turns in 7.5-degree steps and
             magnifications in steps of 1.2 (coarse grids of the central disc, which every turn keeps; below 1
             the training side is magnified instead, so every disc is full); for each candidate the scale, the
             exact angle and the mirror read from the two tiles' polar power spectra (a turn is a shift along
             their angle axis; the query's spectrum is read at radii times each lookup scale, and the best
             agreement, refined between them, gives the scale); the query turned back and rescaled by them,
             registered onto the training tile by phase correlation to a fraction of a grid cell, compared over
             the central square of the disc that its content fills (blur sigma = S/32: a turn resamples the
             camera noise); the best candidate's scale refined in 4 % steps and its angle read again at that
             scale. The smaller distance of the two stages counts. Unscaled turns within 2 degrees of a quarter
             turn are left to the first stage: registered that finely, the unturned new frames of a drifting
             field (the null) would come nearer too.

The null (what honest new data looks like): every training tile's distance to the nearest training tile of
*another time block or video* (``split groups``). It contains "the same field a few frames later", so frames
of the training movies at other times are not called copies; a generated tile closer to a training tile than
95 % of those is (``COPY_QUANTILE``). Near-duplicate videos (the same field in two files) count as one
video, so the null is not polluted by cross-file twins.

    copy_share         share of generated tiles closer to a training tile than the null's 5 % quantile
    authenticity_gap   max(0, (copy_share - 0.05) / 0.95): 0 = no more close matches than new real data has,
                       1 = every tile is a copy. It enters the primary objective (``evaluate.primary_value``).

This is the per-sample form of the data-copying test of Meehan, Chaudhuri & Dasgupta (AISTATS 2020), with
the training set's own leave-one-time-block-out distances as the reference instead of a held-out set, so
that one test works whether the held-out split is other videos or later frames; its Mann-Whitney effect size
(``copy_auc``: P(generated closer than a null sample)) is reported beside it.
"""

from __future__ import annotations

import functools

import numpy as np

from mitogan.metrics.blur import gaussian_blur

__all__ = ["grids", "turn_tiles", "CopyIndex", "PatchIndex", "patches", "COPY_QUANTILE", "COPY_NULL_VERSION", "copy_statistics", "video_twins", "merge_twins", "layout"]

COPY_QUANTILE = 0.05  # a generated tile nearer than this quantile of the null counts as a copy
COPY_NULL_VERSION = 5  # part of the cache key of the nulls kept beside a cached reference: bump when they change
COARSE, FINE, SHIFT, ZOOM = 8, 32, 2, 1.1
# rotated copies: the query is looked up at these angles (degrees; with the 8 orientations of the training side
# every rotation is within 7.5 degrees of one), then its exact angle against each candidate is read from their
# power spectra (``_angles``), and it is compared turned back by that angle, over the central disc only
ROT_LOOKUP = tuple(np.arange(-37.5, 45.1, 7.5))
ROT_BLUR = 1 / 32  # sigma / S of the turned comparison: a turn resamples camera noise, this averages it out
MIN_TURN = 2.0  # degrees: turns nearer a quarter turn than this are left to the orientations (``_fine_match``)
ROT_CANDIDATES = 3  # training tiles per query the rotated comparison looks at
# rescaled copies: the lookup also magnifies the query by these factors (every scale from 0.63 to 1.58 is within
# 10 % of one); the comparison tries the scale the spectra give, and SCALE_STEP either way of it
SCALE_LOOKUP = tuple(float(z) for z in 1.2 ** np.arange(-2, 3))
SCALE_STEP = 1.04
MIN_SCALE = 1.15  # near a quarter turn, scales nearer 1 than this are left to the zooms of ``_fine_match``
_POLAR_ANGLES = 180  # bins over 180 degrees (a power spectrum repeats after half a turn)


def _sum_last(a: np.ndarray) -> np.ndarray:
    """Sum over a short last axis as numpy's ``sum(-1)`` adds it (pairwise from 8 elements on: 8 running sums,
    then a tree), but with whole-array adds of strided views: the same float32 bits, 3-10x faster than a
    reduction over an axis of 2-4 elements."""
    n = a.shape[-1]
    if n < 8:
        out = a[..., 0].copy()
        for i in range(1, n):
            out += a[..., i]
        return out
    m = n - n % 8
    r = [a[..., j].copy() for j in range(8)]
    for i in range(8, m, 8):
        for j in range(8):
            r[j] += a[..., i + j]
    out = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]))
    for i in range(m, n):
        out += a[..., i]
    return out


def _resize(x: np.ndarray, g: int) -> np.ndarray:
    """(N, S, S) -> (N, g, g) by area averaging (S a multiple of g) or linear interpolation."""
    import cv2

    n, s = len(x), x.shape[-1]
    if s % g == 0:
        f = s // g
        if f > 8:  # long rows: numpy's own reduction is as fast
            return x.reshape(n, g, f, g, f).mean((2, 4))
        # = x.reshape(n, g, f, g, f).mean((2, 4)) bit for bit: rows of f summed, then the f rows in order
        rows = _sum_last(x.reshape(n, g, f, g, f))  # (n, g, f, g)
        out = rows[:, :, 0].copy()
        for i in range(1, f):
            out += rows[:, :, i]
        return out / (f * f)
    return np.stack([cv2.resize(t, (g, g), interpolation=cv2.INTER_AREA if s > g else cv2.INTER_LINEAR) for t in x])


def _zoom(x: np.ndarray, z: float) -> np.ndarray:
    """The central 1/z of each (N, S, S) image, resized back to S (z > 1 zooms in)."""
    import cv2

    s = x.shape[-1]
    c = int(round(s / z))
    o = (s - c) // 2
    return np.stack([cv2.resize(t[o:o + c, o:o + c], (s, s), interpolation=cv2.INTER_LINEAR) for t in x])


def _unit(v: np.ndarray, axis=-1) -> np.ndarray:
    v = v - v.mean(axis, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=axis, keepdims=True), 1e-6)


def grids(tiles: np.ndarray, g: int, sigma: float, zoom: float = 1.0) -> np.ndarray:
    """(N, 1, S, S) tiles -> (N, g, g) float32 grids: blurred by ``sigma`` px, zoomed, resized to g x g."""
    return _zoomed_grids(_blurred(tiles, sigma), g, zoom)


def _blurred(tiles: np.ndarray, sigma: float) -> np.ndarray:
    """(N, 1, S, S) -> (N, S, S) float32 blurred by ``sigma`` px (reflected at the border); 0 = not blurred."""
    return gaussian_blur(np.asarray(tiles, np.float32)[:, 0], sigma)


def _zoomed_grids(x: np.ndarray, g: int, zoom: float = 1.0) -> np.ndarray:
    """``grids`` of tiles already blurred (``_blurred``): one blur serves every zoom."""
    if zoom != 1.0:
        x = _zoom(x, zoom)
    return _resize(x, g).astype(np.float32)


def _field(tiles: np.ndarray) -> np.ndarray:
    """(N, 1, S, S) -> (N, 256) float32 (N, 64 when S is not a multiple of 16): the tile blurred (sigma S/32)
    and averaged to 16 x 16, what twin detection and the layout space compare."""
    s = tiles.shape[-1]
    return grids(tiles, 16 if s % 16 == 0 else 8, s / 32).reshape(len(tiles), -1)


def _orientations(g: np.ndarray) -> np.ndarray:
    """(N, h, w) -> (8, N, h, w): the 4 rotations by 90 degrees, each also mirrored."""
    out = []
    for k in range(4):
        r = np.rot90(g, k, axes=(1, 2))
        out += [r, r[:, :, ::-1]]
    return np.stack(out)


def _window_norms(g: np.ndarray, shift: int) -> np.ndarray:
    """(..., G, G) -> (..., 2 shift + 1, 2 shift + 1): the norm of every window of side G - 2 shift after its
    mean is removed, from box sums (no window is materialised)."""
    side = g.shape[-1] - 2 * shift
    g = g.astype(np.float64)  # a copy: squared in place below
    c = np.zeros(g.shape[:-2] + (g.shape[-2] + 1, g.shape[-1] + 1))  # summed-area table, a zero row and column first
    inner = c[..., 1:, 1:]

    def box(a):
        np.cumsum(a, -1, out=inner)  # in place: the same sums as a padded copy, without the copies
        np.cumsum(inner, -2, out=inner)
        return c[..., side:, side:] - c[..., :-side, side:] - c[..., side:, :-side] + c[..., :-side, :-side]

    s1 = box(g)
    s2 = box(np.multiply(g, g, out=g))
    return np.sqrt(np.maximum(s2 - s1 * s1 / side ** 2, 1e-12)).astype(np.float32)


def _shift_canvases(q: np.ndarray, g: int) -> np.ndarray:
    """(b, V, side, side) windows -> (b, g g, span span V), span = g - side + 1: each window placed on a zero g x g
    canvas at every shift (i, j), shift-major. A canvas's dot product with a g x g grid is the window's with the
    grid's window at (i, j), so one matrix product compares a query with every window of its candidates."""
    b, v, side = q.shape[0], q.shape[1], q.shape[-1]
    span = g - side + 1
    out = np.zeros((b, span, span, v, g, g), np.float32)
    for i in range(span):
        for j in range(span):
            out[:, i, j, :, i:i + side, j:j + side] = q
    return out.reshape(b, span * span * v, g * g).transpose(0, 2, 1)


def _top_k(x: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest entries of every row of ``x`` (b, n), in no particular order
    (torch's top-k: ~10x numpy's argpartition on these shapes)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(x, np.float32)).topk(k, dim=1, sorted=False).indices.numpy()


def _scale_side(fine: int, scale) -> np.ndarray:
    """Side of the square window inside the disc (radius G/2) that a tile turned by any angle and magnified by
    ``scale`` (one number or an array) keeps of its own content (below 1 the rest is border), even."""
    return np.maximum(4, (fine * np.minimum(1.0, np.asarray(scale)) / np.sqrt(2)).astype(int) // 2 * 2)


def _near_quarter(angle: np.ndarray) -> np.ndarray:
    """Whether each turn (degrees) is within ``MIN_TURN`` of a quarter turn."""
    return np.abs((np.asarray(angle) + 45.0) % 90.0 - 45.0) < MIN_TURN


def _outside_first_stage(scale, angle) -> np.ndarray:
    """Whether the second stage may compare at this scale and turn: not an unscaled quarter turn, which the
    orientations and zooms of ``_fine_match`` compare already (registered that finely here, unturned new frames
    of a drifting field would come nearer than there, and the null with them)."""
    return ~(_near_quarter(angle) & (np.abs(np.log(scale)) < np.log(MIN_SCALE)))


def _coarse_disc() -> np.ndarray:
    """(COARSE**2,) bool: the cells of the coarse grid inside the disc that every turn of a tile keeps."""
    c = np.arange(COARSE) - (COARSE - 1) / 2
    return (np.hypot(*np.meshgrid(c, c, indexing="ij")) <= COARSE / 2 - 0.4).ravel()


def turn_tiles(x: np.ndarray, degrees, centre: tuple[float, float] | None = None, scale=1.0) -> np.ndarray:
    """(N, 1, S, S) tiles each turned by ``degrees`` (one number or one per tile; counter-clockwise as displayed)
    about ``centre`` (x, y; default the tile's centre, ((S - 1) / 2, (S - 1) / 2)) and magnified by ``scale`` (one
    number or one per tile; > 1 zooms in) about it, bilinear, mirrored at the border."""
    import cv2

    x = np.asarray(x, np.float32)
    s = x.shape[-1]
    c = ((s - 1) / 2, (s - 1) / 2) if centre is None else centre
    a = np.broadcast_to(np.asarray(degrees, np.float64), (len(x),))
    z = np.broadcast_to(np.asarray(scale, np.float64), (len(x),))
    return np.stack([cv2.warpAffine(np.ascontiguousarray(t[0]), cv2.getRotationMatrix2D(c, float(d), float(m)), (s, s),
                                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)[None]
                     for t, d, m in zip(x, a, z)])


@functools.lru_cache(maxsize=4)
def _lookup_maps(side: int) -> tuple[np.ndarray, ...]:
    """Per ``SCALE_LOOKUP`` factor z, (side**2, turns x cells in the disc) float32: the linear map from a blurred
    2C x 2C grid to the coarse disc cells of that grid turned by every ``ROT_LOOKUP`` angle and magnified by
    max(z, 1) (``turn_tiles``, then area-averaged to C x C): the lookup's many small warps as one matrix product.
    Below 1 the training side is magnified instead (``CopyIndex``), so every comparison has a whole disc of
    content and the similarities of all scales compare."""
    basis = np.eye(side * side, dtype=np.float32).reshape(-1, 1, side, side)
    disc = _coarse_disc()
    return tuple(np.concatenate([_resize(turn_tiles(basis, a, scale=max(z, 1.0))[:, 0], COARSE).reshape(len(basis), -1)[:, disc]
                                 for a in ROT_LOOKUP], 1) for z in SCALE_LOOKUP)


def _polar_spectra(tiles: np.ndarray, scales=None) -> np.ndarray:
    """(N, 1, S, S) -> (N, _POLAR_ANGLES, R) float32: each tile's log power spectrum (under a radial Hann window,
    so that the tile's border does not add a cross) sampled on a polar grid, 1 degree by 1 cycle per tile from 2
    to 3S/8 cycles (at most 24), each radius's mean removed, unit norm. A turn of the tile is a shift along the
    angle axis. With ``scales`` (a sequence): (len(scales), N, A, R), the spectrum of the tile as if magnified by
    each (its radii read at r x scale: a magnified tile's spectrum contracts), for comparison with tiles at scale 1."""
    from scipy import fft as scipy_fft

    x = np.asarray(tiles, np.float32)[:, 0]
    n, s = len(x), x.shape[-1]
    x = (x - x.mean((1, 2), keepdims=True)) * _hann_disc(s)
    # unshifted (the sampler reads the centred spectrum's places from it) and as a column per tile, contiguous:
    # the sparse products then run 5x faster
    power = np.ascontiguousarray(np.log1p(np.abs(scipy_fft.fft2(x))).reshape(n, -1).T)  # complex64: half numpy's cost
    out = []
    for z in (1.0,) if scales is None else scales:
        o = (_polar_sampler(s, float(z)) @ power).T.reshape(n, _POLAR_ANGLES, -1)
        o -= o.mean(1, keepdims=True)
        out.append(_unit(o.reshape(n, -1)).reshape(o.shape).astype(np.float32))
    return out[0] if scales is None else np.stack(out)


@functools.lru_cache(maxsize=16)
def _polar_sampler(s: int, scale: float = 1.0):
    """Sparse (angles x radii, S x S) matrix of bilinear weights: the polar grid of ``_polar_spectra`` read from an
    S x S spectrum as the FFT leaves it (the places of the centred spectrum, ``fftshift``, mapped back; image rows
    grow downwards: angles count counter-clockwise as displayed), its radii times ``scale``; a radius that then
    falls outside the spectrum reads 0."""
    from scipy import sparse

    phi = np.arange(_POLAR_ANGLES) * np.pi / _POLAR_ANGLES
    rad = np.arange(2, min(max(3, 3 * s // 8 + 1), 25))  # at most 24 cycles: bounded memory for big tiles
    inside = np.repeat((rad * scale <= s // 2 - 1)[None], _POLAR_ANGLES, 0).ravel()
    rad = rad * scale
    yy = (s // 2 - np.outer(np.sin(phi), rad)).ravel()
    xx = (s // 2 + np.outer(np.cos(phi), rad)).ravel()
    y0, x0 = np.floor(yy).astype(int), np.floor(xx).astype(int)
    fy, fx = yy - y0, xx - x0
    rows, cols, vals = [], [], []
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            rows.append(np.arange(len(yy)))
            yc, xc = np.clip(y0 + dy, 0, s - 1), np.clip(x0 + dx, 0, s - 1)  # in the centred spectrum
            cols.append((yc - s // 2) % s * s + (xc - s // 2) % s)  # where fftshift took them from
            vals.append(np.where(inside, wy * wx, 0.0))
    return sparse.csr_matrix((np.concatenate(vals).astype(np.float32), (np.concatenate(rows), np.concatenate(cols))),
                             shape=(len(yy), s * s))


def _along_angles(spectra: np.ndarray) -> np.ndarray:
    """(..., A, R) polar spectra -> (..., F, R) complex64: their Fourier transforms along the angle axis, what
    ``_angles`` compares (scipy's FFT: 4x numpy's along a middle axis)."""
    from scipy import fft as scipy_fft

    return scipy_fft.rfft(spectra, axis=-2).astype(np.complex64, copy=False)


def _angles(fq: np.ndarray, ft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The turn (degrees, in [-90, 90)) that takes each training tile to its query, and how well their spectra
    then agree (the correlation's peak, 1 = identical up to the turn): ``fq`` (..., b, F, R) and ``ft``
    (b, k, F, R) are the polar spectra's Fourier transforms along the angle axis (``_along_angles``); the
    leading axes of ``fq`` (several readings of each query) come back in front of (b, k). The peak of their
    circular cross-correlation, refined by a parabola through its neighbours."""
    cross = np.einsum("...bfr,bkfr->...bkf", fq, np.conj(ft), optimize=True)  # 6x the product-and-sum's speed
    corr = np.fft.irfft(cross, n=_POLAR_ANGLES, axis=-1)  # (..., b, k, A)
    peak = corr.argmax(-1)
    left = np.take_along_axis(corr, ((peak - 1) % _POLAR_ANGLES)[..., None], -1)[..., 0]
    mid = np.take_along_axis(corr, peak[..., None], -1)[..., 0]
    right = np.take_along_axis(corr, ((peak + 1) % _POLAR_ANGLES)[..., None], -1)[..., 0]
    shift = (peak + _vertex(left, mid, right)) * 180.0 / _POLAR_ANGLES
    return (shift + 90.0) % 180.0 - 90.0, mid


def _vertex(left, mid, right) -> np.ndarray:
    """Where the parabola through three equally spaced values peaks, in steps from the middle one (0 where
    they do not bend down): the sub-step refinement of a maximum found on a grid."""
    den = left - 2 * mid + right
    return np.where(den < 0, 0.5 * (left - right) / np.where(den < 0, den, -1.0), 0.0)


def _hann_disc(g: int) -> np.ndarray:
    """(g, g) float32: a radial Hann window over the disc inscribed in a g x g grid."""
    c = np.arange(g) - (g - 1) / 2
    r = np.hypot(*np.meshgrid(c, c, indexing="ij"))
    return np.where(r < g / 2, 0.5 * (1 + np.cos(np.pi * r / (g / 2))), 0.0).astype(np.float32)


def _windowed_fft(g: np.ndarray) -> np.ndarray:
    """(..., G, G) grids -> the 2-D FFT of each, mean removed, under the radial Hann window (``_hann_disc``):
    what phase correlation compares."""
    from scipy import fft as scipy_fft

    return scipy_fft.fft2((g - g.mean((-2, -1), keepdims=True)) * _hann_disc(g.shape[-1]))


def _registered_correlation(q: np.ndarray, t: np.ndarray, side, ft: np.ndarray | None = None) -> np.ndarray:
    """Correlation of the central ``side`` x ``side`` windows (``side`` one even number, or one per query) of
    grids ``q`` (n, G, G) and each of ``t`` (m, n, G, G) after ``q`` is moved onto it by the shift their phase
    correlation finds (sub-cell: a parabola through the peak and its neighbours; at most SHIFT cells either way),
    the move done exactly by the Fourier shift theorem. ``ft``: ``_windowed_fft(t)`` if the caller has it.
    A turned copy is turned about an unknown centre, so it is off by a fraction of a cell that a search over
    whole cells leaves; registered, it matches its original as closely as an unturned copy does. -> (m, n)"""
    from scipy import fft as scipy_fft

    n, g = len(q), q.shape[-1]
    fq_raw = scipy_fft.fft2(q)
    fq = _windowed_fft(q)
    k = scipy_fft.fftfreq(g).astype(np.float32)
    c = np.abs(np.arange(g) - (g - 1) / 2)  # the central window of each query: |offset from the centre| < side / 2
    side = np.broadcast_to(np.asarray(side, np.float32), (n,))[:, None, None]
    mask = ((c[:, None] < side / 2) & (c[None, :] < side / 2)).astype(np.float32)  # (n, G, G)
    count = mask.sum((1, 2), keepdims=True)

    def unit(x):  # each window zero mean, unit norm, 0 outside it
        x = (x - (x * mask).sum((1, 2), keepdims=True) / count) * mask
        return x / np.maximum(np.sqrt((x * x).sum((1, 2), keepdims=True)), 1e-6)

    out = []
    for i, tv in enumerate(t):
        cross = fq * np.conj(_windowed_fft(tv) if ft is None else ft[i])
        flat = scipy_fft.ifft2(cross / np.maximum(np.abs(cross), 1e-12)).real.reshape(n, -1)  # peak: q's shift against t
        peak = flat.argmax(-1)
        py, px = np.divmod(peak, g)
        mid = np.take_along_axis(flat, peak[..., None], -1)[..., 0]

        def refine(p, step):  # sub-cell position of the peak along one axis (step: its stride in ``flat``)
            at = lambda d: np.take_along_axis(flat, (peak + d * step + (((p + d) % g) - (p + d)) * step)[..., None], -1)[..., 0]  # noqa: E731
            frac = _vertex(at(-1), mid, at(1))
            return np.clip((p + np.clip(frac, -0.5, 0.5) + g / 2) % g - g / 2, -SHIFT, SHIFT).astype(np.float32)

        dy, dx = refine(py, g), refine(px, 1)
        ramp_y = np.exp((2j * np.pi) * (k[None, :] * dy[:, None])).astype(np.complex64)[:, :, None]  # separable
        ramp_x = np.exp((2j * np.pi) * (k[None, :] * dx[:, None])).astype(np.complex64)[:, None, :]
        moved = scipy_fft.ifft2(fq_raw * ramp_y * ramp_x).real  # q moved back by (dy, dx)
        out.append((unit(moved) * unit(tv)).sum((1, 2)))
    return np.stack(out)


class CopyIndex:
    """Nearest training tile of any query tile, up to orientation, shifts of +-S/16 px and a 10 % zoom (the first
    stage, ``_fine_match``), and up to any turn and a rescaling by 0.63-1.58 (the second, ``_rotated_match``).

    ``CopyIndex(train)``; ``index.distances(query) -> (distance (N,), training index (N,))``;
    ``index.null(groups)`` -> each training tile's distance to the training tiles of other groups.
    ``orient=False`` / ``zooms=(1.0,)`` / a smaller ``fine`` grid serve the patch index (``PatchIndex``).
    """

    CANVAS_CHUNK = 64  # queries whose shift canvases (``_shift_canvases``, 26 MB for 64 at G = 32) are held at once

    def __init__(self, train: np.ndarray, candidates: int = 8, orient: bool = True, zooms=(1.0, ZOOM),
                 fine: int = FINE, blur: float = 1 / 64, rotate: bool | None = None):
        train = np.asarray(train, np.float32)
        s = train.shape[-1]
        self.size, self.n, self.zooms, self.fine, self.blur = s, len(train), tuple(zooms), fine, blur
        self._views = _orientations if orient else (lambda g: g[None])
        self.n_views = 8 if orient else 1
        self.candidates = min(candidates, self.n_views * len(train))
        self._coarse_sigma = s / 16 if blur else 0.0  # blur=0: the caller blurred the tiles already
        coarse = grids(train, COARSE, self._coarse_sigma)
        self._coarse = _unit(self._views(coarse).reshape(self.n_views, len(train), -1))  # (O, T, 64)
        # fine grids per zoom and orientation: (zooms, O, T, G, G); windows are cut per query chunk
        blurred = _blurred(train, s * blur)
        self._fine = np.stack([self._views(_zoomed_grids(blurred, fine, z)) for z in self.zooms])
        self._norms = _window_norms(self._fine, SHIFT)  # (zooms, O, T, 2 SHIFT + 1, 2 SHIFT + 1)
        # each grid's mean taken off, once: the query's windows are zero mean, so a constant taken off leaves the
        # first stage's products as they are, but float32 no longer cancels the large terms of a grid far from
        # zero mean (a dark tile is -1 everywhere; the einsum the products replaced was up to 3e-3 off)
        self._fine -= self._fine.mean((-2, -1), keepdims=True)
        self._null: dict = {}
        self.rotate = orient if rotate is None else rotate
        if self.rotate:  # rotated copies (``_rotated_match``): what the training side needs, once
            # per lookup scale z, (cells in the disc, O T): the training side of the lookup; below 1 it is the
            # training tile magnified by 1 / z (a shrunk query would leave the disc's rim to its border)
            disc = _coarse_disc()
            zooms = {max(1 / z, 1.0) for z in SCALE_LOOKUP}  # 1 for every scale >= 1: the grids above, once
            side = {m: _unit(self._views(coarse if m == 1.0 else grids(train, COARSE, self._coarse_sigma, m))
                             .reshape(self.n_views, len(train), -1)[:, :, disc]).reshape(-1, int(disc.sum())).T
                    for m in zooms}
            self._coarse_disc = [side[max(1 / z, 1.0)] for z in SCALE_LOOKUP]
            # (T, F, radii): the polar spectra along the angle axis in Fourier space (``_angles``)
            self._spectra = _along_angles(_polar_spectra(train))
            fine_rot = _zoomed_grids(_blurred(train, s * ROT_BLUR), fine)  # (T, G, G) at the second stage's blur
            # each tile and its half turn (the spectra cannot tell them apart), and what phase correlation needs
            self._fine_rot = np.stack([fine_rot, fine_rot[:, ::-1, ::-1]], 1)  # (T, 2, G, G)
            self._fft_rot = _windowed_fft(self._fine_rot).astype(np.complex64)

    def _query_centres(self, query: np.ndarray) -> np.ndarray:
        """(zooms, N, V, side, side): central windows of each query grid at every zoom, and at sub-cell offsets
        (the query moved by half a grid cell, so shifts between grid cells are matched too), unit norm."""
        s, side = self.size, self.fine - 2 * SHIFT
        half = s // (2 * self.fine)
        offsets = [(0, 0)] + ([(half, 0), (0, half), (half, half)] if half else [])
        per = []  # per offset: (zooms, N, side, side)
        for dy, dx in offsets:
            blurred = _blurred(np.roll(query, (dy, dx), axis=(2, 3)) if dy or dx else query, s * self.blur)
            zs = []
            for z in self.zooms:  # one blur for every zoom
                g = _zoomed_grids(blurred, self.fine, z)[:, SHIFT:SHIFT + side, SHIFT:SHIFT + side]
                zs.append(_unit(g.reshape(len(g), -1)).reshape(g.shape))
            per.append(np.stack(zs))
        return np.stack(per, 2)

    def distances(self, query: np.ndarray, groups: tuple | None = None, chunk: int = 256):
        """(distance, index of the nearest training tile) for every query tile (N, 1, S, S).

        ``groups`` = (query groups (N,), training groups (T,)[, more query groups (N,)]), optional: a query may not
        match a training tile of its own group (the null) or of the further groups given for its row. The mask is
        built per chunk, so it never costs N x T memory.
        """
        query = np.asarray(query, np.float32)
        n = len(query)
        soft = _blurred(query, self._coarse_sigma)  # (N, S, S): the coarse grids of both stages come from it
        coarse = _unit(_zoomed_grids(soft, COARSE).reshape(n, -1))
        centres = self._query_centres(query)
        dist, index = np.empty(n), np.zeros(n, np.int64)
        for lo in range(0, n, chunk):
            hi = min(n, lo + chunk)
            sim = (coarse[lo:hi] @ self._coarse.reshape(-1, self._coarse.shape[-1]).T).reshape(hi - lo, self.n_views, -1)
            own = None  # (b, T): training tiles each query may not match
            if groups is not None:  # (b, O, T): orientation-major like ``_coarse``
                own = groups[0][lo:hi, None] == groups[1][None, :]
                for extra in groups[2:]:  # further groups excluded per query row
                    own |= extra[lo:hi, None] == groups[1][None, :]
                np.copyto(sim, -np.inf, where=own[:, None, :])
            dist[lo:hi], index[lo:hi] = self._fine_match(sim, centres[:, lo:hi])
            if self.rotate:
                d, i = self._rotated_match(query[lo:hi], own, soft[lo:hi])
                better = d < dist[lo:hi]
                dist[lo:hi], index[lo:hi] = np.where(better, d, dist[lo:hi]), np.where(better, i, index[lo:hi])
        return np.clip(dist, 0.0, 2.0), index

    def _rotated_match(self, query: np.ndarray, own: np.ndarray | None, soft: np.ndarray | None = None):
        """Distance and training index of each query tile (b, 1, S, S) as a turned and rescaled copy: its
        ``ROT_CANDIDATES`` nearest training tiles over the turns ``ROT_LOOKUP`` and scales ``SCALE_LOOKUP`` (coarse
        grids, central disc); for each, the scale, the turn and the mirror at which the two power spectra agree
        best (``_angles``, the query's spectrum read at each lookup scale, the scale refined between them); the
        query turned back and rescaled by them, registered and compared (``_correlation``); the best
        candidate counts. ``own`` (b, T): training tiles a query may not match; ``soft``: the queries blurred at
        the coarse sigma, if the caller has them. Unscaled turns within ``MIN_TURN`` of a quarter turn are left to
        ``_fine_match``. The tiles are blurred before they are turned
        (a Gaussian blur and a turn commute), and the lookup warps 2C x 2C grids by one matrix product
        (``_lookup_maps``)."""
        b, s = len(query), self.size
        soft = _blurred(query, self._coarse_sigma) if soft is None else soft  # given by ``distances``: one blur
        small = _resize(soft, 2 * COARSE).reshape(b, -1)  # (b, 4C^2)
        sim = np.full((len(SCALE_LOOKUP), b, self.n), -np.inf, np.float32)
        for i, (maps, train_disc) in enumerate(zip(_lookup_maps(2 * COARSE), self._coarse_disc)):
            warped = (small @ maps).reshape(b, len(ROT_LOOKUP), -1)  # (b, turns, cells)
            for j in range(len(ROT_LOOKUP)):  # (b, T) per scale: the best turn and orientation per training tile
                sim[i] = np.maximum(sim[i], (_unit(warped[:, j]) @ train_disc).reshape(b, self.n_views, self.n).max(1))
        sim = sim.max(0)
        if own is not None:
            np.copyto(sim, -np.inf, where=own)
        k = min(ROT_CANDIDATES, self.n)
        top = _top_k(sim, k)  # (b, k)
        valid = np.take_along_axis(sim, top, 1) > -np.inf
        # per candidate, its scale, mirror and angle: the best agreement of the polar spectra, the query's read as
        # if magnified by each lookup scale (a turn is a shift along their angle axis, a mirror reverses it)
        nz = len(SCALE_LOOKUP)
        fq = _along_angles(_polar_spectra(query, SCALE_LOOKUP))  # (Z, b, F, R)
        angles, agree = _angles(np.stack([fq, np.conj(fq)], 1), self._spectra[top])  # (Z, mirror, b, k)
        lookup = np.asarray(SCALE_LOOKUP)[:, None, None, None]
        every, agree = agree, np.where(valid & _outside_first_stage(lookup, angles), agree, -np.inf)
        zi, mirror = np.divmod(agree.reshape(2 * nz, b, k).argmax(0), 2)  # (b, k)
        angle = angles[zi, mirror, np.arange(b)[:, None], np.arange(k)]
        # the scale between the lookup's: a parabola through the agreement at the best one and its neighbours
        # (all of them: one left to ``_fine_match`` still says where the peak is)
        curve = np.where(valid, every, -np.inf)[:, mirror, np.arange(b)[:, None], np.arange(k)]  # (Z, b, k)
        at = np.clip(zi, 1, nz - 2)
        left, mid, right = (np.take_along_axis(curve, (at + d)[None], 0)[0] for d in (-1, 0, 1))
        usable = (zi == at) & np.isfinite(left) & np.isfinite(mid) & np.isfinite(right)  # not at an end or an invalid candidate
        frac = _vertex(*(np.where(usable, v, 0.0) for v in (left, mid, right)))
        frac = np.where(usable, np.clip(frac, -1.0, 1.0), 0.0)
        log_z = np.log(SCALE_LOOKUP)
        scales = np.exp(log_z[zi] + frac * (log_z[1] - log_z[0]))
        agree = agree.max((0, 1))  # (b, k)
        ok = np.isfinite(agree)  # (b, k)
        blurred = _blurred(query, s * ROT_BLUR)  # (b, S, S)
        flipped = blurred[..., ::-1]
        queries = [np.where(mirror[:, j, None, None] == 1, flipped, blurred)[:, None] for j in range(k)]
        # every candidate at its own scale and turn (the spectra's agreement does not rank tiles read at other
        # scales); then the best one's scale refined and its turn read again there
        found = np.stack([self._correlation(queries[j], top[:, j], scales[:, j], angle[:, j]) for j in range(k)], 1)
        corr = np.where(ok & _outside_first_stage(scales, angle), found, -1.0)  # (b, k): what counts
        j = corr.argmax(1)
        tile, rows = top[np.arange(b), j], np.arange(b)
        query = np.stack(queries)[j, rows]
        best = np.maximum(corr.max(1), self._refined_correlation(query, tile, scales[rows, j], angle[rows, j], found[rows, j]))
        return np.where(ok.any(1), 1.0 - best, 2.0), tile

    def _correlation(self, query: np.ndarray, tile: np.ndarray, scale: np.ndarray, angle: np.ndarray) -> np.ndarray:
        """(b,): the correlation of each query (b, 1, S, S; blurred) turned back by ``angle`` and magnified by
        ``scale`` (b,) with training tile ``tile`` (b,) or its half turn, registered (``_registered_correlation``)
        over the window the query's content fills (``_scale_side``)."""
        g = _zoomed_grids(turn_tiles(query, -angle, scale=scale)[:, 0], self.fine)  # (b, G, G)
        halves, fts = self._fine_rot[tile].swapaxes(0, 1), self._fft_rot[tile].swapaxes(0, 1)  # (2, b, G, G)
        return _registered_correlation(g, halves, _scale_side(self.fine, scale), fts).max(0)

    def _refined_correlation(self, query, tile, scale, angle, there) -> np.ndarray:
        """(b,): the best correlation of each query with its tile near ``scale`` and ``angle`` (``there``: the
        correlation at them): the scale one ``SCALE_STEP`` (4 %) either way, and one step further where the better
        neighbour is the best so far (those queries only: on a one-peaked curve the five-step search's answer at
        three to four comparisons instead of five), then where a parabola through the best and its neighbours puts
        the peak (in log scale); there, the turn read again from the spectra of the query magnified by that scale
        (read at another scale, the spectra's angle is off by 1-3 degrees on 32 px tiles). Scales and turns the
        first stage compares (``_outside_first_stage``) guide the search but do not count."""
        b, step, tried = len(query), np.log(SCALE_STEP), []

        def correlation(z, a, rows=slice(None)):
            c = np.full(b, -np.inf)
            c[rows] = self._correlation(query[rows], tile[rows], z[rows], a[rows])
            tried.append(np.where(_outside_first_stage(z, a), c, -1.0))
            return c

        corrs = np.full((b, 5), -np.inf)  # at -2 .. 2 steps
        corrs[:, 2] = there
        corrs[:, 1], corrs[:, 3] = (correlation(scale * np.exp(step * k), angle) for k in (-1, 1))
        better = corrs[:, 1:4].argmax(1) + 1
        for near, far in ((1, 0), (3, 4)):
            if (rows := np.flatnonzero(better == near)).size:
                corrs[rows, far] = correlation(scale * np.exp(step * (far - 2)), angle, rows)[rows]
        at = np.clip(corrs.argmax(1), 1, 3)  # every point the parabola reads was compared
        frac = np.clip(_vertex(*(corrs[np.arange(b), at + d] for d in (-1, 0, 1))), -1.0, 1.0)
        scale = scale * np.exp(step * (at - 2 + frac))
        spectra = _along_angles(_polar_spectra(turn_tiles(query, 0.0, scale=scale)))
        turned = _angles(spectra, self._spectra[tile][:, None])[0][:, 0]
        turned += np.round((angle - turned) / 180.0) * 180.0  # the half turn the first angle had
        correlation(scale, turned)
        return np.max(tried, 0)

    def _fine_match(self, sim: np.ndarray, centres: np.ndarray):
        """Distance and training index of the best of each query's ``candidates`` coarse matches (``sim``
        (b, O, T)) at the fine grid, over every shift of the candidate's window and every zoom pairing."""
        b, k = len(sim), self.candidates
        flat = sim.reshape(b, -1)
        top = _top_k(flat, k)  # (b, k) over (orientation, tile)
        valid = np.take_along_axis(flat, top, 1) > -np.inf
        o, t = np.divmod(top, self.n)
        best, index = np.full(b, -1.0), np.zeros(b, np.int64)
        span = 2 * SHIFT + 1
        # query zoom qz vs training zoom tz: (0, 0) same scale, (0, 1) the query is a zoomed-in copy,
        # (1, 0) the query is a zoomed-out copy
        pairs = ((0, 0), (0, 1), (1, 0)) if len(self.zooms) > 1 else ((0, 0),)
        c = np.full((len(pairs), b, k), -1.0, np.float32)
        for lo in range(0, b, self.CANVAS_CHUNK):  # the canvases of a few queries at a time: bounded memory
            rows = slice(lo, min(b, lo + self.CANVAS_CHUNK))
            canvases = {}
            for p, (qz, tz) in enumerate(pairs):
                if qz not in canvases:  # centres (zooms, b, V, side, side), zero mean: <q, w - mean w> = <q, w>
                    canvases[qz] = _shift_canvases(centres[qz, rows], self.fine)  # (rows, G G, span span V)
                cand, norms = self._fine[tz][o[rows], t[rows]], self._norms[tz][o[rows], t[rows]]  # (r, k, G, G), (r, k, span, span)
                # every window of the candidate (zero-mean grids, see __init__) against every query offset, as one
                # product per query
                dots = np.matmul(cand.reshape(len(cand), k, -1), canvases[qz]).reshape(len(cand), k, span, span, -1)
                c[p, rows] = (dots.max(-1) / norms).max((2, 3))
        for p in range(len(pairs)):
            cp = np.where(valid, c[p], -1.0)
            better = cp.max(1) > best
            best = np.where(better, cp.max(1), best)
            index = np.where(better, np.take_along_axis(t, cp.argmax(1)[:, None], 1)[:, 0], index)
        return 1.0 - best, index

    def null(self, groups: np.ndarray, train: np.ndarray) -> np.ndarray:
        """Distance of each training tile to its nearest training tile of ANOTHER group (time block or
        video): how close honest new data of the same movies gets. Computed once per grouping."""
        groups = np.asarray(groups)
        key = groups.tobytes()
        if key not in self._null:
            if len(np.unique(groups)) < 2:  # one group only: nothing to compare with
                self._null[key] = np.zeros(0)
            else:
                self._null[key] = self.distances(train, groups=(groups, groups))[0]
        return self._null[key]


def patches(tiles: np.ndarray, side: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 1, S, S) -> every ``side`` x ``side`` patch at ``stride`` px steps, (N P, 1, side, side), and the tile
    each patch came from (N P,)."""
    x = np.asarray(tiles, np.float32)
    starts = range(0, x.shape[-1] - side + 1, stride)
    out = np.stack([x[:, :, y:y + side, c:c + side] for y in starts for c in starts], 1)  # (N, P, 1, side, side)
    return out.reshape(-1, 1, side, side), np.repeat(np.arange(len(x)), out.shape[1])


class PatchIndex:
    """Partial copies: a part of a query tile that reproduces part of a training tile more closely than new
    frames of the same movie reproduce it.

    A generator can replay part of a training field and draw something new around it; the whole tile then
    matches nothing. Every tile is cut into patches of side S/2: the training tiles every S/8 px (25 a tile),
    the query tiles every S/4 px (9 a tile). Each query patch is matched to its nearest training patch up to
    shifts of +-S/16 px (``CopyIndex`` on a 16 x 16 grid, one orientation and one zoom: rotated or rescaled
    partial copies are left to the whole-tile index).

    The comparison is local (Meehan et al. 2020 test per cell; Bhattacharjee et al. 2023 per sample): a
    patch's distance d to its match p is divided by how close the training tiles of OTHER time blocks and
    videos come to p (``scale[p]``). A structure that honest new frames show as well (a static field, a label
    burned into every frame) has a small scale and is not called a copy; a replay of a changing field is:

        ratio = (d + EPS) / (scale[p] + EPS)      a tile's ratio: that of its closest patch (lowest ratio)

    The null is the same ratio for the training tiles' own patches (the 9 of the query grid) against the
    training patches of other groups, with ``scale[p]`` then taken without the query's group as well (else p's
    nearest neighbour could be the query itself, and the null would never show a ratio below 1). Its 5 %
    quantile is the copy threshold: what honest new data of the same movies reaches.
    """

    BLUR = 1 / 16  # sigma / patch side: camera noise averaged out, so a cleaner (smoother) tile is not nearer
    WORK = 64  # px: larger tiles are area-averaged to this before they are cut into patches
    EPS = 0.005  # in distance units (1 - correlation): two patches this close are the same up to camera noise

    def __init__(self, train: np.ndarray, groups: np.ndarray, candidates: int = 4, *, state: dict | None = None):
        """``state``: the ``state()`` of an index of the same tiles, groups and candidates (a cache entry): its
        null and scales are taken instead of computed (the set-up's cost is almost all theirs)."""
        train, groups = np.asarray(train, np.float32), np.asarray(groups)
        s = min(train.shape[-1], self.WORK)
        self.side, self._step = s // 2, max(1, s // 4)
        # blurred once as whole tiles (cheaper than per patch, and with the real neighbours at patch borders)
        train_patches, self.owner = patches(self._blur(train), self.side, max(1, s // 8))
        self.index = CopyIndex(train_patches, candidates, orient=False, zooms=(1.0,), fine=min(16, self.side), blur=0,
                               rotate=False)
        if state is not None:
            self.scale, self._null = np.asarray(state["scale"]), np.asarray(state["null"])
            if self.scale.shape not in ((0,), (len(train_patches),)) or len(self._null) not in (0, len(train)):
                raise ValueError(f"state: scales {self.scale.shape} / null {self._null.shape} are not those of "
                                 f"{len(train)} tiles ({len(train_patches)} patches)")
            return
        self._build_null(train_patches, groups[self.owner], s, len(train))

    def _build_null(self, train_patches: np.ndarray, g: np.ndarray, s: int, n_tiles: int) -> None:
        """``scale`` (every training patch's distance to other groups) and the null's ratios (class doc)."""
        if len(np.unique(g)) < 2:  # one group only: nothing to compare with, no null
            self.scale, self._null = np.zeros(0), np.zeros(0)
            return
        self.scale, nearest = self.index.distances(train_patches, groups=(g, g))  # nearest other group
        # the null's queries: the training patches that lie on the query grid (starts every S/4 px)
        keep = np.arange(0, s - self.side + 1, max(1, s // 8)) % self._step == 0
        on_grid = np.tile(np.outer(keep, keep).ravel(), n_tiles)
        d, j, q = self.scale[on_grid], nearest[on_grid], g[on_grid]
        # the scale of each matched patch as a query of group q sees it: without q (where q held its nearest)
        need = np.unique(j)
        second = np.full(len(g), 2.0)
        second[need] = self.index.distances(train_patches[need], groups=(g[need], g, g[nearest[need]]))[0]
        seen = np.where(g[nearest[j]] == q, second[j], self.scale[j])
        self._null = self._ratio(d, seen).reshape(n_tiles, -1).min(1)

    def state(self) -> dict:
        """What the set-up computed, as arrays (``PatchIndex(train, groups, state=...)`` takes it back)."""
        return {"scale": self.scale, "null": self._null}

    def _blur(self, tiles: np.ndarray) -> np.ndarray:
        """Blurred at sigma = BLUR x the patch side, then area-averaged to at most ``WORK`` px (the patches are
        compared on a 16 x 16 grid anyway: 256 px tiles cost what 64 px tiles do)."""
        x = np.asarray(tiles, np.float32)
        x = gaussian_blur(x, x.shape[-1] / 2 * self.BLUR)
        return x if x.shape[-1] <= self.WORK else _resize(x[:, 0], self.WORK)[:, None].astype(np.float32)

    def null(self) -> np.ndarray:
        """Each training tile's ratio against the training tiles of other groups (empty with one group)."""
        return self._null

    def ratios(self, query: np.ndarray) -> np.ndarray:
        """The ratio (class doc) of every query tile (N, 1, S, S): below the null's 5 % quantile = a partial copy."""
        if len(self.scale) == 0:
            return np.full(len(query), np.inf)
        qp, _ = patches(self._blur(query), self.side, self._step)
        d, j = self.index.distances(qp)
        return self._ratio(d, self.scale[j]).reshape(len(query), -1).min(1)

    def _ratio(self, d: np.ndarray, scale: np.ndarray) -> np.ndarray:
        return (d + self.EPS) / (scale + self.EPS)


def copy_statistics(d_fake: np.ndarray, d_null: np.ndarray, r_fake: np.ndarray | None = None,
                    r_null: np.ndarray | None = None, q: float = COPY_QUANTILE,
                    d_null_of_r: np.ndarray | None = None) -> dict:
    """The copy statistics (module doc) of generated tiles against the null: whole-tile distances ``d_fake`` vs
    ``d_null`` and, when given, partial-copy ratios (``PatchIndex``) ``r_fake`` vs ``r_null``. A tile is a copy
    when either test puts it below its null's ``q`` quantile; ``copy_null_share`` is how many training tiles
    themselves that flags (``q`` for one test, a little more for the two), and the gap is measured from there.
    That rate needs both nulls of the same tiles: ``d_null_of_r`` is the whole-tile null of the tiles behind
    ``r_null`` (default: ``d_null`` itself, when both cover every training tile)."""
    d_fake, d_null = np.asarray(d_fake, np.float64), np.asarray(d_null, np.float64)
    if len(d_null) == 0:
        return {"copy_share": float("nan"), "authenticity_gap": 0.0, "copy_auc": float("nan"),
                "copy_threshold": float("nan")}
    thr = float(np.quantile(d_null, q))
    below = (lambda d: d < thr) if thr > 0 else (lambda d: d <= 0)  # noqa: E731
    whole, null_flag = below(d_fake), below(d_null)
    out = {"whole_copy_share": float(whole.mean()), "copy_threshold": thr}
    flag = whole
    if d_null_of_r is None and r_null is not None and len(r_null) == len(d_null):
        d_null_of_r = d_null
    if r_fake is not None and r_null is not None and len(r_null) and d_null_of_r is not None:
        if len(d_null_of_r) != len(r_null):
            raise ValueError(f"the partial-copy null has {len(r_null)} tiles but their whole-tile null {len(d_null_of_r)}")
        r_thr = float(np.quantile(r_null, q))
        part = np.asarray(r_fake) < r_thr
        flag, null_flag = whole | part, below(np.asarray(d_null_of_r, np.float64)) | (np.asarray(r_null) < r_thr)
        out.update(part_copy_share=float(part.mean()), part_copy_threshold=r_thr)
    share, q0 = float(flag.mean()), float(null_flag.mean())
    # Mann-Whitney effect size of the whole-tile distances: P(a generated tile is nearer than a null tile)
    ranks = np.searchsorted(np.sort(d_null), d_fake, side="left")
    ties = np.searchsorted(np.sort(d_null), d_fake, side="right") - ranks
    auc = float(1.0 - (ranks + 0.5 * ties).mean() / len(d_null))
    out.update(copy_share=share, copy_null_share=q0, copy_auc=auc,
               authenticity_gap=float(max(0.0, (share - q0) / max(1 - q0, 1e-9))))
    return out


def video_twins(tiles: np.ndarray, source: np.ndarray, share: float = 0.2, similarity: float = 0.98,
                per_video: int = 200) -> np.ndarray:
    """Merge videos that show the same field (the same movie saved twice, an overlapping crop): a new
    source id per tile, where two videos are one when ``share`` of either's tiles has a near-exact twin
    (coarse 16 x 16 correlation >= ``similarity``) in the other. Held-out data is then never a copy of
    training data, and the copy null does not count cross-file twins as new data. At most ``per_video``
    tiles of each video are compared (a fixed, evenly spaced subset), so the cost stays bounded."""
    source = np.asarray(source)
    ids, inverse = np.unique(source, return_inverse=True)
    if len(ids) < 2:
        return source.copy()
    pick = np.concatenate([np.flatnonzero(inverse == v)[np.linspace(0, (inverse == v).sum() - 1,
                           min(per_video, (inverse == v).sum())).astype(int)] for v in range(len(ids))])
    vid = inverse[pick]
    d = _unit(_field(np.asarray(tiles)[pick]))
    order = np.argsort(vid, kind="stable")
    d, vid = d[order], vid[order]
    starts = np.flatnonzero(np.r_[True, vid[1:] != vid[:-1]])
    # twin[a, b]: share of video a's tiles with a near-exact twin in video b
    twin = np.zeros((len(ids), len(ids)))
    for a in range(len(ids)):
        rows = vid == a
        best = np.maximum.reduceat(d[rows] @ d.T, starts, axis=1)  # (tiles of a, videos)
        twin[a] = (best >= similarity).mean(0)
    parent = list(range(len(ids)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in zip(*np.nonzero((twin >= share) | (twin.T >= share))):
        if a != b:
            parent[root(int(b))] = root(int(a))
    return ids[[root(int(v)) for v in inverse]].astype(source.dtype)


def merge_twins(tiles: np.ndarray, source, frame, similarity: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
    """``video_twins`` plus one clock: (source, frame) where twin videos share the id of the largest of them and
    each twin's frames are renumbered onto that video's frames (each frame to the median frame of its tiles'
    near-exact twins there, frames without a twin interpolated). Two files of one field may start at other
    times or run at other frame rates; on one clock, the same moment falls into the same time block."""
    source, frame = np.asarray(source), np.asarray(frame).astype(np.int64)
    merged = video_twins(tiles, source, similarity=similarity)
    frame = frame.copy()
    for m in np.unique(merged):
        members = np.unique(source[merged == m])
        if len(members) < 2:
            continue
        sizes = [(source == v).sum() for v in members]
        ref = members[int(np.argmax(sizes))]
        ref_idx = np.flatnonzero(source == ref)
        d_ref = _unit(_field(tiles[ref_idx]))
        for v in members:
            if v == ref:
                continue
            idx = np.flatnonzero(source == v)
            d = _unit(_field(tiles[idx]))
            sim = d @ d_ref.T
            best, match = sim.max(1), frame[ref_idx][sim.argmax(1)]
            own = frame[idx]
            frames = np.unique(own)
            mapped = {f: np.median(match[(own == f) & (best >= similarity)]) for f in frames
                      if ((own == f) & (best >= similarity)).any()}
            if not mapped:
                continue
            known = np.array(sorted(mapped))
            new = np.interp(frames, known, [mapped[f] for f in known])
            frame[idx] = np.round(new[np.searchsorted(frames, own)]).astype(np.int64)
    return merged, frame


def layout(tiles: np.ndarray, scale: float | None = None) -> tuple[np.ndarray, float]:
    """Where things are in each tile: (N, 256) float64, the tile blurred (sigma S/32) and averaged to 16 x 16,
    its mean removed, divided by ``scale`` (default: the median norm of these tiles, returned for reuse on the
    other side). One global scale, not per tile, so an empty tile stays near 0 instead of its noise being
    blown up to unit contrast."""
    g = _field(tiles).astype(np.float64)
    g -= g.mean(1, keepdims=True)
    if scale is None:
        scale = float(max(np.median(np.linalg.norm(g, axis=1)), 1e-9))
    return g / scale, scale
