"""Builds notebooks/06_multiscale.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("06_multiscale")

nb.markdown("""
# 06 · Multiscale registration: coarse to fine for large deformations

**What you will learn (about 30 minutes):** what image and field pyramids are; why a registration that
works at a single resolution gets stuck when the motion is larger than the structures it moves; how a
coarse-to-fine (multi-level) optimisation escapes, in classical registration (`levels=1` versus
`levels=4`); and how a multiscale network, `regedu.models.PyramidNet`, learns large deformations that a
single-scale VoxelMorph struggles with.

The core problem: a similarity loss only "sees" a misalignment where the images overlap. Its gradient says
"move this edge a little"; when a structure must travel further than its own size, small local steps lead
nowhere. On a grid 8 times coarser, the same motion is 8 times shorter, the blurred structures overlap,
and the gradient points the right way. Solve the coarse problem first, then refine.
""")

nb.code("""
import os

import torch

import regedu
from regedu import classical, data, metrics, models, train, viz, warps
from regedu.classical.common import downsample

FAST = os.environ.get("REGEDU_FAST") == "1"
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_ = torch.manual_seed(0)

SHAPE = (64, 64)
# classical: the same total number of iterations for one level and for four
ITERATIONS_1 = (60,) if FAST else (250,)
ITERATIONS_4 = (20, 15, 15, 10) if FAST else (100, 50, 50, 50)
# learned: training steps and batch size (a GPU affords a longer run)
STEPS = 10 if FAST else (600 if device.type == "cuda" else 150)
BATCH = 4 if FAST else 8
print(f"device: {device}, fast mode: {FAST}, training steps: {STEPS}")
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
disk and with the **end-point error** against the true field inside the fixed disk (voxels; lower is
better).
""")

nb.code("""
fixed_disk = pair["fixed_labels"][:, 0] > 0
dice_before = metrics.dice(pair["moving_labels"], pair["fixed_labels"]).mean().item()
classic = {}
for levels, iterations in [(1, ITERATIONS_1), (4, ITERATIONS_4)]:
    classic[levels] = regedu.register(moving, fixed, method="dense", levels=levels, iterations=iterations,
                                      moving_labels=pair["moving_labels"], progress=False)


def scores(disp, warped_labels):
    dice = metrics.dice(warped_labels, pair["fixed_labels"]).mean().item()
    error = (disp - true_disp).norm(dim=1)[fixed_disk].mean().item()
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
Which one closes the gap?
""", starter="""
c_to_o = data.large_deformation_pair(SHAPE, kind="c_to_o", device=device)
gap = (c_to_o["fixed_labels"] > 0) & (c_to_o["moving_labels"] == 0)
# your code here
""", solution="""
c_to_o = data.large_deformation_pair(SHAPE, kind="c_to_o", device=device)
gap = (c_to_o["fixed_labels"] > 0) & (c_to_o["moving_labels"] == 0)
warped_images, titles = [c_to_o["moving"]], ["moving C"]
for levels, iterations in [(1, ITERATIONS_1), (4, ITERATIONS_4)]:
    result = regedu.register(c_to_o["moving"], c_to_o["fixed"], method="dense", levels=levels,
                             iterations=iterations, moving_labels=c_to_o["moving_labels"], progress=False)
    covered = (result.warped_labels > 0)[gap].float().mean().item()
    print(f"levels={levels}: {100 * covered:.0f}% of the gap covered")
    warped_images.append(result.warped)
    titles.append(f"levels={levels}: {100 * covered:.0f}% of gap")
viz.show_slices(warped_images + [c_to_o["fixed"]], titles + ["fixed O"])
""")

nb.exercise("""
**Exercise 2 (how many levels?).** Register the disk pair with the diffeomorphic method `method="svf"`
for `levels = 1, 2, 3, 4`, giving each run the same total budget (split it as
`iterations=[sum(ITERATIONS_4) // levels] * levels`). Print Dice and the end-point error (`scores(...)`).
How many levels does this motion need, and why (compare the motion with the disk's radius at each level)?
""", starter="""
# your code here
""", solution="""
total = sum(ITERATIONS_4)
for levels in [1, 2, 3, 4]:
    result = regedu.register(moving, fixed, method="svf", levels=levels,
                             iterations=[total // levels] * levels, moving_labels=pair["moving_labels"],
                             progress=False)
    dice, error = scores(result.disp, result.warped_labels)
    print(f"levels={levels}: Dice {dice:.3f}, end-point error {error:5.2f} voxels")
# One level fails; from the level where the motion (12 / 2**(levels - 1) voxels at the coarsest grid)
# is shorter than the blurred disk's radius, the disks overlap there and the optimiser finds the way.
""")

nb.markdown("""
## 3. Learned: single-scale VoxelMorph versus PyramidNet

A network learns from many pairs instead of optimising one. Our training pairs: the same toy, with a random
direction for each pair and a motion of 12 to 20 voxels: always more than the disk's radius.
`data.LargeDeformationPairs` draws them from `large_deformation_pair` with a different seed per item
(unsupervised training needs only `moving` and `fixed`; the labels let `train.evaluate` compute Dice).

* `models.VoxelMorph(2)`: one U-Net at full resolution predicts the whole field at once.
* `models.PyramidNet(2, levels=3)`: one small U-Net per level (LapIRN's idea). Level 0 registers the
  images shrunk 4 times; each next level upsamples the field so far (`resize_disp`), warps its own moving
  image with it, and predicts only the *residual* motion, composed with the field so far.

Both are trained the same way: mean squared error between fixed and warped (the images are binary) plus a
small diffusion regulariser, Adam, the same steps and batch size.
""")

nb.code("""
# toy pairs: a disk and the disk moved 12 to 20 voxels in a random direction, one seed per item
train_pairs = data.LargeDeformationPairs(4096, shape=SHAPE, magnitude=20.0, min_magnitude=12.0, seed=0)
test_pairs = data.LargeDeformationPairs(16, shape=SHAPE, magnitude=20.0, min_magnitude=12.0, seed=1)
item = train_pairs[0]
print({key: tuple(value.shape) for key, value in item.items()})
""", expect="{'moving': (1, 64, 64), 'fixed': (1, 64, 64), 'moving_labels': (1, 64, 64), "
            "'fixed_labels': (1, 64, 64), 'disp': (2, 64, 64)}\n")

nb.code("""
config = train.TrainConfig(supervision="unsupervised", similarity="mse", weight=0.01, lr=3e-3,
                           batch_size=BATCH, steps=STEPS)
networks = {"VoxelMorph": models.VoxelMorph(2).to(device),
            "PyramidNet": models.PyramidNet(2, levels=3).to(device)}
histories = {}
for name, network in networks.items():
    _ = torch.manual_seed(0)
    print(name, f"({sum(p.numel() for p in network.parameters()):,} parameters)")
    histories[name] = train.train(network, train_pairs, config)
""")

nb.markdown("""
Held-out pairs (other seeds): mean Dice of the warped disk, the share of folded voxels, and the time per
pair. In full mode, PyramidNet should move the disks onto their targets while the single-scale VoxelMorph
still lags far behind after the same training; in fast mode (a few steps) neither has learned much yet.
Both fields fold a little: the regulariser weight is small so that large motions are cheap. A
diffeomorphic variant (`diffeomorphic=True` for either model, notebook 05) would not fold.
""")

nb.code("""
test_items = [test_pairs[i] for i in range(len(test_pairs))]
test_dice_before = torch.cat([metrics.dice(p["moving_labels"][None], p["fixed_labels"][None])
                              for p in test_items]).mean().item()
print(f"{'':12s} mean Dice  folding %  ms per pair")
print(f"{'before':12s} {test_dice_before:9.3f}")
learned = {}
for name, network in networks.items():
    learned[name] = train.evaluate(network, test_pairs)
    print(f"{name:12s} {learned[name]['dice']:9.3f}  {100 * learned[name]['folding']:9.2f}  "
          f"{1000 * learned[name]['seconds_per_pair']:11.1f}")
""")

nb.markdown("""
Training curves (left) and one held-out pair registered by each network. Look at how fast each loss
falls, and whether the warped disk (grey) fills the fixed outline (coloured contour).
""")

nb.code("""
example = {key: value[None].to(device) for key, value in test_pairs[0].items()}
fig, axes = viz.new_figure(1, 3, width=3.6 * viz.PANEL_INCHES)
smooth = max(2, STEPS // 15)
for name, history in histories.items():
    drawn = len(axes[0, 0].lines)
    viz.loss_curve(history, ax=axes[0, 0], smooth=smooth, xlabel="training step", title="training loss")
    raw_line, mean_line = axes[0, 0].lines[drawn:]
    raw_line.set_label("_nolegend_")
    mean_line.set_label(f"{name} (mean of {smooth} steps)")
axes[0, 0].legend(fontsize="small")
with torch.no_grad():
    for col, (name, network) in enumerate(networks.items(), start=1):
        warped, disp = network.eval()(example["moving"], example["fixed"])
        dice = metrics.dice(warps.warp_labels(example["moving_labels"], disp), example["fixed_labels"])
        viz.overlay(warped, example["fixed_labels"], style="contour", ax=axes[0, col],
                    title=f"{name}: warped, fixed outline\\nDice {dice.mean().item():.3f}")
fig
""")

nb.exercise("""
**Exercise 3 (inside the pyramid).** Call the trained PyramidNet with `return_levels=True` on `example`:
it returns `(warped, disp, levels)`, where `levels[i]` is the total field after level `i`, on that level's
grid, in that grid's voxels. Bring each one to full resolution with `warps.resize_disp(field, SHAPE)` and
print its largest displacement and the Dice it reaches (`warps.warp_labels`, `metrics.dice`). Which level
does most of the moving? (After a short fast-mode run the numbers are small; the pattern shows after a
full run.)
""", starter="""
# your code here
""", solution="""
network = networks["PyramidNet"].eval()
with torch.no_grad():
    _, _, level_fields = network(example["moving"], example["fixed"], return_levels=True)
for level, field in enumerate(level_fields):
    full = warps.resize_disp(field, SHAPE)
    dice = metrics.dice(warps.warp_labels(example["moving_labels"], full), example["fixed_labels"])
    print(f"after level {level} (grid {tuple(field.shape[2:])}): largest motion "
          f"{full.norm(dim=1).max().item():5.1f} voxels, Dice {dice.mean().item():.3f}")
# After a full run the coarsest level already does most of the motion; the finer ones correct the edge.
""")

nb.markdown("""
## Check what this notebook taught

* a field pyramid rescales displacements with the grid: the same motion is about 8 times shorter
  (63 / 8 voxel spacings) on the 9 x 9 grid;
* on a motion larger than the moving structure, four-level classical registration succeeds where a single
  level fails (higher Dice, smaller end-point error);
* both networks take the same pairs and return fields of the same shape (the learned scores above are
  reported, not asserted: fast mode trains only a few steps).
""")

nb.code("""
coarse = warps.resize_disp(true_disp, shapes[0])
shrink = (SHAPE[0] - 1) / (shapes[0][0] - 1)  # 63 / 8: first and last voxel centres stay in place
assert abs(coarse.norm(dim=1).max().item() * shrink - true_disp.norm(dim=1).max().item()) < 0.5
dice_1, error_1 = scores(classic[1].disp, classic[1].warped_labels)
dice_4, error_4 = scores(classic[4].disp, classic[4].warped_labels)
assert dice_4 > 0.9 and dice_4 > dice_1 + 0.2, (dice_1, dice_4)
assert error_4 < error_1 / 2, (error_1, error_4)
for name, network in networks.items():
    warped, disp = network(example["moving"], example["fixed"])
    assert disp.shape == (1, 2, *SHAPE) and torch.isfinite(disp).all(), name
print("all checks passed")
""")

nb.write()
