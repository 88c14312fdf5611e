"""Builds notebooks/06_multiscale.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("06_multiscale", checks="regedu.course.lesson06")

nb.markdown("""
# 06 · Multiscale registration: coarse to fine for large deformations

**What you will learn (about 30 minutes):** what image and field pyramids are; why a registration that
works at a single resolution gets stuck when the motion is larger than the structures it moves; how a
coarse-to-fine (multi-level) optimisation escapes, in classical registration (`levels=1` versus
`levels=4`), and where each number of levels breaks; and how a multiscale network,
`regedu.models.PyramidNet`, registers large deformations with a regular field and a small error, where a
single-scale VoxelMorph reaches a good Dice only by folding the grid, and why a good Dice, or a field
that cannot fold, is not yet a good registration.

The core problem: a similarity loss only "sees" a misalignment where the images overlap. Its gradient says
"move this edge a little"; when a structure must travel further than its own size, small local steps lead
nowhere. On a grid 8 times coarser, the same motion is 8 times shorter, the blurred structures overlap,
and the gradient points the right way. Solve the coarse problem first, then refine.
""")

nb.code("""
import os
import time

import torch

import regedu
from regedu import classical, data, metrics, models, train, viz, warps, widgets
from regedu.classical.common import downsample
from regedu.course import lesson06 as check

FAST = os.environ.get("REGEDU_FAST") == "1"
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_ = torch.manual_seed(0)

SHAPE = (64, 64)
# classical: the same total number of iterations for one level and for four
ITERATIONS_1 = (60,) if FAST else (250,)
ITERATIONS_4 = (20, 15, 15, 10) if FAST else (100, 50, 50, 50)
# the sweep over push magnitudes (and the widget): 60 iterations shared by the levels, in both modes
SWEEP_ITERATIONS = 60
# learned: a short live run to watch training start (the comparisons use the shipped models)
STEPS = 10 if FAST else (600 if device.type == "cuda" else 150)
BATCH = 8
print(f"device: {device}, fast mode: {FAST}, live training steps: {STEPS}")
""")

nb.markdown("""
## 1. Pyramids

An **image pyramid** holds the same image at several resolutions, each half the previous one along every
axis (smoothed first, so that detail finer than the new voxels does not alias). Classical registration in
regedu uses `regedu.classical.pyramid_shapes` and the same smoothing-and-resampling `downsample`; the first
and last voxel centres stay in place at every level.

A **field pyramid** holds a displacement at several resolutions. Because displacements are measured in
voxels, shrinking the grid by 2 also halves the values: `regedu.warps.resize_disp` does both. This is the
whole trick: a 12-voxel motion on the 64 x 64 grid is a 1.5-voxel motion on the 9 x 9 grid.

We use the toy `regedu.data.large_deformation_pair(kind="large_warp")`: the moving image is a disk of
radius 64 / 6 (about 11 voxels); the fixed image is that disk pushed and squashed by a smooth
diffeomorphism whose motion at the centre is `magnitude = 12` voxels, more than the disk's radius. The
pair comes with the true field `disp`.
""")

nb.code("""
pair = data.large_deformation_pair(SHAPE, kind="large_warp", magnitude=12.0, seed=0, device=device)
moving, fixed, true_disp = pair["moving"], pair["fixed"], pair["disp"]
shapes = classical.pyramid_shapes(SHAPE, 4)
print(shapes)
""", expect="[(9, 9), (17, 17), (33, 33), (64, 64)]\n")

nb.markdown("""
Each column below is one pyramid level, coarsest on the left. **Top**: fixed minus moving (red: only the
fixed disk; blue: only the moving disk). **Bottom**: the true field at that level, as arrows drawn to
scale, with its largest length in the title. At full resolution the two disks barely touch; at the coarse
levels the blurred disks overlap widely and the motion is only a voxel or two.
""")

nb.predict("""
The true field's largest motion is about 12.8 voxels on the 64 x 64 grid. How long is it on the 9 x 9
grid?
""", """
About 1.6 voxels (the bottom-left title), and 3.2, 6.5 and 12.8 on the finer grids. The grid shrinks by
63 / 8, not 64 / 9: the first and last voxel centres stay in place, so 63 voxel spacings become 8.
""")

nb.code("""
fig, axes = viz.new_figure(2, 4)
for col, level_shape in enumerate(shapes):
    level_fixed, level_moving = downsample(fixed, level_shape), downsample(moving, level_shape)
    level_disp = warps.resize_disp(true_disp, level_shape)
    viz.difference(level_fixed, level_moving, ax=axes[0, col], vmax=1.0, names=("fixed", "moving"),
                   title=f"{level_shape[0]} x {level_shape[1]}: fixed − moving")
    step = max(1, level_shape[0] // 8)
    viz.displacement_arrows(level_disp, step=step, ax=axes[1, col], image=level_moving,
                            title=f"true field, max {level_disp.norm(dim=1).max().item():.1f} voxels")
fig
""")

nb.markdown("""
## 2. Classical registration: one level versus four

Same method (`"dense"`: a displacement per voxel, local NCC, diffusion regulariser), same total number of
iterations; the only difference is `levels`. With `levels=4` the optimiser starts on the 9 x 9 grid,
and each level's field, resized by `resize_disp`, starts the next. We score the result with Dice of the
disk and with the **end-point error** against the true field inside the fixed disk
(`metrics.end_point_error`, in voxels; lower is better).
""")

nb.predict("""
Before registration the disks' Dice is about 0.36. Same method, same total number of iterations: will
one level improve on it much? And four?
""", """
One level barely moves (Dice about 0.4, an end-point error near 11 voxels, hardly better than not moving
at all); four levels reach a Dice above 0.9 and cut the error to a few voxels (about 4 in fast mode, about
1 in a full run).
""")

nb.code("""
fixed_disk = pair["fixed_labels"]
dice_before = metrics.dice(pair["moving_labels"], pair["fixed_labels"]).mean().item()
classic = {}
for levels, iterations in [(1, ITERATIONS_1), (4, ITERATIONS_4)]:
    classic[levels] = regedu.register(moving, fixed, method="dense", levels=levels, iterations=iterations,
                                      moving_labels=pair["moving_labels"], progress=False)


def scores(disp, warped_labels):
    \"\"\"Dice of the disk and the mean end-point error (voxels) inside the fixed disk.\"\"\"
    dice = metrics.dice(warped_labels, pair["fixed_labels"]).mean().item()
    error = metrics.end_point_error(disp, true_disp, mask=fixed_disk).item()
    return dice, error


print(f"before registration: Dice {dice_before:.3f}")
for levels, result in classic.items():
    dice, error = scores(result.disp, result.warped_labels)
    print(f"levels={levels}: Dice {dice:.3f}, end-point error in the disk {error:5.2f} voxels, "
          f"{result.seconds:.1f} s")
""")

nb.markdown("""
What to look for: with one level the warped disk (left) has barely moved toward the fixed one: the
optimiser shrank and stretched its edge where the two overlap, and the grid (middle) is deformed only
near the overlap. With four levels the disk lands on its target and the grid shows one large, smooth
motion, close to the true field (right column: the true grid).
""")

nb.code("""
fig, axes = viz.new_figure(2, 3)
for row, (levels, result) in enumerate(classic.items()):
    dice, _ = scores(result.disp, result.warped_labels)
    viz.overlay(result.warped, pair["fixed_labels"], style="contour", ax=axes[row, 0],
                title=f"levels={levels}: warped, fixed outline\\nDice {dice:.3f}")
    viz.deformation_grid(result.disp, spacing=4, ax=axes[row, 1], image=moving,
                         title=f"levels={levels}: grid on moving")
viz.deformation_grid(true_disp, spacing=4, ax=axes[0, 2], image=moving, title="true field: grid on moving")
viz.loss_curve(classic[4].history, ax=axes[1, 2], title="levels=4: loss per level")
fig
""")

nb.exercise("""
**Exercise 1 (the C and the O).** The classic test: `data.large_deformation_pair(SHAPE, kind="c_to_o")`
gives a moving "C" and a fixed "O". Closing the gap of the C needs a large, very non-linear motion, and
Dice barely notices (the gap is small). Register it with `method="dense"`, `levels=1` and `levels=4`
(iterations `ITERATIONS_1` and `ITERATIONS_4`) and measure instead the share of the **gap** (inside the O,
outside the C) that the warped C covers. Show the two warped images with `viz.show_slices`.
Which one covers more of the gap? Keep the two results in `c_to_o_results` (levels -> result) and put the
two shares, as fractions from 0 to 1, in `answer = {1: ..., 4: ...}`.
""", starter="""
c_to_o = data.large_deformation_pair(SHAPE, kind="c_to_o", device=device)
gap = (c_to_o["fixed_labels"] > 0) & (c_to_o["moving_labels"] == 0)
c_to_o_results = {}  # levels -> the result of regedu.register
# your code here

answer = ...  # {1: share of the gap covered with levels=1, 4: the same with levels=4}
""", solution="""
c_to_o = data.large_deformation_pair(SHAPE, kind="c_to_o", device=device)
gap = (c_to_o["fixed_labels"] > 0) & (c_to_o["moving_labels"] == 0)
c_to_o_results = {}
answer = {}
warped_images, titles = [c_to_o["moving"]], ["moving C"]
for levels, iterations in [(1, ITERATIONS_1), (4, ITERATIONS_4)]:
    result = regedu.register(c_to_o["moving"], c_to_o["fixed"], method="dense", levels=levels,
                             iterations=iterations, moving_labels=c_to_o["moving_labels"], progress=False)
    c_to_o_results[levels] = result
    answer[levels] = (result.warped_labels > 0)[gap].float().mean().item()
    print(f"levels={levels}: {100 * answer[levels]:.0f}% of the gap covered")
    warped_images.append(result.warped)
    titles.append(f"levels={levels}: {100 * answer[levels]:.0f}% of gap")
viz.show_slices(warped_images + [c_to_o["fixed"]], titles + ["fixed O"])
# Four levels cover about twice as much of the gap as one, yet neither closes it (look at the images):
# closing the C moves its ends far along the ring, and even four levels of this method go part of the way.
""", check="check.ex1(answer, c_to_o_results, c_to_o)")

nb.exercise("""
**Exercise 2 (how many levels?).** Register the disk pair with the diffeomorphic method `method="svf"`
for `levels = 1, 2, 3, 4`, giving each run the same total budget (split it as
`iterations=[sum(ITERATIONS_4) // levels] * levels`). Print Dice and the end-point error (`scores(...)`).
How many levels does this motion need, and why (compare the motion with the disk's radius at each level)?
Keep the results in `svf_results` (levels -> result), and put in `answer` the smallest number of levels
whose Dice is above 0.9 (`None` if no run reaches it).
""", starter="""
svf_results = {}  # levels -> the result of regedu.register
# your code here

answer = ...  # the smallest number of levels with Dice above 0.9
""", solution="""
total = sum(ITERATIONS_4)
svf_results = {}
for levels in [1, 2, 3, 4]:
    result = regedu.register(moving, fixed, method="svf", levels=levels,
                             iterations=[total // levels] * levels, moving_labels=pair["moving_labels"],
                             progress=False)
    svf_results[levels] = result
    dice, error = scores(result.disp, result.warped_labels)
    print(f"levels={levels}: Dice {dice:.3f}, end-point error {error:5.2f} voxels")
answer = min((levels for levels, result in svf_results.items()
              if scores(result.disp, result.warped_labels)[0] > 0.9), default=None)
print("levels needed for Dice above 0.9:", answer)
# Dice rises with every level: with the fast budget only four levels register this pair well, with the
# full one three already do. Each level halves the push on the coarsest grid (12 voxels here: 3.2 on the
# 17 x 17 grid, where the disk's radius is 2.7; 1.6 on the 9 x 9 grid, radius 1.35); once the push there
# is about the disk's size, the blurred disks overlap and the gradient points the whole way.
""", check="check.ex2(answer, svf_results, pair)")

nb.markdown("""
## 3. Where does each number of levels break?

Push the disk further and further (4 to 20 voxels, the same direction) and register each pair with 1, 2, 3
and 4 levels, 60 iterations shared by the levels every time. `widgets.multiscale_result(magnitude,
levels)` does one such registration and scores it (Dice, end-point error in the disk, folding); the
`views` dict keeps every result, so that the widget of section 5 can show them again without
recomputing.
""")

nb.code("""
MAGNITUDES = (4, 8, 12, 16, 20)
views = {}  # the cache shared with the widget of section 5
sweep = {levels: [widgets.multiscale_result(m, levels, iterations=SWEEP_ITERATIONS, device=device,
                                            cache=views)
                  for m in MAGNITUDES]
         for levels in (1, 2, 3, 4)}
print("push (voxels)  " + "".join(f"{m:>8d}" for m in MAGNITUDES))
for levels, results in sweep.items():
    print(f"levels={levels} Dice " + "".join(f"{r['classical']['dice']:8.2f}" for r in results))
coarse = sweep[4][0]
print(f"coarsest grid at levels=4: {coarse['coarse_shape']}, disk radius there "
      f"{coarse['coarse_radius']:.2f} voxels; push there: "
      + ", ".join(f"{r['coarse_push']:.1f}" for r in sweep[4]))
largest_folding = max(r["classical"]["folding"] for results in sweep.values() for r in results)
print(f"largest share of folded voxels in the sweep: {100 * largest_folding:.2f}%")
""")

nb.markdown("""
Read the curves from left to right. With one level, Dice already falls at a push of 8 voxels (about 0.7)
and is below 0.4 at 12, just past the disk's radius of 10.7 voxels (dotted line): the disks barely
overlap, so the similarity has no gradient that points the whole way, and the end-point error (right)
stays close to that of not moving at all (grey). Each extra level halves the push on the coarsest grid
and moves the break to larger pushes: four levels still register the 12-voxel push (Dice above 0.9) and
keep most of the 16-voxel one. At 20 voxels even four levels fail (Dice 0): on the 9 x 9 grid the push is
still more than twice the disk's radius there (the printed numbers), and the 64 x 64 image allows no
fifth level (`pyramid_shapes` refuses grids under 8 voxels). No field folds anywhere in the sweep: the
classical optimiser fails by not moving far enough, not by tearing the grid.
""")

nb.code("""
fig, axes = viz.new_figure(1, 2, width=4.4 * viz.PANEL_INCHES, height=1.3 * viz.PANEL_INCHES)
for levels, results in sweep.items():
    axes[0, 0].plot(MAGNITUDES, [r["classical"]["dice"] for r in results], "o-", label=f"levels={levels}")
    axes[0, 1].plot(MAGNITUDES, [r["classical"]["end_point_error"] for r in results], "o-",
                    label=f"levels={levels}")
axes[0, 0].axvline(SHAPE[0] / 6, color="grey", linestyle=":", label="disk radius")
no_motion = [metrics.end_point_error(torch.zeros_like(r["pair"]["disp"]), r["pair"]["disp"],
                                     mask=r["pair"]["fixed_labels"]).item() for r in sweep[1]]
axes[0, 1].plot(MAGNITUDES, no_motion, color="grey", linestyle=":", label="not moving at all")
panel_titles = ["Dice of the disk (higher is better)", "end-point error in the disk (voxels)"]
for ax, what in zip(axes[0], panel_titles, strict=True):
    ax.set_xlabel("push at the centre (voxels)")
    ax.set_title(what, fontsize="medium")
    ax.legend(fontsize="small")
fig
""")

nb.markdown("""
## 4. Learned: single-scale VoxelMorph versus PyramidNet

A network learns from many pairs instead of optimising one. Our training pairs: the same toy, with a random
direction for each pair and a motion of 12 to 20 voxels: always more than the disk's radius.
`data.LargeDeformationPairs` draws them from `large_deformation_pair` with a different seed per item
(unsupervised training needs only `moving` and `fixed`; the labels and the true field are for scoring).

* `models.VoxelMorph(2)`: one U-Net at full resolution predicts the whole field at once.
* `models.PyramidNet(2, levels=3)`: one small U-Net per level (LapIRN's idea). Level 0 registers the
  images shrunk 4 times; each next level upsamples the field so far (`resize_disp`), warps its own moving
  image with it, and predicts only the *residual* motion, composed with the field so far.

Both are trained the same way: mean squared error between fixed and warped (the images are binary) plus a
small diffusion regulariser (weight 0.01, so that large motions are cheap), Adam, batches of 8.
""")

nb.code("""
# toy pairs: a disk and the disk moved 12 to 20 voxels in a random direction, one seed per item
train_pairs = data.LargeDeformationPairs(4096, shape=SHAPE, magnitude=20.0, min_magnitude=12.0, seed=0)
test_pairs = data.LargeDeformationPairs(32, shape=SHAPE, magnitude=20.0, min_magnitude=12.0, seed=1)
item = train_pairs[0]
print({key: tuple(value.shape) for key, value in item.items()})
""", expect="{'moving': (1, 64, 64), 'fixed': (1, 64, 64), 'moving_labels': (1, 64, 64), "
            "'fixed_labels': (1, 64, 64), 'disp': (2, 64, 64)}\n")

nb.markdown("""
### Watch training start

Training from scratch takes thousands of steps; here both networks train for `STEPS` steps only (10 in
fast mode, 150 in a full run on a CPU), to see it start: the loss (mean squared difference between fixed
and warped, plus the small regulariser) falls from the value of no registration as the networks learn to
move the disk. It is noisy: each step sees another batch of 8 pairs, some pushed further than others.
""")

nb.code("""
config = train.TrainConfig(supervision="unsupervised", similarity="mse", weight=0.01, lr=2e-3,
                           batch_size=BATCH, steps=STEPS)
live = {"VoxelMorph": models.VoxelMorph(2).to(device),
        "PyramidNet": models.PyramidNet(2, levels=3).to(device)}
histories = {}
for name, network in live.items():
    _ = torch.manual_seed(0)
    print(name, f"({sum(p.numel() for p in network.parameters()):,} parameters)")
    histories[name] = train.train(network, train_pairs, config)
    losses = histories[name].losses
    print(f"  loss: first steps {sum(losses[:3]) / 3:.4f}, last steps {sum(losses[-3:]) / 3:.4f}")
""")

nb.code("""
fig, axes = viz.new_figure(1, 1, width=2.4 * viz.PANEL_INCHES, height=1.2 * viz.PANEL_INCHES)
smooth = max(2, STEPS // 15)
for name, history in histories.items():
    drawn = len(axes[0, 0].lines)
    viz.loss_curve(history, ax=axes[0, 0], smooth=smooth, xlabel="training step",
                   title=f"live training: the first {STEPS} steps")
    raw_line, mean_line = axes[0, 0].lines[drawn:]
    raw_line.set_label("_nolegend_")
    mean_line.set_label(f"{name} (mean of {smooth} steps)")
axes[0, 0].legend(fontsize="small")
fig
""")

nb.markdown("""
### The shipped models

The same recipe run for 3000 steps (batches of 8, the learning rate lowered from 2e-3 to 0 along a cosine)
made the three toy models that ship with regedu (`scripts/train_pretrained.py` trains them; each file has its
log next to it): single-scale VoxelMorph, the same made diffeomorphic (it predicts a velocity and
integrates it, notebook 05), and PyramidNet. Loading one is instant, so from here on every comparison
uses them, on 32 **held-out** pairs: the same kind of push, other seeds than training used.
""")

nb.predict("""
Single-scale VoxelMorph, its diffeomorphic version and PyramidNet, all trained with the same recipe: which
of them will fold the grid, and which will have the smallest end-point error?
""", """
Only single-scale VoxelMorph folds (a few percent of the grid); its diffeomorphic version and PyramidNet
practically never. PyramidNet has the smallest end-point error, about a voxel, less than half of either
single-scale model's, though all three reach a high Dice: the discussion below the table explains how.
""")

nb.code("""
shipped = {"VoxelMorph": models.pretrained("toy_voxelmorph2d", device=device),
           "VoxelMorph diffeomorphic": models.pretrained("toy_voxelmorph2d_diff", device=device),
           "PyramidNet": models.pretrained("toy_pyramid2d", device=device)}
for name in ["toy_voxelmorph2d", "toy_voxelmorph2d_diff", "toy_pyramid2d"]:
    print(f"{name}: {models.PRETRAINED[name]}")

held_out = next(iter(torch.utils.data.DataLoader(test_pairs, batch_size=len(test_pairs))))
held_out = {key: value.to(device) for key, value in held_out.items()}


def evaluate_on_held_out(network):
    \"\"\"Per held-out pair: Dice of the disk, end-point error inside the fixed disk (voxels), share of
    folded voxels; and milliseconds per pair.\"\"\"
    with torch.no_grad():
        start = time.perf_counter()
        _, disp = network.eval()(held_out["moving"], held_out["fixed"])[:2]
        if device.type == "cuda":
            torch.cuda.synchronize()
        milliseconds = 1000 * (time.perf_counter() - start) / len(test_pairs)
    warped_labels = warps.warp_labels(held_out["moving_labels"], disp)
    return {"dice": metrics.dice(warped_labels, held_out["fixed_labels"], labels=[1])[:, 0],
            "error": metrics.end_point_error(disp, held_out["disp"], mask=held_out["fixed_labels"]),
            "folding": metrics.folding_fraction(disp), "ms": milliseconds}


before = metrics.dice(held_out["moving_labels"], held_out["fixed_labels"], labels=[1])[:, 0]
error_before = metrics.end_point_error(torch.zeros_like(held_out["disp"]), held_out["disp"],
                                       mask=held_out["fixed_labels"])
table = {f"{name} ({STEPS} live steps)": evaluate_on_held_out(network) for name, network in live.items()}
table.update({name: evaluate_on_held_out(network) for name, network in shipped.items()})
print(f"{'':34s} mean Dice  worst Dice  error (vx)  folding %  ms per pair")
print(f"{'before registration':34s} {before.mean():9.3f} {before.min():11.3f} {error_before.mean():11.2f}")
for name, row in table.items():
    print(f"{name:34s} {row['dice'].mean():9.3f} {row['dice'].min():11.3f} {row['error'].mean():11.2f} "
          f"{100 * row['folding'].mean():10.2f} {row['ms']:12.1f}")
# mean squared error to the fixed images: of the moving images (no registration), and of empty images
mse_moving = regedu.losses.mse(held_out["fixed"], held_out["moving"]).item()
mse_empty = regedu.losses.mse(held_out["fixed"], torch.zeros_like(held_out["fixed"])).item()
print(f"MSE to the fixed disks: moving disks {mse_moving:.3f}, empty images {mse_empty:.3f}")
""")

nb.markdown("""
What the table shows (when this was written, for the shipped models: Dice 0.96, 0.97 and 0.99; end-point
error 8.3, 3.0 and 1.0 voxels, against 15 without registration; 2.7% of the grid folded by single-scale
VoxelMorph, none by the other two):

* **The live networks** have only started. After the 10 steps of fast mode their Dice is still that of no
  registration. After the 150 steps of a full run on a CPU both already move the disks, PyramidNet
  further (in this notebook's full run when this was written: Dice 0.94 against VoxelMorph's 0.83), but
  both fields fold far more than the shipped models' (5% and 10% of the grid in that run): the training
  has far to go.
* **Single-scale VoxelMorph** reaches a high Dice, but only by folding the grid: about 3% of the voxels
  on average, over 5% on some pairs, so its field is no valid transform. And its end-point error stays
  large: the disk's outline lands on the target, but the points inside the disk are not where the true
  push took them. Dice sees only the outline.
* **Its diffeomorphic version does not fold** (its field is the exponential of a velocity) and, trained
  with this recipe, it registers too: about the same Dice, a much smaller error, though still about
  three times PyramidNet's. **That it does not fold does not make it register.** The README's benchmark
  trained the same model for 3 minutes at a constant learning rate of 3e-3, and that model never folded
  and never registered: it pushed the disk out of the image (Dice 0). That is the loss's other way out:
  an empty image differs from the fixed image by the fixed disk alone, a moving disk that barely
  overlaps it by both disks (the last line printed: 0.058 against 0.125), so for the mean squared error,
  losing the disk beats a poor overlap.
* **PyramidNet** registers every held-out pair (its worst Dice is close to its mean) without a fold and
  with the smallest error, about one voxel: its coarsest level starts the push on a 16 x 16 grid, where it
  is only a few voxels long, the next level carries it most of the way, and the finest level mostly
  corrects the edge (exercise 3 looks inside).

Dice alone would hide the first failure and folding alone the second: read them together, and with the
end-point error when the true field is known.

The same holds on brains, where motion is smaller but real pairs differ by more than a training generator
shows: the kit's default learned model (`regedu.register(..., method="voxelmorph")`) is a PyramidNet,
`pyramid2d_brain`, because on held-out brain pairs made differently from its training data it beat the
single-scale VoxelMorph trained on the same pairs for as many steps (the README's learned
benchmark has the numbers).
""")

nb.markdown("""
One held-out pair registered by each shipped model. **Top**: the warped disk (grey) and the fixed outline
(coloured). **Bottom**: the Jacobian determinant of each field on one colour scale, folds painted yellow
and counted in the title.
""")

nb.code("""
example = {key: value[:1] for key, value in held_out.items()}
with torch.no_grad():
    registered = {name: network(example["moving"], example["fixed"])[:2] for name, network in shipped.items()}
det_range = viz.jacobian_range([disp for _, disp in registered.values()])  # one colour scale for all
fig, axes = viz.new_figure(2, 3)
for col, (name, (warped, disp)) in enumerate(registered.items()):
    dice = metrics.dice(warps.warp_labels(example["moving_labels"], disp), example["fixed_labels"],
                        labels=[1])
    viz.overlay(warped, example["fixed_labels"], style="contour", ax=axes[0, col],
                title=f"{name}: warped, fixed outline\\nDice {dice.item():.3f}")
    viz.jacobian_map(disp, ax=axes[1, col], title=f"{name}: det J", vmin=det_range[0], vmax=det_range[1])
fig
""")

nb.markdown("""
Left, single-scale VoxelMorph: the warped disk covers the outline, with a speck of it left behind, and the
bottom panel shows how: over a patch of more than a hundred voxels the map folds (yellow: the grid turned
inside out), and next to the folds det J reaches tens (the top of the shared colour scale), a few fixed
voxels reading a large patch of the moving image. The field gathers the disk by tearing the grid rather
than pushing it.
Middle, the diffeomorphic version: the disk lands and nothing folds, but det J is far from 1 over a wide
region around where the disk started. Right, PyramidNet: the disk lands and det J stays close to 1 almost
everywhere: one smooth push.
""")

nb.exercise("""
**Exercise 3 (inside the pyramid).** Call the shipped PyramidNet (`shipped["PyramidNet"]`) with
`return_levels=True` on `example`: it returns `(warped, disp, levels)`, where `levels[i]` is the total
field after level `i`, on that level's grid, in that grid's voxels. Bring each one to full resolution with
`warps.resize_disp(field, SHAPE)` and print its largest displacement and the Dice it reaches
(`warps.warp_labels`, `metrics.dice`). Which level does most of the moving, i.e. adds the most to the
largest motion of the levels before it? Answer with
`answer = {"largest_motion": [one value per level, in voxels of the full grid], "most_moving_level": k}`.
""", starter="""
# your code here

answer = ...  # {"largest_motion": [...], "most_moving_level": ...}
""", solution="""
network = shipped["PyramidNet"]
with torch.no_grad():
    _, _, level_fields = network(example["moving"], example["fixed"], return_levels=True)
largest = []
for level, field in enumerate(level_fields):
    full = warps.resize_disp(field, SHAPE)
    largest.append(full.norm(dim=1).max().item())
    dice = metrics.dice(warps.warp_labels(example["moving_labels"], full), example["fixed_labels"])
    print(f"after level {level} (grid {tuple(field.shape[2:])}): largest motion "
          f"{largest[-1]:5.1f} voxels, Dice {dice.mean().item():.3f}")
added = [largest[0]] + [after - before for before, after in zip(largest, largest[1:], strict=False)]
answer = {"largest_motion": largest, "most_moving_level": added.index(max(added))}
print(answer)
# On this pair level 1 (the 32 x 32 grid) does most of the moving: level 0 starts the push (6 of the 18
# voxels), level 1 carries it nearly all the way, and level 2 corrects the edge (Dice 0.35, 0.88, 0.99).
""", check="check.ex3(answer, shipped['PyramidNet'], example)")

nb.markdown("""
## 5. Try it: where does single scale break?

Two sliders: the **push** (2 to 20 voxels, the pair of section 3) and the number of **pyramid levels** of
the classical registration (60 iterations shared by the levels). The top row shows the pair on the
coarsest grid (do the blurred disks overlap there?), the classical result with its Dice, end-point
error and folding, and its grid; the bottom row the three shipped networks on the same pair (they have
no levels to choose: PyramidNet always uses its 3). Each new setting costs one classical registration of
60 iterations, a second or two on a laptop CPU; settings already computed (those of section 3) show at
once.

Things to try: at 1 level, push from 4 to 12 and watch the disk stop short; at 12, add levels one by one;
find the push where even 4 levels break, and compare the push on the coarsest grid with the disk's radius
there, then look at the networks' row for that push. The networks were trained on pushes of 12 to 20
voxels: below 12 they are outside their training range (the diffeomorphic one does worse there).
""")

nb.code("""
widgets.multiscale_widget(shipped, magnitude=12, levels=1, iterations=SWEEP_ITERATIONS, device=device,
                          cache=views)
""")

nb.markdown("""
## Check what this notebook taught

* a field pyramid rescales displacements with the grid: the same motion is about 8 times shorter
  (63 / 8 voxel spacings) on the 9 x 9 grid;
* on a motion larger than the moving structure, four-level classical registration succeeds where a single
  level fails (higher Dice, smaller end-point error);
* the live training started: the loss fell;
* on held-out pairs, every shipped model's Dice is well above before registration, and PyramidNet's above
  both single-scale models'; single-scale VoxelMorph folds more than 1% of the grid, its diffeomorphic
  version and PyramidNet practically nowhere; PyramidNet's end-point error is less than half of either
  single-scale model's. The thresholds are named at the top of the cell.
""")

nb.code("""
MIN_CLASSICAL_GAIN = 0.2      # Dice of levels=4 above levels=1 on the 12-voxel push
MIN_LEARNED_GAIN = 0.5        # each shipped model's mean held-out Dice above before registration
MIN_PYRAMID_LEAD = 0.01       # PyramidNet's mean Dice above each single-scale model's
MAX_PYRAMID_FOLDING = 0.001   # PyramidNet folds less than 0.1% of the grid
MIN_SINGLE_FOLDING = 0.01     # single-scale VoxelMorph folds more than 1% of the grid
MAX_DIFF_FOLDING = 0.001      # its diffeomorphic version does not fold (less than 0.1%)
MIN_ERROR_RATIO = 2.0         # each single-scale model's end-point error at least twice PyramidNet's

coarse_disp = warps.resize_disp(true_disp, shapes[0])
shrink = (SHAPE[0] - 1) / (shapes[0][0] - 1)  # 63 / 8: first and last voxel centres stay in place
assert abs(coarse_disp.norm(dim=1).max().item() * shrink - true_disp.norm(dim=1).max().item()) < 0.5
dice_1, error_1 = scores(classic[1].disp, classic[1].warped_labels)
dice_4, error_4 = scores(classic[4].disp, classic[4].warped_labels)
assert dice_4 > dice_1 + MIN_CLASSICAL_GAIN, (dice_1, dice_4)
assert error_4 < error_1 / 2, (error_1, error_4)
for name, history in histories.items():
    quarter = max(1, STEPS // 4)
    first, last = history.losses[:quarter], history.losses[-quarter:]
    assert sum(last) / len(last) < sum(first) / len(first), f"{name}: the live training loss did not fall"
mean = {name: {key: value.mean().item() for key, value in table[name].items() if key != "ms"}
        for name in shipped}
single, diffeo, pyramid = (mean[name] for name in shipped)
for name in shipped:
    assert mean[name]["dice"] > before.mean().item() + MIN_LEARNED_GAIN, (name, before.mean().item(), mean)
for other in (single, diffeo):
    assert pyramid["dice"] > other["dice"] + MIN_PYRAMID_LEAD, (other, pyramid)
    assert other["error"] > MIN_ERROR_RATIO * pyramid["error"], (other, pyramid)
assert pyramid["folding"] < MAX_PYRAMID_FOLDING, pyramid
assert single["folding"] > MIN_SINGLE_FOLDING, single
assert diffeo["folding"] < MAX_DIFF_FOLDING, diffeo
print("all checks passed")
""")

nb.write()
