"""Build notebooks/01_images_and_warps.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("01_images_and_warps", checks="regedu.course.lesson01")

nb.markdown("""
    # 01 · Images and warps

    **What you will learn (about 30 minutes):** how an image is stored as a tensor and what a voxel
    coordinate is; what a displacement field is; why registration *pulls* values instead of pushing them;
    bilinear versus nearest interpolation, and how to warp a label map; how to compose two fields and invert
    one approximately; how to read deformation grids and Jacobian maps; and a slider explorer for translation,
    rotation and a smooth random deformation.

    Every later notebook builds on these few operations of `regedu.warps`. Nothing here optimises anything:
    all cells run in seconds.
""")

nb.code("""
    import math
    import os

    import torch

    from regedu import data, metrics, viz, warps, widgets
    from regedu.course import lesson01 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    INVERSE_ITERATIONS = 12  # fixed-point steps when inverting a field (cheap: the same in fast mode)
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. An image is a tensor

    regedu stores images as `(B, C, *spatial)` float tensors: a batch of `B` images with `C` channels each,
    and the spatial axes `(H, W)` in 2D or `(D, H, W)` in 3D. The brain slice that ships with the kit is one
    image with one channel, 96 × 112 voxels of 2 mm, intensities in [0, 1]:
""")

nb.code("""
    brain = data.brain_slice(device=device)
    image = brain.image
    shape = tuple(image.shape[2:])
    in_range = bool(image.min() >= 0 and image.max() <= 1)
    print(tuple(image.shape), image.dtype, "intensities in [0, 1]:", in_range)
""", expect="(1, 1, 96, 112) torch.float32 intensities in [0, 1]: True\n")

nb.markdown("""
    A voxel is addressed by its *indices* along each axis, `0 .. N-1`; `warps.identity_grid(shape)` holds
    them for every voxel (channel `k` is the index along axis `k`). Voxel centres sit at integer indices, so a
    position like `(10.5, 20)` lies halfway between two voxel centres.
""")

nb.code("""
    print(warps.identity_grid((3, 4)))
""", expect=(
    "tensor([[[0., 0., 0., 0.],\n"
    "         [1., 1., 1., 1.],\n"
    "         [2., 2., 2., 2.]],\n"
    "\n"
    "        [[0., 1., 2., 3.],\n"
    "         [0., 1., 2., 3.],\n"
    "         [0., 1., 2., 3.]]])\n"
))

nb.markdown("""
    The *same tensor* can be drawn two ways. As a matrix (`orientation=False`, like `plt.imshow`), axis 0 runs
    down the rows. A brain in RAS order has axis 0 = x (towards the patient's **R**ight) and axis 1 = y
    (towards **A**nterior), so `orientation=True` draws it as a radiologist reads it: anterior at the top,
    the patient's right on the screen's left. Look at the small letters at the sides: they say which way
    is which. Both panels show exactly the same numbers.
""")

nb.code("""
    fig, axes = viz.new_figure(1, 2)
    viz.show_image(image, axes[0, 0], "as a matrix (orientation=False)")
    viz.show_image(image, axes[0, 1], "radiological (orientation=True)", orientation=True)
    fig
""")

nb.markdown("""
    ## 2. A displacement field, and why warps pull

    A displacement field `disp` has shape `(B, ndim, *spatial)` and is measured **in voxels**: channel `k`
    is the displacement along axis `k`. Warping *pulls*:

    $$\\text{warped}(x) = \\text{moving}(x + \\text{disp}(x)).$$

    Every output voxel `x` looks up the moving image at `x + disp(x)`. So a constant field of `+10` along
    axis 0 makes each voxel read the value 10 voxels *further down* (at larger axis-0 indices). Let's see
    what that does to a white square, by its centre of mass.
""")

nb.predict("""
    The square's centre of mass is at `(32, 24)`. After warping with a constant `+10` along axis 0, will it
    be at `(42, 24)` or at `(22, 24)`?
""", """
    At `(22, 24)`: the content moves 10 voxels *up* (towards lower indices), against the field. The
    voxel at 22 reads the moving image at 22 + 10 = 32, the old centre: what was at 32 now shows at 22.
""")

nb.code("""
    toy = data.square((64, 64), half_width=8, centre=(32, 24), device=device)


    def centre_of_mass(img):
        \"\"\"Intensity-weighted mean voxel index along each axis.\"\"\"
        grid = warps.identity_grid(img.shape[2:], device=img.device)
        return [round(float(c), 2) for c in (grid * img[0]).flatten(1).sum(1) / img.sum()]


    shift = torch.zeros(1, 2, 64, 64, device=device)
    shift[:, 0] = 10.0  # +10 voxels along axis 0, everywhere
    moved = warps.warp(toy, shift)
    print("centre of mass before:", centre_of_mass(toy), " after:", centre_of_mass(moved))
""", expect="centre of mass before: [32.0, 24.0]  after: [22.0, 24.0]\n")

nb.code("""
    fig, axes = viz.new_figure(1, 2)
    viz.show_image(toy, axes[0, 0], "moving: a square")
    viz.displacement_arrows(shift, step=8, ax=axes[0, 1], image=moved,
                            title="warped, with disp (+10 along axis 0)")
    fig
""")

nb.markdown("""
    What to look for: the arrows point *down* (towards larger axis-0 indices: where each voxel reads from),
    and the square moved *up*. Keep this in mind whenever a result seems to go "the wrong way".

    **Why pull and not push?** Pushing sends each moving voxel to a new place. The new places are not on the
    grid, several voxels can land on one, and some output voxels receive nothing: holes. Pulling asks, for
    every output voxel, where to read from, and interpolates there: every output voxel gets exactly one
    value. Here is a zoom by 1.5 done both ways (the push is written out by hand, on purpose, to show the
    holes; regedu itself only pulls):
""")

nb.code("""
    zoom = 1.5
    centre = torch.tensor([(n - 1) / 2 for n in shape], device=device).view(2, 1, 1)
    grid = warps.identity_grid(shape, device=device)

    # push: send each voxel y to the nearest voxel of centre + zoom * (y - centre)
    target = (centre + zoom * (grid - centre)).round().long()
    keep = ((target >= 0) & (target < torch.tensor(shape, device=device).view(2, 1, 1))).all(dim=0)
    pushed = torch.zeros_like(image)
    pushed[0, 0, target[0][keep], target[1][keep]] = image[0, 0][keep]

    # pull: each output voxel x reads the moving image at centre + (x - centre) / zoom
    pulled = warps.warp(image, warps.affine_to_disp(warps.scaling(1 / zoom, shape, device=device), shape))
    magnified = warps.affine_to_disp(warps.scaling(1 / zoom, shape, device=device), shape)
    inside = warps.warp(brain.mask.float(), magnified, mode="nearest") > 0
    holes = int(((pushed == 0) & inside).sum())
    print(f"push left {holes} holes inside the brain; pull left {int(((pulled == 0) & inside).sum())}")
    viz.show_slices([pushed, pulled], ["push (holes)", "pull (no holes)"], orientation=True)
""")

nb.markdown("""
    ## 3. Interpolation: bilinear versus nearest, and label maps

    `x + disp(x)` rarely falls on a voxel centre. `mode="bilinear"` (trilinear in 3D) blends the neighbouring
    voxels: smooth, right for intensities. `mode="nearest"` takes the closest voxel: blocky, but it never
    invents a value. For an *image* that is a matter of taste; for a *label map* (integer tissue classes)
    blending is wrong: halfway between grey matter (2) and white matter (3) is not "2.5 matter", and halfway
    between CSF (1) and white matter (3) would read as grey matter (2).
""")

nb.code("""
    # magnify 4 times about the image centre: every output voxel samples between the moving voxels
    magnify = warps.affine_to_disp(warps.scaling(0.25, shape, device=device), shape)
    blended = warps.warp(brain.labels.float(), magnify)  # wrong for labels
    nearest = warps.warp_labels(brain.labels, magnify)  # nearest neighbour
    smooth = warps.warp_labels(brain.labels, magnify, method="onehot")  # bilinear per label, then argmax
    print("bilinear gives non-integer labels:", bool((blended != blended.round()).any()))
    print("warp_labels keeps the label values:", nearest.unique().tolist(), smooth.unique().tolist())
""", expect=(
    "bilinear gives non-integer labels: True\n"
    "warp_labels keeps the label values: [1, 2, 3] [1, 2, 3]\n"
))

nb.code("""
    fig, axes = viz.new_figure(1, 4)
    viz.show_image(warps.warp(image, magnify), axes[0, 0], "image, bilinear", orientation=True)
    viz.show_image(warps.warp(image, magnify, mode="nearest"), axes[0, 1], "image, nearest", orientation=True)
    viz.show_image(blended, axes[0, 2], "labels, bilinear (wrong)", cmap="viridis", orientation=True,
                   vmin=0, vmax=3)
    viz.show_image(smooth.float(), axes[0, 3], "labels, warp_labels", cmap="viridis", orientation=True,
                   vmin=0, vmax=3)
    fig
""")

nb.markdown("""
    What to look for: the nearest-neighbour image is jagged where the bilinear one is smooth; the bilinear
    label map has in-between colours along every boundary (values like 1.5 or 2.5 that are no tissue), while
    `warp_labels` keeps four clean classes (here `method="onehot"`, which gives smoother boundaries than the
    default nearest-neighbour labels).

    ## 4. Composing two fields

    Warping with `u` and then with `v` reads, at `x`, the first warped image at `x + v(x)`, which itself
    read the moving image at `(x + v(x)) + u(x + v(x))`. One field does both:

    $$\\text{compose}(u, v)(x) = v(x) + u(x + v(x)),$$

    so `warp(warp(img, u), v) == warp(img, compose(u, v))` up to interpolation. Simply adding `u + v` is
    wrong: it evaluates `u` at the wrong place.
""")

nb.code("""
    u = data.random_disp(shape, magnitude=8, smoothness=16, seed=1, device=device)
    v = data.random_disp(shape, magnitude=8, smoothness=16, seed=2, device=device)
    twice = warps.warp(warps.warp(image, u), v)
    composed = warps.compose(u, v)
    error_composed = float((warps.warp(image, composed) - twice).abs().mean())
    error_sum = float((warps.warp(image, u + v) - twice).abs().mean())
    print(f"mean |difference| to warping twice: compose {error_composed:.4f}, u + v {error_sum:.4f}")
    print(f"compose(u, v) and u + v differ by up to {float((composed - u - v).abs().max()):.1f} voxels")
""")

nb.markdown("""
    ## 5. Inverting a field, approximately

    The inverse `w` of `u` undoes it: `compose(u, w) = 0`, i.e. `w(x) = -u(x + w(x))`. There is no formula
    for it, but the equation itself can be iterated: start from `w = 0` and repeat
    `w = -warp(u, w)` (the field `u` read at `x + w(x)`, negated). The first step gives `-u`, the common
    "just negate it" guess, which is only roughly right.

    When does the iteration converge? Each step multiplies the error by at most `L = max ‖∇u‖`, the
    field's largest stretch (how many voxels its displacement changes per voxel moved, the operator norm of
    its Jacobian `∇u`: a Lipschitz constant). So it converges when `u` is a **contraction**, `L < 1`. A
    field that does not fold (`det J > 0` everywhere) is invertible, but that is not enough for this
    iteration: `u(x) = 2x` (the map `x → 3x`, det J = 9, no fold anywhere) has the inverse `w(x) = −2x/3`,
    yet every step doubles the error.
""")

nb.code("""
    def fixed_point_inverse(field, steps):
        \"\"\"Iterate w = -warp(field, w) from w = 0; return w and, per step, max |compose(field, w)|
        (voxels).\"\"\"
        w, residual = torch.zeros_like(field), []
        for _ in range(steps):
            w = -warps.warp(field, w)
            residual.append(float(warps.compose(field, w).abs().max()))
        return w, residual


    def largest_stretch(field):
        \"\"\"L: the largest operator norm of the Jacobian of a (1, 2, X, Y) field (voxels per voxel).\"\"\"
        grads = torch.gradient(field[0], dim=(1, 2))  # d u / d x_j, each (2, X, Y)
        jacobian = torch.stack(grads, dim=-1).movedim(0, -2)  # (X, Y, 2, 2): [i, j] = d u_i / d x_j
        return float(torch.linalg.matrix_norm(jacobian, ord=2).max())


    inverse, residuals = fixed_point_inverse(u, INVERSE_ITERATIONS)
    print(f"u: L = {largest_stretch(u):.2f}")
    print("largest |compose(u, w)| (voxels) after each step:", " ".join(f"{r:.1e}" for r in residuals))
    round_trip = warps.warp(warps.warp(image, u), inverse)
    viz.show_slices([image, warps.warp(image, u), round_trip],
                    ["original", "warped with u", "then with its inverse"], orientation=True)
""")

nb.markdown("""
    What to look for: `L` is below 1 and the residual shrinks at every step, by a factor of at most `L`;
    the round trip gives back the original (slightly blurred: the image was interpolated twice).

    Now the linear field `u(x) = 2 (x − centre)`: it never folds, and `L = 2`.
""")

nb.predict("""
    On an unbounded grid every step of the iteration would double the error for this field. What will the
    residual do on this 96 × 112 image over 12 steps: shrink, double at every step, or something else?
""", """
    Something else: it never shrinks, and it does not double either: it stays at hundreds of voxels from
    the first step on. The field is read at `x + w(x)`, and the image border caps how far away that can be
    (`warp` repeats the border value outside the image), so the error cannot keep growing.
""")

nb.code("""
    stretch = 2 * (grid - centre).unsqueeze(0)  # (1, 2, X, Y): the map x -> centre + 3 (x - centre)
    det_stretch = warps.jacobian_det(stretch)
    _, stretch_residuals = fixed_point_inverse(stretch, INVERSE_ITERATIONS)
    print(f"u = 2x: det J = {float(det_stretch.min()):.1f} everywhere, L = {largest_stretch(stretch):.1f}")
    print("largest |compose(u, w)| (voxels) after each step:",
          " ".join(f"{r:.1e}" for r in stretch_residuals))
""")

nb.markdown("""
    What to look for: the residual does not shrink; it stays at hundreds of voxels. A field with no
    fold can still defeat this inverse; notebook 05 builds fields whose inverse needs no such iteration
    (`exp(v)` is undone by `exp(−v)`).

    ## 6. Seeing a field: grids, colours, arrows and the Jacobian

    A field is hard to see as numbers. Four pictures of the same field `u`:

    - **deformation grid**: the lines of the fixed grid drawn where they sample the moving image (at
      `x + u(x)`), on top of it;
    - **colour**: hue is the direction, saturation the length (white = no motion);
    - **arrows**: from `x` to `x + u(x)`;
    - **Jacobian determinant** `det J = det(I + ∇u)` of the map `x → x + u(x)`, which goes from the fixed
      grid into the moving image: the **area of the moving image that one fixed pixel reads** (in 3D, the
      volume per fixed voxel). The warped image shows the anatomy scaled by `1 / det J`: where `det J > 1`
      (red) a fixed pixel reads a larger patch, so the warped image shows the anatomy *compressed*; where
      `0 < det J < 1` (blue) it shows it *stretched*; where `det J ≤ 0` (yellow) the map *folds*, i.e. it is
      not invertible there. (Red does not mean "the anatomy grew": a pulling warp turns it around.)
""")

nb.code("""
    fig, axes = viz.new_figure(1, 4, width=4 * 3.4)
    viz.deformation_grid(u, 6, ax=axes[0, 0], image=image, orientation=True)
    viz.displacement_colour(u, ax=axes[0, 1], orientation=True)
    viz.displacement_arrows(u, step=8, ax=axes[0, 2], image=image, orientation=True)
    viz.jacobian_map(u, ax=axes[0, 3], orientation=True)
    fig
""")

nb.markdown("""
    Notebook 00's exercise 3 is the check of that sentence: `transform_explorer(scale=2)` reads each fixed
    pixel from a 2 × 2 patch of the brain, so det J = 4 everywhere, and the warped brain covers a quarter of
    its area, not four times it.
""")

nb.code("""
    _, scaled = widgets.transform_explorer(image, scale=2.0)
    det_scaled = warps.jacobian_det(scaled)
    area_ratio = float(warps.warp(brain.mask.float(), scaled, mode="nearest").sum() / brain.mask.sum())
    print(f"scale 2: det J between {float(det_scaled.min()):.2f} and {float(det_scaled.max()):.2f}; "
          f"warped brain area / original area = {area_ratio:.3f}, about 1 / det J")
""")

nb.markdown("""
    A field folds when its displacement changes faster than the distance over which it changes. The next
    cell makes two random fields with the same smoothness (control points 16 voxels apart), one whose
    largest displacement is 4 voxels and one with 16.
""")

nb.predict("""
    Which of the two fields will fold somewhere: the 4-voxel one, the 16-voxel one, both or neither?
""", """
    Only the 16-voxel one. Its displacement changes by about as much as the 16 voxels over which it changes,
    so neighbouring grid lines cross; the 4-voxel field changes four times more slowly and folds nowhere.
""")

nb.code("""
    folding = {}
    for magnitude in (4, 16):
        field = data.random_disp(shape, magnitude=magnitude, smoothness=16, seed=0, device=device)
        folding[magnitude] = float(metrics.folding_fraction(field))
        print(f"largest displacement {magnitude:2d} voxels: {100 * folding[magnitude]:.2f}% of voxels fold")
    fig, axes = viz.new_figure(1, 2, width=2 * 3.6)
    viz.deformation_grid(field, 4, ax=axes[0, 0], title="16 voxels: crossing lines")
    viz.jacobian_map(field, ax=axes[0, 1])
    fig
""")

nb.markdown("""
    What to look for: where the Jacobian map is yellow, the grid lines cross: two fixed voxels read the same
    moving point, and some moving tissue is read by nobody. Notebook 05 builds fields that cannot fold.

    ## 7. Explore: translation, rotation, scaling and a smooth deformation

    Move the sliders (they redraw when released). Things to try: a shift `tx = 10` (which way does the brain
    go?); a rotation of 30° (which way does it turn on screen?); a scale of 1.5 (bigger or smaller?); a
    deformation of 12 voxels (do the grid lines cross?).
""")

nb.code("""
    widgets.transform_explorer_widget(image, orientation=True)
""")

nb.markdown("""
    ## Exercises
""")

nb.exercise("""
    **Exercise 1.** Build a constant field that moves the square `toy` **5 voxels to the right** on the screen
    (matrix layout: towards larger indices along axis 1). Which channel, and which sign? Check with
    `centre_of_mass`, then give the field: `answer = disp`.

    Each exercise asks for its answer in the variable `answer`; the cell after it checks it and says "not
    attempted yet", "wrong" (and why) or "right".
""", starter="""
    disp = torch.zeros(1, 2, 64, 64, device=device)
    # your code here
    answer = ...  # the field, shape (1, 2, 64, 64)
""", solution="""
    disp = torch.zeros(1, 2, 64, 64, device=device)
    disp[:, 1] = -5.0  # channel 1 = axis 1; pulling reads 5 voxels to the left, so the content moves right
    print(centre_of_mass(toy), "->", centre_of_mass(warps.warp(toy, disp)))
    assert centre_of_mass(warps.warp(toy, disp)) == [32.0, 29.0]
    answer = disp
""", check="check.ex1(answer, toy)")

nb.exercise("""
    **Exercise 2.** Rotate the brain by 30° and back by −30° with two bilinear warps. Then do the same with a
    *single* warp through the composed field (`warps.compose`). Which result is closer to the original
    image, and why? Give the mean absolute difference of each to the original image:
    `answer = {"two warps": ..., "one warp": ...}`.
""", starter="""
    forward = warps.affine_to_disp(warps.rotation(math.radians(30), shape, device=device), shape)
    backward = warps.affine_to_disp(warps.rotation(math.radians(-30), shape, device=device), shape)
    # your code here
    answer = ...  # {"two warps": mean |error|, "one warp": mean |error|}
""", solution="""
    forward = warps.affine_to_disp(warps.rotation(math.radians(30), shape, device=device), shape)
    backward = warps.affine_to_disp(warps.rotation(math.radians(-30), shape, device=device), shape)
    two_warps = warps.warp(warps.warp(image, forward), backward)
    one_warp = warps.warp(image, warps.compose(forward, backward))
    error_two = float((two_warps - image).abs().mean())
    error_one = float((one_warp - image).abs().mean())
    print(f"mean |error|: two warps {error_two:.4f}, one composed warp {error_one:.6f}")
    # Each bilinear warp blurs a little; the composed field is (almost exactly) zero, so one warp with it
    # gives the image back. Lesson: compose the fields, interpolate the image once.
    assert error_one < error_two
    viz.show_slices([two_warps, one_warp], ["two warps (blurred)", "one composed warp"], orientation=True)
    answer = {"two warps": error_two, "one warp": error_one}
""", check="check.ex2(answer, image)")

nb.exercise("""
    **Exercise 3.** Invert the folding field of section 6 (`data.random_disp(shape, magnitude=16,
    smoothness=16, seed=0)`) with the same fixed-point iteration, for 20 steps. Does the residual
    `|compose(u, w)|` still go to zero? Compare with the 4-voxel field (`magnitude=4`), and explain. Give the
    largest residual after the 20th step of each: `answer = {4: ..., 16: ...}`.
""", starter="""
    # your code here: fixed_point_inverse(field, 20) returns w and the residual after each step
    answer = ...  # {4: residual after 20 steps, 16: residual after 20 steps}, in voxels
""", solution="""
    final = {}
    for magnitude in (4, 16):
        field = data.random_disp(shape, magnitude=magnitude, smoothness=16, seed=0, device=device)
        _, residual = fixed_point_inverse(field, 20)
        final[magnitude] = residual[-1]
        print(f"magnitude {magnitude:2d}: L = {largest_stretch(field):.2f}, largest residual after 20 steps "
              f"{final[magnitude]:.2e} voxels")
    # Where a field folds, two fixed points read the same moving point: the map is not invertible there, so no
    # w can satisfy compose(u, w) = 0 and the iteration does not converge. The 4-voxel field is a
    # contraction (L < 1), so it converges; the 16-voxel one has L > 1 (and folds).
    assert final[16] > 100 * final[4]
    answer = final
""", check="check.ex3(answer, shape)")

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    zero = torch.zeros(1, 2, *shape, device=device)
    assert torch.allclose(warps.warp(image, zero), image, atol=1e-5), "a zero field changes nothing"
    assert centre_of_mass(moved)[0] == centre_of_mass(toy)[0] - 10, "a pull by +10 moves content by -10"
    assert holes > 100 and int(((pulled == 0) & inside).sum()) == 0, "pushing leaves holes, pulling does not"
    assert set(nearest.unique().tolist()) <= {0, 1, 2, 3}, "warp_labels keeps label values"
    assert error_composed < error_sum / 2, "compose(u, v) is the field of 'u then v', not u + v"
    assert largest_stretch(u) < 1 and residuals[-1] < 0.01 < residuals[0], "a contraction's inverse converges"
    assert float(det_stretch.min()) > 1 and min(stretch_residuals) > 1, \
        "u = 2x does not fold, yet the fixed-point inverse does not converge"
    assert torch.allclose(det_scaled, torch.full_like(det_scaled, 4.0)) and abs(area_ratio - 0.25) < 0.02, \
        "det J = 4 (scale 2): the warped brain covers 1 / det J of its area"
    assert folding[4] == 0 < folding[16], "large fields fold, small smooth ones do not"
    print("all checks passed")
""")

nb.write()
