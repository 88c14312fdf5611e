"""Build notebooks/03_learned_unsupervised.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("03_learned_unsupervised", checks="regedu.course.lesson03")

nb.markdown("""
    # 03 · Learned registration without labels (VoxelMorph)

    **What you will learn (about 30 minutes, under 5 minutes of it running on a laptop CPU):** how VoxelMorph
    turns registration into a network that reads a *(moving, fixed)* pair and outputs a displacement field;
    why the spatial transformer (a differentiable warp) lets it learn from images alone, with no true field
    and no labels (*unsupervised*: similarity + smoothness); what the first minute of training looks like (the
    loss falls, the field starts to move); how a fully trained network registers a new pair in milliseconds,
    and how it compares with the classical pipeline of notebook 02 on the same pairs; and how the regulariser
    weight trades accuracy (Dice) against a plausible field (no folding), shown by four networks trained from
    scratch at four weights.

    In notebook 02 every pair was an optimisation of its own, from scratch, taking seconds. A learned method
    pays that cost once, during training, over thousands of pairs; registering a new pair is then a single
    forward pass.
""")

nb.code("""
    import json
    import os
    import time

    import torch
    from torch.utils.data import default_collate

    import regedu
    from regedu import data, losses, metrics, models, train, viz, warps, widgets
    from regedu.course import lesson03 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)
    GPU = device.type == "cuda"

    # Live training is only the start of a run: a handful of steps in fast mode (REGEDU_FAST=1, what the
    # tests run), 1.25 minutes in full mode on a CPU (at most 300 steps; 1000 on a GPU). Every comparison,
    # figure and conclusion uses the shipped, fully trained networks, which load in a blink, so they are
    # real in both modes; fast mode only uses fewer held-out pairs.
    N_TEST = 4 if FAST else 16        # held-out pairs for the networks (milliseconds each)
    N_CLASSICAL = 2 if FAST else 8    # the first of them, registered by the classical pipeline (seconds each)
    BATCH = 8 if GPU else 4           # pairs per training step
    TRAINING = dict(steps=8) if FAST else (dict(steps=1000) if GPU else dict(steps=300, minutes=1.25))
    VALIDATE_EVERY = 4 if FAST else (100 if GPU else 25)
    WEIGHTS = [0.01, 0.1, 1.0, 10.0]  # regulariser weights of the four shipped networks of section 7
    print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
    ## 1. The pairs: varied brain sections, with their labels

    `regedu.data.BrainSlicePairs` makes 2D pairs from the 2 mm MNI template (96 × 112 voxels). Each pair is
    drawn differently: a section at any axial level of the cerebrum; two *synthetic subjects* made from it by
    two random transforms (an affine plus a smooth deformation, from barely any motion to several voxels);
    random intensity changes (gamma, bias field, noise, blur) for each image; and, for half of the pairs, a
    synthetic head (skull and scalp) around the brain. Every item also carries the tissue label maps
    (CSF-like, grey matter, white matter) and the true field; this notebook uses the labels only to *score*
    registrations, never to train.

    This is the distribution the shipped networks of this notebook were trained on. Item `i` of a dataset is
    generated from its seed and `i`, so the same seed always gives the same pairs, and different seeds give
    unrelated pairs. The shipped networks trained on seed 1,000,000 (and were validated on seed 5,000,000);
    our live run below trains on seed 0. The **held-out pairs** here come from seed 7: the same kind of
    pairs, none of which any network saw during training. They are in-distribution pairs; for pairs made
    *differently* (other slicing, another deformation model, other intensity changes),
    `benchmarks/heldout.py` holds a test set, and the README reports the shipped networks' scores on it.
""")

nb.code("""
    train_pairs = data.BrainSlicePairs(10**6, seed=0, device=device)
    validation_pairs = data.BrainSlicePairs(4, seed=3, device=device)
    test_pairs = data.BrainSlicePairs(N_TEST, seed=7, device=device)
    test = default_collate([test_pairs[i] for i in range(N_TEST)])   # one batch of all held-out pairs
    names = data.brain_label_names()   # {0: background, 1: CSF-like, 2: grey matter, 3: white matter}

    item = test_pairs[0]
    print({key: tuple(value.shape) for key, value in item.items()})
""", expect="{'moving': (1, 96, 112), 'fixed': (1, 96, 112), 'moving_labels': (1, 96, 112), "
             "'fixed_labels': (1, 96, 112), 'disp': (2, 96, 112)}\n")

nb.markdown("""
    Four held-out pairs. Top row: the moving images; bottom row: the fixed images, with the *moving* labels
    drawn as contours on them (the legend names each colour). Where the contours miss the fixed anatomy is
    what registration has to fix. The images are shown as a radiologist reads them (anterior up, the
    patient's right on the left).
""")

nb.code("""
    shown = min(4, N_TEST)
    fig, axes = viz.new_figure(2, shown, width=3.2 * shown + 1.5)
    for i in range(shown):
        pair = slice(i, i + 1)
        viz.show_image(test["moving"][pair], axes[0, i], f"pair {i}: moving", orientation=True)
        viz.overlay(test["fixed"][pair], test["moving_labels"][pair], style="contour", ax=axes[1, i],
                    names=names if i == shown - 1 else None, orientation=True, title="fixed + moving labels")
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
        warped, untrained_disp = model(test["moving"][:1], test["fixed"][:1])
    print("field shape:", tuple(untrained_disp.shape))
    print("untrained field is almost zero:", bool(untrained_disp.abs().max() < 0.01))
    same = torch.allclose(warped, warps.warp(test["moving"][:1], untrained_disp), atol=1e-5)
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

    `losses.ncc` is minus the **squared** local correlation: each image is standardised (zero mean, unit
    variance), then at every voxel the correlation coefficient $\\rho$ of the two images inside a 9 × 9 window
    is squared, and the loss is $-\\operatorname{mean}\\rho^2$ over the voxels. It lies in $[-1, 0]$ and
    reaches $-1$ where, in every window, one image is a linear function of the other, whatever the local
    brightness and contrast, so it ignores the slow brightness changes of the subjects. The cell below
    compares an image with itself, with its negative and with the unaligned moving image.
    `losses.diffusion` penalises fields that change quickly from voxel to voxel. `TrainConfig` holds every
    choice of a training run; `train.compute_loss` is the loss of one batch.
""")

nb.predict("""
    `ncc(fixed, fixed)` is about −1, a perfect match. What will `ncc(fixed, 1 − fixed)` be, the image
    against its own negative: about +1, about 0, or about −1?
""", """
    About −1, the same number as for the image itself. The negative correlates at $\\rho = -1$ in every
    window that has any contrast, and $\\rho$ is squared: an inverted contrast scores as well as the
    original. So NCC cannot tell a T1 from a T1 with inverted brightness, a property notebook 02's exercise 1
    uses.
""")

nb.code("""
    fixed0 = test["fixed"][:1]
    print(f"ncc(fixed, fixed)     = {float(losses.ncc(fixed0, fixed0)):.3f}")
    print(f"ncc(fixed, 1 - fixed) = {float(losses.ncc(fixed0, 1 - fixed0)):.3f}   (inverted: the same)")
    print(f"ncc(fixed, moving)    = {float(losses.ncc(fixed0, test['moving'][:1])):.3f}   (not aligned yet)")

    # the recipe of the shipped network (Adam, learning rate 2e-3 lowered along a cosine), only much shorter
    config = train.TrainConfig(supervision="unsupervised", similarity="ncc", regulariser="diffusion",
                               weight=1.0, lr=2e-3, schedule="cosine", batch_size=BATCH,
                               validate_every=VALIDATE_EVERY, **TRAINING)
    with torch.no_grad():
        first_loss = float(train.compute_loss(model, {key: value[:2] for key, value in test.items()}, config))
    print(f"loss of the untrained network on two held-out pairs: {first_loss:.3f}")
""")

nb.markdown("""
    ## 4. Watch it start: a minute of training

    `train.train` runs the loop: draw a batch of pairs, predict, compute the loss, step Adam. The bar shows
    the loss and, every few steps, the mean Dice on 4 validation pairs (the labels are used here to *watch*,
    not to train). The loss is noisy because every batch holds new pairs, some easy and some hard: look at its
    trend. In full mode this is a minute and a quarter on a laptop CPU. The validation curve starts at step 0,
    the untrained network (which barely moves anything, so it scores about as no registration).
""")

nb.code("""
    start_dice = train.evaluate(model, validation_pairs)["dice"]   # the untrained network, for the curve
    live = viz.LiveLossPlot(title="training loss (NCC + diffusion)", xlabel="step")
    history = train.train(model, train_pairs, config, validation=validation_pairs, callback=live)
    live.finish()
    tenth = max(1, history.step // 10)
    first_tenth = sum(history.losses[:tenth]) / tenth
    last_tenth = sum(history.losses[-tenth:]) / tenth
    print(f"{history.step} steps in {history.seconds:.0f} s; mean loss of the first tenth of the steps "
          f"{first_tenth:.3f}, of the last tenth {last_tenth:.3f}")
""")

nb.markdown("""
    The loss curve (with its running mean in a bolder line) and the validation Dice; then the field the
    network now predicts for the first held-out pair. Before training the network output an almost-zero field
    (left: a straight grid); after a minute the field has started to move (middle: the fixed grid drawn where
    it samples the moving image; right: the displacement as colour, its direction as the hue and its length
    as the strength of the colour, white where nothing moves).
""")

nb.code("""
    fig, axes = viz.new_figure(1, 2, width=10, height=3.2)
    smooth = history.step // 20 if history.step >= 40 else None
    viz.loss_curve(history, ax=axes[0, 0], smooth=smooth, xlabel="step",
                   title="training loss (lower is better)")
    axes[0, 1].plot(*zip((0, start_dice), *history.validation), "o-")
    axes[0, 1].set(xlabel="step", ylabel="mean Dice", title="validation Dice (higher is better)")
    axes[0, 1].grid(alpha=0.3)
    fig
""")

nb.code("""
    model.eval()
    with torch.no_grad():
        live_disp = model(test["moving"][:1], test["fixed"][:1]).disp
    fig, axes = viz.new_figure(1, 3)
    viz.deformation_grid(untrained_disp, ax=axes[0, 0], image=test["moving"][:1], orientation=True,
                         title="untrained network")
    viz.deformation_grid(live_disp, ax=axes[0, 1], image=test["moving"][:1], orientation=True,
                         title=f"after {history.step} steps")
    viz.displacement_colour(live_disp, ax=axes[0, 2], orientation=True, title=f"after {history.step} steps")
    untrained_length = float(untrained_disp.norm(dim=1).mean())   # voxels, mean over the image
    live_length = float(live_disp.norm(dim=1).mean())
    fig.suptitle(f"mean displacement length: {untrained_length:.3f} voxels untrained, "
                 f"{live_length:.2f} voxels after {history.step} steps")
    fig
""")

nb.markdown("""
    A minute is only the very beginning of the curve: VoxelMorph keeps improving for thousands of steps. So
    that you do not have to wait, the kit ships a network trained exactly this way (same model, same loss,
    weight 1, same recipe) for much longer: `models.pretrained("voxelmorph2d_brain")`. Its log sits beside the
    weights (`regedu/weights/voxelmorph2d_brain.log`, written by `scripts/train_pretrained.py`, which can
    retrain it); the cell prints how long it trained. **From here on, every comparison uses shipped
    networks.** (`regedu.register(..., method="voxelmorph")` uses a multiscale cousin by default,
    `pyramid2d_brain`: three small U-Nets, coarse to fine, trained on the same pairs; lesson 06 shows why
    coarse to fine copes with larger motion.)

    ## 5. Registering held-out pairs in milliseconds

    `train.evaluate` registers each held-out pair in one forward pass (one pair at a time, to measure the
    time a user would wait) and reports the mean Dice over labels and pairs, the folding fraction (share of
    voxels where the Jacobian determinant is <= 0) and the seconds per pair. The first call of a network is
    slower (memory allocation, kernel choice), so we warm it up once.
""")

nb.code("""
    pretrained = models.pretrained("voxelmorph2d_brain", device=device)
    log = json.loads(models.pretrained_path("voxelmorph2d_brain").with_suffix(".log").read_text())
    print(f"shipped network: {log['steps']} steps of {log['config']['batch_size']} pairs, "
          f"{log['seconds'] / 3600:.1f} hours on {log['machine']}; your run: {history.step} steps")
    with torch.no_grad():
        pretrained(test["moving"][:1], test["fixed"][:1])   # warm-up
    before = metrics.dice(test["moving_labels"], test["fixed_labels"]).nanmean(dim=1)   # (N_TEST,)
    network = train.evaluate(pretrained, test_pairs, batch_size=1)
    print(f"{N_TEST} held-out pairs: mean Dice {before.mean():.3f} before, {network['dice']:.3f} after; "
          f"{100 * network['folding']:.3f}% folded voxels; "
          f"{1000 * network['seconds_per_pair']:.1f} ms per pair")
""")

nb.markdown("""
    One pair in detail. Top row: the images and the warped moving labels on the fixed image. Bottom row: the
    difference images before and after (on one colour scale: the after-panel should be much paler), the fixed
    grid drawn where it samples the moving image, and the Jacobian determinant det J (the area of moving image
    each fixed voxel reads: blue below 1, red above 1, white at 1; yellow marks folded voxels, det J <= 0, if
    any).
""")

nb.code("""
    with torch.no_grad():
        warped, disp = pretrained(test["moving"], test["fixed"])
    viz.registration_summary(test["moving"][:1], test["fixed"][:1], warped[:1], disp[:1],
                             test["moving_labels"][:1], test["fixed_labels"][:1], orientation=True,
                             names=names, title="shipped VoxelMorph on a held-out pair")
""")

nb.markdown("""
    ## 6. Learned versus classical, on the same pairs

    Now the default classical pipeline of notebook 02, `regedu.register(moving, fixed)` (affine, then a
    B-spline deformation, optimised for each pair), on the same device. It takes seconds a pair, so it
    registers only the first `N_CLASSICAL` held-out pairs, and the table compares every method on exactly
    those pairs: no registration, your minute-old network, the shipped network and the classical pipeline.
""")

nb.code("""
    subset = range(N_CLASSICAL)
    classical = [regedu.register(test["moving"][i:i + 1], test["fixed"][i:i + 1],
                                 moving_labels=test["moving_labels"][i:i + 1], progress=False)
                 for i in subset]
    classical_disp = torch.cat([result.disp for result in classical])
    classical_labels = torch.cat([result.warped_labels for result in classical])
    classical_dice = metrics.dice(classical_labels, test["fixed_labels"][:N_CLASSICAL]).nanmean(dim=1)
    scores = {
        "before (no registration)": {"dice": float(before[:N_CLASSICAL].mean()), "folding": 0.0,
                                     "seconds_per_pair": 0.0},
        f"your network ({history.step} steps)": train.evaluate(model, test_pairs, batch_size=1,
                                                              max_items=N_CLASSICAL),
        "shipped network": train.evaluate(pretrained, test_pairs, batch_size=1, max_items=N_CLASSICAL),
        "classical (affine + B-spline)": {
            "dice": float(classical_dice.mean()),
            "folding": float(metrics.folding_fraction(classical_disp).mean()),
            "seconds_per_pair": sum(result.seconds for result in classical) / N_CLASSICAL}}

    print(f"{N_CLASSICAL} held-out pairs")
    print(f"{'method':32s} {'mean Dice':>9s} {'folding %':>9s} {'ms per pair':>12s}")
    for name, score in scores.items():
        print(f"{name:32s} {score['dice']:9.3f} {100 * score['folding']:9.3f} "
              f"{1000 * score['seconds_per_pair']:12.1f}")
    # a pass of milliseconds is easily slowed by whatever else the computer does: time it five times and
    # keep the best, as benchmarks do
    network_seconds = min(train.evaluate(pretrained, test_pairs, batch_size=1, max_items=N_CLASSICAL)
                          ["seconds_per_pair"] for _ in range(5))
    speedup = scores["classical (affine + B-spline)"]["seconds_per_pair"] / network_seconds
    print(f"the shipped network registers a pair {speedup:.0f} times faster than the classical pipeline")
""")

nb.markdown("""
    Dice per tissue, for every method (bars: mean over these pairs, whiskers: their spread). The thin
    CSF-like class is the hardest for every method: a voxel of error costs a thin structure much more Dice
    than a thick one.
""")

nb.code("""
    label_values = [1, 2, 3]
    truth = test["fixed_labels"][:N_CLASSICAL]
    tables = {"before": metrics.dice(test["moving_labels"][:N_CLASSICAL], truth, labels=label_values),
              "classical": metrics.dice(classical_labels, truth, labels=label_values),
              "shipped network": metrics.dice(warps.warp_labels(test["moving_labels"], disp)[:N_CLASSICAL],
                                              truth, labels=label_values)}
    viz.dice_per_label(tables, names=names, labels=label_values,
                       title=f"Dice per tissue, {N_CLASSICAL} held-out pairs")
""")

nb.markdown("""
    **What to take away.** The classical pipeline optimises *this* pair for hundreds of iterations and is the
    more accurate of the two on these pairs; the network gives a good answer tens to hundreds of times faster
    (the table prints the factor on your machine), because the optimisation happened once, during
    training. That speed is what makes learned methods attractive for large studies, for 3D, and inside
    other pipelines; exercise 1 shows how to get most of the accuracy back in a fraction of a second. The
    price: a network is only as good as its training data (exercise 2 goes outside it), and it needed hours
    of training that the classical pipeline never needs.

    ## 7. The regularisation trade-off

    The weight $\\lambda$ of the diffusion term decides how smooth the field must be. A small $\\lambda$ lets
    the network chase every intensity difference, noise and bias field included, with a field that may
    *fold* (neighbouring voxels swapping places, det J <= 0); a large one keeps the field smooth but too
    stiff to follow the anatomy. The kit ships four networks trained **from scratch**, each with its own
    weight, $\\lambda$ = 0.01, 0.1, 1 and 10 (`voxelmorph2d_brain_lambda0.01` ...; same data, same recipe,
    4000 steps each: a third of `voxelmorph2d_brain`'s budget, so the weight is the only difference between
    them). We run all four on the held-out pairs.
""")

nb.predict("""
    Which of the four weights, 0.01, 0.1, 1 or 10, gives the highest Dice on the held-out pairs? And which
    ones let the field fold?
""", """
    A middle weight (0.1 or 1) has the highest Dice; both ends are lower. The smallest weight, 0.01, folds a
    visible share of the voxels, the weights of 1 and more fold (almost) nowhere. Less regularisation does
    not buy more accuracy: the freest network matches noise and bias rather than tissue.
""")

nb.code("""
    tradeoff = {}
    for weight in WEIGHTS:
        network_w = models.pretrained(f"voxelmorph2d_brain_lambda{weight:g}", device=device)
        with torch.no_grad():
            warped_w, disp_w = network_w(test["moving"], test["fixed"])
        folding_w = metrics.folding_fraction(disp_w)   # (N_TEST,), share of each pair's voxels
        tradeoff[weight] = {
            "dice": float(metrics.dice(warps.warp_labels(test["moving_labels"], disp_w),
                                       test["fixed_labels"]).nanmean(dim=1).mean()),
            "folding_percent": 100 * float(folding_w.mean()),
            "sdlogj": float(metrics.sdlogj(disp_w).mean()),
            "warped": warped_w, "disp": disp_w, "folding_per_pair": folding_w}
        result = tradeoff[weight]
        print(f"weight {weight:5g}: Dice {result['dice']:.3f}, folding {result['folding_percent']:.3f} %, "
              f"SDlogJ {result['sdlogj']:.3f}")
""")

nb.markdown("""
    The curve. Left: Dice against the irregularity of the field, one point per weight, labelled with its
    weight and its share of folded voxels. The irregularity is SDlogJ, the standard deviation of the
    log-Jacobian determinant (0 for a rigid shift; it grows as the field stretches and squeezes more and more
    unevenly); it keeps measuring even where no voxel folds yet. Good fields sit top-left: accurate and
    regular. Middle: the share of folded voxels for each weight, each bar labelled with its value (the dashed
    line is 0.1 %). Right: where the folds are, on the held-out pair where the $\\lambda = 0.01$ network
    folds most: its Jacobian determinant, folded voxels in yellow.

    What to see: at $\\lambda = 0.01$ the network folds a visible share of the grid, at $\\lambda \\geq 1$ no
    voxel folds, and the field becomes steadily more regular as $\\lambda$ grows. Dice does **not** keep
    rising as $\\lambda$ falls: it peaks at a middle weight (0.1 or 1 here) and is lower at both ends. At
    $\\lambda = 10$ the field is too stiff to follow the anatomy; at $\\lambda = 0.01$ the network spends its
    freedom matching noise, bias and head rather than tissue boundaries, and its folds scramble labels
    rather than align them. The weight is a real trade-off only between the middle and the stiff end; below
    the middle, you lose on both counts.
""")

nb.code("""
    worst = int(tradeoff[min(WEIGHTS)]["folding_per_pair"].argmax())   # the pair with the most folds
    fig, axes = viz.new_figure(1, 3, width=15, height=4)
    ax = axes[0, 0]
    ax.plot([tradeoff[w]["sdlogj"] for w in WEIGHTS], [tradeoff[w]["dice"] for w in WEIGHTS], "o-")
    for w in WEIGHTS:
        ax.annotate(f"λ = {w:g}\\n{tradeoff[w]['folding_percent']:.2f}% folded",
                    (tradeoff[w]["sdlogj"], tradeoff[w]["dice"]), textcoords="offset points",
                    xytext=(6, -4), fontsize="small", va="top")
    ax.margins(x=0.25, y=0.2)
    ax.set(xlabel="SDlogJ (irregularity of the field)", ylabel="mean Dice on held-out pairs",
           title="accuracy against regularity")
    ax.grid(alpha=0.3)
    ax = axes[0, 1]
    folded = [tradeoff[w]["folding_percent"] for w in WEIGHTS]
    bars = ax.bar([f"λ = {w:g}" for w in WEIGHTS], folded, color="tab:red")
    ax.bar_label(bars, labels=[f"{value:.3f}%" for value in folded], fontsize="small")
    ax.axhline(0.1, color="gray", linestyle="--", linewidth=1, label="0.1 %")
    ax.legend(fontsize="small")
    ax.set_ylim(0, 1.25 * max(max(folded), 0.2))
    ax.set(ylabel="folded voxels (%)", title=f"folding, {N_TEST} held-out pairs")
    viz.jacobian_map(tradeoff[min(WEIGHTS)]["disp"][worst:worst + 1], ax=axes[0, 2], orientation=True,
                     title=f"λ = {min(WEIGHTS):g}, held-out pair {worst}")
    fig
""")

nb.markdown("""
    Slide through the weights to see the same held-out pair registered by each of the four networks: the
    warped image, its difference to the fixed image, the grid and the Jacobian map. With a small weight look
    for crowded, crossing grid lines and yellow (folded) voxels; with a large one, for the residual
    differences the smooth field cannot remove.
""")

nb.code("""
    pair = slice(worst, worst + 1)
    results = {w: (tradeoff[w]["warped"][pair], tradeoff[w]["disp"][pair]) for w in WEIGHTS}
    widgets.regularisation_widget(results, fixed=test["fixed"][pair], moving=test["moving"][pair],
                                  orientation=True)
""")

nb.markdown("## Exercises")

nb.exercise("""
    **Exercise 1: the best of both worlds.** A network's field is a very good *starting point* for a short
    classical optimisation on the pair itself (test-time *instance optimisation*). Refine the shipped
    network's field on the first held-out pair with `train.instance_optimize(pretrained, moving, fixed,
    steps=50)`, then compare the Dice of the network alone, the refined field and the classical pipeline
    (`classical[0]`). How long did the refinement take? Give the three mean Dice:
    `answer = {"network": ..., "refined": ..., "classical": ...}`.

    Each exercise asks for its answer in the variable `answer`; the cell after it checks it and says "not
    attempted yet", "wrong" (and why) or "right".
""", starter="""
    moving, fixed = test["moving"][:1], test["fixed"][:1]
    moving_labels, fixed_labels = test["moving_labels"][:1], test["fixed_labels"][:1]
    # your code here
    answer = ...  # {"network": mean Dice, "refined": mean Dice, "classical": mean Dice}
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
    answer = {"network": mean_dice(network_disp), "refined": mean_dice(refined_disp),
              "classical": mean_dice(classical[0].disp)}
""", check="check.ex1(answer, pretrained, test, classical[0])")

nb.exercise("""
    **Exercise 2: outside the training distribution.** The shipped network saw only the motions that
    `BrainSlicePairs` draws by default: each subject rotated by up to 7°, shifted by up to 4 voxels along
    each axis, scaled by up to 7 % and deformed smoothly by up to about 7 voxels, so the two images of a pair
    are misaligned by at most about that (the fixed image is the moving one moved once more). Make a few
    pairs with
    larger motions, for example `data.BrainSlicePairs(3, seed=11, rotation=25.0, translation=10.0,
    magnitude=(10.0, 14.0))` (one pair is enough in fast mode), and compare the Dice of the shipped network
    and of `regedu.register` on them. Which one suffers more, compared with its own Dice on the ordinary
    held-out pairs in section 6's table (`scores`), and why? Give the mean Dice of each hard pair and your
    verdict: `answer = {"before": [...], "network": [...], "classical": [...], "suffers more": "network" or
    "classical"}`.
""", starter="""
    # your code here
    answer = ...  # {"before": [Dice per pair], "network": [...], "classical": [...], "suffers more": ...}
""", solution="""
    n_hard = 1 if FAST else 3
    hard_pairs = data.BrainSlicePairs(n_hard, seed=11, rotation=25.0, translation=10.0,
                                      magnitude=(10.0, 14.0), device=device)
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
    drop = {"network": scores["shipped network"]["dice"] - float(network_dice.mean()),
            "classical": scores["classical (affine + B-spline)"]["dice"] - float(classical_dice.mean())}
    print("Dice lost against section 6's pairs:", {name: round(value, 3) for name, value in drop.items()})
    answer = {"before": before_dice.tolist(), "network": network_dice.tolist(),
              "classical": classical_dice.tolist(), "suffers more": max(drop, key=drop.get)}
    # The classical pipeline starts with an affine stage and optimises each pair, so larger motions cost it
    # little; the network never saw such motions during training and recovers them only partly.
""", check="check.ex2(answer, pretrained, scores)")

nb.exercise("""
    **Exercise 3: is the network inverse-consistent?** Register the first held-out pair both ways, `u` =
    network(moving, fixed) and `v` = network(fixed, moving). If the two fields were exact inverses, composing
    them would give the identity: `warps.compose(v, u)` would be zero everywhere. Measure its mean length in
    voxels and compare with the mean length of `u` itself. (Nothing in the network makes the two calls agree:
    each is a separate prediction. That stays true for a diffeomorphic network, whose every field is
    invertible, like the velocity fields of notebook 05: `net(fixed, moving)` is still not, in general, the
    inverse of `net(moving, fixed)`. Inverse consistency must be trained for or built in, and measured as
    here.) Give both, in voxels: `answer = {"mean_length": mean |u|, "round_trip": mean |compose(v, u)|}`.
""", starter="""
    # your code here
    answer = ...  # {"mean_length": ..., "round_trip": ...}, in voxels
""", solution="""
    with torch.no_grad():
        u = pretrained(test["moving"][:1], test["fixed"][:1]).disp
        v = pretrained(test["fixed"][:1], test["moving"][:1]).disp
    # compose(v, u)(x) = u(x) + v(x + u(x)): go with u, then come back with v
    round_trip = warps.compose(v, u)
    size = torch.linalg.vector_norm(u, dim=1).mean()
    error = torch.linalg.vector_norm(round_trip, dim=1).mean()
    print(f"mean |u| = {size:.2f} voxels, mean inverse-consistency error = {error:.2f} voxels")
    answer = {"mean_length": float(size), "round_trip": float(error)}
""", check="check.ex3(answer, pretrained, test)")

nb.markdown("""
    ## Check what this notebook taught

    Your minute of training lowered the loss; the shipped network improves Dice clearly on pairs it never saw,
    and registers a pair many times faster than the classical pipeline (tens of times on a quiet 2-core CPU;
    the check asks for 10, because a busy computer slows a pass of milliseconds far more than seconds of
    optimisation); and the weight of the regulariser decides whether the field folds: the $\\lambda = 0.01$
    network folds, the $\\lambda \\geq 1$ networks do not, and Dice peaks at a middle weight. The thresholds
    are named at the top of the cell. (A fold-free field is judged as "below 0.01 % folded voxels" rather than
    "exactly zero": that is about one voxel per 96 × 112 pair, which no figure shows and no conclusion depends
    on, and still ten times below the folding required at $\\lambda = 0.01$.)
""")

nb.code("""
    DICE_MARGIN = 0.10            # shipped network's mean Dice above no registration, at least
    CLASSICAL_MARGIN = 0.10       # the classical pipeline's too
    MIN_SPEEDUP = 10              # the network per pair at least this many times faster than the classical
    MIN_FOLDING_SMALL = 0.1       # % of voxels folded at lambda = 0.01, at least
    MAX_FOLDING_LARGE = 0.01      # % of voxels folded at lambda >= 1, at most

    network_score, classical_score = scores["shipped network"], scores["classical (affine + B-spline)"]
    no_registration = scores["before (no registration)"]["dice"]
    assert network_score["dice"] > no_registration + DICE_MARGIN, "the shipped network improves Dice"
    assert classical_score["dice"] > no_registration + CLASSICAL_MARGIN, "the classical pipeline improves it"
    assert speedup > MIN_SPEEDUP, "one forward pass is much faster than a per-pair optimisation"
    assert tradeoff[0.01]["folding_percent"] > MIN_FOLDING_SMALL, "a small weight lets the field fold"
    assert all(tradeoff[w]["folding_percent"] < MAX_FOLDING_LARGE for w in WEIGHTS if w >= 1), \\
        "a weight of 1 or more keeps the field free of folds"
    assert tradeoff[10.0]["sdlogj"] < tradeoff[0.01]["sdlogj"], "more weight, smoother field"
    best_middle = max(tradeoff[0.1]["dice"], tradeoff[1.0]["dice"])
    assert best_middle > tradeoff[0.01]["dice"] and best_middle > tradeoff[10.0]["dice"], \\
        "Dice peaks at a middle weight, lower at both ends"
    assert history.step > 0 and all(torch.isfinite(torch.tensor(history.losses))), "training ran, without NaN"
    if not FAST:   # a handful of fast-mode steps is too few to see a trend in a noisy loss
        assert last_tenth < first_tenth, "the loss fell during the live training"
    print("all checks passed")
""")

nb.write()
