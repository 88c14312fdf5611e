"""Build notebooks/02_classical_registration.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("02_classical_registration", checks="regedu.course.lesson02")

nb.markdown("""
    # 02 · Classical registration

    **What you will learn (about 75 minutes):** how a similarity measure scores an alignment, and what its
    *landscape* over shifts looks like (with a slider); affine registration by gradient descent, watching the
    loss fall live; dense deformable registration and what the regularisation weight does (with a slider);
    two other classics, demons and B-splines; why registration runs coarse to fine (multi-resolution); and
    how to judge a result: Dice overlap and HD95 of labels, target registration error (TRE) of landmarks,
    checkerboard, difference image and Jacobian map, and why Dice and TRE can disagree. Sections 9 to 13 go
    deeper, each measured on these pairs: why the optimiser needs its parameters scaled (rotation against
    translation), where it starts (centre of mass, geometric centre, exhaustive search), masks, the
    B-spline's control spacing, and symmetric (inverse-consistent) registration.

    *Classical* means: no training. For each pair of images, an optimiser searches for the transform that
    makes `warp(moving, disp)` look like `fixed`. Every method here is one call of
    `regedu.register(moving, fixed, method=...)`.
""")

nb.code("""
    import os

    import torch
    from torch.utils.data import default_collate

    import regedu
    from regedu import data, losses, metrics, viz, warps, widgets
    from regedu.course import lesson02 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)

    PAIRS = 2 if FAST else 6  # pairs in the method comparison
    AFFINE_ITERATIONS = (50, 25, 0) if FAST else (150, 75, 0)  # per pyramid level, coarse to fine
    ITERATIONS = (40, 20, 10) if FAST else (150, 75, 30)  # deformable methods
    MAX_SHIFT = 4 if FAST else 6  # similarity landscapes: shifts -MAX_SHIFT .. MAX_SHIFT voxels
    print(f"device: {device}, fast mode: {FAST}, {PAIRS} pairs")
""")

nb.markdown("""
    ## 1. The pairs

    The same kind of pairs as in the learned notebooks (03, 04): two synthetic subjects made from the MNI
    brain slice (96 × 112 voxels), each pushed through its own random affine and smooth deformation, with
    different intensity changes. Each comes with its tissue labels (CSF-like, grey matter, white matter),
    which the registration never sees: we use them only to *measure* it. The fixed labels are the moving
    labels carried by the true transform, so a perfect registration reaches Dice 1.
""")

nb.code("""
    pairs = data.TemplatePairs(length=PAIRS, mode="subject_to_subject", seed=2)
    batch = default_collate([pairs[i] for i in range(PAIRS)])  # a dict of (PAIRS, ...) tensors
    batch = {key: value.to(device) for key, value in batch.items()}
    moving_all, fixed_all = batch["moving"], batch["fixed"]
    moving_labels_all, fixed_labels_all = batch["moving_labels"], batch["fixed_labels"]
    # the first pair, for the figures
    moving, fixed = moving_all[:1], fixed_all[:1]
    moving_labels, fixed_labels = moving_labels_all[:1], fixed_labels_all[:1]
    print("one pair:", tuple(moving.shape), "labels:", moving_labels.unique().tolist())
""", expect="one pair: (1, 1, 96, 112) labels: [0, 1, 2, 3]\n")

nb.markdown("""
    Labels measure overlap. A second yardstick measures *correspondence*: **landmarks**, points that can be
    found in both images (in a real study an expert clicks them: the tip of a ventricle, a point where two
    sulci meet). The **target registration error** (TRE) of a landmark `x` of the fixed image is the distance
    between where the registration says it is in the moving image, `x + disp(x)`, and where it really is.

    On these synthetic pairs the true field is known (it made the fixed subject from the moving one), so
    every point has a known true position. `data.landmarks(fixed_labels, count, where="junctions")` picks
    well-spread points where three or more labels meet (tissue corners, the kind of point an expert could
    find again), and `data.map_landmarks(points, true_disp)` carries them through the true field.
""")

nb.code("""
    LANDMARKS = 20  # per pair
    true_disp_all = batch["disp"]  # the true field of each pair (fixed -> moving, in voxels)
    points_all = data.landmarks(fixed_labels_all, LANDMARKS, seed=0, where="junctions")  # (PAIRS, 20, 2)
    true_points_all = data.map_landmarks(points_all, true_disp_all)  # their true places in the moving image
    tre_true = metrics.tre(points_all, true_points_all, true_disp_all)  # (PAIRS,) in voxels
    tre_before = metrics.tre(points_all, true_points_all, torch.zeros_like(true_disp_all))  # no registration
    print(f"TRE of the true field: {float(tre_true.max()):.1f} voxels; before registration: "
          f"{float(tre_before.mean()):.2f} voxels (mean of {PAIRS} pairs)")


    def draw_landmarks(ax, points, style, label):
        \"\"\"Mark ``points`` ``(N, 2)`` on a panel drawn with orientation=True, whose data coordinates are
        voxel indices: axis 0 (x) runs along the screen's horizontal, axis 1 (y) along its vertical.\"\"\"
        xy = points.detach().cpu()
        ax.plot(xy[:, 0], xy[:, 1], style, markersize=6, markeredgewidth=1.5, label=label)


    fig, axes = viz.new_figure(1, 2, width=2 * 3.8)
    viz.show_image(fixed, ax=axes[0, 0], orientation=True, title="fixed: landmarks")
    draw_landmarks(axes[0, 0], points_all[0], "c+", "landmark")
    viz.show_image(moving, ax=axes[0, 1], orientation=True, title="moving: true positions")
    draw_landmarks(axes[0, 1], true_points_all[0], "go", "true position")
    for ax in axes[0]:
        ax.legend(loc="lower right", fontsize="x-small")
    fig
""")

nb.markdown("""
    What to look for: each cross on the fixed image has its green dot on the moving image, on the same
    tissue corner: the dots are the crosses moved and bent by the true field. The TRE of the true field is
    0 by construction: it is what a perfect registration scores, and the TRE before registration is what
    doing nothing scores.
""")

nb.code("""
    dice_before = metrics.dice(moving_labels_all, fixed_labels_all)  # (pairs, 3 labels)
    print(f"mean Dice before registration, first pair: {float(dice_before[0].nanmean()):.3f}")
    fig, axes = viz.new_figure(1, 3, width=3 * 3.5)
    viz.overlay(moving, moving_labels, style="contour", ax=axes[0, 0], orientation=True, title="moving")
    viz.overlay(fixed, fixed_labels, style="contour", ax=axes[0, 1], orientation=True, title="fixed")
    viz.difference(fixed, moving, ax=axes[0, 2], names=("fixed", "moving"), orientation=True)
    fig
""")

nb.markdown("""
    What to look for: the outlines of the tissues do not line up, and the difference image is red and blue
    along every edge: the two brains differ in position, size and shape. The intensities differ a little too
    (each subject has its own brightness changes), so even a perfect alignment will not make the difference
    zero.

    ## 2. Similarity measures and their landscapes

    A similarity measure scores how well two images match; in regedu every measure is a *loss*: lower is
    better. The main ones, all in `regedu.losses`:

    | loss | compares | use when |
    |---|---|---|
    | `mse` | intensities, voxel by voxel | same contrast, same scanner |
    | `ncc` | local correlation in a window (9 voxels) | same contrast, brightness varies across the image |
    | `global_ncc` | correlation over the whole image | same contrast up to a global scale and offset |
    | `mi` | statistical dependence (joint histogram) | different contrasts (T1 against T2, MR against CT) |
    | `ngf` | directions of the edges | different contrasts, edges in the same places |
""")

nb.code("""
    for name, loss in widgets.SIMILARITIES.items():
        print(f"{name:>10}:  fixed vs moving {float(loss(fixed, moving)):+.4f}   fixed vs itself "
              f"{float(loss(fixed, fixed)):+.4f}")
""")

nb.markdown("""
    A registration method walks downhill on the loss. To see the hill, take the fixed image, move it by a
    known shift `t = (3, −2)` voxels, and compute the loss for every integer shift we could try: the
    *landscape*. A good measure has its lowest point at the true shift and a wide valley around it (so an
    optimiser starting far away still rolls into it). Then repeat with the contrast inverted (`1 − image`,
    as different as a T1 and a T2): MSE, which compares raw intensities, now points to the wrong place.
""")

nb.code("""
    true_shift = (3, -2)
    shape = tuple(fixed.shape[2:])
    offset = torch.tensor(true_shift, dtype=fixed.dtype, device=device).view(1, 2, 1, 1).expand(1, 2, *shape)
    shifted = warps.warp(fixed, -offset)  # shifted(x) = fixed(x - t): fixed moved by t
    inverted = 1 - shifted  # the same anatomy in the opposite contrast
    shifts = list(range(-MAX_SHIFT, MAX_SHIFT + 1))

    found = {}
    fig, axes = viz.new_figure(1, 4, width=4 * 3.9, height=3.3)
    for column, (contrast, image) in enumerate([("same", shifted), ("inverted", inverted)]):
        for row, name in enumerate(["mse", "mi"]):
            values = widgets.similarity_landscape(fixed, image, shifts, name)
            best = divmod(int(values.argmin()), len(shifts))
            found[contrast, name] = (shifts[best[0]], shifts[best[1]]) == true_shift
            viz.landscape(values, shifts, ax=axes[0, 2 * column + row], title=f"{name}, {contrast} contrast")
    print("finds the true shift:", ", ".join(f"{name} ({contrast} contrast) {ok}"
                                            for (contrast, name), ok in found.items()))
""", expect=("finds the true shift: mse (same contrast) True, mi (same contrast) True, "
             "mse (inverted contrast) False, mi (inverted contrast) True\n"))

nb.code("""
    fig
""")

nb.markdown("""
    What to look for: the red star (lowest loss) sits at `(3, −2)` in three panels. MSE on the inverted
    contrast has its minimum somewhere else entirely, at the edge of the range, and at the true shift it is at
    its *highest*: there, every bright voxel of one image meets a dark voxel of the other. MI does not care
    which intensity maps to which, only that one predicts the other.

    Now explore yourself: pick a measure and a shift range. The moving image is the **inverted** one. Which
    measures find the true shift, and which has the widest valley?
""")

nb.code("""
    widgets.similarity_landscape_widget(fixed, inverted, max_shift=8)
""")

nb.markdown("""
    ## 3. Affine registration by gradient descent, with a live loss curve

    An affine transform (rotation, scaling, shear, translation: 6 numbers in 2D) is fitted by gradient
    descent. `regedu.register(..., method="affine")` starts from the translation that aligns the centres of
    mass, then runs Adam on local NCC, **coarse to fine**: first on images shrunk 4 times, then 2 times
    (the dashed line in the plot marks the switch). The `callback` option hands each loss to a function;
    `viz.LiveLossPlot` draws it while the optimiser runs.
""")

nb.code("""
    live = viz.LiveLossPlot(title="affine, NCC loss")
    affine = regedu.register(moving_all, fixed_all, method="affine", iterations=AFFINE_ITERATIONS,
                             moving_labels=moving_labels_all, callback=live, progress=False)
    live.finish()
    dice_affine = metrics.dice(affine.warped_labels, fixed_labels_all)
    tre_affine = metrics.tre(points_all, true_points_all, affine.disp)
    print(f"{PAIRS} pairs in {affine.seconds:.1f} s; mean Dice {float(dice_before.nanmean()):.3f} -> "
          f"{float(dice_affine.nanmean()):.3f}; mean TRE {float(tre_before.mean()):.2f} -> "
          f"{float(tre_affine.mean()):.2f} voxels")
""")

nb.markdown("""
    (The curve is the mean loss of the whole batch: regedu registers all pairs at once, each with its own
    transform. The loss jumps at the dashed line because each level measures it on its own resolution: the
    finer image has more detail left to match.) The result of the first pair, in one figure: the images,
    the differences before and after (same colour scale), the fixed grid drawn on the moving image, and the
    Jacobian determinant (constant for an affine: the same scaling everywhere).
""")

nb.code("""
    viz.registration_summary(moving, fixed, affine.warped[:1], affine.disp[:1], moving_labels, fixed_labels,
                             orientation=True)
""")

nb.markdown("""
    What to look for: the difference "after" is much paler than "before", but edges remain red and blue: an
    affine cannot bend. That is the deformable methods' job, which start from this affine.

    ## 4. Dense deformable registration and the regularisation weight

    `method="dense"` optimises one displacement vector *per voxel*: 2 × 96 × 112 = 21504 unknowns. Left
    alone, the optimiser uses that freedom to match noise and intensity differences, and the field tears and
    folds. So the loss adds a **regulariser** that penalises rough fields:

    $$\\text{loss} = \\text{NCC}(\\text{fixed}, \\text{warped}) + w \\cdot \\text{diffusion}(\\text{disp}),$$

    where `diffusion` is the mean squared gradient of the field. We run it for several weights `w`, each
    time starting from the affine above, on the first pair.
""")

nb.code("""
    WEIGHTS = (0.0, 0.1, 1.0, 10.0)
    points, true_points = points_all[:1], true_points_all[:1]  # the first pair's landmarks
    results, table = {}, []
    for weight in WEIGHTS:
        result = regedu.register(moving, fixed, method="dense", affine=affine.affine[:1], weight=weight,
                                 iterations=ITERATIONS, moving_labels=moving_labels, progress=False)
        results[weight] = (result.warped, result.disp)
        dice_w = float(metrics.dice(result.warped_labels, fixed_labels).nanmean())
        folding_w = float(metrics.folding_fraction(result.disp))
        tre_w = float(metrics.tre(points, true_points, result.disp))
        table.append((weight, dice_w, folding_w, tre_w))
        print(f"weight {weight:5.1f}: mean Dice {dice_w:.3f}, TRE {tre_w:.2f} voxels, folding "
              f"{100 * folding_w:5.2f}% of voxels, SDlogJ {float(metrics.sdlogj(result.disp)):.3f}")
""")

nb.markdown("""
    Move the slider through the weights. What to look for: at `w = 0` the warped image matches well, but the
    grid is crumpled and the Jacobian map has yellow (folded) spots: tissue was torn and flipped, which no
    real anatomy does. At `w = 10` the field is so stiff it barely bends, and the difference image keeps its
    edges. Between them, a weight gives the best Dice *and* a smooth field: the numbers above show which.
    The landmarks agree: at `w = 0` their TRE is the largest of the four weights. A field that tears and
    folds to match intensities voxel by voxel carries points to the wrong places.
""")

nb.code("""
    widgets.regularisation_widget(results, fixed=fixed, moving=moving, orientation=True)
""")

nb.markdown("""
    ## 5. Demons, B-splines, and the default pipeline

    Two classics with other ideas about how to keep a field smooth:

    - **Demons** (Thirion, 1998) do not run a generic optimiser. Each iteration pushes every voxel along the
      image gradient by an amount set by the intensity difference (an optical-flow step, at most one voxel),
      then smooths the update and the field with Gaussians. Fast and simple, but it compares raw
      intensities (like MSE), so it needs the same contrast.
    - **B-splines** (free-form deformation, Rueckert et al., 1999) move a coarse grid of control points
      (every 8 voxels here) and blend their displacements with smooth cubic B-splines. Far fewer unknowns,
      smooth by construction (two continuous derivatives), but **not fold-free by construction**: nothing
      bounds how far a control point moves, and one that moves far from its neighbours folds the field.
      Choi and Lee (2000) proved a sufficient bound: if no control point moves more than about 0.40 control
      spacings along any axis, the map cannot fold (their 3D bound; it holds in 2D as well). regedu does
      not enforce it: a bending-energy penalty keeps the field smooth, which usually, not always, keeps it
      from folding.

    `regedu.register(moving, fixed)` without a method runs the default pipeline, `"affine+bspline+dense"`:
    an affine first, then a B-spline deformation from it, then a short dense refinement at full resolution
    that follows the detail an 8-voxel grid cannot (with a penalty on det J < 0.1 that discourages folds:
    a penalty, not a guarantee). Any method name prefixed with `"affine+"` starts from an affine the same
    way. We compare them on all pairs (each method in one batched call), starting the deformable ones from
    the affine of section 3.
""")

nb.code("""
    compared = {"before": dice_before, "affine": dice_affine}
    hd95s = {"before": metrics.hd95(moving_labels_all, fixed_labels_all),
             "affine": metrics.hd95(affine.warped_labels, fixed_labels_all)}  # (PAIRS, 3 labels), voxels
    tres = {"before": tre_before, "affine": tre_affine}  # (PAIRS,), voxels
    folding, seconds, final = {}, {}, {}
    runs = {
        "dense (w = 1)": dict(method="dense", affine=affine.affine, weight=1.0, iterations=ITERATIONS),
        "demons": dict(method="demons", affine=affine.affine, iterations=ITERATIONS),
        "default (affine+bspline+dense)": dict(method="default", iterations=ITERATIONS,
                                               affine_options=dict(iterations=AFFINE_ITERATIONS)),
    }
    for name, options in runs.items():
        result = regedu.register(moving_all, fixed_all, moving_labels=moving_labels_all, progress=False,
                                 **options)
        compared[name] = metrics.dice(result.warped_labels, fixed_labels_all)
        hd95s[name] = metrics.hd95(result.warped_labels, fixed_labels_all)
        tres[name] = metrics.tre(points_all, true_points_all, result.disp)
        folding[name] = float(metrics.folding_fraction(result.disp).mean())
        seconds[name] = result.seconds
        final[name] = result
    for name, table_dice in compared.items():
        extra = f", folding {100 * folding[name]:.2f}%, {seconds[name]:.1f} s" if name in folding else ""
        print(f"{name:>30}: mean Dice {float(table_dice.nanmean()):.3f}, HD95 "
              f"{float(hd95s[name].nanmean()):.2f}, TRE {float(tres[name].mean()):.2f} voxels{extra}")
    viz.dice_per_label(compared, names=data.TISSUE_NAMES, title=f"Dice per tissue, mean of {PAIRS} pairs")
""")

nb.markdown("""
    What to look for: every deformable method beats the affine, which beats doing nothing, on all three
    measures: Dice (higher is better), HD95 (the 95th percentile of the distances between the warped and
    the fixed label borders, in voxels, lower is better) and TRE (lower is better). The bars show which
    tissue is hardest (the thin, convoluted grey matter ribbon and CSF). The times are for the whole batch
    on this machine.

    The folding column is a measurement on these pairs, not a property of the methods. How far did the
    default pipeline's control points move, in control spacings, against the 0.40 bound? And what does a
    single control point moved far do to a B-spline field?
""")

nb.code("""
    from regedu.classical import bspline_to_disp, control_grid_shape
    from regedu.classical.bspline import default_control_spacing

    spacing = default_control_spacing(2)[0]  # voxels between control points (8)
    control = final["default (affine+bspline+dense)"].parameters["control_points"]  # (PAIRS, 2, *grid)
    moves = (control.abs().amax(dim=(1, 2, 3)) / spacing).tolist()
    print("largest control-point move of each pair, in control spacings:",
          " ".join(f"{move:.2f}" for move in moves), "(no-fold bound: 0.40)")

    one_point = torch.zeros(1, 2, *control_grid_shape(shape, spacing), device=device)
    smallest_det = {}
    for move in (0.4, 3.0):
        one_point[0, 0, 6, 7] = move * spacing  # one control point near the centre, moved along axis 0
        field = bspline_to_disp(one_point, spacing, shape)
        smallest_det[move] = float(warps.jacobian_det(field).min())
        print(f"one control point moved {move} spacings: smallest det J {smallest_det[move]:+.2f}")
    viz.jacobian_map(field, title="one control point moved 3 spacings")
""")

nb.markdown("""
    What to look for: one control point moved 3 spacings folds the field (yellow: det J ≤ 0), with no
    regulariser to stop it. Where the pipeline's printed moves exceed 0.40, the bound promises nothing:
    what kept its fields from folding on these pairs is the bending penalty and the refinement's det J
    penalty. "The default pipeline did not fold" is an observed result on these pairs, not a guarantee.

    ## 6. Why coarse to fine: multi-resolution

    On the full-resolution image, the loss only "sees" a few voxels around each edge: an optimiser that starts
    10 voxels away gets no signal pulling it the right way, or gets stuck on the wrong edge. On an image
    shrunk 4 times, the same offset is 2–3 voxels, and the valley of the loss is wide. So every method here
    runs a pyramid: solve on the coarse image, carry the field up, refine. Here is dense registration,
    *without* the affine start, on one level (full resolution only) against three levels, with the same
    number of iterations.
""")

nb.code("""
    total = sum(ITERATIONS)
    single = regedu.register(moving, fixed, method="dense", levels=1, iterations=total,
                             moving_labels=moving_labels, progress=False)
    pyramid = regedu.register(moving, fixed, method="dense", levels=3, iterations=ITERATIONS,
                              moving_labels=moving_labels, progress=False)
    dice_single = float(metrics.dice(single.warped_labels, fixed_labels).nanmean())
    dice_pyramid = float(metrics.dice(pyramid.warped_labels, fixed_labels).nanmean())
    print(f"{total} iterations: one level Dice {dice_single:.3f} ({single.seconds:.1f} s), "
          f"three levels Dice {dice_pyramid:.3f} ({pyramid.seconds:.1f} s)")
    fig, axes = viz.new_figure(1, 2, width=2 * 4.2, height=2.8)
    viz.loss_curve(single, ax=axes[0, 0], title=f"one level: Dice {dice_single:.3f}")
    viz.loss_curve(pyramid, ax=axes[0, 1], title=f"three levels: Dice {dice_pyramid:.3f}")
    fig
""")

nb.markdown("""
    What to look for: with three levels, most of the loss drop happens in the first (coarse, cheap) level; the
    finer levels start low and polish. (Each level's loss is measured on its own resolution, so the curves
    jump at the dashed lines.) The single level creeps down slowly and ends with a worse Dice, at a higher
    cost per iteration.

    ## 7. Judging a registration

    A low loss is not proof of a good registration (section 4: no regularisation, low loss, torn field). Look
    at several things:

    - **Dice** of labels that the method never saw: overlap, 1 is perfect;
    - **HD95** of the same labels: how far the borders still lie apart (the worst 5% of border points left
      out, so that one stray voxel does not decide it);
    - **TRE** of landmarks: whether points went where they belong (section 8: not the same question);
    - a **checkerboard** of fixed and warped: edges should continue across the squares;
    - the **difference image**: paler is better (up to the intensity changes between subjects);
    - the **Jacobian map**: no yellow (folds), and no extreme blue or red (implausible shrinking or growth).
""")

nb.code("""
    best = final["default (affine+bspline+dense)"]
    fig, axes = viz.new_figure(1, 2, width=2 * 3.6)
    viz.checkerboard(fixed, moving, ax=axes[0, 0], orientation=True, title="before: fixed / moving")
    viz.checkerboard(fixed, best.warped[:1], ax=axes[0, 1], orientation=True, title="after: fixed / warped")
    fig
""")

nb.code("""
    viz.registration_summary(moving, fixed, best.warped[:1], best.disp[:1], moving_labels, fixed_labels,
                             orientation=True)
""")

nb.markdown("""
    What to look for: in the checkerboard, the ventricles and the outline of the brain break at the square
    borders before and run through them after. In the summary, the warped labels (outlines) fit the fixed
    image, the difference "after" has lost most of its structure, the grid bends smoothly, and the
    Jacobian map has no yellow.

    ## 8. When Dice and TRE disagree

    Dice asks one question: do the warped labels cover the fixed ones? It never asks *which part* of a
    label went where. The classic case it cannot see is a left-right flip, what a header read with the
    wrong orientation does to an image (notebook 07: nothing in the pixels tells). At the level of three
    tissue classes the two hemispheres look much alike, so a flipped brain can still be warped to cover
    the fixed one, each landmark of one hemisphere matched to a point of the other.

    Below, the moving images (and their labels) are flipped left-right, `torch.flip` along axis 0, which
    runs from the patient's left to right (96 voxels), and the default pipeline registers them to the same
    fixed images. The true positions are still known: the flip sends a moving point `(x, y)` to
    `(95 − x, y)`, so the landmarks' true positions in the flipped images are their true positions, flipped.
""")

nb.predict("""
    Will the flipped pairs' Dice after registration be close to that of no registration, or well above it?
    And their TRE: a fraction of a voxel (like the correct registration), a few voxels (like no
    registration), or more?
""", """
    Dice well above no registration: by overlap, the flipped registration looks like a success. TRE *more*
    than no registration, several times more: each landmark lands near its mirror image in the other
    hemisphere. The figure after the table shows where each one went.
""")

nb.code("""
    def flip_left_right(x):
        \"\"\"Flip images or label maps (B, C, x, y) along axis 0, the left-right axis.\"\"\"
        return torch.flip(x, dims=[2])


    width = moving_all.shape[2]
    true_points_flipped = true_points_all.clone()
    true_points_flipped[..., 0] = (width - 1) - true_points_flipped[..., 0]
    flipped = regedu.register(flip_left_right(moving_all), fixed_all, iterations=ITERATIONS,
                              affine_options=dict(iterations=AFFINE_ITERATIONS),
                              moving_labels=flip_left_right(moving_labels_all), progress=False)
    pipeline = "default (affine+bspline+dense)"
    scores = {
        "no registration": (compared["before"], hd95s["before"], tres["before"]),
        "default pipeline": (compared[pipeline], hd95s[pipeline], tres[pipeline]),
        "default, moving flipped": (metrics.dice(flipped.warped_labels, fixed_labels_all),
                                    metrics.hd95(flipped.warped_labels, fixed_labels_all),
                                    metrics.tre(points_all, true_points_flipped, flipped.disp)),
    }
    print(f"{'':>24}{'Dice':>8}{'HD95':>8}{'TRE':>8}   (means of {PAIRS} pairs; HD95 and TRE in voxels)")
    for name, (dice_s, hd95_s, tre_s) in scores.items():
        print(f"{name:>24}{float(dice_s.nanmean()):8.3f}{float(hd95_s.nanmean()):8.2f}{float(tre_s.mean()):8.2f}")
""")

nb.code("""
    best_points = data.map_landmarks(points_all[:1], best.disp[:1])  # where the registration puts them
    flipped_points = data.map_landmarks(points_all[:1], flipped.disp[:1])  # and the flipped pair's
    fig, axes = viz.new_figure(1, 2, width=2 * 3.8)
    panels = [(moving, true_points_all, best_points, "moving: correct registration"),
              (flip_left_right(moving), true_points_flipped, flipped_points, "moving flipped left-right")]
    for ax, (image, truth, placed, title) in zip(axes[0], panels):
        viz.show_image(image, ax=ax, orientation=True, title=title)
        for start, end in zip(truth[0].cpu(), placed[0].cpu()):
            ax.plot([start[0], end[0]], [start[1], end[1]], "y-", linewidth=0.8)
        draw_landmarks(ax, truth[0], "go", "true position")
        draw_landmarks(ax, placed[0], "rx", "registration")
        ax.legend(loc="lower right", fontsize="x-small")
    fig
""")

nb.markdown("""
    What to look for: by Dice (and HD95) the flipped registration looks like a success, far better than no
    registration; by TRE it is a disaster, many times worse than no registration at all. In the figure,
    the correct registration puts each landmark (red cross) on its true position (green dot); after the
    flip, the yellow lines run across the brain, from a landmark's true position to about its mirror
    image: each landmark is matched to its counterpart in the other hemisphere, and the farther it lies
    from the midline, the farther off it lands. Dice is not wrong: the warped labels do cover the fixed
    ones. It answers a different question.

    So report both kinds of measure. Overlap of labels (Dice, HD95) says whether structures cover each
    other; TRE says whether points went where they belong, and only there: landmarks are few, so an error
    between them goes unseen. Where the correspondence matters (following a tumour between scans, fusing
    images for surgery) landmarks decide, which is why lung CT benchmarks such as DIR-Lab's 4D CT and
    Learn2Reg's lung tasks score registrations by the TRE of expert landmarks. Symmetry, a flip, or tissue
    sliding along a border that a label does not mark, all keep Dice high and move the points.
""")

nb.markdown("""
    ## 9. Optimiser and parameter scaling

    Sections 9 to 13 open the choices that section 3's one call hid. First, the optimiser. A rigid transform
    in 2D has three parameters: an angle, in radians, and a shift of two numbers, in voxels. Gradient
    descent moves each parameter by *step size × gradient*, in that parameter's own unit. A turn by a small
    angle δ (radians) moves a point at distance ρ from the centre by about ρ·δ voxels, so for a brain whose
    voxels lie on average `r` voxels from the centre, the loss reacts to a radian about as much as to `r`
    voxels of shift, and its curvature (how fast the slope changes) is of the order of `r²` times larger.
    One step size cannot suit both.

    To see it, we rotate the fixed image by 12° and shift it by (6, −4) voxels, so that the answer is known
    exactly, and fit the rigid transform back by hand: 100 steps of gradient descent on the pyramid's middle
    level (half resolution, MSE: the two images have the same intensities), six step sizes at once. Once in
    the raw units (radians, voxels), and once *scaled*: the angle measured as an arc length in voxels at
    radius `r` (`angle = p / r`), which gives every parameter the same unit.
""")

nb.predict("""
    In raw units, is there a step size among 0.3, 1, 3, 10, 30 and 100 that brings both the rotation (within
    0.5°) and the shift (within 0.5 voxel) home in 100 steps? And in scaled units?
""", """
    Raw units: none. A step small enough for the rotation leaves the shift far off, and one large enough
    for the shift throws the rotation about. Scaled: several converge (the larger step sizes; the small
    ones are merely slow). The printed curvatures and limits after the table say why.
""")

nb.code("""
    import math

    from regedu.classical import pyramid_shapes
    from regedu.classical.common import downsample

    TRUE_ANGLE, TRUE_SHIFT = math.radians(12.0), (6.0, -4.0)  # radians; voxels of the full-resolution grid
    CONVERGED = torch.tensor([0.5, 0.5])  # a fit has converged within 0.5 degree and 0.5 voxel
    true_rigid = warps.compose_affine(warps.translation([TRUE_SHIFT], device=device),
                                      warps.rotation(TRUE_ANGLE, shape, device=device))
    moved = warps.warp(fixed, warps.affine_to_disp(true_rigid, shape))  # the fixed image, rigidly moved
    half = pyramid_shapes(shape, 2)[0]  # the pyramid's middle level (half resolution): 49 x 57 voxels
    to_full = torch.tensor([(n - 1) / (m - 1) for n, m in zip(shape, half)], device=device)  # voxel sizes
    fixed_half, moved_half = downsample(fixed, half), downsample(moved, half)
    brain_half = downsample((fixed_labels > 0).float(), half)[0, 0] > 0.5
    centre = torch.tensor([(n - 1) / 2 for n in half], device=device).view(2, 1, 1)
    radius = float((warps.identity_grid(half, device) - centre).norm(dim=0)[brain_half].mean())  # voxels


    def rigid_loss(angles, shifts):
        \"\"\"MSE between `moved_half` and `fixed_half` moved by each rigid transform: angles (R,) in radians,
        shifts (R, 2) in voxels of the half-resolution grid; returns (R,), one loss per run.\"\"\"
        turns = warps.rotation(angles[:, None], half, device=device)
        A = warps.compose_affine(warps.translation(shifts), turns)
        sampled = warps.warp(fixed_half.expand(len(angles), -1, -1, -1), warps.affine_to_disp(A, half))
        return ((moved_half - sampled) ** 2).flatten(1).mean(dim=1)


    def rigid_descent(step_sizes, angle_unit, shift_unit, steps=100, adam=False):
        \"\"\"Fit the rigid transform by plain gradient descent (or Adam), one run per step size, all at once.

        The optimiser sees p = (angle / angle_unit, shift / shift_unit): a unit is how far one step of size 1
        along the parameter moves (radians; half-resolution voxels). Returns the errors after each step,
        (steps, runs, 2): rotation in degrees, shift in full-resolution voxels.\"\"\"
        lr = torch.tensor(step_sizes, device=device)
        p = torch.zeros(len(step_sizes), 3, device=device, requires_grad=True)
        adam_optimiser = torch.optim.Adam([p], lr=step_sizes[0]) if adam else None
        errors = []
        for _ in range(steps):
            angles, shifts = p[:, 0] * angle_unit, p[:, 1:] * shift_unit
            gradient, = torch.autograd.grad(rigid_loss(angles, shifts).sum(), p)  # each run its own gradient
            with torch.no_grad():
                if adam:
                    p.grad = gradient
                    adam_optimiser.step()
                else:
                    p -= lr[:, None] * gradient  # the whole of gradient descent: step = step size x gradient
                turn = torch.remainder(p[:, 0] * angle_unit - TRUE_ANGLE + math.pi, 2 * math.pi) - math.pi
                shift = p[:, 1:] * shift_unit * to_full - torch.tensor(TRUE_SHIFT, device=device)
                errors.append(torch.stack([turn.abs().rad2deg(), shift.norm(dim=1)], dim=1))
        return torch.stack(errors).cpu()


    STEP_SIZES = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)
    raw = rigid_descent(STEP_SIZES, 1.0, 1.0)  # p = (radians, voxels)
    scaled = rigid_descent(STEP_SIZES, 1.0 / radius, 1.0)  # p = (voxels of arc at radius r, voxels)
    raw_converged = (raw[-1] < CONVERGED).all(dim=1)
    scaled_converged = (scaled[-1] < CONVERGED).all(dim=1)
    print(f"mean distance of the brain's voxels from the centre: r = {radius:.1f} voxels (half resolution)")
    print(f"{'step size':>9} | {'raw units: rotation, shift':>30} | {'scaled: rotation, shift':>30}")
    for k, lr in enumerate(STEP_SIZES):
        cells = [f"{errors[-1, k, 0]:9.2f}° {errors[-1, k, 1]:6.2f} voxels "
                 f"{'converged' if done[k] else '':>9}"
                 for errors, done in ((raw, raw_converged), (scaled, scaled_converged))]
        print(f"{lr:>9g} | {cells[0]} | {cells[1]}")

    answer = torch.tensor([TRUE_ANGLE, *(s / f for s, f in zip(TRUE_SHIFT, to_full.tolist()))], device=device)
    hessian = torch.autograd.functional.hessian(lambda q: rigid_loss(q[:1], q[None, 1:]).sum(), answer)
    curvature = hessian.diagonal()  # of the loss along the angle (per radian²) and the shift (per voxel²)
    curvature_ratio = float(curvature[0] / curvature[1:].mean())
    print(f"curvature of the loss at the answer: rotation / shift = {curvature_ratio:.0f} in raw units "
          f"(r² = {radius ** 2:.0f}), {curvature_ratio / radius ** 2:.2f} scaled")
    arc = torch.tensor([radius ** -2, 1, 1], device=device)  # scaled curvature = raw curvature x this
    limits = {"raw units": 2 / curvature, "scaled": 2 / (curvature * arc)}
    print("largest step size that does not overshoot (2 / curvature): " + "; ".join(
        f"{units}: rotation {float(limit[0]):.3g}, shift {float(limit[1:].min()):.3g}"
        for units, limit in limits.items()))
""")

nb.code("""
    extent = torch.tensor([n - 1 for n in half], device=device)  # voxels per unit of "fraction of the image"
    adam_raw = rigid_descent((0.01,), 1.0, 1.0, adam=True)  # Adam, lr 0.01, in radians and voxels
    adam_regedu = rigid_descent((0.01,), 1.0, extent, adam=True)  # ... in regedu's units: radians, fractions
    print(f"after 100 steps of Adam, lr 0.01: in radians and voxels {adam_raw[-1, 0, 0]:.2f}° and "
          f"{adam_raw[-1, 0, 1]:.2f} voxels off; in regedu's units {adam_regedu[-1, 0, 0]:.2f}° and "
          f"{adam_regedu[-1, 0, 1]:.2f} voxels off")
    curves = {
        "gradient descent": {f"{units}, step {lr:g}": errors[:, STEP_SIZES.index(lr)]
                             for units, errors, lr in (("raw units", raw, 3.0), ("raw units", raw, 10.0),
                                                       ("scaled", scaled, 10.0), ("scaled", scaled, 30.0))},
        "Adam, lr 0.01": {"radians and voxels": adam_raw[:, 0], "regedu's units": adam_regedu[:, 0]},
    }
    fig, axes = viz.new_figure(2, 2, width=2 * 4.6, height=2 * 2.9)
    for row, (optimiser, runs_shown) in enumerate(curves.items()):
        for column, what in enumerate(("rotation error (degrees)", "shift error (voxels)")):
            ax = axes[row, column]
            for name, errors in runs_shown.items():
                ax.semilogy(errors[:, column].clamp_min(1e-3), label=name)
            ax.axhline(float(CONVERGED[column]), color="grey", linestyle=":")
            ax.set(xlabel="step", ylabel=what, title=f"{optimiser}: {what.split(' (')[0]}")
        axes[row, 1].legend(fontsize="x-small")
    fig
""")

nb.markdown("""
    What to look for: in raw units, no step size in the table converges, and the printed limits say why.
    Along one parameter, gradient descent overshoots once the step size passes 2 / curvature: in raw units
    that is about 1 for the rotation and over 100 for the shift. Steps of 1 or less keep the rotation stable
    but move the shift slowly (still more than 4 voxels off after 100 steps); steps of 10 or more would suit
    the shift alone but throw the rotation about by tens to hundreds of degrees. Step 3, in between (top row
    of the figure), brings the shift within a voxel but leaves the rotation jumping by degrees. The two
    curvatures differ by a factor of the same order as `r²`, as the arc-length argument predicts (not equal
    to it: the edges that carry the signal are not all at distance `r`). Scaled, the two limits are close,
    and every step size from 10 to 100 converges; the smaller ones are merely slow.

    regedu's `register_affine` uses **Adam** (bottom row), which divides each step by a running average of
    the gradient's size: every parameter then moves about `lr` per step *in its own unit*, whatever its
    curvature. That cures the curvature ratio, not the units: with lr = 0.01 a step turns by 0.01 radian
    (0.6°) but shifts by 0.01 voxel, and after 100 steps the shift is still more than 4 voxels off. So
    regedu measures the translation in fractions of the image extent (0.01 is about half a voxel on this
    level, a voxel at full resolution; `help(regedu.classical.affine)` explains its units),
    and then one `lr` fits every parameter: the curves labelled "regedu's units" converge. (Their wiggles
    are Adam's momentum at a constant step size; `register_affine` also lowers its step size over each
    level.) ITK's optimisers ask for the same thing under the name *parameter scales*.

    ## 10. Initialisation: where the optimiser starts

    Gradient descent finds the bottom of the valley it starts in. `register_affine` starts from the
    identity (`init="identity"`: on one shared grid, that aligns the images' geometric centres) or, by
    default, from the translation that aligns the two **centres of mass** (`init="com"`: intensity-weighted
    mean positions, one line of arithmetic). Neither guesses a rotation. A third start is a coarse
    **exhaustive search**: try rotations every 30° about the centres of mass, keep the one with the lowest
    loss, and run gradient descent from there (FSL's FLIRT searches this way before it optimises).

    We put the pairs on a larger canvas (40 voxels of zeros on every side) and move each moving image by 36
    voxels along both axes (about half the brain's width), once without and once with a turn of 90°.
    A registration *converges* here if its TRE ends within 3 voxels (section 3's affine reached about 1).
""")

nb.predict("""
    Which of the three starts (geometric centre, centre of mass, exhaustive search) converges on the
    shifted pairs, and which on the pairs shifted and turned by 90°?
""", """
    Shifted: the centre of mass and the search converge on every pair, the geometric centre on at most half
    of them (it starts 36 voxels off along both axes). Shifted and turned 90°: only the search. Neither
    centre guesses a rotation, and gradient descent does not turn a brain by 90° on its own.
""")

nb.code("""
    import torch.nn.functional as F

    from regedu.classical.affine import centre_of_mass
    from regedu.classical.common import rescale_min_max

    PAD = 40  # voxels of zeros on every side, so that the moved brains stay on the canvas
    SEARCH_STEP = 30  # degrees between the rotations the exhaustive search tries
    CONVERGED_TRE = 3.0  # voxels
    canvas_moving, canvas_fixed = F.pad(moving_all, (PAD,) * 4), F.pad(fixed_all, (PAD,) * 4)
    canvas = tuple(canvas_fixed.shape[2:])
    canvas_points, canvas_true_points = points_all + PAD, true_points_all + PAD


    def rigid_on_canvas(degrees, shift):
        \"\"\"Affine (1, 2, 3): a turn by `degrees` about the canvas centre, then shifts by `shift`.\"\"\"
        return warps.compose_affine(warps.translation([shift], device=device),
                                    warps.rotation(math.radians(degrees), canvas, device=device))


    def points_after(points, A):
        \"\"\"Where points (B, N, 2) of an image lie once it is warped with the affine A (1, 2, 3): the warped
        image shows at y what the image had at A y, so a point p moves to A^-1 p.\"\"\"
        return (points - A[0, :, 2]) @ torch.linalg.inv(A[0, :, :2]).T


    def rotation_search(moving, fixed, step=SEARCH_STEP):
        \"\"\"Exhaustive search over rotations every `step` degrees about the centres of mass, each scored by
        local NCC at half resolution. Returns the best start of each pair (B, 2, 3), the loss of every
        angle (angles, B) and the angles.\"\"\"
        com_moving = centre_of_mass(rescale_min_max(moving))  # (B, 2) voxel indices, as init="com" uses
        com_fixed = centre_of_mass(rescale_min_max(fixed))
        coarse = pyramid_shapes(fixed.shape[2:], 2)[0]  # half resolution
        fixed_coarse = downsample(fixed, coarse)
        angles = list(range(-180, 180, step))
        starts, scores = [], []
        for degrees in angles:
            turn = warps.rotation(math.radians(degrees), canvas, device=device)[:, :, :2]
            turn = turn.expand(len(moving), 2, 2)
            offset = com_moving - (turn @ com_fixed[..., None])[..., 0]  # fixed centre samples moving centre
            start = torch.cat([turn, offset[..., None]], dim=-1)
            candidate = downsample(warps.warp(moving, warps.affine_to_disp(start, canvas)), coarse)
            scores.append(torch.stack([losses.ncc(fixed_coarse[i:i + 1], candidate[i:i + 1])
                                       for i in range(len(moving))]))
            starts.append(start)
        scores = torch.stack(scores)
        best = scores.argmin(dim=0).tolist()
        return torch.stack([starts[b][i] for i, b in enumerate(best)]), scores, angles


    def affine_from(start, moving, fixed):
        \"\"\"register_affine from `start` (B, 2, 3): warp the moving image with it, register, compose.\"\"\"
        prewarped = warps.warp(moving, warps.affine_to_disp(start, canvas))
        result = regedu.register(prewarped, fixed, method="affine", init="identity",
                                 iterations=AFFINE_ITERATIONS, progress=False)
        return warps.compose_affine(start, result.affine)


    turned = "shifted, turned 90°"
    SCENARIOS = {"shifted": (0.0, (36.0, -36.0)), turned: (90.0, (36.0, -36.0))}
    init_tre, search_scores = {}, {}
    for scenario, (degrees, shift) in SCENARIOS.items():
        moved_far = rigid_on_canvas(degrees, shift)
        far = warps.warp(canvas_moving, warps.affine_to_disp(moved_far, canvas), padding="zeros")
        truth = points_after(canvas_true_points, moved_far)  # the landmarks' true places in `far`
        no_motion = torch.zeros(PAIRS, 2, *canvas, device=device)
        init_tre[scenario, "before"] = metrics.tre(canvas_points, truth, no_motion)
        for init, name in (("identity", "geometric centre"), ("com", "centre of mass")):
            result = regedu.register(far, canvas_fixed, method="affine", init=init,
                                     iterations=AFFINE_ITERATIONS, progress=False)
            init_tre[scenario, name] = metrics.tre(canvas_points, truth, result.disp)
        start, search_scores[scenario], search_angles = rotation_search(far, canvas_fixed)
        found_affine = affine_from(start, far, canvas_fixed)
        found_disp = warps.affine_to_disp(found_affine, canvas)
        init_tre[scenario, "search"] = metrics.tre(canvas_points, truth, found_disp)
    print(f"{'':>20} {'start':>17} {'mean TRE':>9}   converged (TRE < {CONVERGED_TRE:g} voxels)")
    for (scenario, start_name), values in init_tre.items():
        print(f"{scenario:>20} {start_name:>17} {float(values.mean()):9.2f}   "
              f"{int((values < CONVERGED_TRE).sum())} of {PAIRS} pairs")
""")

nb.code("""
    fig, axes = viz.new_figure(1, 1, width=4.8, height=3.0)
    ax = axes[0, 0]
    ax.plot(search_angles, search_scores[turned].cpu().numpy(), "o-", alpha=0.7)
    ax.axvline(-SCENARIOS[turned][0], color="grey", linestyle=":", label="the turn that undoes 90°")
    ax.set(xlabel="rotation tried (degrees)", ylabel="local NCC loss", title=f"exhaustive search, {turned}")
    ax.legend(fontsize="x-small")
    fig
""")

nb.markdown("""
    What to look for: shifted by 36 voxels, the geometric-centre start fails on most pairs, while the centre
    of mass puts the brains on top of each other and every pair converges. Turned by 90° as well, the centre
    of mass no longer helps: gradient descent from 0° does not turn the brain that far, and both starts end
    tens of voxels off on every pair. The search's loss (one line per pair) is lowest at −90°, the rotation
    that undoes the turn, and gradient descent from there converges on every pair.

    Its second-lowest loss is at +90°, 180° away from the answer: a brain is nearly symmetric, and a brain
    upside down still lines up its outline. Here the right valley is clearly the deeper one; with a cruder
    loss or a rounder object the two come closer, and a search can pick the wrong one. A search costs one
    loss evaluation per candidate (12 here, far fewer than the iterations of one registration), but in 3D a
    grid over three angles has 12³ = 1728 candidates at 30°, which is why tools search on coarse images.

    ## 11. Masks: leaving voxels out of the loss

    Sometimes part of one image has no counterpart in the other: a tumour, a resection cavity, a lesion that
    appeared between two scans, or the skull and neck around a skull-stripped template. No transform can
    match those voxels, and the optimiser, which sees only the loss, deforms healthy tissue trying. The
    remedy is a **mask**: the loss counts only the voxels inside it (cost-function masking, Brett et al.,
    2001).

    regedu's methods have no `mask=` option, but `similarity=` takes any function `f(fixed, warped)`, and that
    is enough: `masked_similarity` below hands the loss a warped image whose voxels outside the mask are
    replaced by the fixed image's own, a perfect match that no transform can change, so those voxels add
    nothing to the gradient. (It receives each pyramid level's images, so it resizes the mask to them.)

    We cut a dark round cavity, 8 voxels in radius, into every fixed image, and register with the default
    pipeline, once with the whole image in the loss and once with the cavity masked out (the same loss
    function, local NCC, in both). The true field is known, so we measure the error of the field itself,
    the end-point error (`metrics.end_point_error`), in the cavity and in a ring 8 voxels wide around it.
    **Predict:** without the mask, is the field wrong only inside the cavity, or around it too?
""")

nb.code("""
    LESION_CENTRE, LESION_RADIUS, RING = (40.0, 60.0), 8.0, 8.0  # voxels
    offsets = warps.identity_grid(shape, device) - torch.tensor(LESION_CENTRE, device=device).view(2, 1, 1)
    distance = offsets.norm(dim=0).expand(PAIRS, 1, *shape)  # from the cavity's centre, voxels
    lesion = distance <= LESION_RADIUS  # (PAIRS, 1, 96, 112)
    around = (distance > LESION_RADIUS) & (distance <= LESION_RADIUS + RING)
    fixed_lesion = fixed_all.masked_fill(lesion, 0.0)  # a dark cavity in every fixed image


    def masked_similarity(keep, similarity=losses.ncc):
        \"\"\"A loss f(fixed, warped) that only counts the voxels where `keep` (B, 1, *spatial), on the fixed
        grid, is 1: elsewhere the warped image is replaced by the fixed image itself.\"\"\"
        def loss(fixed_level, warped_level):
            weight = F.interpolate(keep.float(), size=fixed_level.shape[2:], mode="bilinear",
                                   align_corners=True)
            return similarity(fixed_level, weight * warped_level + (1 - weight) * fixed_level)
        return loss


    mask_runs, mask_scores = {}, {}
    for name, keep in (("no mask", torch.ones_like(lesion)), ("cavity masked", ~lesion)):
        loss = masked_similarity(keep)
        result = regedu.register(moving_all, fixed_lesion, similarity=loss, iterations=ITERATIONS,
                                 affine_options=dict(iterations=AFFINE_ITERATIONS, similarity=loss),
                                 moving_labels=moving_labels_all, progress=False)
        mask_runs[name] = result
    mask_runs["no cavity (section 5)"] = final["default (affine+bspline+dense)"]
    print(f"{'':>22}{'EPE cavity':>11}{'EPE ring':>10}{'Dice':>7}{'TRE':>7}   "
          f"(means of {PAIRS} pairs; EPE and TRE in voxels)")
    for name, result in mask_runs.items():
        mask_scores[name] = [float(metrics.end_point_error(result.disp, true_disp_all, mask=region).mean())
                             for region in (lesion.float(), around.float())]
        dice_m = float(metrics.dice(result.warped_labels, fixed_labels_all).nanmean())
        tre_m = float(metrics.tre(points_all, true_points_all, result.disp).mean())
        print(f"{name:>22}{mask_scores[name][0]:11.2f}{mask_scores[name][1]:10.2f}{dice_m:7.3f}{tre_m:7.2f}")
""")

nb.code("""
    first_brain = fixed_labels_all[:1] > 0  # the error maps show the first pair, inside its brain
    errors = {name: (mask_runs[name].disp[:1] - true_disp_all[:1]).norm(dim=1, keepdim=True) * first_brain
              for name in ("no mask", "cavity masked")}
    largest = max(float(error.max()) for error in errors.values())
    fig, axes = viz.new_figure(1, 3, width=3 * 3.6)
    viz.show_image(fixed_lesion[:1], ax=axes[0, 0], orientation=True, title="fixed, with a cavity")
    for ax, (name, error) in zip(axes[0, 1:], errors.items()):
        viz.show_image(error, ax=ax, orientation=True, cmap="magma", vmin=0, vmax=largest, colorbar=True,
                       title=f"field error, {name} (voxels)")
    fig
""")

nb.markdown("""
    What to look for: without the mask the field is wrong in the cavity and in the healthy tissue around it
    (the error maps show the first pair, inside the brain): the optimiser squeezed and stretched the tissue
    around the hole trying to match its dark inside, and the mean Dice drops. With the cavity
    masked, the error in and around the cavity is about what it is when there is no cavity at all: inside
    the hole the field is what the regularisation carries in from the tissue around it, close to the truth
    here because the true field is smooth. A mask removes the pull of what cannot match; it cannot tell the
    optimiser where tissue hidden by a lesion went.

    ## 12. B-spline control spacing

    Section 5's B-spline put a control point every 8 voxels (`control_spacing`, regedu's default for images
    without a voxel size; 16 mm for those with one). The spacing sets what the field can express: detail
    smaller than about one spacing cannot be followed, and fewer control points also make a smoother field.
    We run `method="bspline"` alone (no dense refinement, so the spacing alone decides) from section 3's
    affine, with spacings of 4, 8 and 16 voxels, and measure the field's smoothness by SDlogJ (section 4
    printed it: the standard deviation of log det J over the image, 0 when every area is scaled alike).
    **Predict:** which spacing gives the best Dice? Which the smoothest field?
""")

nb.code("""
    SPACINGS = (4, 8, 16)  # voxels between control points
    spacing_table, spacing_fields = {}, {}
    print(f"{'spacing':>7}{'control points':>16}{'Dice':>7}{'TRE':>7}{'SDlogJ':>8}{'folding':>9}"
          f"{'min det J':>10}{'seconds':>9}")
    for control_spacing in SPACINGS:
        result = regedu.register(moving_all, fixed_all, method="bspline", affine=affine.affine,
                                 control_spacing=control_spacing, iterations=ITERATIONS,
                                 moving_labels=moving_labels_all, progress=False)
        grid_points = tuple(result.parameters["control_points"].shape[2:])
        spacing_table[control_spacing] = dict(
            dice=float(metrics.dice(result.warped_labels, fixed_labels_all).nanmean()),
            tre=float(metrics.tre(points_all, true_points_all, result.disp).mean()),
            sdlogj=float(metrics.sdlogj(result.disp).mean()),
            folding=float(metrics.folding_fraction(result.disp).mean()),
            min_det=float(metrics.min_jacobian(result.disp).min()), seconds=result.seconds)
        spacing_fields[control_spacing] = result.disp[:1]
        row = spacing_table[control_spacing]
        print(f"{control_spacing:>7}{' x '.join(map(str, grid_points)):>16}{row['dice']:7.3f}"
              f"{row['tre']:7.2f}{row['sdlogj']:8.3f}{100 * row['folding']:8.2f}%{row['min_det']:10.2f}"
              f"{row['seconds']:9.1f}")
    low, high = viz.jacobian_range(spacing_fields)
    fig, axes = viz.new_figure(1, 3, width=3 * 3.9)
    for ax, (control_spacing, field) in zip(axes[0], spacing_fields.items()):
        viz.jacobian_map(field, ax=ax, orientation=True, vmin=low, vmax=high,
                         title=f"spacing {control_spacing} voxels")
    fig
""")

nb.markdown("""
    What to look for: the 4-voxel grid has the most freedom and the least smooth field (the largest SDlogJ,
    the most mottled Jacobian map), yet its Dice and TRE are worse than with 8 voxels. The true fields
    of these pairs were made from random displacements of control points 16 voxels apart
    (`data.TemplatePairs`' `smoothness`), so the extra freedom can only fit what the true field does not
    contain, such as intensity differences and noise. The 16-voxel grid gives the smoothest field but no
    better overlap than 8. The times are of the same order: in 2D an iteration's cost is mostly warping the
    image and computing the loss at every voxel, the same for any grid. The default of 8 voxels was tuned
    on 2 mm brains like these; where two images differ in finer detail, a finer grid can win, so measure it
    on your own data.
""")

nb.markdown("""
    ## 13. Symmetric and inverse-consistent registration

    Register A to B, then B to A: the two answers should be each other's inverse, but they are two separate
    optimisations, and nothing makes them agree: the result depends on which image is called fixed.
    `metrics.inverse_consistency(forward, backward)` measures how far a round trip through both maps lands
    from where it started (mean distance in voxels, 0 for exact inverses). We run the diffeomorphic method
    `svf` (notebook 05) both ways, without an affine stage, so that each whole map is `exp(v)` of one
    velocity field `v`.

    A velocity field offers a way to make the answer symmetric: `exp(−v)` is the inverse of `exp(v)`
    (exactly for the flow; up to the integration error once computed). If `v₁` is the velocity found for
    A → B and `v₂` the one found for B → A, then `v₁` and `−v₂` are two estimates of the same thing; their
    mean `v = (v₁ − v₂) / 2` gives the forward map `exp(v)` and the backward map `exp(−v)`, inverse to each
    other by construction, and the same answer whichever image is called fixed (swapping the images swaps
    `v₁` and `v₂`, which only flips the sign of `v`). This averaging is the idea of the symmetric log-domain
    demons (Vercauteren et al., 2008); ANTs' SyN reaches symmetry another way, by warping both images to a
    point halfway between them. How far apart (in voxels) are the two separate answers, and does averaging
    cost accuracy? The next two cells measure both.
""")

nb.code("""
    forward = regedu.register(moving_all, fixed_all, method="svf", iterations=ITERATIONS,
                              moving_labels=moving_labels_all, progress=False)
    backward = regedu.register(fixed_all, moving_all, method="svf", iterations=ITERATIONS,
                               moving_labels=fixed_labels_all, progress=False)
    v = (forward.parameters["velocity"] - backward.parameters["velocity"]) / 2
    symmetric = {"forward": warps.integrate(v, 7), "backward": warps.integrate(-v, 7)}  # svf's 7 steps
    fixed_brain, moving_brain = (fixed_labels_all > 0).float(), (moving_labels_all > 0).float()
    symmetry = {}
    for name, (there, back) in {"separate": (forward.disp, backward.disp),
                                "averaged velocity": (symmetric["forward"], symmetric["backward"])}.items():
        dice_s = metrics.dice(warps.warp_labels(moving_labels_all, there), fixed_labels_all).nanmean()
        tre_s = metrics.tre(points_all, true_points_all, there).mean()
        symmetry[name] = dict(round_trip=metrics.inverse_consistency(there, back, mask=fixed_brain),
                              other_way=metrics.inverse_consistency(back, there, mask=moving_brain),
                              dice=float(dice_s), tre=float(tre_s))
        row = symmetry[name]
        print(f"{name:>18}: round trips B->A->B {float(row['round_trip'].mean()):.3f} and A->B->A "
              f"{float(row['other_way'].mean()):.3f} voxels; Dice {row['dice']:.3f}, "
              f"TRE {row['tre']:.2f} voxels")
""")

nb.code("""
    residuals = {"separate": warps.compose(backward.disp[:1], forward.disp[:1]),
                 "averaged velocity": warps.compose(symmetric["backward"][:1], symmetric["forward"][:1])}
    largest = max(float(r.norm(dim=1).max()) for r in residuals.values())
    fig, axes = viz.new_figure(1, 2, width=2 * 3.8)
    for ax, (name, residual) in zip(axes[0], residuals.items()):
        viz.show_image(residual.norm(dim=1, keepdim=True), ax=ax, orientation=True, cmap="magma", vmin=0,
                       vmax=largest, colorbar=True, title=f"round-trip error, {name} (voxels)")
    fig
""")

nb.markdown("""
    What to look for: the two separate answers are each other's inverse only to about a tenth of a voxel
    or more on average, and the left map shows where they disagree. The averaged velocity makes the round
    trip exact to about a hundredth of a voxel, what is left being the error of computing `exp` by scaling
    and squaring, and it costs at most a few thousandths of Dice and a few hundredths of a voxel of TRE
    here. Symmetry matters when the two images play equal roles: a study of change between two scans should
    not find a different change depending on which scan it called fixed.

    ## Exercises
""")

nb.exercise("""
    **Exercise 1.** Section 2 tried MSE and MI on the inverted contrast. Compute the landscape of *every*
    measure in `widgets.SIMILARITIES` for `fixed` against `inverted` and print where each has its minimum.
    Which ones can register images of different contrasts? Why does `ncc` work although it is not meant for
    multimodal images? (Hint: what happens to a correlation coefficient when one image is negated, and how
    does `losses.ncc` use it? Read its docstring.) Give the shift of each minimum:
    `answer = {"mse": (shift along axis 0, shift along axis 1), "ncc": ..., ...}`, one entry per measure.

    Each exercise asks for its answer in the variable `answer`; the cell after it checks it and says "not
    attempted yet", "wrong" (and why) or "right".
""", starter="""
    # your code here: values = widgets.similarity_landscape(fixed, inverted, shifts, name), then its argmin
    answer = ...  # {name: (shift along axis 0, shift along axis 1)} for every name in widgets.SIMILARITIES
""", solution="""
    works, answer = {}, {}
    for name in widgets.SIMILARITIES:
        values = widgets.similarity_landscape(fixed, inverted, shifts, name)
        row, col = divmod(int(values.argmin()), len(shifts))
        works[name] = (shifts[row], shifts[col]) == true_shift
        answer[name] = (shifts[row], shifts[col])
        verdict = "right" if works[name] else "WRONG"
        print(f"{name:>10}: minimum at ({shifts[row]:+d}, {shifts[col]:+d})  ->  {verdict}")
    # ncc and global_ncc square the correlation coefficient: a negated image correlates at -1, squared 1,
    # as good as a perfect match. mi and ngf are built for it. Only mse compares raw intensities.
    assert not works["mse"] and works["mi"] and works["ngf"]
""", check="check.ex1(answer, fixed, inverted, shifts)")

nb.exercise("""
    **Exercise 2.** Register the first pair *affinely* onto the inverted-contrast fixed image `1 - fixed`,
    once with `similarity="mse"` and once with `similarity="mi"` (an option of `regedu.register`). Compare
    the Dice of the warped labels with the fixed labels. Which would you use to register a T1 onto a T2?
    Give both registrations' warped labels and your choice:
    `answer = {"mse": result.warped_labels, "mi": result.warped_labels, "choice": "mse" or "mi"}`.
""", starter="""
    # your code here: regedu.register(moving, 1 - fixed, method="affine", similarity=..., moving_labels=...)
    answer = ...  # {"mse": warped labels, "mi": warped labels, "choice": "mse" or "mi"}
""", solution="""
    dice_by_similarity, answer = {}, {"choice": "mi"}
    for similarity in ("mse", "mi"):
        result = regedu.register(moving, 1 - fixed, method="affine", similarity=similarity,
                                 iterations=AFFINE_ITERATIONS, moving_labels=moving_labels, progress=False)
        dice_by_similarity[similarity] = float(metrics.dice(result.warped_labels, fixed_labels).nanmean())
        answer[similarity] = result.warped_labels
        print(f"{similarity}: mean Dice {dice_by_similarity[similarity]:.3f}")
    # MSE drags the bright moving brain onto the bright background of the inverted image; MI aligns the
    # anatomy.
    assert dice_by_similarity["mi"] > dice_by_similarity["mse"] + 0.2
""", check="check.ex2(answer, moving_labels, fixed_labels)")

nb.exercise("""
    **Exercise 3.** Accuracy costs time. Run the default pipeline on all pairs with the deformable iterations
    scaled by 1/4, 1/2 and 1 (e.g. `[max(1, n // 4) for n in ITERATIONS]`, the affine stage as in
    section 5: `affine_options=dict(iterations=AFFINE_ITERATIONS)`), and print the mean Dice and the seconds
    of each. Where does it stop paying to iterate longer? Give the measurements, keyed by the divisor:
    `answer = {4: (mean Dice, seconds), 2: (...), 1: (...)}` (`result.seconds` is the time).
""", starter="""
    # your code here
    answer = ...  # {4: (mean Dice, seconds), 2: (mean Dice, seconds), 1: (mean Dice, seconds)}
""", solution="""
    answer = {}
    for fraction in (4, 2, 1):
        iterations = [max(1, n // fraction) for n in ITERATIONS]
        result = regedu.register(moving_all, fixed_all, iterations=iterations,
                                 affine_options=dict(iterations=AFFINE_ITERATIONS),
                                 moving_labels=moving_labels_all, progress=False)
        dice_f = float(metrics.dice(result.warped_labels, fixed_labels_all).nanmean())
        print(f"iterations {iterations}: mean Dice {dice_f:.3f} in {result.seconds:.1f} s")
        answer[fraction] = (dice_f, result.seconds)
""", check='check.ex3(answer, compared["default (affine+bspline+dense)"])')

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    SCALED_STEPS_THAT_CONVERGE = 2  # section 9: scaled, at least this many step sizes converge
    MASK_GAIN = 2.0  # section 11: the mask cuts the field's error in and around the cavity at least this much
    AS_IF_NO_CAVITY = 1.5  # ... to at most this many times the error of the pairs without a cavity
    DICE_TIE = 0.005  # section 12: Dice within this much counts as no better
    SYMMETRY_GAIN = 5.0  # section 13: averaging velocities makes the round trip at least this much more exact
    DICE_SLACK, TRE_SLACK = 0.01, 0.1  # ... while losing at most this much Dice and TRE (voxels)
    mean = {name: float(values.nanmean()) for name, values in compared.items()}
    mean_tre = {name: float(values.mean()) for name, values in tres.items()}
    by_weight = {weight: (dice_w, folding_w) for weight, dice_w, folding_w, _ in table}
    tre_by_weight = {weight: tre_w for weight, _, _, tre_w in table}
    assert found["same", "mse"] and found["inverted", "mi"] and not found["inverted", "mse"], \\
        "MSE needs the same contrast; MI does not"
    assert mean["affine"] > mean["before"] + 0.1, "affine registration improves the overlap"
    assert mean["default (affine+bspline+dense)"] > mean["affine"] + 0.05, \\
        "deformable beats affine registration"
    assert by_weight[0.0][1] > 0.01 and by_weight[1.0][1] < 0.001, "without regularisation the field folds"
    assert by_weight[1.0][0] > by_weight[0.0][0], "regularisation improves the overlap of unseen labels"
    # observed on these pairs, not guaranteed: nothing bounds a B-spline's control points (section 5)
    assert folding["default (affine+bspline+dense)"] == 0, \\
        "the default pipeline folded on these pairs (it can: section 5)"
    assert smallest_det[0.4] > 0 >= smallest_det[3.0], "a control point moved far folds a B-spline field"
    assert dice_pyramid > dice_single + 0.05, "coarse to fine beats a single level"
    mean_hd95 = {name: float(values.nanmean()) for name, values in hd95s.items()}
    for name in runs:  # section 5: every deformable method beats the affine, which beats nothing
        assert mean_tre[name] < mean_tre["affine"] < mean_tre["before"], f"{name}: TRE agrees with Dice"
        assert mean_hd95[name] < mean_hd95["affine"] < mean_hd95["before"], f"{name}: HD95 agrees with Dice"
    assert max(tre_by_weight, key=tre_by_weight.get) == 0.0, "the torn field (w = 0) misplaces landmarks most"
    flipped_dice, _, flipped_tre = (float(values.nanmean()) for values in scores["default, moving flipped"])
    assert flipped_dice > mean["before"] + 0.15, "after the flip, Dice says the registration helped"
    assert flipped_tre > 3 * mean_tre["before"], "after the flip, TRE says it made the match much worse"
    # 9. parameter scaling
    assert not raw_converged.any(), "in radians and voxels, one step size should not fit rotation and shift"
    assert int(scaled_converged.sum()) >= SCALED_STEPS_THAT_CONVERGE, "scaled, several step sizes converge"
    assert limits["raw units"][0] < 0.1 * limits["raw units"][1:].min(), "the rotation's limit is far smaller"
    assert (adam_regedu[-1, 0] < CONVERGED).all() and not (adam_raw[-1, 0] < CONVERGED).all(), \\
        "Adam converges in regedu's units, not in radians and voxels"
    # 10. initialisation
    converged_share = {key: float((tre_i < CONVERGED_TRE).float().mean()) for key, tre_i in init_tre.items()}
    assert converged_share["shifted", "geometric centre"] <= 0.5, "far apart, the geometric centre fails"
    assert converged_share["shifted", "centre of mass"] == 1, "the centre of mass fixes a shift"
    assert converged_share[turned, "geometric centre"] == converged_share[turned, "centre of mass"] == 0, \\
        "no start without a rotation fixes a turn of 90 degrees"
    assert converged_share["shifted", "search"] == converged_share[turned, "search"] == 1, \\
        "from the search's start every pair converges"
    ranked = search_scores[turned].argsort(dim=0)[:2].T.tolist()  # the two best angles of each pair
    assert all([search_angles[k] for k in pair] == [-90, 90] for pair in ranked), "the search's valleys"
    # 11. masks
    no_mask, masked = mask_scores["no mask"], mask_scores["cavity masked"]  # EPE in the cavity, in the ring
    no_cavity = mask_scores["no cavity (section 5)"]
    assert all(m * MASK_GAIN < n for m, n in zip(masked, no_mask)), "the mask cuts the error in and around"
    assert masked[0] < AS_IF_NO_CAVITY * no_cavity[0], "masked, the cavity's field is as if it were not there"
    assert no_mask[1] > MASK_GAIN * no_cavity[1], "unmasked, the error spreads into the tissue around"
    # 12. control spacing
    assert spacing_table[4]["sdlogj"] > spacing_table[8]["sdlogj"] > spacing_table[16]["sdlogj"], \\
        "a coarser control grid gives a smoother field"
    by_spacing = {key: (row["dice"], row["tre"]) for key, row in spacing_table.items()}
    assert by_spacing[8][0] > by_spacing[4][0] and by_spacing[8][1] < by_spacing[4][1], \\
        "the finest grid does not beat 8 voxels on these pairs"
    assert by_spacing[16][0] <= by_spacing[8][0] + DICE_TIE, "16 voxels overlaps no better than 8"
    # 13. symmetric registration
    separate, averaged = symmetry["separate"], symmetry["averaged velocity"]
    for way in ("round_trip", "other_way"):
        assert float(averaged[way].mean()) * SYMMETRY_GAIN < float(separate[way].mean()), \\
            "averaging the velocities makes the two answers inverse to each other"
    assert averaged["dice"] > separate["dice"] - DICE_SLACK, "symmetry costs almost no overlap"
    assert averaged["tre"] < separate["tre"] + TRE_SLACK, "symmetry costs almost no landmark accuracy"
    print("all checks passed")
""")

nb.write()
