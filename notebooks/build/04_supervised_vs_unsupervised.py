"""Build notebooks/04_supervised_vs_unsupervised.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("04_supervised_vs_unsupervised", checks="regedu.course.lesson04")

nb.markdown("""
    # 04 · Supervised, unsupervised, label-supervised: three ways to teach a network

    **What you will learn (about 30 minutes, 3 minutes of it running on a laptop CPU):** where ground-truth
    fields come from (synthetic subjects); three losses for the same network: **supervised** (end-point error
    against the true field), **unsupervised** (image similarity + smoothness, as in notebook 03) and
    **label-supervised** (Dice of warped label maps + smoothness); how to compare them fairly on the same
    held-out pairs with five measures (Dice, HD95, end-point error, target registration error of landmarks,
    folding); and what each loss makes its network good and bad at.

    You will watch the three losses start to train here, for half a minute each. The comparison itself uses
    three networks that ship with regedu, trained the same way for 4000 steps: the same network (VoxelMorph,
    the same initial weights), the same training pairs in the same order, the same batch size, learning rate
    and schedule; only the loss differs.

    The conventions used here (pulling warps, what det J measures) are on one page:
    [docs/conventions.md](../docs/conventions.md).
""")

nb.code("""
    import os
    import time

    import torch
    from torch.utils.data import default_collate

    from regedu import data, metrics, models, train, viz, warps, widgets
    from regedu.course import lesson04 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    GPU = device.type == "cuda"

    # The live runs of section 2 only show training start: a few steps in fast mode (REGEDU_FAST=1, what the
    # tests run), 30 seconds per loss on a CPU otherwise (300 steps on a GPU). Every comparison after them
    # uses the shipped networks, so fast and full mode compare the same networks, on fewer pairs in fast mode.
    N_TEST = 16 if FAST else 32                                # held-out pairs for every comparison
    POOL = 4                                                   # training pairs of the live runs (one batch)
    LIVE = dict(steps=3) if FAST else (dict(steps=300) if GPU else dict(steps=300, minutes=0.5))
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. Ground truth from synthetic subjects

    On real scans nobody knows the true deformation between two brains, so nobody can measure the error of a
    field voxel by voxel. Synthetic pairs fix that. `data.BrainSlicePairs` cuts the 2 mm MNI template at a
    random axial level of the cerebrum (96 × 112 voxels), with a synthetic head around the brain in about
    half of the pairs; a first random transform `d1` (an affine after a smooth deformation, small to large)
    makes the moving subject, and a second one `d2` moves that subject once more to make the fixed one. The
    item's `disp` is `d2` itself, so `warp_labels(moving_labels, disp)` **is** the fixed label map (3 tissue
    classes: CSF-like, grey matter, white matter). Each image then gets its own intensity changes (gamma,
    bias field, noise, blur), so even the true field does not make the two images equal.

    The held-out pairs use seed 7; the shipped networks trained on the pairs of seed 10⁶. They are new draws
    of the same generator from the same template: pairs like the training ones, never seen.
""")

nb.code("""
    test_pairs = data.BrainSlicePairs(N_TEST, seed=7, device=device)          # held out
    test = default_collate([test_pairs[i] for i in range(N_TEST)])           # the held-out pairs, one batch
    true_disp = test["disp"]

    print("the true field carries the labels exactly:",
          torch.equal(warps.warp_labels(test["moving_labels"], true_disp), test["fixed_labels"]))
    true_dice = metrics.dice(warps.warp_labels(test["moving_labels"], true_disp), test["fixed_labels"])
    print("Dice of the true field is 1:", bool((true_dice.nanmean(dim=1) == 1).all()))
    print("the true field folds nowhere:", bool((metrics.folding_fraction(true_disp) == 0).all()))
""", expect="the true field carries the labels exactly: True\nDice of the true field is 1: True\n"
             "the true field folds nowhere: True\n")

nb.markdown("""
    The true field of the first held-out pair, as a deformed grid on the moving image and as colour (hue:
    direction, brightness: length). The **end-point error** (EPE) of a predicted field `u` is the distance
    `|u(x) - d2(x)|` between where `u` says voxel `x` of the fixed image comes from and where it really does,
    in voxels (1 voxel = 2 mm); `metrics.end_point_error(u, d2, mask=brain)` averages it over the fixed brain.
""")

nb.code("""
    fig, axes = viz.new_figure(1, 3, width=3.6 * viz.PANEL_INCHES)
    viz.overlay(test["fixed"][:1], test["moving_labels"][:1], style="contour", names=data.TISSUE_NAMES,
                ax=axes[0, 0], orientation=True, title="moving labels on fixed")
    viz.deformation_grid(true_disp[:1], ax=axes[0, 1], image=test["moving"][:1], orientation=True,
                         title="true field: fixed grid on moving")
    viz.displacement_colour(true_disp[:1], ax=axes[0, 2], orientation=True, title="true field as colour")
    fig
""")

nb.markdown("""
    ## 2. Three losses, one loop: watch them start

    `train.TrainConfig(supervision=...)` picks the loss; everything else is shared:

    | `supervision` | loss of one batch | needs for training |
    |---|---|---|
    | `"supervised"` | `losses.endpoint_error(disp, true_disp)` (mean over every voxel) | the true field |
    | `"unsupervised"` | `losses.ncc(fixed, warped) + λ · losses.diffusion(disp)` | images only |
    | `"labels"` | `losses.dice_loss(fixed labels, warped labels) + λ · losses.diffusion(disp)` | labels |

    At test time all three need only the two images. The label-supervised loss warps the one-hot label maps
    with bilinear interpolation (so that Dice is differentiable) and leaves the background out. The
    supervised loss has **no regulariser**: it asks the network to imitate the true fields, which are smooth
    and never fold, but nothing in it penalises a fold where imitating is hard.

    Each network below starts from the same initial weights and trains for half a minute on a CPU (on a
    laptop, some tens to a couple of hundred steps) on the same 4 pairs, all 4 in every step. Fitting the
    same pairs lets the curve show the network learning rather than the differences between pairs; the
    shipped networks saw 16 000 different ones.
""")

nb.code("""
    SUPERVISIONS = {"supervised": "supervised", "unsupervised": "unsupervised", "label-supervised": "labels"}
    training_pairs = data.BrainSlicePairs(10**7, seed=10**6)       # the shipped networks' training stream
    pool = [training_pairs[i] for i in range(POOL)]                  # its first pairs, made once, every step
    live, histories = {}, {}
    for name, supervision in SUPERVISIONS.items():
        torch.manual_seed(0)                                         # the same initial weights for every loss
        live[name] = models.VoxelMorph(ndim=2).to(device)
        config = train.TrainConfig(supervision=supervision, similarity="ncc", regulariser="diffusion",
                                   weight=1.0, lr=2e-3, batch_size=POOL, seed=0, **LIVE)
        print(f"training the {name} network")
        histories[name] = train.train(live[name], pool, config)
    print({name: history.step for name, history in histories.items()}, "steps")
""")

nb.markdown("""
    The three loss curves. They are not comparable in value (voxels, similarity, Dice), only in shape: each
    falls as its network learns what its own loss rewards (in fast mode there are only a few steps).
""")

nb.code("""
    fig, axes = viz.new_figure(1, 3, width=12, height=3.0)
    units = {"supervised": "end-point error (voxels)", "unsupervised": "NCC + λ diffusion",
             "label-supervised": "Dice loss + λ diffusion"}
    for ax, (name, history) in zip(axes[0], histories.items()):
        smooth = history.step // 20 if history.step >= 40 else None
        viz.loss_curve(history, ax=ax, smooth=smooth, xlabel="step", title=f"{name}: {units[name]}")
    fig
""")

nb.markdown("""
    What half a minute bought: the live networks on the held-out pairs, next to no registration, and the
    largest displacement their fields make (the field starts to move). A network that has fitted 4 pairs for a
    few dozen steps has not learnt to register new ones, so do not judge the losses from this table: from here
    on, every comparison loads the shipped networks, trained for 4000 steps on 16 000 pairs.
""")

nb.code("""
    no_registration = widgets.field_scores(test, torch.zeros_like(true_disp))
    print(f"{'':28s}{'Dice':>7s}{'EPE (vox)':>11s}{'largest |u| (vox)':>19s}")
    print(f"{'no registration':28s}{float(no_registration['dice'].mean()):7.3f}"
          f"{float(no_registration['epe'].mean()):11.2f}{0:19.2f}")
    for name, network in live.items():
        score = widgets.network_scores(network, test)
        largest = float(torch.linalg.vector_norm(score["disp"], dim=1).max())
        print(f"{name + f' ({histories[name].step} steps)':28s}{float(score['dice'].mean()):7.3f}"
              f"{float(score['epe'].mean()):11.2f}{largest:19.2f}")
""")

nb.markdown("""
    ## 3. The shipped networks, on the same held-out pairs

    `models.pretrained(name)` loads a network that ships with regedu (its training log sits next to it in
    `regedu/weights/`). The three below trained on `BrainSlicePairs` for 4000 steps, alike except for the
    loss: `voxelmorph2d_brain_supervised` (end-point error), `voxelmorph2d_brain_lambda1` (NCC + diffusion,
    λ = 1) and `voxelmorph2d_brain_labels` (Dice of the warped tissue labels + diffusion, λ = 1).

    Each registers the held-out pairs, and we measure what a registration is judged by: **Dice** of the
    warped tissue labels (overlap, higher is better), **HD95** (how far the warped label borders lie from the
    fixed ones: the 95th percentile of the distances, voxels, lower is better), **end-point error** in the
    brain (voxels, lower is better), **TRE**, the target registration error of landmarks (below, voxels,
    lower is better), **folding** (share of voxels where the Jacobian determinant is <= 0) and the
    **smallest det J** (below 0: the field folds; near 1: it barely changes areas). "No registration" (the
    zero field) and the true field frame the table.

    The landmarks are 20 points per pair where three or more labels meet (tissue corners, the kind of point
    an expert could click in both images), spread over the fixed brain by `data.landmarks(fixed_labels, 20,
    where="junctions")`; the true field gives their true positions in the moving image
    (`data.map_landmarks(points, true_disp)`), and `metrics.tre(points, true_points, disp)` is the mean
    distance from there to where a field puts them. On a synthetic pair, TRE is the end-point error at a few
    chosen points. On real scans it is the one of the two that can be measured: an expert can click
    landmarks in both images, never a whole true field.
""")

nb.predict("""
    The supervised network was trained to imitate the true field, voxel by voxel. Will it have the lowest
    end-point error of the three shipped networks?
""", """
    No. The unsupervised network has the lowest end-point error, and the best Dice and TRE as well; the
    supervised one is also the only one of the three that folds. Section 5 explains why imitating the field
    everywhere, background and flat tissue included, pays less than it seems.
""")

nb.code("""
    SHIPPED = {"supervised": "voxelmorph2d_brain_supervised", "unsupervised": "voxelmorph2d_brain_lambda1",
               "label-supervised": "voxelmorph2d_brain_labels"}
    networks = {name: models.pretrained(file, device=device) for name, file in SHIPPED.items()}

    LANDMARKS = 20                                                            # per pair
    points = data.landmarks(test["fixed_labels"], LANDMARKS, seed=0, where="junctions")  # (N_TEST, 20, 2)
    true_points = data.map_landmarks(points, true_disp)          # their true positions in the moving images

    results = {"no registration": widgets.field_scores(test, torch.zeros_like(true_disp), hd95=True),
               "true field": widgets.field_scores(test, true_disp, hd95=True)}
    for name, network in networks.items():
        start = time.perf_counter()
        results[name] = widgets.network_scores(network, test, hd95=True)
        print(f"{name}: {N_TEST} pairs registered and scored in {time.perf_counter() - start:.1f} s")
    for score in results.values():
        score["tre"] = metrics.tre(points, true_points, score["disp"])       # (N_TEST,) voxels

    columns = {"dice": "Dice", "hd95": "HD95 (vox)", "epe": "EPE (vox)", "tre": "TRE (vox)",
               "folding_percent": "folding %"}
    print(f"\\n{'':18s}" + "".join(f"{title:>12s}" for title in columns.values()) + f"{'min det J':>12s}"
          f"   (mean over {N_TEST} held-out pairs; min det J: the smallest)")
    for name, score in results.items():
        print(f"{name:18s}" + "".join(f"{float(score[key].mean()):12.3f}" for key in columns)
              + f"{float(score['min_jacobian'].min()):12.3f}")
""")

nb.markdown("""
    The same numbers as bars (each dot is one held-out pair).
""")

nb.code("""
    shown = ["no registration", "supervised", "unsupervised", "label-supervised"]
    labels = ["none", "super-\\nvised", "unsuper-\\nvised", "labels"]
    colours = ["0.6", "tab:blue", "tab:orange", "tab:green"]
    fig, axes = viz.new_figure(1, len(columns), width=17, height=3.4)
    for ax, key in zip(axes[0], columns, strict=True):
        better = "higher" if key == "dice" else "lower"
        ax.bar(range(len(shown)), [float(results[name][key].mean()) for name in shown], color=colours)
        for k, name in enumerate(shown):
            ax.plot([k] * N_TEST, results[name][key].cpu(), "k.", markersize=4)
        ax.set_xticks(range(len(shown)), labels, fontsize="small")
        ax.set_title(f"{columns[key]} ({better} is better)", fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    fig
""")

nb.markdown("""
    One held-out pair (the one that moves most), one row per field, **one colour scale per column** (a panel
    that scaled itself would make ±0.001 of noise look like deformation). Columns: the warped moving labels
    drawn on the fixed image, the remaining difference `fixed - warped`, the **end-point error map**
    `|u(x) - d2(x)|` (where the field is wrong) and the Jacobian determinant (blue below 1, red above, yellow
    where it folds). Even the true field leaves a difference image that is not zero: the two subjects differ
    in brightness, bias field and noise, which a similarity measure has to see through.

    Where to look, and why: an image-similarity loss has nothing to go on where the image is flat (inside
    white matter, in the background), so there the unsupervised field is whatever the regulariser makes it; a
    Dice loss changes only when a label border moves, so inside each tissue the label-supervised field is
    also left to the regulariser; the end-point-error loss counts every voxel alike, inside and outside the
    brain.
""")

nb.code("""
    pair = int(results["no registration"]["epe"].argmax())
    rows = {name: results[name] for name in ["true field", "supervised", "unsupervised", "label-supervised"]}
    widgets.field_comparison(test, rows, index=pair, label_names=data.TISSUE_NAMES)
""")

nb.markdown("""
    ## 4. Explore: the loss and the regulariser weight

    More shipped networks make the regulariser's part visible: unsupervised NCC + λ · diffusion at
    λ = 0.01, 0.1, 1 and 10 (`voxelmorph2d_brain_lambda…`, each trained from scratch with the same 4000-step
    recipe; λ = 1 is the unsupervised network above). The table gives their numbers; the widget shows any
    network's field on any held-out pair under the true one, on colour scales shared by all of them.

    The table adds the supervised network for comparison.
""")

nb.predict("""
    Which λ lets the field fold? And of two networks, is the one with the better Dice always the one that
    puts the landmarks closer to their true positions (TRE)?
""", """
    λ = 0.01 folds a visible share of its voxels, while λ = 1, the unsupervised network, folds nowhere (the
    table shows λ = 0.1 and 10 too). And no: λ = 0.1 has a better Dice than the supervised network and a
    worse TRE, so Dice and TRE rank these two in opposite orders. The paragraph after the table says where
    λ = 0.1 goes wrong.
""")

nb.code("""
    LAMBDAS = [0.01, 0.1, 1, 10]
    by_weight = {}
    for weight in LAMBDAS:
        if weight == 1:
            by_weight[weight] = results["unsupervised"]             # the same network
        else:
            network = models.pretrained(f"voxelmorph2d_brain_lambda{weight:g}", device=device)
            by_weight[weight] = widgets.network_scores(network, test)
            by_weight[weight]["tre"] = metrics.tre(points, true_points, by_weight[weight]["disp"])
    print(f"{'':14s}{'Dice':>8s}{'EPE (vox)':>11s}{'TRE (vox)':>11s}{'folding %':>11s}{'min det J':>11s}")
    rows = {"supervised": results["supervised"]}
    rows.update({f"NCC, λ = {weight:g}": score for weight, score in by_weight.items()})
    for name, score in rows.items():
        print(f"{name:14s}{float(score['dice'].mean()):8.3f}{float(score['epe'].mean()):11.2f}"
              f"{float(score['tre'].mean()):11.2f}{float(score['folding_percent'].mean()):11.3f}"
              f"{float(score['min_jacobian'].min()):11.2f}")
""")

nb.markdown("""
    Read the table against your prediction. Folding: λ = 0.01 folds a visible share of the grid (about 1 %)
    and still has a lower Dice than λ = 1: a field free to chase noise does not align tissue better
    (notebook 03, section 7, draws the whole curve). Dice against TRE: λ = 0.1 has a clearly better Dice than
    the supervised network,
    and a worse TRE. Dice and TRE rank these two networks in opposite orders. The table also says where
    λ = 0.1 goes wrong: its TRE lies well above its own end-point error over the brain, while the supervised
    network's TRE is close to its own. The landmarks sit at tissue corners, so the weakly regularised field
    errs more at the corners than it does on average, at the very borders whose overlap Dice rewards. A
    ranking by one measure answers one question (notebook 02, section 8, shows an extreme case: a brain
    flipped left-right registers to a good Dice with every landmark in the wrong place).
""")

nb.code("""
    explore = {"true field": results["true field"], "supervised (end-point error)": results["supervised"],
               "label-supervised (Dice, λ = 1)": results["label-supervised"]}
    explore.update({f"unsupervised (NCC, λ = {weight:g})": score for weight, score in by_weight.items()})
    explore["no registration"] = results["no registration"]
    widgets.field_comparison_widget(test, explore, reference="true field", label_names=data.TISSUE_NAMES)
""")

nb.markdown("""
    ## 5. What each loss buys, and what it costs

    **Supervised (end-point error).** It learns the field itself, so you might expect it to win on
    end-point error. With the same data and the same 4000 steps it does not: on these pairs it has the
    highest EPE inside the brain and the lowest Dice of the three. Its loss counts every voxel alike,
    including the background and the flat inside of each tissue, where nothing in the images shows the
    true motion: a field the images cannot reveal can only be guessed, and learning to guess it costs
    steps the image-driven losses spend on the brain. It needs the true field for every training pair,
    which exists only for synthetic data (or as the output of another method, whose errors it then copies),
    so it learns the deformations and images of one generator, and real scans, whose deformations and
    contrasts differ, can defeat it. Its loss has no regulariser: it imitates fields that never fold, but
    nothing stops it from folding where imitating is hard. In the README's benchmark of the first release
    (networks trained 10 minutes each on one axial slice) it was the only network whose output folded (0.2 %
    of the voxels, smallest det J −1.33). The retrained one folds too, and it is again the only one: read
    its folding % and smallest det J (the lowest of the three, below 0) in the table.
    And it never looks at the images' match: a small average EPE can still misplace a thin structure.

    **Unsupervised (similarity + smoothness).** It needs only images, so it trains on real, unlabelled scans
    of any size of study: that is why it is the default. Its idea of "aligned" is the similarity measure:
    where the image has no contrast the field is decided by the regulariser, not by anatomy; intensity
    changes, different contrasts or pathology can pull it to the wrong answer (notebook 08: mutual
    information and SynthMorph), and the weight λ must be chosen (section 4, notebook 03).

    **Label-supervised (Dice + smoothness).** It optimises what Dice measures, yet on these pairs the
    unsupervised network has the better Dice (and EPE and TRE), even on the tissue labels the label network
    trained
    with: with three tissues, Dice gives a gradient only where a tissue border is out of place, while NCC
    uses every edge and texture in the image. It beats the supervised network on Dice and does not fold.
    It needs segmentations of both images for
    every training pair (not at test time). Away from label borders its field is constrained only by the
    regulariser, and scoring it on the borders it was trained on could flatter it: exercise 2 judges the
    networks where no training label had a border, along cuts through the inside of the tissues.

    In practice the losses are combined: similarity + λ₁ Dice + λ₂ smoothness (weak supervision), or
    supervised pre-training on synthetic pairs followed by unsupervised fine-tuning on real ones. The
    closing check tests every claim of this section on the held-out pairs.
""")

nb.markdown("## Exercises")

nb.exercise("""
    **Exercise 1: which network wins where?** From `results`, print for each measure (`"dice"`, `"hd95"`,
    `"epe"`, `"tre"`, `"folding_percent"`) which of the three shipped networks (`"supervised"`,
    `"unsupervised"`, `"label-supervised"`) has the best mean. Does each loss win on the measure closest to
    what it optimises (the supervised loss: `"epe"`; the label loss: `"dice"`)? Give the winners and your
    verdict: `answer = {"dice": name, "hd95": name, "epe": name, "tre": name, "folding_percent": name,
    "each_wins_its_own": True or False}`.

    Each exercise asks for its answer in the variable `answer`; the cell after it checks it and says "not
    attempted yet", "wrong" (and why) or "right".
""", starter="""
    # your code here
    answer = ...  # {measure: the best network's name, ..., "each_wins_its_own": True or False}
""", solution="""
    trained = ["supervised", "unsupervised", "label-supervised"]
    answer = {}
    for key, pick in [("dice", max), ("hd95", min), ("epe", min), ("tre", min), ("folding_percent", min)]:
        answer[key] = pick(trained, key=lambda name: float(results[name][key].mean()))
        print(f"best {key:16s}: {answer[key]} ({float(results[answer[key]][key].mean()):.3f})")
    answer["each_wins_its_own"] = answer["epe"] == "supervised" and answer["dice"] == "label-supervised"
    print("each loss wins the measure it optimises:", answer["each_wins_its_own"])
""", check="check.ex1(answer, results)")

nb.exercise("""
    **Exercise 2: judge where no training label had a border.** The Dice of section 3 is measured on the 3
    tissue classes. The label-supervised loss was the Dice of exactly these classes (on the training pairs,
    not these), and it changes only when a warped tissue border moves, so section 3 scores that network on
    the kind of border it was trained to place. Judge all of them somewhere no training loss marked.

    `parcels=True` gives the same held-out pairs (same seed: same images, same fields) with 17 labels: grey
    and white matter each cut into 8 parcels by three planes (the midline x = 0 mm, y = −20 mm and z = 0 mm;
    `data.brain_label_names(True)` names them), CSF-like kept whole. On an axial section the z = 0 plane only
    decides which parcels appear; the cuts you see are the midline and y = −20 mm. Every tissue border is
    also a parcel border, so the mean parcel Dice still mostly re-measures tissue borders: compute it first
    (`widgets.field_scores(parcels, results[name]["disp"])["dice"]`) next to the tissue Dice and compare.

    What no network was shown in training is the **cuts**: the voxels where one parcel meets another inside
    a single tissue. No training label changes there, so the label loss never rewarded a field for being
    right there; the cut is no edge in the images, so the similarity loss saw nothing of it either; the
    supervised loss measured the field there only as it did at every voxel of the training pairs, the cuts
    meaning nothing to it. A **cut voxel** is a brain voxel whose 3 × 3 neighbourhood holds more than one
    parcel (in `parcels["fixed_labels"]`) but a single tissue (in `test["fixed_labels"]`). Hint:
    `torch.nn.functional.max_pool2d(labels.float(), 3, stride=1, padding=1)` is the largest label around
    each voxel and `-max_pool2d(-labels.float(), ...)` the smallest. Give each row of `results` its mean
    end-point error on the cut voxels, `metrics.end_point_error(disp, true_disp, mask=cut)` averaged over the
    pairs: `answer = {name: ...}`. How do the label-supervised and unsupervised networks compare there, and
    is it the order of their tissue Dice?
""", starter="""
    parcel_pairs = data.BrainSlicePairs(N_TEST, seed=7, parcels=True, device=device)
    parcels = default_collate([parcel_pairs[i] for i in range(N_TEST)])   # the same pairs, 17 labels
    # your code here: the parcel Dice next to the tissue Dice; the cut voxels; the end-point error on them
    answer = ...  # {name: mean end-point error on the cut voxels, in voxels} for every row of `results`
""", solution="""
    import torch.nn.functional as F

    parcel_pairs = data.BrainSlicePairs(N_TEST, seed=7, parcels=True, device=device)
    parcels = default_collate([parcel_pairs[i] for i in range(N_TEST)])   # the same pairs, 17 labels
    assert torch.equal(parcels["fixed"], test["fixed"]) and torch.equal(parcels["disp"], true_disp)


    def holds_several(labels):
        \"\"\"Whether each voxel's 3 x 3 neighbourhood holds more than one label value, (B, 1, X, Y).\"\"\"
        largest = F.max_pool2d(labels.float(), 3, stride=1, padding=1)
        return largest != -F.max_pool2d(-labels.float(), 3, stride=1, padding=1)


    tissue = test["fixed_labels"]
    cut = holds_several(parcels["fixed_labels"]) & ~holds_several(tissue) & (tissue > 0)
    print(f"cut voxels per pair: {int(cut.flatten(1).sum(1).min())} to {int(cut.flatten(1).sum(1).max())}")
    print(f"{'':18s}{'tissue Dice':>12s}{'parcel Dice':>12s}{'EPE brain':>11s}{'EPE cuts':>10s}")
    answer, parcel_dice = {}, {}
    for name, score in results.items():
        parcel_dice[name] = float(widgets.field_scores(parcels, score["disp"])["dice"].mean())
        answer[name] = float(metrics.end_point_error(score["disp"], true_disp, mask=cut).nanmean())
        print(f"{name:18s}{float(score['dice'].mean()):12.3f}{parcel_dice[name]:12.3f}"
              f"{float(score['epe'].mean()):11.2f}{answer[name]:10.2f}")
    # Parcel Dice ranks the fields exactly as tissue Dice does: its borders are mostly the tissue borders.
    # On the cuts, which no training label marked, the three networks keep the order of their tissue Dice:
    # the label-supervised network's place in section 3 did not come from scoring it on its own borders.
    by_tissue = sorted(results, key=lambda name: float(results[name]["dice"].mean()))
    assert sorted(results, key=parcel_dice.get) == by_tissue
    networks = ["supervised", "unsupervised", "label-supervised"]
    assert sorted(networks, key=answer.get, reverse=True) == [name for name in by_tissue if name in networks]
""", check="check.ex2(answer, results, parcels, test)")

nb.exercise("""
    **Exercise 3: where is each network wrong?** Split the fixed brain into voxels on a tissue border (a voxel
    whose 3 × 3 neighbourhood holds more than one label) and voxels inside a tissue, and compute each shipped
    network's mean end-point error on each part with `metrics.end_point_error(disp, true_disp, mask=...)`.
    Hint: `torch.nn.functional.max_pool2d(labels.float(), 3, stride=1, padding=1)` is the largest label
    around each voxel and `-max_pool2d(-labels.float(), ...)` the smallest. Which network is most accurate at
    borders, and which inside tissues? How does that follow from its loss? Give, for each shipped network
    (no registration may be added), `answer = {name: (EPE at borders, EPE inside)}`.
""", starter="""
    # your code here
    answer = ...  # {name: (mean EPE at borders, mean EPE inside)}, in voxels
""", solution="""
    import torch.nn.functional as F

    tissue = test["fixed_labels"].float()
    largest = F.max_pool2d(tissue, 3, stride=1, padding=1)
    smallest = -F.max_pool2d(-tissue, 3, stride=1, padding=1)
    brain = test["fixed_labels"] > 0
    border, inside = brain & (largest != smallest), brain & (largest == smallest)
    print(f"{'':18s}{'EPE at borders':>16s}{'EPE inside':>12s}")
    answer = {}
    for name in ["no registration", "supervised", "unsupervised", "label-supervised"]:
        disp = results[name]["disp"]
        at_border = metrics.end_point_error(disp, true_disp, mask=border).mean()
        within = metrics.end_point_error(disp, true_disp, mask=inside).mean()
        answer[name] = (float(at_border), float(within))
        print(f"{name:18s}{float(at_border):16.2f}{float(within):12.2f}")
""", check="check.ex3(answer, results, test)")

nb.markdown("""
    ## Check what this notebook taught

    The ground truth is exact (Dice 1, zero error and TRE, no folds) and the pairs really move; the live runs
    trained; each shipped network registers the held-out pairs clearly better than no registration; and the
    three losses made three different networks, as section 5 says: with the same data and budget the
    unsupervised one has the best Dice and the lowest end-point error and TRE, the label-supervised one
    beats the supervised one on Dice without folding, and the supervised one is the only one that folds.
    Dice and TRE rank the λ = 0.1 and supervised networks in opposite orders, and λ = 0.01 folds with a lower
    Dice than λ = 1, as section 4 says. An untrained
    network swapped in fails these checks.
""")

nb.code("""
    DICE_MARGIN = 0.05        # every shipped network's mean Dice above no registration's by at least this
    MOVES = 1.0               # the held-out pairs' mean true motion in the brain is over this many voxels
    FOLDING_SMALL_WEIGHT = 0.1  # % of voxels the λ = 0.01 network folds, at least
    CORNER_MARGIN = 0.2       # λ = 0.1's TRE lies above its EPE by this many voxels more than the supervised
                              # network's does (λ = 0.1 errs at the tissue corners where the landmarks sit)
    LOSS_DROP = 0.01          # full mode: a live run's mean loss over its last fifth of steps lies below
                              # its mean over the first fifth by at least this share of the latter's size

    true, none = results["true field"], results["no registration"]
    assert (true["dice"] == 1).all() and (true["epe"] == 0).all() and (true["folding_percent"] == 0).all()
    brain = test["fixed_labels"] > 0
    assert torch.allclose(none["epe"], metrics.end_point_error(torch.zeros_like(true_disp), true_disp, brain))
    assert float(none["epe"].mean()) > MOVES, "the held-out pairs really move"
    for name, history in histories.items():
        assert history.step > 0 and all(torch.isfinite(torch.tensor(history.losses))), name
        if not FAST:                                        # a few steps in fast mode: too few to tell
            fifth = max(history.step // 5, 1)
            first, last = history.losses[:fifth], history.losses[-fifth:]
            start, end = sum(first) / fifth, sum(last) / fifth
            assert start - end > LOSS_DROP * abs(start), f"{name}: the live loss fell"

    learned = ["supervised", "unsupervised", "label-supervised"]
    mean = {key: {name: float(results[name][key].mean()) for name in learned} for key in ("dice", "epe")}
    for name in learned:
        assert mean["dice"][name] > float(none["dice"].mean()) + DICE_MARGIN, f"{name} improves Dice"
        assert mean["epe"][name] < float(none["epe"].mean()), f"{name} moves points towards the truth"
    assert min(mean["epe"], key=mean["epe"].get) == "unsupervised", "the unsupervised network: lowest EPE"
    assert max(mean["dice"], key=mean["dice"].get) == "unsupervised", "the unsupervised network: best Dice"
    assert mean["dice"]["label-supervised"] > mean["dice"]["supervised"], "labels beat the true field on Dice"
    smallest_det = {name: float(results[name]["min_jacobian"].min()) for name in learned}
    assert min(smallest_det, key=smallest_det.get) == "supervised", "no regulariser: lowest det J"
    others = min(smallest_det["unsupervised"], smallest_det["label-supervised"])
    assert smallest_det["supervised"] < 0 < others, "only the supervised network folds"

    # landmarks (section 3), and two networks that Dice and TRE rank in opposite orders (section 4)
    tre = {name: float(score["tre"].mean()) for name, score in results.items()}
    assert (true["tre"] == 0).all(), "the true field puts every landmark on its true position"
    assert tre["no registration"] > MOVES, "the landmarks really move"
    for name in learned:
        assert tre[name] < tre["no registration"], f"{name} moves landmarks towards their true positions"
    assert min(learned, key=tre.get) == "unsupervised", "the unsupervised network: lowest TRE"
    weak, supervised = by_weight[0.1], results["supervised"]
    assert float(weak["dice"].mean()) > mean["dice"]["supervised"], "λ = 0.1: a better Dice than supervised"
    assert float(weak["tre"].mean()) > tre["supervised"], "λ = 0.1: a worse TRE than supervised"
    smallest = by_weight[0.01]
    assert float(smallest["folding_percent"].mean()) > FOLDING_SMALL_WEIGHT, "λ = 0.01 folds"
    assert float(smallest["dice"].mean()) < mean["dice"]["unsupervised"], "λ = 0.01: lower Dice than λ = 1"
    corner_excess = {name: float(score["tre"].mean() - score["epe"].mean())   # TRE above EPE: errs at corners
                     for name, score in [("λ = 0.1", weak), ("supervised", supervised)]}
    assert corner_excess["λ = 0.1"] > corner_excess["supervised"] + CORNER_MARGIN, "λ = 0.1 errs at corners"
    print("all checks passed")
""")

nb.write()
