"""Build notebooks/02_classical_registration.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("02_classical_registration")

nb.markdown("""
    # 02 · Classical registration

    **What you will learn (about 45 minutes):** how a similarity measure scores an alignment, and what its
    *landscape* over shifts looks like (with a slider); affine registration by gradient descent, watching the
    loss fall live; dense deformable registration and what the regularisation weight does (with a slider);
    two other classics, demons and B-splines; why registration runs coarse to fine (multi-resolution); and
    how to judge a result: Dice overlap and HD95 of labels, target registration error (TRE) of landmarks,
    checkerboard, difference image and Jacobian map, and why Dice and TRE can disagree.

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

    **Predict before you run the cell:** will the flipped pairs' Dice after registration be nearer to that
    of no registration or to that of the correct registration? And their TRE: a fraction of a voxel (like
    the correct registration), a few voxels (like no registration), or more?
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

    ## Exercises
""")

nb.exercise("""
    **Exercise 1.** Section 2 tried MSE and MI on the inverted contrast. Compute the landscape of *every*
    measure in `widgets.SIMILARITIES` for `fixed` against `inverted` and print where each has its minimum.
    Which ones can register images of different contrasts? Why does `ncc` work although it is not meant for
    multimodal images? (Hint: what happens to a correlation coefficient when one image is negated, and how
    does `losses.ncc` use it? Read its docstring.)
""", starter="""
    # your code here
""", solution="""
    works = {}
    for name in widgets.SIMILARITIES:
        values = widgets.similarity_landscape(fixed, inverted, shifts, name)
        row, col = divmod(int(values.argmin()), len(shifts))
        works[name] = (shifts[row], shifts[col]) == true_shift
        verdict = "right" if works[name] else "WRONG"
        print(f"{name:>10}: minimum at ({shifts[row]:+d}, {shifts[col]:+d})  ->  {verdict}")
    # ncc and global_ncc square the correlation coefficient: a negated image correlates at -1, squared 1,
    # as good as a perfect match. mi and ngf are built for it. Only mse compares raw intensities.
    assert not works["mse"] and works["mi"] and works["ngf"]
""")

nb.exercise("""
    **Exercise 2.** Register the first pair *affinely* onto the inverted-contrast fixed image `1 - fixed`,
    once with `similarity="mse"` and once with `similarity="mi"` (an option of `regedu.register`). Compare
    the Dice of the warped labels with the fixed labels. Which would you use to register a T1 onto a T2?
""", starter="""
    # your code here: regedu.register(moving, 1 - fixed, method="affine", similarity=..., moving_labels=...)
""", solution="""
    dice_by_similarity = {}
    for similarity in ("mse", "mi"):
        result = regedu.register(moving, 1 - fixed, method="affine", similarity=similarity,
                                 iterations=AFFINE_ITERATIONS, moving_labels=moving_labels, progress=False)
        dice_by_similarity[similarity] = float(metrics.dice(result.warped_labels, fixed_labels).nanmean())
        print(f"{similarity}: mean Dice {dice_by_similarity[similarity]:.3f}")
    # MSE drags the bright moving brain onto the bright background of the inverted image; MI aligns the
    # anatomy.
    assert dice_by_similarity["mi"] > dice_by_similarity["mse"] + 0.2
""")

nb.exercise("""
    **Exercise 3.** Accuracy costs time. Run the default pipeline on all pairs with the deformable iterations
    scaled by 1/4, 1/2 and 1 (e.g. `[max(1, n // 4) for n in ITERATIONS]`), and print the mean Dice and the
    seconds of each. Where does it stop paying to iterate longer?
""", starter="""
    # your code here
""", solution="""
    for fraction in (4, 2, 1):
        iterations = [max(1, n // fraction) for n in ITERATIONS]
        result = regedu.register(moving_all, fixed_all, iterations=iterations,
                                 affine_options=dict(iterations=AFFINE_ITERATIONS),
                                 moving_labels=moving_labels_all, progress=False)
        dice_f = float(metrics.dice(result.warped_labels, fixed_labels_all).nanmean())
        print(f"iterations {iterations}: mean Dice {dice_f:.3f} in {result.seconds:.1f} s")
""")

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
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
    print("all checks passed")
""")

nb.write()
