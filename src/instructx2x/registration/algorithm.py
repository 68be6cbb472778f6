"""Registration of a pair: the current image aligned to the past image (method.md §4).

fixed = past, moving = current. Both are resized to the working resolution; a bilateral filter
(domain sigma 2.0, range sigma 50.0 on 0-255 intensities) is applied to *estimate* the transform
only; the resampled output is the unfiltered current image in the past image's frame.

Transform: ``sitk.Similarity2DTransform`` (rotation, isotropic scale, translation) centred on the
image centre. Metric: Mattes mutual information (negative MI, lower is better), fixed bins,
seeded random sampling. Multi-resolution by a hand-built pyramid (block means, then the rest of
the level's Gaussian smoothing on the small image): each level is its own registration with its
own step size and sampling percentage, started from the previous level's transform. Gradient
filters are off (the metric uses central differences), which is much faster and as accurate on
these images. The optimisation runs in a normalised frame (original pixels / half the fixed
image's longer side), so that a step of the regular-step optimizer, whose length is measured in
raw parameter units, moves the image by about the same amount whether it changes the angle, the
scale or the translation (in original pixels a step of "8 px" could rotate by 8 radians).
Multi-start: the metric is evaluated on the grid ``start_angles_deg`` × ``start_scales`` at the
coarsest level (one exhaustive-optimizer run), and the ``refine_starts`` best grid points are
optimised; the best of them goes on.

The final metric is evaluated once more on the filtered full-resolution images with every pixel
(no random sampling), so the value is deterministic and comparable across pairs: the MI gate
(``metric <= -0.88``) is applied downstream on that value.

Beyond the paper: a left-right mirrored image, or another patient's image, still reaches
MI ~ -1.2 and passes the gate. Two cheap checks are measured per pair and applied in the gate:
- ``mirror_mi``: the MI reached when the *mirrored* current image is registered; if it is better
  than the direct MI by a margin, the current image is probably mirrored;
- ``ncc``: normalised cross-correlation of the aligned, unfiltered images (central region), a
  gross-failure guard only (good demo pairs go down to ~0.4 with exposure changes and findings);
- ``structure_ncc``: the median of local correlations (8×8-pixel windows at 128², see
  ``structure_ncc``) of the aligned images: a follow-up of the same patient agrees on fine
  structure almost everywhere (findings change a minority of windows), another patient's image
  does not. On the demo a planted foreign image keeps ``ncc`` ~0.6-0.94 (the synthetic anatomy is
  largely generic), within the good pairs' range, while ``structure_ncc`` separates them.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import SimpleITK as sitk
from PIL import Image

from instructx2x.core.errors import InputError
from instructx2x.core.images import read_gray
from instructx2x.core.images import resize_square as resize  # noqa: F401 - part of this module's API
from instructx2x.registration.quality import central_ncc, structure_ncc

log = logging.getLogger(__name__)


MIN_COARSEST_SIDE = 4  # pixels per side at the coarsest pyramid level


class UnusableImage(InputError):
    """A readable image this registration cannot use (its shape); ``str(exc)`` is a one-line reason."""


@dataclass(frozen=True)
class RegistrationSettings:
    """Fixed, documented settings (config section ``registration``)."""

    resolution: int = 512
    # resolution at which the transform is estimated (longer side, pixels); None: ``resolution``.
    # The output (aligned image, checks) is always at ``resolution``; the transform is in original
    # pixels either way. The demo writes 128² images but estimates at 256 (0.25 px at 128² is
    # below what MI at 128² resolves: 90-97% of good pairs within 1 px at 512² vs 100% at 256).
    estimation_resolution: int | None = None
    bilateral_domain_sigma: float = 2.0
    bilateral_range_sigma: float = 50.0
    bilateral_impl: str = "opencv"
    histogram_bins: int = 32  # bins of the reported MI (final_metric, the paper's gate) and of the start grid
    # bins of the MI each pyramid level optimises (one value per level; None: histogram_bins everywhere).
    # Real data (schema): 32,32,32,64. At 32 bins (8 grey levels per bin) the finest level's optimum sat
    # up to 1.3 px (at 512²) off known transforms of real radiographs with exposure changes; 64 bins on
    # the finest level only puts all within 0.7 px. 64 on the coarse levels (1000-3000 samples) is too
    # noisy: false optima tens of pixels off.
    level_histogram_bins: tuple | None = None
    # pyramid (defaults for the 512² working resolution of real data; the demo's 128² uses 3 levels)
    shrink_factors: tuple = (16, 8, 4, 1)
    smoothing_sigmas: tuple = (8.0, 4.0, 2.0, 0.0)  # in pixels of the working resolution
    samples: tuple = (1000, 2000, 3000, 3000)  # random metric samples per level (capped at all pixels)
    learning_rates: tuple = (16.0, 4.0, 1.0, 0.25)  # working-resolution pixels (scales from physical shift)
    min_steps: tuple = (0.5, 0.25, 0.1, 0.01)
    iterations: tuple = (40, 60, 40, 30)
    relaxation: float = 0.6
    # multi-start grid (each evenly spaced, an odd number of values): evaluated at the coarsest level
    start_angles_deg: tuple = (-18.0, -9.0, 0.0, 9.0, 18.0)
    start_scales: tuple = (0.86, 1.0, 1.14)
    refine_starts: int = 2  # best grid points optimised at the coarsest level
    seed: int = 1234
    mirror_check: bool = True

    @classmethod
    def from_config(cls, section: dict, seed: int | None = None) -> "RegistrationSettings":
        keys = {f for f in cls.__dataclass_fields__}
        kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in section.items() if k in keys}
        if seed is not None and "seed" not in kw:
            kw["seed"] = seed
        return cls(**kw)

    def __post_init__(self):
        n = len(self.shrink_factors)
        for name in ("smoothing_sigmas", "samples", "learning_rates", "min_steps", "iterations", "level_histogram_bins"):
            if getattr(self, name) is not None and len(getattr(self, name)) != n:
                raise ValueError(f"registration.{name} needs one value per pyramid level ({n}, as shrink_factors), got {getattr(self, name)}")
        for name in ("start_angles_deg", "start_scales"):
            v = np.asarray(getattr(self, name), dtype=float)
            if len(v) % 2 == 0 or (len(v) > 1 and not np.allclose(np.diff(v), (v[-1] - v[0]) / (len(v) - 1), atol=1e-9)) \
                    or (len(v) > 1 and v[-1] <= v[0]):
                raise ValueError(f"registration.{name} must be an odd number of evenly spaced increasing values (a grid), got {tuple(v)}")
        if self.refine_starts < 1:
            raise ValueError(f"registration.refine_starts must be >= 1, got {self.refine_starts}")


@dataclass
class RegistrationResult:
    angle_rad: float
    scale: float
    tx: float
    ty: float
    center_x: float
    center_y: float
    mi: float
    mirror_mi: float = float("nan")
    ncc: float = float("nan")
    structure_ncc: float = float("nan")
    iterations: list = field(default_factory=list)

    @property
    def angle_deg(self) -> float:
        return math.degrees(self.angle_rad)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.pop("iterations")
        return d


# --------------------------------------------------------------------------- image handling
def to_sitk(arr: np.ndarray, spacing=(1.0, 1.0)) -> sitk.Image:
    """A float image whose physical units are pixels of the *original* image.

    ``arr`` is the original resized by ``1/spacing``; pixel j's centre sits at original
    coordinate (j + 0.5) * spacing - 0.5 (the convention of PIL's resize), so images of any size
    share the physical frame of their original pixels.
    """
    img = sitk.GetImageFromArray(arr.astype(np.float32))
    img.SetSpacing(tuple(float(v) for v in spacing))
    img.SetOrigin(tuple(0.5 * float(v) - 0.5 for v in spacing))
    return img


def working_image(arr: np.ndarray, resolution: int) -> tuple[np.ndarray, tuple]:
    """Isotropic resize so the longer side is ``resolution``; returns (array, spacing)."""
    h, w = arr.shape
    f = resolution / max(h, w)
    nh, nw = max(8, round(h * f)), max(8, round(w * f))
    small = arr if (nh, nw) == (h, w) else np.asarray(Image.fromarray(arr).resize((nw, nh), Image.BILINEAR))
    return small, (w / nw, h / nh)


def bilateral(arr: np.ndarray, s: RegistrationSettings) -> np.ndarray:
    """Bilateral filter in working-resolution pixels (domain sigma 2.0 px, range 50 grey levels); float32.

    ``opencv`` (default): ``cv2.bilateralFilter`` on the 8-bit image (output rounded to whole grey
    levels) with the window of SimpleITK's filter (radius ceil(2.5 sigma)), replicated border; it
    differs from SimpleITK's by ~0.3 grey level on average (rounding included) at a seventh of the
    time. ``sitk``: ``sitk.Bilateral`` (the reference).
    """
    if s.bilateral_impl == "opencv":
        import cv2

        cv2.setNumThreads(1)
        radius = int(math.ceil(2.5 * s.bilateral_domain_sigma))
        src = arr if arr.dtype == np.uint8 else arr.astype(np.float32)
        filtered = cv2.bilateralFilter(
            np.ascontiguousarray(src), d=2 * radius + 1, sigmaColor=s.bilateral_range_sigma,
            sigmaSpace=s.bilateral_domain_sigma, borderType=cv2.BORDER_REPLICATE,
        )
        return filtered.astype(np.float32)
    if s.bilateral_impl != "sitk":
        raise ValueError(f"registration.bilateral_impl must be 'opencv' or 'sitk', got {s.bilateral_impl!r}")
    out = sitk.Bilateral(to_sitk(arr), domainSigma=s.bilateral_domain_sigma, rangeSigma=s.bilateral_range_sigma)
    return sitk.GetArrayFromImage(out).astype(np.float32)


def pyramid_level(arr: np.ndarray, shrink: int, sigma_px: float) -> np.ndarray:
    """One level of the hand-built pyramid: ``shrink`` × ``shrink`` block means (trailing rows and
    columns that do not fill a block are dropped), then Gaussian smoothing so that the total
    smoothing is about ``sigma_px`` working pixels (a block mean already smooths by a variance of
    (k²-1)/12 px²). Level pixel j covers working pixels j*k ... j*k+k-1."""
    import cv2

    a = np.asarray(arr, np.float32)
    k = int(shrink)
    if k > 1:
        h, w = a.shape[0] // k, a.shape[1] // k
        a = a[: h * k, : w * k].reshape(h, k, w, k).mean(axis=(1, 3), dtype=np.float32)
    rest = sigma_px * sigma_px - (k * k - 1) / 12.0
    if sigma_px > 0 and rest > 1e-6:
        cv2.setNumThreads(1)
        a = cv2.GaussianBlur(a, (0, 0), math.sqrt(rest) / k, borderType=cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(a)


def _normalised_image(a: np.ndarray, spacing, norm: float) -> sitk.Image:
    """``to_sitk`` with physical units = original pixels / ``norm``."""
    img = sitk.GetImageFromArray(np.asarray(a, np.float32))
    sp = tuple(float(v) / norm for v in spacing)
    img.SetSpacing(sp)
    img.SetOrigin(tuple(0.5 * v - 0.5 / norm for v in sp))
    return img


def _metric_method(s: RegistrationSettings, bins: int | None = None) -> sitk.ImageRegistrationMethod:
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=int(bins or s.histogram_bins))
    reg.SetMetricUseFixedImageGradientFilter(False)
    reg.SetMetricUseMovingImageGradientFilter(False)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetNumberOfThreads(1)
    return reg


def initial_transform(fixed_hw) -> sitk.Similarity2DTransform:
    """Identity similarity centred on the fixed image's centre (original pixels)."""
    t = sitk.Similarity2DTransform()
    t.SetCenter(((fixed_hw[1] - 1) / 2.0, (fixed_hw[0] - 1) / 2.0))
    return t


def estimate(fixed_w: np.ndarray, fixed_sp, moving_w: np.ndarray, moving_sp, fixed_hw,
             s: RegistrationSettings) -> tuple[sitk.Similarity2DTransform, list]:
    """Estimate the similarity transform (fixed point -> moving point, original pixels) from the
    filtered working images (arrays with their spacing in original pixels).

    Internally every coordinate is divided by ``norm`` = half the fixed image's longer side, so
    that the optimizer's step (raw parameter units) is comparable for angle, scale and
    translation; step sizes are given in working-resolution pixels.
    """
    norm = 0.5 * max(fixed_hw)
    unit = max(fixed_sp) / norm  # one working pixel in normalised units
    cf = _centroid(fixed_w, fixed_sp) / norm
    cm = _centroid(moving_w, moving_sp) / norm
    iters = []
    transform = None
    for level, shrink in enumerate(s.shrink_factors):
        sigma = s.smoothing_sigmas[level]
        f = _normalised_image(pyramid_level(fixed_w, shrink, sigma), [shrink * v for v in fixed_sp], norm)
        m = _normalised_image(pyramid_level(moving_w, shrink, sigma), [shrink * v for v in moving_sp], norm)
        if level == 0:
            # multi-start: the metric on the start grid (rotation and scale about the fixed centroid, which
            # goes to the moving centroid), then the best `refine_starts` grid points optimised
            grid = []
            for centre_scale in start_scale_centres(fixed_hw, moving_w.shape, moving_sp, s):
                grid += _grid_values(f, m, cf, cm - cf, s, centre_scale)
            grid.sort(key=lambda v: v[0])
            best = None
            for _, params in grid[: s.refine_starts]:
                t = sitk.Similarity2DTransform()
                t.SetCenter(tuple(cf))
                t.SetParameters(params)
                value, it = _run_level(f, m, t, level, unit, s)
                if best is None or value < best[0]:
                    best = (value, t, it)
            _, t, it = best
            transform = _recentred(t, ((fixed_hw[1] - 1) / 2.0 / norm, (fixed_hw[0] - 1) / 2.0 / norm))
        else:
            _, it = _run_level(f, m, transform, level, unit, s)
        iters.append(it)
    out = sitk.Similarity2DTransform()
    out.SetCenter(tuple(norm * v for v in transform.GetCenter()))
    out.SetScale(transform.GetScale())
    out.SetAngle(transform.GetAngle())
    out.SetTranslation(tuple(norm * v for v in transform.GetTranslation()))
    return out, iters


def start_scale_centres(fixed_hw, moving_small_hw, moving_sp, s: RegistrationSettings) -> list[float]:
    """Scale hypotheses the start grid is centred on.

    Pixel size: images carry none (PNG/JPG), so the transform is in each image's own pixels and
    the first hypothesis is *the same pixel size* (scale 1: the anatomy spans about as many pixels
    in both, as between MIMIC-CXR studies of one detector). When the longer sides differ by more
    than the start grid reaches (e.g. one image was downscaled), the second hypothesis is *the
    same field of view* (scale = moving longer side / fixed longer side, as resizing both to 512²
    would assume); both grids are evaluated and the best points refined.
    """
    moving_long = max(moving_small_hw[0] * moving_sp[1], moving_small_hw[1] * moving_sp[0])
    ratio = moving_long / max(fixed_hw)
    lo, hi = min(s.start_scales), max(s.start_scales)
    return [1.0] if lo <= ratio <= hi else [1.0, float(ratio)]


def _grid_values(f, m, centre, shift, s: RegistrationSettings, centre_scale: float = 1.0) -> list:
    """(metric, parameters) at every point of the start grid: one run of the exhaustive optimizer."""
    angles = np.radians(np.asarray(s.start_angles_deg, float))
    scales = centre_scale * np.asarray(s.start_scales, float)
    n_s, n_a = (len(scales) - 1) // 2, (len(angles) - 1) // 2
    t = sitk.Similarity2DTransform()
    t.SetCenter(tuple(centre))
    t.SetScale(float(scales[n_s]))
    t.SetAngle(float(angles[n_a]))
    t.SetTranslation(tuple(shift))
    reg = _metric_method(s)
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    reg.SetMetricSamplingPercentage(min(1.0, s.samples[0] / f.GetNumberOfPixels()), s.seed)
    reg.SetOptimizerAsExhaustive([n_s, n_a, 0, 0], stepLength=1.0)
    reg.SetOptimizerScales([float(scales[1] - scales[0]) if n_s else 1.0, float(angles[1] - angles[0]) if n_a else 1.0, 1.0, 1.0])
    reg.SetInitialTransform(t, inPlace=True)
    values = []
    reg.AddCommand(sitk.sitkIterationEvent, lambda: values.append((reg.GetMetricValue(), tuple(reg.GetOptimizerPosition()))))
    reg.Execute(f, m)
    return values


def _recentred(t: sitk.Similarity2DTransform, centre) -> sitk.Similarity2DTransform:
    """The same mapping with another centre."""
    a, sc = t.GetAngle(), t.GetScale()
    M = sc * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    c0, tr, c = np.array(t.GetCenter()), np.array(t.GetTranslation()), np.asarray(centre, float)
    out = sitk.Similarity2DTransform()
    out.SetCenter(tuple(c))
    out.SetScale(sc)
    out.SetAngle(a)
    out.SetTranslation(tuple(M @ (c - c0) + c0 + tr - c))
    return out


def _centroid(a: np.ndarray, spacing) -> np.ndarray:
    """Intensity centroid (original pixels x, y) of a working image with its spacing."""
    w = float(a.sum(dtype=np.float64))
    x = float((a.sum(axis=0, dtype=np.float64) * np.arange(a.shape[1])).sum()) / w
    y = float((a.sum(axis=1, dtype=np.float64) * np.arange(a.shape[0])).sum()) / w
    return np.array([(x + 0.5) * spacing[0] - 0.5, (y + 0.5) * spacing[1] - 0.5])


def _level_bins(s: RegistrationSettings, level: int) -> int:
    return int(s.level_histogram_bins[level]) if s.level_histogram_bins else int(s.histogram_bins)


def _run_level(f, m, transform, level, unit, s):
    """One pyramid level of regular-step gradient descent; returns (metric value, iterations)."""
    reg = _metric_method(s, _level_bins(s, level))
    reg.SetMetricSamplingStrategy(reg.RANDOM)
    n_pixels = f.GetNumberOfPixels()
    reg.SetMetricSamplingPercentage(min(1.0, s.samples[level] / n_pixels), s.seed + level)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=s.learning_rates[level] * unit,
        minStep=s.min_steps[level] * unit,
        numberOfIterations=s.iterations[level],
        relaxationFactor=s.relaxation,
        gradientMagnitudeTolerance=1e-8,
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    reg.SetInitialTransform(transform, inPlace=True)
    reg.Execute(f, m)
    return reg.GetMetricValue(), reg.GetOptimizerIteration()


def final_metric(fixed_f: sitk.Image, moving_f: sitk.Image, transform, s: RegistrationSettings) -> float:
    """Mattes MI of the aligned filtered images with every pixel sampled (deterministic)."""
    reg = _metric_method(s)
    reg.SetMetricSamplingStrategy(reg.NONE)
    reg.SetInitialTransform(transform, inPlace=False)
    return float(reg.MetricEvaluate(fixed_f, moving_f))


def output_grid(fixed_hw, resolution: int) -> sitk.Image:
    """The past image resized to resolution² (anisotropic, as the paper): the output frame."""
    h, w = fixed_hw
    ref = sitk.Image(resolution, resolution, sitk.sitkFloat32)
    sp = (w / resolution, h / resolution)
    ref.SetSpacing(sp)
    ref.SetOrigin((0.5 * sp[0] - 0.5, 0.5 * sp[1] - 0.5))
    return ref


def resample(moving: sitk.Image, reference: sitk.Image, transform) -> np.ndarray:
    out = sitk.Resample(moving, reference, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return np.clip(np.rint(sitk.GetArrayFromImage(out)), 0, 255).astype(np.uint8)


def register_arrays(fixed_arr: np.ndarray, moving_arr: np.ndarray, s: RegistrationSettings) -> tuple[RegistrationResult, np.ndarray]:
    """Register two grey images of any size (fixed = past, moving = current).

    The transform maps a fixed-image point to a moving-image point, both in *original* pixels
    of each image; its centre is the fixed image's centre. Returns the result and the moving
    image (unfiltered) resampled onto the output grid: the fixed image resized to
    ``resolution``² (see ``resize``).
    """
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)  # multi-threaded reductions are not bit-reproducible
    try:
        return _register_arrays(fixed_arr, moving_arr, s)
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _register_arrays(fixed_arr: np.ndarray, moving_arr: np.ndarray, s: RegistrationSettings) -> tuple[RegistrationResult, np.ndarray]:
    est_res = s.estimation_resolution or s.resolution
    fixed_small, fixed_sp = working_image(fixed_arr, est_res)
    moving_small, moving_sp = working_image(moving_arr, est_res)
    for name, arr, small in (("fixed", fixed_arr, fixed_small), ("moving", moving_arr, moving_small)):
        coarse = min(small.shape) // max(s.shrink_factors)
        if coarse < MIN_COARSEST_SIDE:
            raise UnusableImage(
                f"{name} image is {arr.shape[1]}x{arr.shape[0]} pixels: too elongated to register at resolution {est_res} "
                f"(its shorter side is {coarse} px at the coarsest pyramid level, at least {MIN_COARSEST_SIDE} needed)"
            )
    fixed_w = bilateral(fixed_small, s)
    moving_w = bilateral(moving_small, s)
    transform, iters = estimate(fixed_w, fixed_sp, moving_w, moving_sp, fixed_arr.shape, s)
    fixed_f = to_sitk(fixed_w, fixed_sp)
    mi = final_metric(fixed_f, to_sitk(moving_w, moving_sp), transform, s)
    if est_res != s.resolution:
        moving_out, moving_out_sp = working_image(moving_arr, s.resolution)
    else:
        moving_out, moving_out_sp = moving_small, moving_sp
    aligned = resample(to_sitk(moving_out, moving_out_sp), output_grid(fixed_arr.shape, s.resolution), transform)
    p = transform.GetParameters()  # (scale, angle, tx, ty)
    c = transform.GetCenter()
    res = RegistrationResult(
        angle_rad=float(p[1]), scale=float(p[0]), tx=float(p[2]), ty=float(p[3]),
        center_x=float(c[0]), center_y=float(c[1]), mi=mi, iterations=iters,
    )
    fixed_out = resize(fixed_arr, s.resolution)
    res.ncc = central_ncc(fixed_out, aligned)
    res.structure_ncc = structure_ncc(fixed_out, aligned)
    if s.mirror_check:
        mirror_w = bilateral(np.ascontiguousarray(moving_small[:, ::-1]), s)
        t_m, _ = estimate(fixed_w, fixed_sp, mirror_w, moving_sp, fixed_arr.shape, s)
        res.mirror_mi = final_metric(fixed_f, to_sitk(mirror_w, moving_sp), t_m, s)
    return res, aligned


def register_files(fixed_path, moving_path, s: RegistrationSettings) -> tuple[RegistrationResult, np.ndarray, np.ndarray]:
    """Read and register; returns (result, fixed resized to resolution², aligned moving).

    Raises ``UnreadableImage`` (core.images) or ``UnusableImage`` with a one-line reason naming the file."""
    fixed_arr = read_gray(fixed_path)
    moving_arr = read_gray(moving_path)
    try:
        res, aligned = register_arrays(fixed_arr, moving_arr, s)
    except UnusableImage as exc:
        which = fixed_path if str(exc).startswith("fixed") else moving_path
        raise UnusableImage(f"{which}: {exc}") from None
    return res, resize(fixed_arr, s.resolution), aligned


def shard_of(pair_id: str, shards: int) -> int:
    """Stable shard of a pair (CRC32 of its id), independent of the other pairs."""
    return zlib.crc32(pair_id.encode()) % shards


def save_png(arr: np.ndarray, path: str | Path) -> None:
    from instructx2x.core.io import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
