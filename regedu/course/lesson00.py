"""Checked exercises of lesson 00, start here (``notebooks/00_start_here.ipynb``).

ex1: the slider setting that shifts the brain towards the patient's left (a pair ``(tx, ty)``);
ex2: a rotation by 90° samples outside the image (shares and padding differences, two images);
ex3: scale 2 and the Jacobian determinant (the area ratio and det J).
"""

from __future__ import annotations

import torch

from regedu import warps, widgets
from regedu.classical.affine import centre_of_mass
from regedu.course.feedback import exercise, expect, is_number

TIGHT_CROP = (slice(None), slice(None), slice(20, 76), slice(20, 92))  # brain.image[..., 20:76, 20:92]


@exercise(1, right="tx = +5: a pulling warp reads image(x + 5), so the brain moves by -5 along x, "
                   "towards the patient's left")
def ex1(answer, image):
    """answer: ``(tx, ty)`` in voxels; image: the brain slice ``(1, 1, X, Y)``, on which it is tried."""
    expect(isinstance(answer, (tuple, list)) and len(answer) == 2 and all(map(is_number, answer)),
           "give the two slider values as a pair of numbers: answer = (tx, ty)")
    tx, ty = (float(value) for value in answer)
    warped, _ = widgets.transform_explorer(image, tx=tx, ty=ty)
    moved = (centre_of_mass(warped) - centre_of_mass(image))[0].tolist()
    expect(abs(moved[1]) < 0.5, f"with ty = {ty:g} the brain moves by {moved[1]:+.1f} voxels along y "
                                "(axis 1, posterior to anterior): the patient's left lies along x, axis 0")
    expect(moved[0] < -0.5 or abs(moved[0]) < 0.5, f"with tx = {tx:g} the brain moves by {moved[0]:+.1f} "
           "voxels along x, towards the patient's right: a pulling warp reads image(x + tx), so the content "
           "moves by -tx")
    expect(abs(moved[0] + 5) < 0.1, f"with tx = {tx:g} the brain moves by {moved[0]:+.1f} voxels along x; "
                                    "it should move by -5 (5 voxels towards the patient's left)")


def _outside_and_difference(image: torch.Tensor) -> tuple[float, float]:
    """For a 90° turn of ``image``: the share of voxels sampling outside it, and the largest
    |border - zeros padding| difference of the warped images."""
    warped, disp = widgets.transform_explorer(image, angle_deg=90)
    last = torch.tensor(image.shape[2:], device=image.device).view(2, 1, 1) - 1
    where = warps.identity_grid(image.shape[2:], device=image.device, dtype=image.dtype) + disp[0]
    outside = ((where < 0) | (where > last)).any(dim=0).float().mean().item()
    zeros = warps.warp(image, disp, padding="zeros")
    return outside, (warped - zeros).abs().max().item()


@exercise(2, right="a 90° turn of a non-square image samples outside it near the corners; border padding "
                   "repeats the edge voxels there, which shows only where the edge is not background")
def ex2(answer, image):
    """answer: {"whole slice": (share outside, largest difference), "tight crop": (...)}; shares are
    fractions of the voxels, differences intensities. image: the brain slice ``(1, 1, X, Y)``."""
    keys = {"whole slice", "tight crop"}
    expect(isinstance(answer, dict) and set(answer) == keys,
           f"give a dict with the keys {sorted(keys)}, each holding (share outside, largest difference)")
    for name, crop in (("whole slice", image), ("tight crop", image[TIGHT_CROP])):
        given = answer[name]
        expect(isinstance(given, (tuple, list)) and len(given) == 2 and all(map(is_number, given)),
               f"answer[{name!r}] must be a pair of numbers: (share outside, largest difference)")
        share, difference = (float(value) for value in given)
        outside, largest = _outside_and_difference(crop)
        expect(0 <= share <= 1, f"answer[{name!r}]: the share {share:g} is not between 0 and 1: give a "
                                "fraction of the voxels, not a percentage")
        expect(abs(share - outside) < 0.01, f"{name}: you found {100 * share:.1f}% of the voxels sampling "
               "outside the image; count the voxels x whose sampling point x + disp(x) has an index below 0 "
               "or above n - 1 along some axis (`warps.identity_grid(shape) + disp[0]`)")
        expect(abs(difference - largest) < 0.01, f"{name}: the largest |border - zeros| difference is "
               f"not {difference:.3f}; warp the same field with padding='zeros' and take the largest "
               "absolute difference to transform_explorer's (border) result"
               + (" of the tight crop brain.image[..., 20:76, 20:92]" if name == "tight crop" else ""))


@exercise(3, right="scale 2 makes each fixed pixel read a 2 x 2 patch: det J = 4, and the warped brain "
                   "covers 1 / det J = 1/4 of its area")
def ex3(answer, mask):
    """answer: {"area_ratio": warped brain area / original area, "det_j": det J of the field};
    mask: the brain mask ``(1, 1, X, Y)`` (boolean), to measure the area again."""
    keys = {"area_ratio", "det_j"}
    expect(isinstance(answer, dict) and set(answer) == keys and all(map(is_number, answer.values())),
           f"give a dict of two numbers with the keys {sorted(keys)}, e.g. float(ratio)")
    ratio, det_j = float(answer["area_ratio"]), float(answer["det_j"])
    _, disp = widgets.transform_explorer(mask.float(), scale=2.0)
    area = (warps.warp(mask.float(), disp, mode="nearest").sum() / mask.sum()).item()
    true_det = warps.jacobian_det(disp).mean().item()
    expect(abs(ratio - 4) > 0.5, "your area ratio is about 4: the brain did not grow. Scale 2 samples "
                                 "twice as far from the centre, so the warped image shows the brain "
                                 "shrunk by 2 along each axis: warp the mask and compare its sums")
    expect(abs(ratio - area) < 0.02, f"your area ratio {ratio:.3f} is not the warped mask's area over the "
                                     "original's: warp `brain.mask.float()` with mode='nearest' and divide "
                                     "the sums")
    expect(abs(det_j - 0.25) > 0.05, "your det J is 0.25: that is the area of the warped brain; det J is the "
                                     "area of the moving image that each fixed pixel reads, "
                                     "`warps.jacobian_det(disp)`")
    expect(abs(det_j - true_det) < 0.05, f"det J is not {det_j:.2f}: compute `warps.jacobian_det(disp)` of "
                                         "the field transform_explorer returned (it is the same everywhere)")
