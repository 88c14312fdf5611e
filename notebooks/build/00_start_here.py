"""Build notebooks/00_start_here.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("00_start_here", checks="regedu.course.lesson00")

nb.markdown("""
    # 00 · Start here

    **What you will learn (15 minutes):** what image registration is for, how this kit is laid out, how to
    check your environment (versions, CPU or GPU), how the sliders work, and what `REGEDU_FAST` does.

    Registration finds the spatial transform that aligns a *moving* image with a *fixed* one. Clinical uses:

    - **follow-up**: align this year's brain MRI with last year's to measure atrophy or tumour growth;
    - **multimodal fusion**: put a PET or CT on a patient's MRI (different contrasts, same anatomy);
    - **atlas-based segmentation**: warp a labelled atlas onto a new scan and its labels come along;
    - **radiotherapy and surgery**: map a plan made on one scan onto the scan of the day.

    *Classical* methods optimise a transform for each pair (seconds to hours); *learned* methods
    (VoxelMorph and successors) train a network once and then register a new pair in one forward pass
    (milliseconds on a GPU). This course does both, hands-on.
""")

nb.markdown("""
    ## How the kit is laid out

    Every notebook calls the small package `regedu`; none re-implements a warp, a loss or a figure:

    | module | what it holds |
    |---|---|
    | `regedu.warps` | grids, `warp`, `warp_labels`, `compose`, `integrate`, affines, `jacobian_det` |
    | `regedu.losses` | similarity (`mse`, `ncc`, `mi`, `ngf`) and regularisers (`diffusion`, `bending`) |
    | `regedu.metrics` | `dice`, `folding_fraction`, `sdlogj`, `hd95`, `tre` |
    | `regedu.data` | the offline MNI brain, synthetic subjects and deformations, NIfTI files |
    | `regedu.classical`, `regedu.register` | per-pair registration: affine, dense, B-spline, demons |
    | `regedu.models`, `regedu.train` | VoxelMorph-style networks and the one training loop |
    | `regedu.viz`, `regedu.widgets` | figures and sliders |

    One convention matters everywhere: a displacement field `disp` has shape `(B, ndim, *spatial)`, in
    **voxels**, and warping *pulls*: `warp(moving, disp)(x) = moving(x + disp(x))`.

    The course, in order: `01` images and warps, `02` classical registration, `03` learned (unsupervised)
    registration, `04` supervised versus unsupervised, `05` diffeomorphic fields, `06` multiscale,
    `07` 3D brains and NIfTI files, `08` multimodal registration and SynthMorph. Each notebook has
    exercises; worked solutions are in `notebooks/solutions/`.
""")

nb.markdown("""
    ## Check your environment
""")

nb.code("""
    import os
    import platform

    import torch

    import regedu
    from regedu.course import lesson00 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    print(f"Python {platform.python_version()}, torch {torch.__version__}, regedu {regedu.__version__}")
    print(f"device: {device}" + (f" ({torch.cuda.get_device_name(0)})" if device.type == "cuda" else ""))
    print(f"fast mode (REGEDU_FAST=1): {FAST}")
""")

nb.markdown("""
    `REGEDU_FAST=1` (the test suite sets it) shrinks image sizes and iteration counts so every notebook
    runs in seconds; without it the notebooks train and optimise long enough to show real results, on the
    GPU when there is one. To try it, start Jupyter with `REGEDU_FAST=1 jupyter lab`, or set it in the
    first cell with `os.environ["REGEDU_FAST"] = "1"` before the line that reads it.
""")

nb.markdown("""
    ## A first look: the brain that ships with the kit

    The MNI152 template comes inside the `nilearn` package, so nothing is downloaded. Its array axes are
    (x, y, z) in RAS order: an axial slice is `vol[:, :, z]`. `orientation=True` draws it as a radiologist
    expects (anterior up, patient's right on the left of the screen: look for the small letters R, L, A, P
    at the sides).
""")

nb.code("""
    from regedu import data, viz

    brain = data.brain_slice()
    print("slice shape:", tuple(brain.image.shape), "labels:", brain.labels.unique().tolist())
""", expect="slice shape: (1, 1, 96, 112) labels: [0, 1, 2, 3]\n")

nb.code("""
    viz.overlay(brain.image, brain.labels, names=data.TISSUE_NAMES, orientation=True)
""")

nb.markdown("""
    The colours are the tissue labels that come with the template (CSF-like, grey matter, white matter).
    Registration carries such labels from one image to another; comparing them with the labels of the
    target (the *Dice* overlap) is how the course measures whether a registration worked.
""")

nb.markdown("""
    ## How sliders work

    Move a slider and the figure is redrawn by a plain function of `regedu` (here
    `regedu.widgets.transform_explorer`), which the tests call directly. Try a rotation, a scaling and a
    smooth random deformation; the orange grid shows where each fixed-grid point samples the image. Sliders
    redraw when you release them.
""")

nb.code("""
    from regedu import widgets

    widgets.transform_explorer_widget(brain.image, orientation=True)
""")

nb.markdown("""
    Every slider has a plain function behind it that you can call yourself:
    `widgets.transform_explorer(image, tx, ty, angle_deg, scale, deformation)` returns the warped image
    and the displacement field, `(warped, disp)`. The exercises use it.
""")

nb.predict("""
    The brain slice has 96 × 112 voxels. What shape will the displacement field `disp` of a 30° rotation
    have: one number per voxel, or more?
""", """
    `(1, 2, 96, 112)`: a batch of one field with **two** numbers per voxel, the displacement along axis 0
    and along axis 1, in voxels. A 3D field has three. Every field in regedu has this layout,
    `(B, ndim, *spatial)`.
""")

nb.code("""
    warped, disp = widgets.transform_explorer(brain.image, angle_deg=30)
    print("warped:", tuple(warped.shape), " disp:", tuple(disp.shape))
""", expect="warped: (1, 1, 96, 112)  disp: (1, 2, 96, 112)\n")

nb.markdown("""
    ## Exercises

    Each exercise asks for its answer in the variable `answer`; the cell after it checks your answer and
    says "not attempted yet", "wrong" (and why) or "right". Replace the `...` and run both cells.
""")

nb.exercise("""
    **Exercise 1.** Find the slider setting that shifts the brain 5 voxels towards the *patient's left*
    (axis 0 is x, which grows towards the patient's right). Which sign did you need, and why does a *pulling*
    warp need it? Check your setting with `widgets.transform_explorer` and the brain's centre of mass
    (the intensity-weighted mean of `warps.identity_grid(shape)`), then give it as `answer = (tx, ty)`.
""", starter="""
    from regedu import warps

    shape = tuple(brain.image.shape[2:])
    # your code here: warped, disp = widgets.transform_explorer(brain.image, tx=..., ty=...)
    answer = ...  # (tx, ty), in voxels
""", solution="""
    from regedu import warps

    shape = tuple(brain.image.shape[2:])


    def centre_of_mass(image):
        grid = warps.identity_grid(shape)  # (2, X, Y): the voxel indices
        return (grid * image[0]).flatten(1).sum(1) / image.sum()


    warped, disp = widgets.transform_explorer(brain.image, tx=5.0)
    moved = centre_of_mass(warped) - centre_of_mass(brain.image)
    print("centre of mass moved by", [round(v, 2) for v in moved.tolist()], "voxels along (x, y)")
    # A pulling warp reads warped(x) = image(x + 5): what was at x + 5 now shows at x, i.e. the brain moves
    # by -5 along x, towards lower x = the patient's left. tx = +5 (on screen, radiological view: to the
    # right).
    assert abs(moved[0] + 5) < 0.01 and abs(moved[1]) < 0.01
    answer = (5.0, 0.0)
""", check="check.ex1(answer, brain.image)")

nb.exercise("""
    **Exercise 2.** Set a rotation of 90°: what happens at the corners, and why (think of `padding="border"`)?
    Count the share of voxels whose sampling point `x + disp(x)` falls outside the image (an index below 0
    or above `n - 1` along some axis), and compare `transform_explorer`'s result (`padding="border"`) with
    `warps.warp(image, disp, padding="zeros")` by their largest absolute difference, on the whole slice and
    on the tight crop `brain.image[..., 20:76, 20:92]`. Give
    `answer = {"whole slice": (share, difference), "tight crop": (share, difference)}`, shares as fractions.
""", starter="""
    # your code here: warped, disp = widgets.transform_explorer(brain.image, angle_deg=90)
    answer = ...  # {"whole slice": (share outside, largest difference), "tight crop": (...)}
""", solution="""
    answer = {}
    for name, image in [("whole slice", brain.image), ("tight crop", brain.image[..., 20:76, 20:92])]:
        warped, disp = widgets.transform_explorer(image, angle_deg=90)
        size = torch.tensor(image.shape[2:]).view(2, 1, 1) - 1
        where = warps.identity_grid(image.shape[2:]) + disp[0]  # sampling points, voxel indices
        outside = ((where < 0) | (where > size)).any(dim=0).float().mean()
        zeros = warps.warp(image, disp, padding="zeros")
        answer[name] = (float(outside), float((warped - zeros).abs().max()))
        print(f"{name}: {100 * answer[name][0]:.0f}% of voxels sample outside the image; "
              f"border and zeros padding differ by up to {answer[name][1]:.2f}")
    # The slice is not square (96 x 112), so a 90 degree turn samples outside it near the corners. "border"
    # repeats the nearest edge voxel there. The whole slice has background (0) at its edges, so the corners
    # are black either way; the tight crop cuts through the brain, and its edge voxels smear into streaks.
    viz.show_slices([warped, zeros], ["border padding (streaks)", "zeros padding"])
""", check="check.ex2(answer, brain.image)")

nb.exercise("""
    **Exercise 3.** Set `scale` to 2. Does the brain look bigger or smaller? Predict by how much its *area*
    changes, then measure it by warping the brain mask (`brain.mask`, a boolean map: make it a float image
    and warp it with `mode="nearest"`). Compare with the Jacobian determinant of the field,
    `warps.jacobian_det(disp)`: the area of the moving image that one fixed pixel reads (notebook 01,
    section 6). Give `answer = {"area_ratio": warped area / original area, "det_j": det J}`.
""", starter="""
    # your code here: warped, disp = widgets.transform_explorer(brain.image, scale=2.0)
    answer = ...  # {"area_ratio": ..., "det_j": ...}
""", solution="""
    warped, disp = widgets.transform_explorer(brain.image, scale=2.0)
    mask = brain.mask.float()
    ratio = warps.warp(mask, disp, mode="nearest").sum() / mask.sum()
    det = warps.jacobian_det(disp)  # (1, X, Y)
    print(f"area after / before: {float(ratio):.3f}; det J between {float(det.min()):.2f} and "
          f"{float(det.max()):.2f}")
    # Scale 2 samples twice as far from the centre: each fixed pixel reads a 2 x 2 patch of the moving
    # image, det J = 4. So the brain appears shrunk by 2 along each axis: its area is divided by det J = 4.
    # det J > 1 means the warped image shows the anatomy compressed, not grown.
    assert abs(float(ratio) - 0.25) < 0.02 and torch.allclose(det, torch.full_like(det, 4.0))
    answer = {"area_ratio": float(ratio), "det_j": float(det.mean())}
""", check="check.ex3(answer, brain.mask)")

nb.markdown("""
    ## Check what this notebook taught

    A registration-free sanity check: warping with a zero field changes nothing, and a 90° rotation by
    `regedu.warps` equals `torch.rot90`.
""")

nb.code("""
    import math

    from regedu import warps

    shape = tuple(brain.image.shape[2:])
    assert torch.allclose(warps.warp(brain.image, torch.zeros(1, 2, *shape)), brain.image, atol=1e-5)
    square = brain.image[..., :96, :96]
    rotated = warps.warp(square, warps.affine_to_disp(warps.rotation(math.pi / 2, (96, 96)), (96, 96)))
    assert torch.allclose(rotated, torch.rot90(square, k=-1, dims=(2, 3)), atol=1e-4)
    print("all checks passed")
""")

nb.write()
