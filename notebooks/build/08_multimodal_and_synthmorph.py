"""Builds notebooks/08_multimodal_and_synthmorph.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("08_multimodal_and_synthmorph", checks="regedu.course.lesson08")

nb.markdown("""
    # 08 · Multimodal registration and SynthMorph

    **What you will learn (about 30 minutes):** why mean squared error fails when the two images have
    different contrasts (a T1 and a T2 MRI, an MRI and a CT), how *mutual information* measures "one intensity
    predicts the other" from a joint histogram, classical registration across contrasts with `mi` versus
    `mse`, and the SynthMorph idea: train a network on random shapes painted with random contrasts, so that it
    cannot rely on intensities. You then test a network trained that way, which never saw a brain, on brains
    in a contrast it never saw.

    Clinical examples: a T2 or FLAIR scan aligned with the T1 of the same visit, a CT planned for radiotherapy
    aligned with the diagnostic MRI, a PET put on an anatomical MRI. The anatomy is the same; the grey values
    are not even in the same order.

    The conventions used here (pulling warps, voxels, what a displacement means) are on one page:
    [docs/conventions.md](../docs/conventions.md).
""")

nb.code("""
    import os
    import time

    import numpy as np
    import torch

    import regedu
    from regedu import data, losses, metrics, models, train, viz, warps, widgets
    from regedu.course import lesson08 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)

    # sizes and budgets: seconds in fast mode (the tests), a real result without it
    CLASSICAL = ({"iterations": (20, 20, 10), "refine": 5, "affine_options": {"iterations": (30, 20, 0)}}
                 if FAST else {})
    LIVE_STEPS = 3 if FAST else 150        # the short live SynthMorph-style run: steps ...
    LIVE_MINUTES = None if FAST else 1.0   # ... or minutes, whichever ends first
    TEST_PAIRS = 4 if FAST else 16         # held-out brain pairs for the comparison of section 6
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. One anatomy, two contrasts

    We take the T1 slice of the MNI template with its tissue labels, and make a second contrast of the *same*
    anatomy from the labels, the way a second scan records it (`regedu.data.t2_like`):

    - **tissue contrast**: each tissue gets its own T2-like grey level: fluid (CSF) bright, grey matter mid,
      white matter dark, the reverse of T1's order;
    - **a tissue T1 cannot separate**: lesion-like patches covering 12% of the white matter are bright in
      T2 (like the white-matter hyperintensities of small-vessel disease); the T1 template has ordinary white
      matter there;
    - **partial volume**: a voxel on a boundary holds two tissues and shows their mix;
    - **its own scanner**: its own bias field and noise.

    The third panel is the same call with partial volume and scanner effects turned off: each tissue's grey
    level alone, which shows where the patches are.
""")

nb.code("""
    brain = data.brain_slice(device=device)
    t1, labels = brain.image, brain.labels
    TISSUES = [1, 2, 3]  # CSF-like, grey matter, white matter (0 is background)
    LESION_LEVEL = 0.75  # grey level of the lesion-like patches in the T2-like image

    t2 = data.t2_like(labels, lesion_intensity=LESION_LEVEL, seed=0)
    no_blur_no_scanner = {"partial_volume": 0, "gamma": 0, "bias": 0, "noise": 0}
    levels_only = data.t2_like(labels, lesion_intensity=LESION_LEVEL, seed=0, **no_blur_no_scanner)
    lesion = (labels == 3) & (levels_only == LESION_LEVEL)
    viz.show_slices([t1, t2, levels_only, labels],
                    titles=["T1", "T2-like (same anatomy)", "T2-like: tissue levels only", "tissue labels"],
                    orientation=True)
""")

nb.markdown("""
    Look at the ventricles (the dark butterfly in the T1): bright in the T2-like image. White matter is the
    brightest tissue in one image and the darkest in the other. The order of the tissues, darkest first:
""")

nb.predict("""
    Which tissue is the brightest in the T1 image, and which in the T2-like one?
""", """
    White matter in T1, CSF in the T2-like image; the inner tissues come in reverse order (grey matter stays
    in the middle) and the background is the darkest in both.
""")

nb.code("""
    for name, image in [("T1", t1), ("T2-like", t2)]:
        means = {data.TISSUE_NAMES[value]: float(image[labels == value].mean()) for value in range(4)}
        print(f"{name:8s} darkest to brightest: " + " < ".join(sorted(means, key=means.get)))
""", expect=(
    "T1       darkest to brightest: background < CSF-like < grey matter < white matter\n"
    "T2-like  darkest to brightest: background < white matter < grey matter < CSF-like\n"
))

nb.markdown("""
    And the tissue T1 cannot separate: the mean grey level in the lesion-like patches and in the rest of the
    white matter, in each image.
""")

nb.code("""
    ordinary = (labels == 3) & ~lesion
    print(f"lesion-like patches: {float(lesion.sum() / (labels == 3).sum()):.0%} of the white matter")
    for name, image in [("T1", t1), ("T2-like", t2)]:
        print(f"{name:8s} white matter: ordinary {float(image[ordinary].mean()):.2f}, "
              f"patches {float(image[lesion].mean()):.2f}")
""")

nb.markdown("""
    In T1 the two parts of the white matter have about the same grey level; in the T2-like image the patches
    are more than twice as bright. Knowing a voxel's T1 intensity therefore does not tell its T2 intensity,
    as with real pairs of scans: the second contrast carries information the first lacks.

    ## 2. Which similarity finds the alignment?

    The images are aligned already, so a good similarity measure must be **lowest at zero shift**. We shift
    the moving image by every whole-voxel shift from -8 to 8 (step 2) along both axes and compute four losses
    (`regedu.widgets.similarity_landscape`): same contrast (T1 against T1, top row) and across contrasts (T1
    against T2-like, bottom row). In each map the red star is the minimum, the white cross zero shift.
""")

nb.code("""
    SIMILARITIES = ["mse", "global_ncc", "ncc", "mi"]
    shifts = list(range(-8, 9, 2))
    maps, best = {}, {}
    fig, axes = viz.new_figure(2, 4, width=15, height=6.5)
    for column, name in enumerate(SIMILARITIES):
        for row, (moving, label) in enumerate([(t1, "T1 vs T1"), (t2, "T1 vs T2-like")]):
            values = widgets.similarity_landscape(t1, moving, shifts, similarity=name).cpu()
            i, j = divmod(int(values.argmin()), len(shifts))
            best[name, row] = (shifts[i], shifts[j])
            maps[name, row] = values
            viz.landscape(values, shifts, ax=axes[row, column], title=f"{name}: {label}")
    fig
""")

nb.code("""
    for name in SIMILARITIES:
        print(f"{name:10s} best shift, T1 vs T1: {best[name, 0]},  T1 vs T2-like: {best[name, 1]}")
""")

nb.code("""
    finds_it = [name for name in SIMILARITIES if best[name, 1] == (0, 0)]
    print("similarities that find the true alignment (0, 0) across contrasts:", finds_it)
""", expect="similarities that find the true alignment (0, 0) across contrasts: ['ncc', 'mi']\n")

nb.markdown("""
    What to see:

    - **`mse`** compares grey values directly. Within one contrast its minimum is exact; across contrasts no
      shift makes a bright CSF equal a dark CSF, and the minimum lands in the wrong place.
    - **`global_ncc`** assumes one straight line `T2 = a * T1 + b` over the whole image: false here (the
      background is dark in both images while the tissues inside come in reverse order), so it too misses.
    - **local `ncc`** (9 x 9 windows) only needs a straight line *inside each window*, where there are usually
      just two tissues; `regedu.losses.ncc` squares the correlation, so an inverted edge counts as well as a
      normal one. It finds the alignment of this pair.
    - **`mi`** (mutual information) makes no assumption about the mapping at all, as the next section shows.

    Explore the other losses (and `ngf`, which compares edge directions) with the slider:
""")

nb.code("""
    widgets.similarity_landscape_widget(t1, t2, max_shift=8)
""")

nb.markdown("""
    ## 3. Mutual information: a sharp joint histogram

    Put every voxel at the point (T1 intensity, T2 intensity) and count: that is the **joint histogram**
    (`regedu.viz.joint_histogram`). When the images are aligned, each tissue makes a compact blob, because
    knowing the T1 intensity tells you *roughly* the T2 intensity (whatever the mapping). Misalign them and
    the blobs smear. Mutual information `MI = H(T1) + H(T2) - H(T1, T2)` (nats) measures how much one
    intensity tells about the other: high for a sharp histogram. `regedu.losses.mi` returns `-MI` (a loss to
    minimise) from a smooth, differentiable (Parzen window) version of this histogram, so it can be optimised
    by gradient descent.
""")

nb.predict("""
    Rank the three panels below by their MI: T1 against itself, T1 against the aligned T2-like image, T1
    against the T2-like image shifted by 4 voxels.
""", """
    T1 against itself is highest (a thin diagonal: each T1 intensity tells exactly one T2 intensity), then
    the aligned T2-like pair (compact blobs, but one T1 grey level goes with several T2-like ones), then the
    shifted pair (the blobs smear).
""")

nb.code("""
    shift = torch.zeros(1, 2, *t1.shape[2:], device=device)
    shift[:, 0] = 4.0  # 4 voxels along x
    t2_shifted = warps.warp(t2, shift)

    fig, axes = viz.new_figure(1, 3, width=13, height=4)
    panels = [(t1, "T1", "T1 vs T1, aligned"), (t2, "T2-like", "T1 vs T2-like, aligned"),
              (t2_shifted, "T2-like", "T1 vs T2-like, shifted 4 voxels")]
    for ax, (other, name, title) in zip(axes[0], panels):
        viz.joint_histogram(t1, other, ax=ax, names=("T1", name),
                            title=f"{title}\\nMI = {-float(losses.mi(t1, other)):.2f} nats")
    fig
""")

nb.markdown("""
    Left: the same contrast gives a thin straight diagonal, the sharpest histogram there is. Middle: the
    T2-like contrast gives a few blobs, one per tissue, going *down* from left to right (the reversed order);
    partial volume joins them with faint bridges and noise gives them width, and the white matter's blob (T1
    near 0.9) reaches up to the bright lesion-like patches, so one T1 intensity goes with several T2 ones.
    Its MI is therefore lower than the left panel's, but the blobs are still compact. Right: after a 4-voxel
    shift the blobs smear into each other and MI drops further. MI only asks "is the histogram sharp?", never
    "is it a straight line?".

    ## 4. Classical registration across contrasts: `mse` versus `mi`

    A synthetic subject (the template's labels through a random affine and a smooth deformation,
    `regedu.data.synth_subject`) imaged in the T2-like contrast (`data.t2_like` of its own warped labels) is
    the fixed image; the T1 template is the moving image. We run the same pipeline (`regedu.register`,
    affine, then B-spline, then a dense refinement) with three similarity measures, for every stage, and score
    the warped tissue labels with Dice.
""")

nb.code("""
    subject = data.synth_subject(t1, labels, rotation=10, translation=6, magnitude=4, seed=1)
    fixed, fixed_labels = data.t2_like(subject.labels, seed=1), subject.labels

    results = {}
    for name in ["mse", "ncc", "mi"]:
        options = {**CLASSICAL, "affine_options": {**CLASSICAL.get("affine_options", {}), "similarity": name}}
        results[name] = regedu.register(t1, fixed, similarity=name, moving_labels=labels, progress=False,
                                        **options)

    dice_before = metrics.dice(labels, fixed_labels, labels=TISSUES)
    dice_classical = {name: metrics.dice(r.warped_labels, fixed_labels, labels=TISSUES)
                      for name, r in results.items()}
    print(f"mean Dice before registration: {dice_before.mean():.3f}")
    for name, r in results.items():
        print(f"{name:4s} mean Dice {dice_classical[name].mean():.3f}   ({r.seconds:.1f} s)")
""")

nb.code("""
    viz.dice_per_label({"before": dice_before, **{f"similarity {k}": v for k, v in dice_classical.items()}},
                       names=data.TISSUE_NAMES, labels=TISSUES, title="T1 template onto a T2-like subject")
""")

nb.markdown("""
    `mse` tries to make bright match bright (the T1 white matter against the T2-like CSF and patches), and
    Dice barely moves from before registration. Local `ncc` and `mi` align the tissues. The
    summary below shows the `mi` result: the contours of the warped T1 labels should follow the tissue
    boundaries of the T2-like subject (top right). The difference panels (bottom left) mean little across
    contrasts: the intensities are not supposed to match.
""")

nb.code("""
    best_result = results["mi"]
    viz.registration_summary(t1, fixed, best_result.warped, best_result.disp, labels, fixed_labels,
                             orientation=True, title="mutual information: T1 template onto a T2-like subject")
""")

nb.markdown("""
    ## 5. SynthMorph: learn from shapes, not from intensities

    A network trained with NCC on T1 pairs (notebook 03) has only ever seen T1 contrast. Show it a T2 and its
    input is unlike anything in its training set. SynthMorph (Hoffmann et al., IEEE TMI 2022) removes the
    problem at its root:

    1. draw **random label maps** (smooth random blobs, `regedu.data.synth_labels`);
    2. move each one by a random affine and a random smooth deformation to get a pair of label maps that
       match;
    3. paint **each** label map with **random intensities** (`regedu.data.synth_image`: a random grey level
       per label, blur, bias field, noise), so the two images of a pair have unrelated contrasts;
    4. train with a loss on the **labels** only (`supervision="synthmorph"`: the squared difference of the
       fixed and the warped moving one-hot label maps, `losses.label_mse`, plus diffusion), never on
       intensities.

    One departure from the paper, for a training budget of minutes rather than days: in half of the pairs
    both images share one random contrast (`SynthMorphPairs(same_contrast=0.5)`, the default). Those pairs
    let the network learn to match shapes at all; the others teach it to ignore contrast.

    The network cannot learn "white matter is bright": in its world any label can take any grey level. It has
    to match shapes. `regedu.data.SynthMorphPairs` makes such pairs on the fly; four of them:
""")

nb.code("""
    synth_pairs = data.SynthMorphPairs(length=10**6, shape=tuple(t1.shape[2:]), seed=1, device=device)
    fig, axes = viz.new_figure(2, 4, width=13, height=7)
    for i in range(4):
        item = synth_pairs[i]  # a dict of tensors without the batch axis
        viz.show_image(item["moving"][None], ax=axes[0, i], title=f"pair {i}: moving")
        viz.overlay(item["fixed"][None], item["fixed_labels"][None], ax=axes[1, i], alpha=0.35,
                    title=f"pair {i}: fixed + labels")
    fig
""")

nb.markdown("""
    Nothing here looks like a brain, and within one pair the same label has different grey levels in the two
    images.

    **Watch it start.** We train a fresh VoxelMorph network this way for about a minute (`LIVE_STEPS` steps
    at most), and measure, on 8 other SynthMorph pairs, how far its field moves (mean displacement length)
    and the Dice of their label maps, before and after.
""")

nb.code("""
    probe_pairs = data.SynthMorphPairs(length=8, shape=tuple(t1.shape[2:]), seed=99, device=device)
    probe = {key: torch.stack([item[key] for item in probe_pairs]) for key in probe_pairs[0]}


    @torch.no_grad()
    def probe_scores(model):
        \"\"\"Mean displacement length (voxels) and mean Dice of the label maps on the probe pairs.\"\"\"
        model.eval()
        disp = model(probe["moving"], probe["fixed"])[1]
        moved = warps.warp_labels(probe["moving_labels"], disp)
        return float(disp.norm(dim=1).mean()), float(metrics.dice(moved, probe["fixed_labels"]).nanmean())


    live_model = models.VoxelMorph(ndim=2).to(device)
    before_live = probe_scores(live_model)
    live = viz.LiveLossPlot(title="SynthMorph-style label loss, from scratch", xlabel="step")
    history = train.train(live_model, synth_pairs, supervision="synthmorph", weight=0.1, lr=1e-3,
                          batch_size=4, steps=LIVE_STEPS, minutes=LIVE_MINUTES, progress=False, callback=live)
    live.finish()
    after_live = probe_scores(live_model)
    first, last = np.mean(history.losses[:20]), np.mean(history.losses[-20:])
    print(f"{history.step} steps in {history.seconds:.0f} s; loss, mean of the first and last 20 steps: "
          f"{first:.3f} -> {last:.3f}")
    print(f"probe pairs: mean displacement {before_live[0]:.3f} -> {after_live[0]:.3f} voxels, "
          f"Dice {before_live[1]:.3f} -> {after_live[1]:.3f}")
""")

nb.markdown("""
    What this shows (read the two printed lines): in this short run the loss barely moves from where it
    began, and the field, near zero at the start, grows by a fraction of a voxel: too little to carry the
    labels across voxel boundaries, so the probe pairs' Dice barely changes. A network that matches no shape
    yet gets little signal from a loss on label maps, so SynthMorph-style training starts slowly: the
    shipped network's loss (its training log, `regedu/weights/synthmorph2d.log`) stayed flat for about its
    first 750 steps, then fell steadily.

    So for every comparison we **load** two networks that ship with the kit, both multiscale
    (`regedu.models.PyramidNet`: three U-Nets, coarse to fine):

    - `pyramid2d_brain`: trained with NCC on T1 brain pairs (`regedu.data.BrainSlicePairs`, 12000 steps), the
      kit's default 2D model;
    - `synthmorph_pyramid2d_wide_mixed_t1`: trained SynthMorph-style as above, on random label maps only, for
      20000 steps in three runs: it has **never seen a brain**. It has about twice the channels of the other:
      the SynthMorph paper found that wider networks register better across contrasts (here, with the same
      recipe, the width added about 0.03 Dice across contrasts; README).

    One more trick, for the SynthMorph-style network only. Random label maps have no orientation: a pair
    mirrored left-right or top-bottom is as familiar to this network as the pair itself. So we run it on the
    pair and on its three mirror images, mirror each predicted field back (a mirrored axis also flips the
    sign of that displacement component) and average the four: `models.FlipAveraged(network, axes=(0, 1))`.
    The four predictions make different errors, and the average cancels part of them (on other held-out
    pairs, about +0.02 Dice in both columns; README). This is *test-time augmentation*: no training and no
    optimisation, four forward passes instead of one. The T1 network runs once: it learned brains in one
    orientation, and the same averaging lowered its T1 -> T1 Dice.
""")

nb.code("""
    ncc_model = models.pretrained("pyramid2d_brain", device=device)
    synthmorph_network = models.pretrained("synthmorph_pyramid2d_wide_mixed_t1", device=device)
    synthmorph_model = models.FlipAveraged(synthmorph_network, axes=(0, 1))
    for name in ["pyramid2d_brain", "synthmorph_pyramid2d_wide_mixed_t1"]:
        print(f"{name}: {models.PRETRAINED[name]}")
""")

nb.markdown("""
    ## 6. Contrast invariance on held-out brain pairs

    The test pairs are new brain pairs, `regedu.data.BrainSlicePairs(TEST_PAIRS, seed=7)` (any axial level
    of the template, each image through its own random affine and deformation, small to large, with its own
    intensity changes; the T1 network trained on other seeds of the same generator, the SynthMorph-style one
    on no brain at all). They are skull-stripped (`head=0`), since the T2-like images are made from tissue
    labels, which have no head. For each pair the moving image is T1, and the fixed image comes twice:

    - **T1 -> T1**: the pair's own T1 fixed image;
    - **T1 -> T2-like**: `data.t2_like` of the pair's fixed labels: the same anatomy and deformation, only the
      contrast differs.

    Four methods register them: no registration, the T1-trained NCC network, the SynthMorph-style network, and
    classical registration with mutual information (`regedu.register`, all pairs as one batch).
""")

nb.predict("""
    On the T1 -> T2-like column, which network will do better: the one trained on T1 brain pairs with NCC,
    or the SynthMorph-style one that never saw a brain?
""", """
    The SynthMorph-style network. The T1-trained network meets a contrast it never saw and does no better
    than no registration there, while the SynthMorph-style one registers both columns; on T1 -> T1 the
    T1-trained network stays ahead, having learned that very task.
""")

nb.code("""
    test_pairs = data.BrainSlicePairs(TEST_PAIRS, seed=7, head=0.0, device=device)
    test = {key: torch.stack([test_pairs[i][key] for i in range(TEST_PAIRS)]) for key in test_pairs[0]}
    moving, moving_labels, target_labels = test["moving"], test["moving_labels"], test["fixed_labels"]
    fixed_by_contrast = {"T1 -> T1": test["fixed"], "T1 -> T2-like": data.t2_like(target_labels, seed=7)}


    @torch.no_grad()
    def network_result(model, fixed):
        \"\"\"Dice per pair and tissue of the network's `moving` -> `fixed`, and seconds per pair.\"\"\"
        model.eval()
        start = time.perf_counter()
        disp = model(moving, fixed)[1]
        seconds = (time.perf_counter() - start) / len(moving)
        return metrics.dice(warps.warp_labels(moving_labels, disp), target_labels, labels=TISSUES), seconds


    def mi_result(fixed):
        \"\"\"The same for classical registration with mutual information (every stage).\"\"\"
        options = {**CLASSICAL, "affine_options": {**CLASSICAL.get("affine_options", {}), "similarity": "mi"}}
        result = regedu.register(moving, fixed, similarity="mi", moving_labels=moving_labels, progress=False,
                                 **options)
        return metrics.dice(result.warped_labels, target_labels, labels=TISSUES), result.seconds / len(moving)


    METHODS = ["no registration", "NCC network (T1-trained)", "SynthMorph-style network", "classical MI"]
    table = {}  # (method, contrast) -> (Dice per pair and tissue, seconds per pair)
    for contrast, fixed_images in fixed_by_contrast.items():
        table[METHODS[0], contrast] = (metrics.dice(moving_labels, target_labels, labels=TISSUES), 0.0)
        table[METHODS[1], contrast] = network_result(ncc_model, fixed_images)
        table[METHODS[2], contrast] = network_result(synthmorph_model, fixed_images)
        table[METHODS[3], contrast] = mi_result(fixed_images)

    mean_dice = {key: float(dice.mean()) for key, (dice, _) in table.items()}
    print(f"mean Dice over {TEST_PAIRS} pairs        T1 -> T1   T1 -> T2-like   seconds per pair (T2-like)")
    for method in METHODS:
        seconds = table[method, "T1 -> T2-like"][1]
        same, cross = mean_dice[method, "T1 -> T1"], mean_dice[method, "T1 -> T2-like"]
        print(f"{method:28s} {same:8.3f}   {cross:13.3f}   {seconds:10.3f}")
""")

nb.code("""
    viz.dice_per_label({method: table[method, "T1 -> T2-like"][0] for method in METHODS},
                       names=data.TISSUE_NAMES, labels=TISSUES,
                       title=f"T1 onto T2-like brains ({TEST_PAIRS} held-out pairs)")
""")

nb.code("""
    with torch.no_grad():
        fixed_t2 = fixed_by_contrast["T1 -> T2-like"][:1]
        disp_ncc = ncc_model(moving[:1], fixed_t2)[1]
        disp_sm = synthmorph_model(moving[:1], fixed_t2)[1]
    fig, axes = viz.new_figure(1, 4, width=15, height=4)
    viz.show_image(moving[:1], ax=axes[0, 0], orientation=True, title="moving (T1)")
    viz.overlay(fixed_t2, target_labels[:1], style="contour", names=data.TISSUE_NAMES, ax=axes[0, 1],
                orientation=True, title="fixed (T2-like) + its labels")
    for ax, disp, name in [(axes[0, 2], disp_ncc, "NCC network"), (axes[0, 3], disp_sm, "SynthMorph-style")]:
        moved = warps.warp_labels(moving_labels[:1], disp)
        score = metrics.dice(moved, target_labels[:1], labels=TISSUES).mean()
        viz.overlay(fixed_t2, moved, style="contour", ax=ax, orientation=True,
                    title=f"{name}: warped T1 labels\\nDice {score:.3f}")
    fig
""")

nb.markdown("""
    What to look for, in the table and the figures:

    - **no registration** scores the same in both columns: the labels are the same, only the fixed image's
      contrast differs.
    - **the NCC network** was trained on T1 pairs only: compare its two columns. On T1 -> T1 it is far above
      no registration; on T1 -> T2-like it is asked a question it was never trained for, and on these pairs it
      does no better than no registration. That is what it pays for having learned one contrast.
    - **the SynthMorph-style network** never saw a brain nor either contrast. It learned shapes rather than
      grey levels, so it registers both contrasts: well above no registration in both columns, and above the
      NCC network on T1 -> T2-like. On T1 -> T1 it stays below the NCC network: that one learned the very
      task of the T1 column (T1 brain pairs, 12000 steps), this one learned random shapes. The
      closing check asserts these claims, with the margins named at the top of its cell.
    - **classical MI** is contrast-agnostic too, at the price of an optimisation per pair: compare the seconds
      per pair with the networks'.

    In the contours (one pair), see which network's labels follow the ventricles and the grey/white boundary
    of the T2-like image.

    SynthMorph's price: it never sees real images, so on a single contrast a network trained on real pairs of
    that contrast can be more accurate. Its gain: one network for any contrast, and no real training images
    needed at all.

    ## Exercises
""")

nb.exercise(
    """
    **Exercise 1.** Mutual information depends on the number of histogram bins. For `bins` in 8, 32 and 128,
    compute `-losses.mi(t1, t2, bins=bins)` (aligned) and `-losses.mi(t1, t2_shifted, bins=bins)` (shifted by
    4 voxels). Which number of bins separates aligned from shifted the most, relative to the MI value? Why do
    many bins make MI noisy on a small image? Put the relative drops, `(aligned - shifted) / aligned`, and
    the number of bins with the largest one in `answer = {"relative_drop": {8: ..., 32: ..., 128: ...},
    "best": ...}`.
    """,
    starter="""
    # your code here

    answer = ...  # {"relative_drop": {8: ..., 32: ..., 128: ...}, "best": the bins with the largest drop}
    """,
    solution="""
    drops = {}
    for bins in [8, 32, 128]:
        aligned = -float(losses.mi(t1, t2, bins=bins))
        shifted = -float(losses.mi(t1, t2_shifted, bins=bins))
        drops[bins] = (aligned - shifted) / aligned
        print(f"bins {bins:3d}: MI aligned {aligned:.3f}, shifted {shifted:.3f}, "
              f"relative drop {drops[bins]:.0%}")
    answer = {"relative_drop": drops, "best": max(drops, key=drops.get)}
    print("largest relative drop:", answer["best"], "bins")
    # Few bins merge tissues (less information to gain); many bins leave few voxels per bin, so the histogram
    # is noisy and even a shifted pair looks "sharp" by chance (MI is biased upwards). Read the printout.
    """,
    check="check.ex1(answer, t1, t2, t2_shifted)",
)

nb.exercise(
    """
    **Exercise 2.** Make a FLAIR-like contrast of the same anatomy: like T2, but with the fluid (CSF)
    **dark**, grey matter brighter than white matter, and the lesion-like patches the brightest of all, e.g.
    `data.t2_like(labels, intensities=(0.0, 0.1, 0.8, 0.55), lesion_intensity=0.95, seed=0)` (one grey level
    per label value: background, CSF-like, grey matter, white matter). Which of `mse`, `global_ncc`, `ncc`,
    `mi`, `ngf` still have their minimum at zero shift
    (`widgets.similarity_landscape(t1, flair, shifts, similarity=name)`)? Put their names in `answer`, a
    list. Predict first, from what you saw with the T2-like image, then compute.
    """,
    starter="""
    flair = data.t2_like(labels, intensities=(0.0, 0.1, 0.8, 0.55), lesion_intensity=0.95, seed=0)
    # your code here

    answer = ...  # a list of the names whose minimum is at zero shift
    """,
    solution="""
    flair = data.t2_like(labels, intensities=(0.0, 0.1, 0.8, 0.55), lesion_intensity=0.95, seed=0)
    answer = []
    for name in ["mse", "global_ncc", "ncc", "mi", "ngf"]:
        values = widgets.similarity_landscape(t1, flair, shifts, similarity=name).cpu()
        i, j = divmod(int(values.argmin()), len(shifts))
        print(f"{name:10s} best shift {(shifts[i], shifts[j])}")
        if (shifts[i], shifts[j]) == (0, 0):
            answer.append(name)
    print("minimum at zero shift:", answer)
    # All five find it on this pair, mse and global_ncc included: background and CSF are dark in both images
    # and the brain tissue bright, so the strongest edges agree; only grey and white matter swap their order.
    # Making bright match bright points the right way here, and not for the T2-like image, whose CSF is
    # bright: a measure's failure belongs to a pair of contrasts, not to the measure alone.
    """,
    check="check.ex2(answer, t1, flair, shifts)",
)

nb.exercise(
    """
    **Exercise 3.** `ngf` (normalised gradient fields) compares edge *directions* and ignores which side of an
    edge is brighter. Register the T1 template onto the T2-like subject of section 4 with
    `similarity="ngf"` (use `**CLASSICAL` for the iterations, and the same similarity in `affine_options`) and
    compare its mean Dice with `mi`'s. Keep the result in `ngf_result`, and put both mean Dice (over
    `TISSUES`) in `answer = {"ngf": ..., "mi": ...}`.
    """,
    starter="""
    ngf_result = None  # the result of regedu.register(..., similarity="ngf", moving_labels=labels)
    # your code here

    answer = ...  # {"ngf": mean Dice of ngf_result, "mi": mean Dice of results["mi"]}
    """,
    solution="""
    affine_options = {**CLASSICAL.get("affine_options", {}), "similarity": "ngf"}
    ngf_result = regedu.register(t1, fixed, similarity="ngf", moving_labels=labels, progress=False,
                                 **{**CLASSICAL, "affine_options": affine_options})
    ngf_dice = metrics.dice(ngf_result.warped_labels, fixed_labels, labels=TISSUES).mean()
    print(f"mean Dice: ngf {ngf_dice:.3f}, mi {dice_classical['mi'].mean():.3f}")
    answer = {"ngf": float(ngf_dice), "mi": float(dice_classical["mi"].mean())}
    """,
    check="check.ex3(answer, ngf_result, results, fixed_labels, labels)",
)

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    # margins of what section 6 claims for the SynthMorph-style network (classical ones from section 4)
    CROSS_CONTRAST_MARGIN = 0.08  # T1 -> T2-like: Dice above no registration by at least this ...
    OVER_NCC_NETWORK = 0.05       # ... and above the T1-trained network's by at least this
    SAME_CONTRAST_MARGIN = 0.1    # T1 -> T1: Dice above no registration by at least this
    CLASSICAL_MARGIN = 0.3        # section 4: MI registration's Dice above before registration
    MI_OVER_MSE = 0.2             # section 4: MI registration's Dice above MSE registration's
    MI_SHIFT_DROP = 0.1           # section 3: MI (nats) lost by a 4-voxel shift
    NCC_NETWORK_DROP = 0.15       # section 6: Dice the T1-trained network loses across contrasts

    # across contrasts, MI's minimum is at the true alignment, MSE's is not; within one contrast all find it
    assert best["mi", 1] == (0, 0) and best["mse", 1] != (0, 0)
    assert all(best[name, 0] == (0, 0) for name in SIMILARITIES)
    # the T2-like contrast is not a function of T1 (less MI than T1 with itself) yet MI still sees alignment
    assert -losses.mi(t1, t2) < -losses.mi(t1, t1)
    assert -losses.mi(t1, t2) > -losses.mi(t1, t2_shifted) + MI_SHIFT_DROP
    # classical registration across contrasts: MI aligns the tissues, MSE does not
    assert dice_classical["mi"].mean() > dice_before.mean() + CLASSICAL_MARGIN
    assert dice_classical["mi"].mean() > dice_classical["mse"].mean() + MI_OVER_MSE
    # the live run ran
    assert history.step >= 1 and all(np.isfinite(history.losses))

    # contrast invariance on held-out brain pairs
    none_cross, none_same = mean_dice[METHODS[0], "T1 -> T2-like"], mean_dice[METHODS[0], "T1 -> T1"]
    ncc_cross, ncc_same = mean_dice[METHODS[1], "T1 -> T2-like"], mean_dice[METHODS[1], "T1 -> T1"]
    sm_cross, sm_same = mean_dice[METHODS[2], "T1 -> T2-like"], mean_dice[METHODS[2], "T1 -> T1"]
    assert mean_dice[METHODS[3], "T1 -> T2-like"] > none_cross + CROSS_CONTRAST_MARGIN, "classical MI failed"
    assert ncc_same - ncc_cross > NCC_NETWORK_DROP, (
        f"the T1-trained network's Dice goes from {ncc_same:.3f} (T1 -> T1) to {ncc_cross:.3f} "
        f"(T1 -> T2-like): not the drop of more than {NCC_NETWORK_DROP} that section 6 shows")
    assert sm_cross >= none_cross + CROSS_CONTRAST_MARGIN, (
        f"SynthMorph-style T1 -> T2-like Dice {sm_cross:.3f} is not {CROSS_CONTRAST_MARGIN} above no "
        f"registration's {none_cross:.3f}")
    assert sm_cross >= ncc_cross + OVER_NCC_NETWORK, (
        f"SynthMorph-style T1 -> T2-like Dice {sm_cross:.3f} is not {OVER_NCC_NETWORK} above the T1-trained "
        f"network's {ncc_cross:.3f}")
    assert sm_same >= none_same + SAME_CONTRAST_MARGIN, (
        f"SynthMorph-style T1 -> T1 Dice {sm_same:.3f} is not {SAME_CONTRAST_MARGIN} above no registration's "
        f"{none_same:.3f}")
    assert sm_same < ncc_same, "section 6 says the T1-trained network is the better one on T1 -> T1"
    print("all checks passed")
""")

nb.write()
