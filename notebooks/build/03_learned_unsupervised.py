"""Build notebooks/03_learned_unsupervised.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("03_learned_unsupervised")

nb.markdown("""
    # 03 · Learned registration without labels (VoxelMorph)

    **What you will learn (about 30 minutes, 5 minutes of it running on a laptop CPU):** how VoxelMorph
    turns registration into a network that reads a *(moving, fixed)* pair and outputs a displacement field;
    why the spatial transformer (a differentiable warp) lets it learn from images alone, with no true field
    and no labels (*unsupervised*: similarity + smoothness); how to train it on 2D brain subjects with a
    progress bar; how a trained network registers a new pair in milliseconds, and how it compares with the
    classical pipeline of notebook 02 on the same pairs; and how the regulariser weight trades accuracy
    (Dice) against a plausible field (no folding).

    In notebook 02 every pair was an optimisation of its own, from scratch, taking seconds. A learned method
    pays that cost once, during training, over thousands of pairs; registering a new pair is then a single
    forward pass.
""")

nb.code("""
    import copy
    import os
    import time

    import matplotlib.pyplot as plt
    import torch
    from torch.utils.data import default_collate

    import regedu
    from regedu import data, metrics, models, train, viz, warps, widgets

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    GPU = device.type == "cuda"

    # Fast mode (REGEDU_FAST=1, what the tests run) only checks that everything works: a handful of training
    # steps. Full mode trains for 600 steps or 2 minutes, whichever comes first, on a CPU (3000 on a GPU).
    N_TEST = 2 if FAST else 8                                   # held-out pairs for every comparison
    BATCH = 2 if FAST else (8 if GPU else 4)                    # pairs per training step
    TRAINING = dict(steps=10) if FAST else (dict(steps=3000) if GPU else dict(steps=600, minutes=2.0))
    VALIDATE_EVERY = 5 if FAST else (250 if GPU else 25)
    WEIGHTS = [0.01, 10.0] if FAST else [0.01, 0.1, 1.0, 10.0]  # regulariser weights of the trade-off curve
    FINE_TUNING = dict(steps=6) if FAST else (dict(steps=600) if GPU else dict(steps=60, minutes=0.4))
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. The pairs: two synthetic subjects, with their labels

    `regedu.data.TemplatePairs` makes pairs from the 2 mm MNI axial slice (96 × 112 voxels). In
    `"subject_to_subject"` mode each pair is two *synthetic subjects*: the template pushed through two
    different random transforms (a small affine plus a smooth deformation), with random intensity changes
    (gamma, bias field, noise), so no two images look exactly alike. Every item also carries the label maps
    (here the 17 geometric parcels of grey and white matter, `parcels=True`) and the true field; this notebook
    uses the labels only to *score* registrations, never to train.

    Item `i` of a dataset is generated from its seed and `i`, so the same seed always gives the same pairs.
    Training pairs come from seed 0; the **held-out pairs** (seed 7) are never trained on. Notebook 04 uses
    the same held-out pairs.
""")

nb.code("""
    kind = dict(mode="subject_to_subject", parcels=True, device=device)
    train_pairs = data.TemplatePairs(length=10**6, seed=0, **kind)
    validation_pairs = data.TemplatePairs(length=2 if FAST else 4, seed=3, **kind)
    test_pairs = data.TemplatePairs(length=N_TEST, seed=7, **kind)
    test = default_collate([test_pairs[i] for i in range(N_TEST)])   # one batch of all held-out pairs
    names = data.brain_label_names(parcels=True)

    item = test_pairs[0]
    print({key: tuple(value.shape) for key, value in item.items()})
""", expect="{'moving': (1, 96, 112), 'fixed': (1, 96, 112), 'moving_labels': (1, 96, 112), "
             "'fixed_labels': (1, 96, 112), 'disp': (2, 96, 112)}\n")

nb.markdown("""
    The first held-out pair. The right panel draws the *moving* labels as contours on the *fixed* image: where
    they miss the fixed anatomy is what registration has to fix. The images are shown as a radiologist reads
    them (anterior up, the patient's right on the left).
""")

nb.code("""
    fig, axes = viz.new_figure(1, 3)
    viz.show_image(test["moving"][:1], axes[0, 0], "moving", orientation=True)
    viz.show_image(test["fixed"][:1], axes[0, 1], "fixed", orientation=True)
    viz.overlay(test["fixed"][:1], test["moving_labels"][:1], style="contour", ax=axes[0, 2],
                orientation=True, title="moving labels on fixed")
    fig
""")

nb.markdown("""
    ## 2. The network: a U-Net, a flow head and a spatial transformer

    `regedu.models.VoxelMorph(ndim=2)` (Balakrishnan et al., IEEE TMI 2019) is three pieces:

    1. a **U-Net** reads the two images stacked as channels, `(B, 2, 96, 112)`: an encoder halves the size
       four times (16, 32, 32, 32 channels), a decoder brings it back with skip connections, so every output
       voxel sees both fine detail and a wide context (images are padded to a multiple of 16, the network's
       factor);
    2. a **flow head**, a 3 × 3 convolution to 2 channels: the displacement field `disp`, `(B, 2, 96, 112)`,
       in voxels, as everywhere in regedu. It starts with tiny weights, so the untrained network predicts an
       almost-zero field;
    3. a **spatial transformer**: `warped = warps.warp(moving, disp)`, bilinear interpolation, which is
       differentiable in `disp`. That is the trick: a loss computed on the *warped image* sends gradients back
       through the warp into the U-Net's weights.
""")

nb.code("""
    model = models.VoxelMorph(ndim=2).to(device)
    print(f"{sum(p.numel() for p in model.parameters()):,} weights")
    with torch.no_grad():
        warped, disp = model(test["moving"][:1], test["fixed"][:1])
    print("field shape:", tuple(disp.shape))
    print("untrained field is almost zero:", bool(disp.abs().max() < 0.01))
    same = torch.allclose(warped, warps.warp(test["moving"][:1], disp), atol=1e-5)
    print("warped is warp(moving, disp):", same)
""", expect="109,170 weights\nfield shape: (1, 2, 96, 112)\nuntrained field is almost zero: True\n"
             "warped is warp(moving, disp): True\n")

nb.markdown("""
    ## 3. The unsupervised loss

    Without a true field or labels, the network learns from what classical registration optimises, now
    averaged over many pairs:

    $$\\mathcal{L} = \\underbrace{\\mathrm{NCC}(\\text{fixed}, \\text{warped})}_{\\text{similarity}}
    \\; + \\; \\lambda \\, \\underbrace{\\operatorname{mean}
    \\lVert \\nabla \\text{disp} \\rVert^2}_{\\text{diffusion}}$$

    `losses.ncc` is minus the local (9 × 9 window) normalised cross-correlation, so it ignores the slow
    brightness changes of the subjects; `losses.diffusion` penalises fields that change quickly from voxel to
    voxel. `TrainConfig` holds every choice of a training run; `train.compute_loss` is the loss of one batch.
""")

nb.code("""
    config = train.TrainConfig(supervision="unsupervised", similarity="ncc", regulariser="diffusion",
                               weight=1.0, lr=1e-3, batch_size=BATCH, validate_every=VALIDATE_EVERY,
                               **TRAINING)
    with torch.no_grad():
        first_loss = float(train.compute_loss(model, {key: value[:2] for key, value in test.items()}, config))
    print(f"loss of the untrained network on two held-out pairs: {first_loss:.3f}")
""")

nb.markdown("""
    ## 4. Training, with a progress bar and a live loss curve

    `train.train` runs the loop: draw a batch of pairs, predict, compute the loss, step Adam. The bar shows
    the loss and, every few steps, the mean Dice on 4 validation pairs (the labels are used here to *watch*,
    not to train). The loss is noisy because every batch holds new pairs: look at its trend. Expect a plateau
    at the start (the network first has to discover which way to move), then a steady fall.
""")

nb.code("""
    live = viz.LiveLossPlot(title="training loss (NCC + diffusion)", xlabel="step")
    history = train.train(model, train_pairs, config, validation=validation_pairs, callback=live)
    live.finish()
    print(f"{history.step} steps in {history.seconds:.0f} s")
""")

nb.code("""
    fig, axes = viz.new_figure(1, 2, width=10, height=3.2)
    smooth = history.step // 20 if history.step >= 40 else None
    viz.loss_curve(history, ax=axes[0, 0], smooth=smooth, xlabel="step",
                   title="training loss (lower is better)")
    if history.validation:   # (none if training stopped before the first validation)
        axes[0, 1].plot(*zip(*history.validation), "o-")
    axes[0, 1].set(xlabel="step", ylabel="mean Dice", title="validation Dice (higher is better)")
    axes[0, 1].grid(alpha=0.3)
    fig
""")

nb.markdown("""
    A couple of minutes on a CPU is only the beginning of the curve: VoxelMorph keeps improving for thousands
    of steps. So that you do not have to wait, the kit ships a network trained exactly this way (same model,
    same loss, weight 1, pairs from other seeds) for longer: `models.pretrained("voxelmorph2d_brain")`
    (`scripts/train_pretrained.py` made it; its log sits beside the weights in `regedu/weights/`).

    ## 5. Registering held-out pairs in milliseconds

    `train.evaluate` registers each held-out pair in one forward pass (one pair at a time, to measure the
    time a user would wait) and reports the mean Dice over labels and pairs, the folding fraction (share of
    voxels where the Jacobian determinant is <= 0) and the seconds per pair. The first call of a network is
    slower (memory allocation, kernel choice), so we warm it up once.
""")

nb.code("""
    pretrained = models.pretrained("voxelmorph2d_brain", device=device)
    with torch.no_grad():
        pretrained(test["moving"][:1], test["fixed"][:1])   # warm-up
    before = metrics.dice(test["moving_labels"], test["fixed_labels"]).nanmean(dim=1)
    scores = {"before (no registration)": {"dice": float(before.mean()), "folding": 0.0,
                                           "seconds_per_pair": 0.0},
              "pre-trained network": train.evaluate(pretrained, test_pairs, batch_size=1),
              "your network (this run)": train.evaluate(model, test_pairs, batch_size=1)}
    print(f"pre-trained network: {1000 * scores['pre-trained network']['seconds_per_pair']:.1f} ms per pair")
""")

nb.markdown("""
    One pair in detail. Top row: the images and the warped moving labels on the fixed image. Bottom row: the
    difference images before and after (on one colour scale: the after-panel should be much paler), the fixed
    grid drawn where it samples the moving image, and the Jacobian determinant (blue: shrinking, red:
    growing, yellow: folded voxels, if any).
""")

nb.code("""
    with torch.no_grad():
        warped, disp = pretrained(test["moving"], test["fixed"])
    viz.registration_summary(test["moving"][:1], test["fixed"][:1], warped[:1], disp[:1],
                             test["moving_labels"][:1], test["fixed_labels"][:1], orientation=True,
                             title="pre-trained VoxelMorph on a held-out pair")
""")

nb.markdown("""
    ## 6. Learned versus classical, on the same pairs

    Now the default classical pipeline of notebook 02, `regedu.register(moving, fixed)` (affine, then a
    B-spline deformation, optimised for each pair), on exactly the same held-out pairs, on the same device.
""")

nb.code("""
    classical = [regedu.register(test["moving"][i:i + 1], test["fixed"][i:i + 1],
                                 moving_labels=test["moving_labels"][i:i + 1], progress=False)
                 for i in range(N_TEST)]
    classical_disp = torch.cat([result.disp for result in classical])
    classical_labels = torch.cat([result.warped_labels for result in classical])
    scores["classical (affine + B-spline)"] = {
        "dice": float(metrics.dice(classical_labels, test["fixed_labels"]).nanmean(dim=1).mean()),
        "folding": float(metrics.folding_fraction(classical_disp).mean()),
        "seconds_per_pair": sum(result.seconds for result in classical) / N_TEST}

    print(f"{'method':32s} {'mean Dice':>9s} {'folding %':>9s} {'ms per pair':>12s}")
    for name, score in scores.items():
        print(f"{name:32s} {score['dice']:9.3f} {100 * score['folding']:9.3f} "
              f"{1000 * score['seconds_per_pair']:12.1f}")
    speedup = (scores["classical (affine + B-spline)"]["seconds_per_pair"]
               / scores["pre-trained network"]["seconds_per_pair"])
    print(f"the network registers a pair {speedup:.0f} times faster than the classical pipeline")
""")

nb.markdown("""
    Dice per label, for every method (bars: mean over the held-out pairs, whiskers: their spread). Look for
    labels where the network is clearly below the classical pipeline: those are the thin or small parcels,
    where a few voxels of error cost a lot of Dice.
""")

nb.code("""
    label_values = [v for v in test["fixed_labels"].unique().tolist() if v != 0]
    tables = {"before": metrics.dice(test["moving_labels"], test["fixed_labels"], labels=label_values),
              "classical": metrics.dice(classical_labels, test["fixed_labels"], labels=label_values),
              "pre-trained network": metrics.dice(warps.warp_labels(test["moving_labels"], disp),
                                                  test["fixed_labels"], labels=label_values)}
    viz.dice_per_label(tables, names=names, labels=label_values,
                       title=f"Dice per label, {N_TEST} held-out pairs")
""")

nb.markdown("""
    **What to take away.** The classical pipeline optimises *this* pair for hundreds of iterations, so it is
    usually a little more accurate; the network gives an answer of similar quality tens to hundreds of times
    faster, because the optimisation happened once, during training. That speed is what makes learned methods
    attractive for large studies, for 3D, and inside other pipelines. The price: a network is only as good as
    its training data (exercise 2 shows what happens outside it), and it needed minutes to hours of training.

    ## 7. The regularisation trade-off

    The weight $\\lambda$ of the diffusion term decides how smooth the field must be. A small $\\lambda$ lets
    the network chase every intensity difference (higher Dice, but an implausible field that may fold: voxels
    swapping places); a large one keeps the field smooth at the cost of accuracy. To see the whole curve
    without training from scratch for each weight, we start each time from the pre-trained network (trained
    with $\\lambda = 1$) and fine-tune it briefly with another weight (with a smaller learning rate, so as not
    to undo what it learned).
""")

nb.code("""
    tradeoff = {}
    for weight in WEIGHTS:
        network = copy.deepcopy(pretrained)
        train.train(network, train_pairs, config, weight=weight, lr=3e-4, **FINE_TUNING, validate_every=10**9,
                    progress=False)
        network.eval()
        with torch.no_grad():
            warped_w, disp_w = network(test["moving"], test["fixed"])
        tradeoff[weight] = {
            "dice": float(metrics.dice(warps.warp_labels(test["moving_labels"], disp_w),
                                       test["fixed_labels"]).nanmean(dim=1).mean()),
            "folding_percent": 100 * float(metrics.folding_fraction(disp_w).mean()),
            "sdlogj": float(metrics.sdlogj(disp_w).mean()),
            "pair": (warped_w[:1], disp_w[:1])}
        result = tradeoff[weight]
        print(f"weight {weight:5g}: Dice {result['dice']:.3f}, folding {result['folding_percent']:.3f} %, "
              f"SDlogJ {result['sdlogj']:.3f}")
""")

nb.markdown("""
    The curve. Left: Dice against the irregularity of the field, one point per weight, labelled with its
    weight and its share of folded voxels. The irregularity is SDlogJ, the standard deviation of the
    log-Jacobian determinant (0 for a rigid shift; it grows as the field stretches and squeezes more and more
    unevenly); it keeps measuring even where no voxel folds yet. Good fields sit top-left: accurate and
    regular. Right: the folding fraction itself against the weight.
""")

nb.code("""
    fig, axes = viz.new_figure(1, 2, width=10, height=3.6)
    axes[0, 0].plot([tradeoff[w]["sdlogj"] for w in WEIGHTS], [tradeoff[w]["dice"] for w in WEIGHTS], "o-")
    for w in WEIGHTS:
        axes[0, 0].annotate(f"λ = {w:g}\\n{tradeoff[w]['folding_percent']:.2f}% folded",
                            (tradeoff[w]["sdlogj"], tradeoff[w]["dice"]), textcoords="offset points",
                            xytext=(6, -4), fontsize="small", va="top")
    axes[0, 0].margins(x=0.25, y=0.2)
    axes[0, 0].set(xlabel="SDlogJ (irregularity of the field)", ylabel="mean Dice on held-out pairs",
                   title="accuracy against regularity")
    axes[0, 1].semilogx(WEIGHTS, [tradeoff[w]["folding_percent"] for w in WEIGHTS], "o-", color="tab:red")
    axes[0, 1].set_ylim(bottom=0)
    axes[0, 1].set(xlabel="regulariser weight λ", ylabel="folded voxels (%)",
                   title="folding against the weight")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig
""")

nb.markdown("""
    Slide through the weights to see one held-out pair: the warped image, its difference to the fixed image,
    the grid and the Jacobian map. With a small weight look for crowded grid lines and yellow (folded)
    voxels; with a large one, for the residual differences the smooth field cannot remove.
""")

nb.code("""
    widgets.regularisation_widget({w: tradeoff[w]["pair"] for w in WEIGHTS}, fixed=test["fixed"][:1],
                                  moving=test["moving"][:1], orientation=True)
""")

nb.markdown("## Exercises")

nb.exercise("""
    **Exercise 1: the best of both worlds.** A network's field is a very good *starting point* for a short
    classical optimisation on the pair itself (test-time *instance optimisation*). Refine the pre-trained
    network's field on the first held-out pair with `train.instance_optimize(pretrained, moving, fixed,
    steps=50)`, then compare the Dice of the network alone, the refined field and the classical pipeline
    (`classical[0]`). How long did the refinement take?
""", starter="""
    moving, fixed = test["moving"][:1], test["fixed"][:1]
    moving_labels, fixed_labels = test["moving_labels"][:1], test["fixed_labels"][:1]
    # your code here
""", solution="""
    moving, fixed = test["moving"][:1], test["fixed"][:1]
    moving_labels, fixed_labels = test["moving_labels"][:1], test["fixed_labels"][:1]

    def mean_dice(field):
        return float(metrics.dice(warps.warp_labels(moving_labels, field), fixed_labels).nanmean())

    with torch.no_grad():
        network_disp = pretrained(moving, fixed).disp
    start = time.perf_counter()
    _, refined_disp = train.instance_optimize(pretrained, moving, fixed, steps=50)
    seconds = time.perf_counter() - start
    print(f"network alone      Dice {mean_dice(network_disp):.3f}")
    print(f"network + 50 steps Dice {mean_dice(refined_disp):.3f}  ({seconds:.2f} s)")
    print(f"classical          Dice {mean_dice(classical[0].disp):.3f}  ({classical[0].seconds:.2f} s)")
""")

nb.exercise("""
    **Exercise 2: outside the training distribution.** The network saw only the deformations that
    `TemplatePairs` draws by default (rotations up to about 5°, smooth deformations of about 3 voxels). Make
    a few pairs with larger motions, for example `data.TemplatePairs(3, mode="subject_to_subject",
    parcels=True, seed=11, rotation=15.0, magnitude=8.0)` (one pair is enough in fast mode), and compare the
    Dice of the pre-trained network and of `regedu.register` on them. Which one suffers more, and why?
""", starter="""
    # your code here
""", solution="""
    n_hard = 1 if FAST else 3
    hard_pairs = data.TemplatePairs(n_hard, mode="subject_to_subject", parcels=True, seed=11, rotation=15.0,
                                    magnitude=8.0, device=device)
    hard = default_collate([hard_pairs[i] for i in range(n_hard)])
    with torch.no_grad():
        hard_disp = pretrained(hard["moving"], hard["fixed"]).disp
    hard_labels = warps.warp_labels(hard["moving_labels"], hard_disp)
    network_dice = metrics.dice(hard_labels, hard["fixed_labels"]).nanmean(1)
    classical_dice = []
    for i in range(n_hard):
        result = regedu.register(hard["moving"][i:i + 1], hard["fixed"][i:i + 1],
                                 moving_labels=hard["moving_labels"][i:i + 1], progress=False)
        classical_dice.append(metrics.dice(result.warped_labels, hard["fixed_labels"][i:i + 1]).nanmean())
    classical_dice = torch.stack(classical_dice)
    before_dice = metrics.dice(hard["moving_labels"], hard["fixed_labels"]).nanmean(1)
    print("before    ", [round(v, 3) for v in before_dice.tolist()])
    print("network   ", [round(v, 3) for v in network_dice.tolist()])
    print("classical ", [round(v, 3) for v in classical_dice.tolist()])
    # The classical pipeline starts with an affine stage and optimises each pair, so larger motions cost it
    # little; the network never saw such motions during training and only partly recovers them.
""")

nb.exercise("""
    **Exercise 3: is the network inverse-consistent?** Register the first held-out pair both ways, `u` =
    network(moving, fixed) and `v` = network(fixed, moving). If the two fields were exact inverses, composing
    them would give the identity: `warps.compose(v, u)` would be zero everywhere. Measure its mean length in
    voxels and compare with the mean length of `u` itself. (Notebook 05 builds networks that are invertible by
    construction.)
""", starter="""
    # your code here
""", solution="""
    with torch.no_grad():
        u = pretrained(test["moving"][:1], test["fixed"][:1]).disp
        v = pretrained(test["fixed"][:1], test["moving"][:1]).disp
    # compose(v, u)(x) = u(x) + v(x + u(x)): go with u, then come back with v
    round_trip = warps.compose(v, u)
    size = torch.linalg.vector_norm(u, dim=1).mean()
    error = torch.linalg.vector_norm(round_trip, dim=1).mean()
    print(f"mean |u| = {size:.2f} voxels, mean inverse-consistency error = {error:.2f} voxels")
    assert error < size
""")

nb.markdown("""
    ## Check what this notebook taught

    The network learned to register without labels or true fields: the pre-trained one improves Dice on pairs
    it never saw, produces almost no folds, and is much faster per pair than the classical pipeline; and a
    larger regulariser weight gives a smoother field.
""")

nb.code("""
    network_score = scores["pre-trained network"]
    classical_score = scores["classical (affine + B-spline)"]
    assert network_score["dice"] > float(before.mean()) + 0.1, "the network improves Dice on held-out pairs"
    assert network_score["folding"] < 0.01, "less than 1% of the voxels fold"
    assert network_score["seconds_per_pair"] < classical_score["seconds_per_pair"] / 5, "one pass is fast"
    assert classical_score["dice"] > float(before.mean()) + 0.1
    assert tradeoff[max(WEIGHTS)]["sdlogj"] < tradeoff[min(WEIGHTS)]["sdlogj"], "more weight, smoother"
    assert history.step > 0 and all(torch.isfinite(torch.tensor(history.losses))), "training ran, without NaN"
    print("all checks passed")
""")

nb.write()
