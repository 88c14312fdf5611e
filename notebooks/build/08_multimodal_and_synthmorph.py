"""Builds notebooks/08_multimodal_and_synthmorph.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("08_multimodal_and_synthmorph")

nb.markdown("""
    # 08 · Multimodal registration and SynthMorph

    **What you will learn (about 30 minutes):** why mean squared error fails when the two images have
    different contrasts (a T1 and a T2 MRI, an MRI and a CT), how *mutual information* measures "one intensity
    predicts the other" from a joint histogram, classical registration across contrasts with `mi` versus
    `mse`, and the SynthMorph idea: train a network on random shapes painted with random contrasts, so that it
    cannot rely on intensities and registers contrasts it has never seen.

    Clinical examples: a T2 or FLAIR scan aligned with the T1 of the same visit, a CT planned for radiotherapy
    aligned with the diagnostic MRI, a PET put on an anatomical MRI. The anatomy is the same; the grey values
    are not even in the same order.
""")

nb.code("""
    import os

    import matplotlib.pyplot as plt
    import numpy as np
    import torch

    import regedu
    from regedu import data, losses, metrics, models, train, viz, warps, widgets

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)

    # sizes and budgets: seconds in fast mode (the tests), a real result without it
    CLASSICAL = {"iterations": (20, 20, 10), "affine_options": {"iterations": (30, 20, 0)}} if FAST else {}
    FINE_TUNE_STEPS = 4 if FAST else 100_000      # SynthMorph fine-tuning: steps ...
    FINE_TUNE_MINUTES = None if FAST else 2.5     # ... or minutes, whichever ends first
    BATCH = 4 if FAST else 8
    TEST_PAIRS = 4 if FAST else 16
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. One anatomy, two contrasts

    We take the T1 slice of the MNI brain and make a second contrast of the *same* anatomy by remapping its
    intensities: in a T2-weighted image fluid (CSF) is bright and white matter darker than grey matter, the
    opposite of T1. The remapping is **non-monotonic** (dark background, bright CSF, then darker again for
    grey and white matter), so no straight line maps one image onto the other.
""")

nb.code("""
    brain = data.brain_slice(device=device)
    t1, labels = brain.image, brain.labels
    TISSUES = [1, 2, 3]  # CSF-like, grey matter, white matter (0 is background)


    def t2_like(image):
        \"\"\"A T2-like contrast from a T1 in [0, 1]: CSF bright, grey matter mid, white matter dark.\"\"\"
        t1_levels = [0.0, 0.1, 0.38, 0.69, 0.88, 1.0]  # background, edge, CSF, grey, white matter, brightest
        t2_levels = [0.0, 0.05, 1.0, 0.5, 0.25, 0.2]
        remapped = np.interp(image.cpu().numpy(), t1_levels, t2_levels)
        return torch.from_numpy(remapped).float().to(image.device)


    t2 = t2_like(t1)
    viz.show_slices([t1, t2, labels], titles=["T1", "T2-like (same anatomy)", "tissue labels"],
                    orientation=True)
""")

nb.markdown("""
    Look at the ventricles (the dark butterfly in the T1): bright in the T2-like image. White matter is the
    brightest tissue in one image and the darkest in the other. The order of the tissues, darkest first:
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
      shift makes a bright CSF equal a dark CSF, and the minimum lands in the wrong place with a shallow
      valley.
    - **`global_ncc`** assumes one straight line `T2 = a * T1 + b` over the whole image: false here, so it too
      misses.
    - **local `ncc`** (9 x 9 windows) only needs a straight line *inside each window*, where there are usually
      just two tissues; `regedu.losses.ncc` squares the correlation, so an inverted edge counts as well as a
      normal one. It survives this pair, but not a mapping that is non-monotonic inside one window.
    - **`mi`** (mutual information) makes no assumption about the mapping at all, as the next section shows.

    Explore the other losses (and `ngf`, which compares edge directions) with the slider:
""")

nb.code("""
    widgets.similarity_landscape_widget(t1, t2, max_shift=8)
""")

nb.markdown("""
    ## 3. Mutual information: a sharp joint histogram

    Put every voxel at the point (T1 intensity, T2 intensity) and count: that is the **joint histogram**.
    When the images are aligned, each tissue is one tight blob, because knowing the T1 intensity tells you the
    T2 intensity (whatever the mapping). Misalign them and the blobs smear. Mutual information
    `MI = H(T1) + H(T2) - H(T1, T2)` (nats) measures how much one intensity tells about the other: high for a
    sharp histogram. `regedu.losses.mi` returns `-MI` (a loss to minimise) from a smooth, differentiable
    (Parzen window) version of this histogram, so it can be optimised by gradient descent.
""")

nb.code("""
    shift = torch.zeros(1, 2, *t1.shape[2:], device=device)
    shift[:, 0] = 4.0  # 4 voxels along x
    t2_shifted = warps.warp(t2, shift)


    def joint_histogram(a, b, ax, title, ylabel):
        inside = (a > 0.05) | (b > 0.05)  # leave out the empty background, which would dominate
        counts, _, _ = np.histogram2d(a[inside].cpu().numpy(), b[inside].cpu().numpy(), bins=48,
                                      range=[[0, 1], [0, 1]])
        ax.imshow(np.log1p(counts).T, origin="lower", extent=(0, 1, 0, 1), cmap="magma")
        ax.set_xlabel("T1 intensity")
        ax.set_ylabel(ylabel)
        ax.set_title(f"{title}\\nMI = {-float(losses.mi(a, b)):.2f} nats", fontsize="medium")


    fig, axes = viz.new_figure(1, 3, width=11, height=4)
    joint_histogram(t1, t1, axes[0, 0], "T1 vs T1, aligned", "T1 intensity")
    joint_histogram(t1, t2, axes[0, 1], "T1 vs T2-like, aligned", "T2-like intensity")
    joint_histogram(t1, t2_shifted, axes[0, 2], "T1 vs T2-like, shifted 4 voxels", "T2-like intensity")
    fig
""")

nb.markdown("""
    Left: the same contrast gives a straight diagonal. Middle: the T2-like contrast gives a bent curve (up
    then down: the non-monotonic mapping), but still a thin one, so MI stays high. Right: after a 4-voxel
    shift the histogram spreads out and MI drops. MI only asks "is the histogram sharp?", never "is it a
    straight line?".

    ## 4. Classical registration across contrasts: `mse` versus `mi`

    A synthetic subject in the T2-like contrast (the template through a random affine and a smooth
    deformation, plus intensity changes, `regedu.data.synth_subject`) is the fixed image; the T1 template is
    the moving image. We run the same pipeline (`regedu.register`, affine then B-spline) with three similarity
    measures, for both stages, and score the warped tissue labels with Dice.
""")

nb.code("""
    subject = data.synth_subject(t2, labels, rotation=10, translation=6, magnitude=4, seed=1)
    fixed, fixed_labels = subject.image, subject.labels

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
    `mse` pulls the bright T1 white matter towards whatever is bright in the T2-like image (the CSF), and Dice
    barely moves. `mi` aligns the tissues. The summary below shows the `mi` result: the contours of the warped
    T1 labels should follow the tissue boundaries of the T2-like subject (top right). The difference panels
    (bottom left) mean little across contrasts: the intensities are not supposed to match.
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
    2. deform each one by a random smooth field to get a pair of label maps that match;
    3. paint **each** label map with **random intensities** (`regedu.data.synth_image`: a random grey level
       per label, blur, bias field, noise), so the two images of a pair have unrelated contrasts;
    4. train with a loss on the **labels** only (Dice between the fixed labels and the warped moving labels,
       `supervision="synthmorph"`), never on intensities.

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

    Training a SynthMorph network from scratch takes hours on a GPU (the paper trains for hundreds of
    thousands of steps): the Dice loss of label maps gives a weak signal until the network already moves edges
    the right way. Here we do the affordable version: start from the VoxelMorph network that ships with the
    kit (trained with NCC on T1 brain pairs, `regedu.models.pretrained("voxelmorph2d_brain")`), and
    **fine-tune** a copy of it SynthMorph-style for a few minutes. The original stays as it is for the
    comparison.
""")

nb.code("""
    ncc_model = models.pretrained("voxelmorph2d_brain", device=device)
    synthmorph_model = models.pretrained("voxelmorph2d_brain", device=device)  # the copy we fine-tune

    live = viz.LiveLossPlot(title="SynthMorph Dice loss", xlabel="step")
    history = train.train(synthmorph_model, synth_pairs, supervision="synthmorph", weight=1.0, lr=1e-4,
                          batch_size=BATCH, steps=FINE_TUNE_STEPS, minutes=FINE_TUNE_MINUTES,
                          progress=False, callback=live)
    live.finish()
    synthmorph_model.eval()
    print(f"{history.step} steps in {history.seconds:.0f} s, last loss {history.losses[-1]:.3f}")
""")

nb.markdown("""
    ## 6. Contrast invariance

    Now both networks register the T1 template onto held-out synthetic subjects, once in T1 contrast (what the
    NCC network was trained for) and once in the T2-like contrast (which neither network saw during training).
    The two test sets use the same seed, so they hold the same deformations: only the contrast differs.
""")

nb.code("""
    test_t1 = data.synth_subject(t1, labels, batch=TEST_PAIRS, seed=2024)
    test_t2 = data.synth_subject(t2, labels, batch=TEST_PAIRS, seed=2024)
    atlas, atlas_labels = t1.expand(TEST_PAIRS, -1, -1, -1), labels.expand(TEST_PAIRS, -1, -1, -1)


    @torch.no_grad()
    def network_dice(model, subjects):
        \"\"\"Dice per pair and tissue after registering the T1 template onto each subject.\"\"\"
        disp = model(atlas, subjects.image)[1]
        return metrics.dice(warps.warp_labels(atlas_labels, disp), subjects.labels, labels=TISSUES)


    table = {"before registration": (metrics.dice(atlas_labels, test_t1.labels, labels=TISSUES),
                                     metrics.dice(atlas_labels, test_t2.labels, labels=TISSUES))}
    for name, model in [("VoxelMorph, NCC-trained", ncc_model), ("SynthMorph fine-tuned", synthmorph_model)]:
        table[name] = (network_dice(model, test_t1), network_dice(model, test_t2))

    print(f"mean Dice over {TEST_PAIRS} pairs     T1 -> T1   T1 -> T2-like")
    for name, (same, cross) in table.items():
        print(f"{name:26s} {same.mean():8.3f}   {cross.mean():8.3f}")
""")

nb.code("""
    viz.dice_per_label({name: cross for name, (_, cross) in table.items()}, names=data.TISSUE_NAMES,
                       labels=TISSUES, title=f"T1 template onto T2-like subjects ({TEST_PAIRS} pairs)")
""")

nb.code("""
    with torch.no_grad():
        warped_ncc, disp_ncc = ncc_model(t1, test_t2.image[:1])
        warped_sm, disp_sm = synthmorph_model(t1, test_t2.image[:1])
    fig, axes = viz.new_figure(1, 3, width=11, height=4)
    viz.overlay(test_t2.image[:1], test_t2.labels[:1], style="contour", ax=axes[0, 0],
                orientation=True, title="fixed (T2-like) + its labels")
    for ax, disp, name in [(axes[0, 1], disp_ncc, "NCC-trained"), (axes[0, 2], disp_sm, "SynthMorph")]:
        moved = warps.warp_labels(labels, disp)
        score = metrics.dice(moved, test_t2.labels[:1], labels=TISSUES).mean()
        viz.overlay(test_t2.image[:1], moved, style="contour", ax=ax, orientation=True,
                    title=f"{name}: warped T1 labels\\nDice {score:.3f}")
    fig
""")

nb.markdown("""
    What to look for: compare the two columns of each network. The drop from "T1 -> T1" to "T1 -> T2-like"
    is what the network pays for having learned one contrast; SynthMorph-style training on random contrasts
    aims to shrink that drop. In the contours, see which network's labels follow the ventricles and the
    grey/white boundary of the T2-like image. In fast mode (a few fine-tuning steps) the two networks are
    still nearly the same; run the notebook without `REGEDU_FAST` for a longer fine-tuning.

    SynthMorph's price: it never sees real images, so on a single contrast a network trained on real pairs of
    that contrast can be a little more accurate. Its gain: one network for any contrast, and no real training
    images needed at all.

    ## Exercises
""")

nb.exercise(
    """
    **Exercise 1.** Mutual information depends on the number of histogram bins. For `bins` in 8, 32 and 128,
    compute `-losses.mi(t1, t2, bins=bins)` (aligned) and `-losses.mi(t1, t2_shifted, bins=bins)` (shifted by
    4 voxels). Which number of bins separates aligned from shifted the most, relative to the MI value? Why do
    many bins make MI noisy on a small image?
    """,
    starter="""
    # your code here
    """,
    solution="""
    for bins in [8, 32, 128]:
        aligned = -float(losses.mi(t1, t2, bins=bins))
        shifted = -float(losses.mi(t1, t2_shifted, bins=bins))
        print(f"bins {bins:3d}: MI aligned {aligned:.3f}, shifted {shifted:.3f}, "
              f"relative drop {(aligned - shifted) / aligned:.0%}")
    # Few bins merge tissues (less information to gain); many bins leave few voxels per bin, so the histogram
    # is noisy and even a shifted pair looks "sharp" by chance (MI is biased upwards). 32 is a good middle.
    """,
)

nb.exercise(
    """
    **Exercise 2.** Make a FLAIR-like contrast: like T2 but with the fluid (CSF) **dark** and white matter
    darker than grey matter (for example T1 levels `[0, 0.1, 0.38, 0.69, 0.88, 1.0]` mapped to
    `[0, 0.05, 0.15, 0.8, 0.55, 0.5]`). Which of `mse`, `global_ncc`, `ncc`, `mi`, `ngf` still have their
    minimum at zero shift (`widgets.similarity_landscape(t1, flair, shifts, similarity=name)`)?
    """,
    starter="""
    # your code here
    """,
    solution="""
    flair = torch.from_numpy(np.interp(t1.cpu().numpy(), [0, 0.1, 0.38, 0.69, 0.88, 1.0],
                                       [0, 0.05, 0.15, 0.8, 0.55, 0.5])).float().to(device)
    for name in ["mse", "global_ncc", "ncc", "mi", "ngf"]:
        values = widgets.similarity_landscape(t1, flair, shifts, similarity=name).cpu()
        i, j = divmod(int(values.argmin()), len(shifts))
        print(f"{name:10s} best shift {(shifts[i], shifts[j])}")
    """,
)

nb.exercise(
    """
    **Exercise 3.** `ngf` (normalised gradient fields) compares edge *directions* and ignores which side of an
    edge is brighter. Register the T1 template onto the T2-like subject of section 4 with
    `similarity="ngf"` (use `**CLASSICAL` for the iterations, and the same similarity in `affine_options`) and
    compare its mean Dice with `mi`'s.
    """,
    starter="""
    # your code here
    """,
    solution="""
    affine_options = {**CLASSICAL.get("affine_options", {}), "similarity": "ngf"}
    ngf_result = regedu.register(t1, fixed, similarity="ngf", moving_labels=labels, progress=False,
                                 **{**CLASSICAL, "affine_options": affine_options})
    ngf_dice = metrics.dice(ngf_result.warped_labels, fixed_labels, labels=TISSUES).mean()
    print(f"mean Dice: ngf {ngf_dice:.3f}, mi {dice_classical['mi'].mean():.3f}")
    """,
)

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    # across contrasts, MI's minimum is at the true alignment, MSE's is not
    assert best["mi", 1] == (0, 0) and best["mse", 1] != (0, 0)
    # within one contrast, every similarity finds it
    assert all(best[name, 0] == (0, 0) for name in SIMILARITIES)
    # the aligned pair has more mutual information than the shifted one
    assert -losses.mi(t1, t2) > -losses.mi(t1, t2_shifted) + 0.1
    # classical registration across contrasts: MI aligns the tissues, MSE does not
    assert dice_classical["mi"].mean() > dice_before.mean() + 0.3
    assert dice_classical["mi"].mean() > dice_classical["mse"].mean() + 0.2
    # SynthMorph-style fine-tuning ran and gives a usable network
    assert history.step >= 1 and all(np.isfinite(history.losses))
    _, (_, sm_cross) = table["before registration"], table["SynthMorph fine-tuned"]
    assert torch.isfinite(sm_cross).all()
    print("all checks passed")
""")

nb.write()
