"""Build notebooks/04_supervised_vs_unsupervised.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("04_supervised_vs_unsupervised")

nb.markdown("""
    # 04 · Supervised, unsupervised, label-supervised: three ways to teach a network

    **What you will learn (about 30 minutes, 5 minutes of it running on a laptop CPU):** where ground-truth
    fields come from (synthetic subjects); three losses for the same network: **supervised** (end-point error
    against the true field), **unsupervised** (image similarity + smoothness, as in notebook 03) and
    **label-supervised** (Dice of warped label maps + smoothness); how to compare them fairly on the same
    held-out pairs with three measures (Dice, end-point error, folding); and when each one wins and when it
    fails.

    The experiment is deliberately fair: the same network (VoxelMorph, same initial weights), the same
    training pairs in the same order, the same number of steps and learning rate; only the loss differs.
""")

nb.code("""
    import os

    import matplotlib.pyplot as plt
    import torch
    from torch.utils.data import default_collate

    from regedu import data, losses, metrics, models, train, viz, warps

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    GPU = device.type == "cuda"

    # Fast mode (REGEDU_FAST=1, what the tests run) only checks that everything works: a handful of steps.
    # Full mode trains each network for 300 steps or 72 seconds, whichever comes first, on a CPU
    # (1500 steps on a GPU).
    N_TEST = 2 if FAST else 8                                   # held-out pairs (the same as notebook 03)
    BATCH = 2 if FAST else (8 if GPU else 4)
    TRAINING = dict(steps=8) if FAST else (dict(steps=1500) if GPU else dict(steps=300, minutes=1.2))
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. Ground truth from synthetic subjects

    On real scans nobody knows the true deformation between two brains, so nobody can measure the error of a
    field voxel by voxel. Synthetic pairs fix that. `TemplatePairs(mode="subject_to_subject")` makes the
    moving image a random transform of the MNI template, and the fixed image *that subject moved once more* by
    a second random transform `d2`; the item's `disp` is `d2` itself, so `warp(moving, disp)` is the fixed
    anatomy and `warp_labels(moving_labels, disp)` **is** the fixed label map. Both the true field and the
    labels are exact.
""")

nb.code("""
    kind = dict(mode="subject_to_subject", parcels=True, device=device)
    train_pairs = data.TemplatePairs(length=10**6, seed=0, **kind)
    test_pairs = data.TemplatePairs(length=N_TEST, seed=7, **kind)   # the held-out pairs of notebook 03
    test = default_collate([test_pairs[i] for i in range(N_TEST)])   # the held-out pairs, as one batch
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
    direction, brightness: length). A good registration field should look like this; the **end-point error**
    (EPE) of a predicted field `u` is the mean distance between `u(x)` and the true `d2(x)`, in voxels.
""")

nb.code("""
    fig, axes = viz.new_figure(1, 3)
    viz.overlay(test["fixed"][:1], test["moving_labels"][:1], style="contour", ax=axes[0, 0],
                orientation=True, title="moving labels on fixed")
    viz.deformation_grid(true_disp[:1], ax=axes[0, 1], image=test["moving"][:1], orientation=True,
                         title="true field: fixed grid on moving")
    viz.displacement_colour(true_disp[:1], ax=axes[0, 2], orientation=True, title="true field as colour")
    fig
""")

nb.markdown("""
    ## 2. Three losses, one loop

    `train.TrainConfig(supervision=...)` picks the loss; everything else is shared:

    | `supervision` | loss of one batch | needs for training |
    |---|---|---|
    | `"supervised"` | `losses.endpoint_error(disp, true_disp)` | the true field |
    | `"unsupervised"` | `losses.ncc(fixed, warped) + λ · losses.diffusion(disp)` | images only |
    | `"labels"` | `losses.dice_loss(fixed_labels, warped_labels) + λ · losses.diffusion(disp)` | labels |

    At test time all three need only the two images. The label-supervised loss warps the one-hot label maps
    with bilinear interpolation (so that Dice is differentiable), and leaves the background out. The
    supervised loss has no regulariser: the true fields are smooth, and the network learns their smoothness
    from them.
""")

nb.code("""
    SUPERVISIONS = {"supervised": "supervised", "unsupervised": "unsupervised", "label-supervised": "labels"}
    networks, histories = {}, {}
    for name, supervision in SUPERVISIONS.items():
        torch.manual_seed(0)                                     # the same initial weights for every loss
        networks[name] = models.VoxelMorph(ndim=2).to(device)
        config = train.TrainConfig(supervision=supervision, similarity="ncc", regulariser="diffusion",
                                   weight=1.0, lr=1e-3, batch_size=BATCH, seed=0, **TRAINING)
        print(f"training the {name} network")
        histories[name] = train.train(networks[name], train_pairs, config)
    print({name: history.step for name, history in histories.items()})
""")

nb.markdown("""
    The three loss curves. They are not comparable in value (voxels, similarity, Dice), only in shape: each
    falls as its network learns what its own loss rewards. Expect the first few dozen steps to be flat (the
    network's output starts at almost zero).
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
    ## 3. One table, one figure, the same held-out pairs

    Each network registers the held-out pairs; for each we measure the three things a registration is judged
    by: **Dice** of the warped labels (overlap of structures, higher is better), **end-point error** against
    the true field (voxels, lower is better) and **folding** (share of voxels where the Jacobian determinant
    is <= 0, lower is better). "No registration" (the zero field) and the true field frame the table. The
    shipped network of notebook 03 (unsupervised, trained for longer) is a last reference row.
""")

nb.code("""
    def scores_of(disp):
        warped_labels = warps.warp_labels(test["moving_labels"], disp)
        return {"Dice": metrics.dice(warped_labels, test["fixed_labels"]).nanmean(dim=1),
                "EPE": torch.linalg.vector_norm(disp - true_disp, dim=1).flatten(1).mean(dim=1),
                "folding %": 100 * metrics.folding_fraction(disp)}

    fields = {"no registration": torch.zeros_like(true_disp), "true field": true_disp}
    for name, network in networks.items():
        with torch.no_grad():
            fields[name] = network.eval()(test["moving"], test["fixed"]).disp
    with torch.no_grad():
        fields["pre-trained unsupervised (nb 03)"] = models.pretrained("voxelmorph2d_brain", device=device)(
            test["moving"], test["fixed"]).disp
    results = {name: scores_of(disp) for name, disp in fields.items()}

    print(f"{'':34s}{'Dice':>8s}{'EPE (vox)':>11s}{'folding %':>11s}   (mean over {N_TEST} held-out pairs)")
    for name, score in results.items():
        print(f"{name:34s}{score['Dice'].mean():8.3f}{score['EPE'].mean():11.2f}"
              f"{score['folding %'].mean():11.3f}")
""")

nb.markdown("""
    The same numbers as bars (each dot is one held-out pair), for the three networks trained here between the
    two references.
""")

nb.code("""
    shown = ["no registration", "supervised", "unsupervised", "label-supervised",
             "pre-trained unsupervised (nb 03)"]
    labels = ["none", "super-\\nvised", "unsuper-\\nvised", "labels", "pre-\\ntrained"]
    colours = ["0.6", "tab:blue", "tab:orange", "tab:green", "0.35"]
    fig, axes = viz.new_figure(1, 3, width=12, height=3.4)
    for ax, metric, better in zip(axes[0], ["Dice", "EPE", "folding %"], ["higher", "lower", "lower"]):
        means = [float(results[name][metric].mean()) for name in shown]
        ax.bar(range(len(shown)), means, color=colours)
        for k, name in enumerate(shown):
            ax.plot([k] * N_TEST, results[name][metric].cpu(), "k.", markersize=4)
        ax.set_xticks(range(len(shown)), labels, fontsize="small")
        ax.set_title(f"{metric} ({better} is better)", fontsize="medium")
        ax.set_ylim(bottom=0)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 1].set_ylabel("voxels")
    fig
""")

nb.markdown("""
    The first held-out pair, one row per field. Columns: the warped moving labels drawn on the fixed image,
    the remaining difference `fixed - warped`, the **end-point error map** `|u(x) - d2(x)|` (where the field
    is wrong, one colour scale for all rows) and the Jacobian determinant (yellow: folds). Even the true field
    leaves a difference image that is not zero: the two subjects differ in brightness, bias field and noise,
    which a similarity measure has to see through. Look where the errors sit: the unsupervised network is
    wrong where the image has no contrast to match (inside white matter, in the background); the
    label-supervised one is good along label borders but free inside labels and outside the brain; the
    supervised one spreads its error more evenly.
""")

nb.code("""
    rows = ["true field", "supervised", "unsupervised", "label-supervised"]
    error_maps = {name: torch.linalg.vector_norm(fields[name][:1] - true_disp[:1], dim=1, keepdim=True)
                  for name in rows}
    largest = max(float(error.max()) for error in error_maps.values())
    fig, axes = viz.new_figure(len(rows), 4)
    for ax_row, name in zip(axes, rows):
        disp = fields[name][:1]
        warped = warps.warp(test["moving"][:1], disp)
        viz.overlay(test["fixed"][:1], warps.warp_labels(test["moving_labels"][:1], disp), style="contour",
                    ax=ax_row[0], orientation=True, title=f"{name}: labels on fixed")
        viz.difference(test["fixed"][:1], warped, ax=ax_row[1], vmax=0.5, orientation=True,
                       names=("fixed", "warped"), title="fixed − warped")
        viz.show_image(error_maps[name], ax_row[2], "end-point error (voxels)", cmap="magma", vmin=0,
                       vmax=largest, orientation=True, colorbar=True)
        viz.jacobian_map(disp, ax=ax_row[3], orientation=True)
    fig
""")

nb.markdown("""
    ## 4. When each one wins, and when it fails

    **Supervised (end-point error).** It learns the field itself, so it is the one to beat on EPE, and its
    fields look like the true ones (smooth, no folds) without any regulariser. It needs the true field for
    every training pair, which exists only for synthetic data (or as the output of another method, whose
    errors it then copies). Its weakness is the *domain gap*: it learns the deformations and images of the
    generator, and on real scans, whose deformations and contrasts differ, it can fail badly. It also does not
    look at how well the images match: a field with a small EPE can still misalign a thin structure.

    **Unsupervised (similarity + smoothness).** It needs only images, so it trains on real, unlabelled scans
    of any size of study: that is why it is the default. Its idea of "aligned" is the similarity measure:
    where the image has no contrast (inside a tissue, outside the head) the field is decided by the
    regulariser, not by anatomy, so its EPE stays high even when Dice is good; intensity changes, different
    contrasts or pathology can pull it to the wrong answer (notebook 08: mutual information and SynthMorph),
    and the weight λ must be tuned (notebook 03).

    **Label-supervised (Dice + smoothness).** It optimises exactly what Dice measures, so it wins on the Dice
    of the structures it was trained on, and is not fooled by intensities. It needs segmentations of both
    images for every training pair (not at test time). Away from label borders the field is constrained only
    by the regulariser; with λ too small it produces fields that bend freely (or fold) wherever it helps the
    overlap; and scoring it on the same labels it trained on flatters it: judge it on other structures, or on
    landmarks.

    In practice the losses are combined: similarity + λ₁ Dice + λ₂ smoothness (weak supervision), or
    supervised pre-training on synthetic pairs followed by unsupervised fine-tuning on real ones.

    The numbers in your table depend on how long the networks trained; in fast mode (a few steps) they barely
    left the zero field. In full mode, check which network wins on which column.
""")

nb.markdown("## Exercises")

nb.exercise("""
    **Exercise 1: which network wins where?** From `results`, print for each of the three measures (Dice, EPE,
    folding %) which of the three networks trained here (`"supervised"`, `"unsupervised"`,
    `"label-supervised"`) has the best mean. Does each loss win on the measure closest to what it optimises?
""", starter="""
    # your code here
""", solution="""
    trained = ["supervised", "unsupervised", "label-supervised"]
    for metric, pick in [("Dice", max), ("EPE", min), ("folding %", min)]:
        best = pick(trained, key=lambda name: float(results[name][metric].mean()))
        print(f"best {metric:10s}: {best} ({float(results[best][metric].mean()):.3f})")
""")

nb.exercise("""
    **Exercise 2: a fair judge for the label-supervised network.** Its Dice is measured on the 17 parcels it
    was trained on. Score all three networks instead on labels they never saw: the 3 tissue classes
    (`parcels=False`). Make the same held-out pairs with tissue labels,
    `data.TemplatePairs(N_TEST, mode="subject_to_subject", parcels=False, seed=7)` (same seed: same images and
    fields, only the labels differ), and compute the mean Dice of each network's field on them.
""", starter="""
    # your code here
""", solution="""
    tissue_pairs = data.TemplatePairs(N_TEST, mode="subject_to_subject", parcels=False, seed=7, device=device)
    tissue = default_collate([tissue_pairs[i] for i in range(N_TEST)])
    assert torch.equal(tissue["fixed"], test["fixed"]), "the same pairs, only the labels differ"
    for name in ["no registration", "supervised", "unsupervised", "label-supervised"]:
        warped_tissue = warps.warp_labels(tissue["moving_labels"], fields[name])
        dice = metrics.dice(warped_tissue, tissue["fixed_labels"]).nanmean(dim=1).mean()
        print(f"{name:18s} tissue Dice {float(dice):.3f}")
""")

nb.exercise("""
    **Exercise 3: weak supervision, the combination.** Labels and a true field rarely exist together, but
    labels and images do. Fine-tune the pre-trained unsupervised network for a few steps with the label loss
    (`supervision="labels"`, `weight=1.0`) and see how its Dice and EPE on the held-out pairs change. Keep the
    number of steps small (about 10 in fast mode, 100 otherwise) and copy the network first (`copy.deepcopy`)
    so the original stays as it was.
""", starter="""
    # your code here
""", solution="""
    import copy

    base = models.pretrained("voxelmorph2d_brain", device=device)
    tuned = copy.deepcopy(base)
    train.train(tuned, train_pairs, train.TrainConfig(supervision="labels", weight=1.0, batch_size=BATCH,
                                                      steps=10 if FAST else 100), progress=False)
    with torch.no_grad():
        for name, network in [("pre-trained", base), ("+ label fine-tuning", tuned.eval())]:
            score = scores_of(network(test["moving"], test["fixed"]).disp)
            print(f"{name:20s} Dice {float(score['Dice'].mean()):.3f}  EPE {float(score['EPE'].mean()):.2f}"
                  f"  folding {float(score['folding %'].mean()):.3f} %")
""")

nb.markdown("""
    ## Check what this notebook taught

    The ground truth is exact (Dice 1, zero error, no folds), so supervised training and end-point errors are
    possible on synthetic pairs; every network was trained with its own loss on the same pairs and scored on
    the same held-out pairs; the zero field's end-point error is the size of the true motion.
""")

nb.code("""
    assert results["true field"]["EPE"].max() == 0 and (results["true field"]["Dice"] == 1).all()
    assert torch.allclose(results["no registration"]["EPE"],
                          torch.linalg.vector_norm(true_disp, dim=1).flatten(1).mean(dim=1))
    assert float(results["no registration"]["EPE"].mean()) > 1.0, "the held-out pairs really move"
    for name in SUPERVISIONS:
        assert histories[name].step > 0 and all(torch.isfinite(torch.tensor(histories[name].losses))), name
        assert results[name]["Dice"].shape == (N_TEST,) and torch.isfinite(results[name]["EPE"]).all()
    assert float(results["pre-trained unsupervised (nb 03)"]["Dice"].mean()) > float(
        results["no registration"]["Dice"].mean()) + 0.05, "a trained unsupervised network improves Dice"
    print("all checks passed")
""")

nb.write()
