"""How much memory there is, and whether a volume or a registration will fit in it.

Big inputs should fail before any work with one sentence that names the size and the fix,
not minutes later with an allocator message. This module answers two questions:

* :func:`available_bytes`: memory this process can still take, in bytes (the smaller of the
  system's available memory and the container's limit; ``None`` when unknown), or free memory
  of a CUDA device;
* :func:`registration_bytes`: the peak memory a registration of an image of a given shape
  needs, from factors measured on the default pipeline (see :data:`PEAK_FACTOR`).

:func:`check_fits` raises :class:`NotEnoughMemory` (a ``MemoryError``) with the advice to crop
or downsample, and by how much.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

__all__ = ["NotEnoughMemory", "available_bytes", "registration_bytes", "check_fits", "describe_bytes",
           "not_enough_memory_message", "is_out_of_memory", "PEAK_FACTOR"]

# Peak memory of a registration per byte of one float32 image (one channel) of the pair: the
# growth of the peak resident set size between 3D pairs of 64^3, 80^3 and 112^3 voxels (CPU, one
# thread): the default pipeline (affine, then B-spline with local NCC) needs 145-165 bytes more
# per image byte (about 100 MB more besides), one VoxelMorph forward pass 75. Classical methods
# keep both images, their pyramids, the field and the NCC's local sums with their gradients; a
# network keeps its feature maps.
PEAK_FACTOR = {"classical": 150.0, "learned": 80.0}
_CGROUP_FILES = (  # (limit, usage): cgroup v2, then v1
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


class NotEnoughMemory(MemoryError):
    """The work would need more memory than there is; the message says how much and what to do."""


def describe_bytes(count: float) -> str:
    """``count`` bytes as a short human string: ``"3.2 GB"``, ``"512 MB"`` (powers of 1024)."""
    for unit, size in (("TB", 2**40), ("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{int(count)} bytes"


def _meminfo_available() -> int | None:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes (Linux), else ``None``."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _cgroup_available() -> int | None:
    """What a container's memory limit still allows, in bytes (cgroup v2 or v1), else ``None``."""
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:  # "max" or a huge number: no limit
            return max(int(limit) - usage, 0)
    return None


def _psutil_available() -> int | None:
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def available_bytes(device=None) -> int | None:
    """Bytes of memory this process can still allocate on ``device`` (default the CPU).

    CPU: the smaller of the system's available memory (``MemAvailable``, or psutil's) and what
    a container's cgroup limit leaves. CUDA: the device's free memory. ``None`` when unknown
    (then no check is made).
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    found = [value for value in (_meminfo_available() or _psutil_available(), _cgroup_available())
             if value is not None]
    return min(found) if found else None


def registration_bytes(shape: Sequence[int], channels: int = 1, learned: bool = False,
                       element_bytes: int = 4) -> int:
    """Estimated peak memory in bytes of registering a pair of images of spatial ``shape``.

    ``PEAK_FACTOR`` times the bytes of one image of ``channels`` channels of ``element_bytes``
    (float32: 4) each: about 150x for the classical methods, 80x for a network.
    """
    voxels = math.prod(int(n) for n in shape)
    factor = PEAK_FACTOR["learned" if learned else "classical"]
    return int(factor * voxels * channels * element_bytes)


def _downsample_factor(needed: int, available: int, ndim: int) -> int:
    """The smallest integer factor per axis that makes ``needed`` fit into ``available``."""
    factor = 2
    while needed / factor**ndim > available:
        factor += 1
    return factor


def check_fits(shape: Sequence[int], what: str, device=None, channels: int = 1, learned: bool = False,
               element_bytes: int = 4) -> None:
    """Raise :class:`NotEnoughMemory` when registering images of ``shape`` will not fit on ``device``.

    The message names ``what`` (e.g. the files), the estimate and the memory available, and says
    how to make it fit: crop to the region of interest or downsample by a factor it computes.
    """
    available = available_bytes(device)
    needed = registration_bytes(shape, channels, learned, element_bytes)
    if available is None or needed <= available:
        return
    raise NotEnoughMemory(not_enough_memory_message(shape, what, needed, available, device))


def not_enough_memory_message(shape: Sequence[int], what: str, needed: int | None, available: int | None,
                              device=None) -> str:
    """The sentence for a registration that does not fit: size, memory, and how to crop or downsample."""
    ndim = len(shape)
    size = "x".join(str(int(n)) for n in shape)
    where = "GPU" if device is not None and torch.device(device).type == "cuda" else "RAM"
    factor = _downsample_factor(needed, available, ndim) if needed and available else 2
    smaller = "x".join(str(max(1, int(n) // factor)) for n in shape)
    grid = "x".join([str(factor)] * ndim)
    estimate = f"about {describe_bytes(needed)}" if needed else "more memory than there is"
    free = f"the {where} is full"
    if available is not None:
        free = f"{describe_bytes(available)} of {where} are free"
    return (
        f"registering {what} ({size} voxels) needs {estimate} but {free}. Crop both images to the region "
        f"of interest (e.g. FSL `fslroi`, or nibabel's img.slicer[...]), or downsample them {factor}x per "
        f"axis to {smaller} voxels (e.g. ANTs `ResampleImage {ndim} in.nii.gz out.nii.gz {grid} 1`, or "
        f"nibabel.processing.resample_to_output with {factor}x the voxel size)"
        + ("; or run on the CPU (--device cpu)." if where == "GPU" else ".")
    )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocator's out-of-memory failure (CPU or CUDA) rather than a bug."""
    if isinstance(error, MemoryError):
        return True
    if isinstance(error, torch.cuda.OutOfMemoryError):
        return True
    text = str(error)
    return isinstance(error, RuntimeError) and ("can't allocate memory" in text or "out of memory" in text)
