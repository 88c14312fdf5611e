"""Builds notebooks/05_diffeomorphic.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("05_diffeomorphic", checks="regedu.course.lesson05")

nb.markdown("""
# 05 · Diffeomorphic registration: velocity fields whose flow never folds

**What you will learn (about 40 minutes):** why a displacement field can *fold* and why that matters;
how a smooth, invertible map (a *diffeomorphism*) is built from a **stationary velocity field** by
**scaling and squaring**, and why the map a computer computes that way can still fold where the exact
one cannot; how to measure folding with the Jacobian determinant and read a Jacobian map;
how to invert a diffeomorphism by integrating the negated velocity; how diffeomorphic classical
registration compares with the plain (non-diffeomorphic) one on the same pair of brains; and what a
diffeomorphic *network* guarantees (an inverse of its own) and what it does not (inverse consistency).

The conventions used here (pulling warps, the order of `compose`, what det J measures) are on one page:
[docs/conventions.md](../docs/conventions.md).

A displacement field `disp` says where each fixed voxel `x` samples the moving image: at `x + disp(x)`.
Nothing stops two neighbouring voxels from swapping places: the map then **folds**, the warped image
shows the same tissue twice, a structure can cross another, and no inverse exists. Anatomy does not do
that, so many applications (atlases, longitudinal studies, propagating labels) demand maps that are
*diffeomorphic*: smooth, one-to-one, with a smooth inverse.
""")

nb.code("""
import os
import time

import torch

import regedu
from regedu import data, metrics, models, viz, warps, widgets
from regedu.course import lesson05 as check

FAST = os.environ.get("REGEDU_FAST") == "1"
device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
_ = torch.manual_seed(0)

# registration effort: fewer iterations in fast mode (what the tests run)
ITERATIONS = (40, 20, 10) if FAST else (200, 100, 50)
AFFINE_ITERATIONS = (50, 25, 0) if FAST else (100, 50, 0)
print(f"device: {device}, fast mode: {FAST}")
""")

nb.markdown("""
## 1. A stationary velocity field

Instead of a displacement, we pick a **velocity** `v(x)`: a vector at every voxel, in voxels per unit time,
with the same layout as a displacement, `(B, ndim, *spatial)`. Let every point flow along it for one unit
of time, `dx/dt = v(x)`. The point where it ends is `exp(v)(x)`, the **exponential** of `v`. Because
trajectories of a smooth flow never cross, the exact `exp(v)` cannot fold, and flowing along `-v` brings
every point back: `exp(-v)` is its inverse.

A computer never has the exact flow. It has `v` on the voxel grid, an approximate integration
(section 2) and finite differences for the Jacobian; the **computed** `exp(v)` inherits "cannot fold"
only as long as the grid can represent the flow. Exercise 2 and section 6 show where it stops.

`regedu.data.random_velocity` draws a smooth random field; `magnitude` is its largest component (voxels)
and `smoothness` the spacing of its control points. We take a strong one: up to 16 voxels on a brain
slice of 96 x 112 voxels.
""")

nb.code("""
brain = data.brain_slice(device=device)
shape = tuple(brain.image.shape[2:])
velocity = data.random_velocity(shape, magnitude=16.0, smoothness=16.0, seed=0, device=device)
print(tuple(velocity.shape))
""", expect="(1, 2, 96, 112)\n")

nb.markdown("""
Two views of the same field. **Left**: colour shows the direction (the wheel in the corner), saturation the
length (white = no motion). **Right**: arrows (every 8th voxel) from `x` to `x + v(x)` on the brain. The
brain is shown as a radiologist reads it (patient's right on the left, anterior at the top).
""")

nb.code("""
fig, axes = viz.new_figure(1, 2)
viz.displacement_colour(velocity, ax=axes[0, 0], orientation=True, title="velocity")
viz.displacement_arrows(velocity, step=8, ax=axes[0, 1], image=brain.image, orientation=True,
                        title="velocity arrows")
fig
""")

nb.markdown("""
## 2. Scaling and squaring

Integrating the flow with tiny Euler steps would take hundreds of warps. **Scaling and squaring** needs
only a handful, thanks to a property of the exponential: `exp(v) = exp(v / 2^N) o exp(v / 2^N) o ...`
(2^N times). So:

1. **scale**: for large enough `N`, `v / 2^N` is a tiny displacement, and `x + v(x) / 2^N` is an excellent
   approximation of `exp(v / 2^N)` (and does not fold: its gradient is tiny);
2. **square** `N` times: composing a map with itself doubles its time, `phi_{k+1} = phi_k o phi_k`,
   which `regedu.warps.compose(d, d)` computes (with `u = v = d` the two readings of `compose`,
   section 4, agree).

`regedu.warps.integrate(velocity, steps=N)` does exactly this (default `N = 7`, i.e. 128 tiny steps for
the price of 7 warps). With `N = 0` the velocity is used as the displacement directly. Watch how the
result settles as `N` grows: the last column is how much the field still changes when one more step is
added.
""")

nb.predict("""
The velocity's components reach 16 voxels. Used directly as a displacement (`steps = 0`), will it
fold somewhere? And after one scaling-and-squaring step (`steps = 1`)?
""", """
With 0 steps about 4% of the voxels fold (smallest det J about -0.95): the field changes by more than one
voxel per voxel in places, and a displacement that steep turns the grid inside out. From `steps = 1` on
nothing folds: `v / 2` alone does not fold (its smallest det J is about 0.13), and a map composed of two
maps that do not fold does not fold either (det J multiplies). With one step the smallest det J comes
close to 0 (about 0.02), and it settles near 0.16 as steps are added, while the field stops changing.
""")

nb.code("""
previous = None
print("steps  folding %  min det J  change from previous (max, voxels)")
for steps in range(9):
    disp = warps.integrate(velocity, steps)
    change = "" if previous is None else f"{(disp - previous).abs().max().item():.3f}"
    print(f"{steps:5d}  {100 * metrics.folding_fraction(disp).item():9.2f}  "
          f"{metrics.min_jacobian(disp).item():9.3f}  {change}")
    previous = disp
""")

nb.markdown("""
With 0 steps (velocity used as a displacement) a few percent of the voxels fold; from one step on, none
do, and after about 6 steps the field changes by less than a tenth of a voxel. Move the slider below to
see it: the left panel is the fixed grid drawn where it samples the brain, the right panel the Jacobian
determinant (section 3 explains its colours; folds are **yellow**).
""")

nb.code("""
widgets.integration_steps_widget(velocity, max_steps=8, image=brain.image, orientation=True, spacing=4)
""")

nb.exercise("""
**Exercise 1 (scaling and squaring by hand).** Write `my_integrate(v, steps)` with nothing but division
and `warps.compose`: scale `v` by `1 / 2**steps`, then compose the field with itself `steps` times.
Check that it matches `warps.integrate(velocity, 7)` to within `1e-4` voxels, then put the function
itself in `answer` (`answer = my_integrate`, no brackets): the check calls it on velocities of its own, 2D
and 3D, with several numbers of steps.
""", starter="""
def my_integrate(v, steps):
    # your code here: scale v, then square (compose the field with itself) steps times
    return v


# print((my_integrate(velocity, 7) - warps.integrate(velocity, 7)).abs().max())
answer = ...  # your function: answer = my_integrate
""", solution="""
def my_integrate(v, steps):
    disp = v / 2**steps                 # scaling: a tiny displacement, x + disp is almost exp(v / 2**steps)
    for _ in range(steps):
        disp = warps.compose(disp, disp)  # squaring: phi o phi doubles the flow time
    return disp


error = (my_integrate(velocity, 7) - warps.integrate(velocity, 7)).abs().max().item()
print(f"largest difference from warps.integrate: {error:.2e} voxels")
answer = my_integrate
""", check="check.ex1(answer)")

nb.markdown("""
## 3. Folding: the same size, a different fate

Now compare the field `velocity` used *directly* as a displacement with `exp(velocity)`. Both move the brain
by up to about 16 voxels. The first folds, the second does not.

How we measure it: the map `x -> x + disp(x)` (fixed grid -> moving image) has a Jacobian matrix
`I + grad disp` at every voxel, and its **determinant** `det J` is the area (volume in 3D) of the moving
image that one fixed voxel reads: 1 keeps it; 2 means the voxel reads twice its own area, so that
anatomy appears **compressed** to half its area in the warped image; 0.5 means it appears stretched to
twice its area (the warped anatomy scales by `1 / det J`). Where `det J <= 0` the map has turned space
inside out: it **folds** there.
`regedu.metrics.folding_fraction` is the share of such voxels, `regedu.metrics.min_jacobian` the smallest
determinant.
""")

nb.code("""
raw = velocity                        # the velocity used as if it were a displacement
diffeo = warps.integrate(velocity)    # its exponential, 7 scaling-and-squaring steps
for name, disp in [("velocity as displacement", raw), ("exp(velocity)", diffeo)]:
    print(f"{name:25s} largest motion {disp.norm(dim=1).max().item():5.1f} voxels, "
          f"folding {100 * metrics.folding_fraction(disp).item():.2f}%, "
          f"min det J {metrics.min_jacobian(disp).item():+.2f}")
""")

nb.code("""
print("velocity as displacement folds:", bool(metrics.folding_fraction(raw).item() > 0))
print("exp(velocity) folds:", bool(metrics.folding_fraction(diffeo).item() > 0))
""", expect="velocity as displacement folds: True\nexp(velocity) folds: False\n")

nb.markdown("""
**How to read the figure.** Top row: the fixed grid drawn where each of its points samples the brain.
Where grid lines cross each other, the map folds. Bottom row: the Jacobian map of `regedu.viz.jacobian_map`.
Its colour map is **centred at 1** (white: no change of area); blue below 1 (a fixed voxel reads less
than its own area: the warped anatomy appears stretched), red above 1 (it reads more: the warped anatomy
appears compressed). When anything folds, the colour bar starts at 0, **where folding starts**, and
folded voxels (det J <= 0) are painted yellow and counted in the title (without folds it starts at the
smallest determinant).
Look for the yellow patches on the left and the crossing grid lines above them; on the right the
same motion stays blue and red, never yellow.
""")

nb.code("""
fig, axes = viz.new_figure(2, 2, height=2 * viz.PANEL_INCHES + 0.4)
for col, (name, disp) in enumerate([("velocity as displacement", raw), ("exp(velocity)", diffeo)]):
    viz.deformation_grid(disp, spacing=4, ax=axes[0, col], image=brain.image, orientation=True, title=name)
    viz.jacobian_map(disp, ax=axes[1, col], orientation=True)
fig
""")

nb.markdown("""
## 4. Inverting a diffeomorphism

The inverse of `exp(v)` is `exp(-v)`: flow backwards for the same time. Going out with one and coming
back with the other should bring every point home: the composition is the identity, a zero displacement.

**The order of `compose`, in both readings** (as `regedu/warps.py` defines it, see
[docs/conventions.md](../docs/conventions.md)): `warps.compose(u, v)` is the field
`x -> v(x) + u(x + v(x))`.
* Read as **image warps**, it warps by `u` first, then by `v`:
  `warp(warp(img, u), v) == warp(img, compose(u, v))`.
* Read as **point maps** (`x -> x + u(x)` and `x -> x + v(x)`), it applies `v`'s map first, then `u`'s.

`regedu.metrics.inverse_consistency(forward, backward, mask)` measures a round trip: every voxel `x` goes
out with `forward` and comes back with `backward` (point maps: `forward` first), landing at `x + r(x)`
with `r = warps.compose(backward, forward)`; it returns the mean length of `r` in voxels, 0 for an exact
inverse. For the folding field there is no inverse at all; the naive guess `-disp` fails badly. We
measure inside the brain: near the image border the field pushes points out of the image, where nothing
can be recovered.
""")

nb.predict("""
Out with `exp(v)` and back with `exp(-v)`; out with the raw field `disp` and back with `-disp`. On
average over the brain, how far from home does each round trip leave a voxel: a hundredth of a voxel, a
tenth, one voxel, several?
""", """
`exp(v)` then `exp(-v)`: a few hundredths of a voxel (interpolation only). `disp` then `-disp`: several
voxels (about 4). `-disp` is not the inverse of `disp`: to come back, a point must undo the displacement of
the place it came from, `disp(x)`, but `-disp` gives it the displacement of the place it is at, and on a
field this strong the two differ by voxels.
""")

nb.code("""
forward, backward = warps.integrate(velocity), warps.integrate(-velocity)
residual_diffeo = metrics.inverse_consistency(forward, backward, mask=brain.mask).item()
residual_raw = metrics.inverse_consistency(raw, -raw, mask=brain.mask).item()
print(f"out with exp(v), back with exp(-v): mean distance from the identity {residual_diffeo:.3f} voxels")
print(f"out with raw disp, back with -disp: mean distance from the identity {residual_raw:.3f} voxels")
""")

nb.markdown("""
The same round trip on the image: warp the brain forward, then back. With `exp(v)` and `exp(-v)` the brain
comes back (the difference shows only interpolation blur, and a streak at the right edge where the
forward warp pulled from outside the image, which `padding="border"` fills with the edge voxels); with
the folding field and its naive inverse, tissue that was folded away is lost for good.
""")

nb.code("""
fig, axes = viz.new_figure(2, 3)
for row, (name, there, back) in enumerate([("exp", forward, backward), ("raw", raw, -raw)]):
    moved = warps.warp(brain.image, there)
    returned = warps.warp(moved, back)
    viz.show_image(moved, ax=axes[row, 0], orientation=True,
                   title="warped by exp(v)" if name == "exp" else "warped by raw disp")
    viz.show_image(returned, ax=axes[row, 1], orientation=True,
                   title="...then by exp(-v)" if name == "exp" else "...then by -disp")
    viz.difference(brain.image, returned, ax=axes[row, 2], vmax=1.0, names=("original", "round trip"),
                   orientation=True)
fig
""")

nb.exercise("""
**Exercise 2 (how far does it hold?).** Multiply the velocity by `s = 0.5, 1, 2, 3, 4`. For each, print the
folding percentage of `s * velocity` used as a displacement, and of `warps.integrate(s * velocity, steps)`
with 7 and with 12 steps. At which `s` does the raw field start to fold? The exact exponential never folds:
does the computed one? Do more steps help? (Hint: look at `viz.jacobian_map(warps.integrate(4 * velocity))`:
how small does det J get around the folds, and what happens to a region squeezed into less than a voxel?)

Put your findings in `answer`: `"raw_folds_from"`, the smallest `s` at which the raw field folds;
`"computed_folds_from"`, the smallest `s` at which `warps.integrate(s * velocity, 7)` folds (`None` if it
never does); `"more_steps_fix_it"`, `True` if 12 steps remove the folds that 7 steps leave, else `False`.
""", starter="""
# your code here

answer = ...  # {"raw_folds_from": ..., "computed_folds_from": ..., "more_steps_fix_it": ...}
""", solution="""
print("   s   raw %   exp, 7 steps %   exp, 12 steps %")
table = {}  # s -> folding % of the raw field, of exp with 7 steps, of exp with 12 steps
for s in [0.5, 1, 2, 3, 4]:
    v = s * velocity
    table[s] = [metrics.folding_fraction(d).item() * 100
                for d in (v, warps.integrate(v, 7), warps.integrate(v, 12))]
    print(f"{s:4}  {table[s][0]:6.2f}  {table[s][1]:15.2f}  {table[s][2]:16.2f}")


def first_folding(column):
    \"\"\"The smallest s whose field in this column (0: raw, 1: 7 steps, 2: 12 steps) folds, or None.\"\"\"
    return next((s for s, folds in table.items() if folds[column] > 0), None)


answer = {"raw_folds_from": first_folding(0), "computed_folds_from": first_folding(1),
          "more_steps_fix_it": any(folds[1] > 0 and folds[2] == 0 for folds in table.values())}
print(answer)
# The raw field folds from s = 1 on; the computed exponential stays fold-free up to s = 2 and then folds
# a little (s = 3: motion up to 48 voxels on a 96 x 112 image), with 12 steps as with 7. The steps are
# not the problem: the flow squeezes some regions so hard (det J of the exact map close to 0) that they
# shrink below one voxel, and a field sampled on the voxel grid, differentiated by finite differences,
# can no longer represent them. In registration this is why a diffeomorphic method still needs a
# regulariser: it keeps the velocity smooth and its compressions within what the grid can show.
""", check="check.ex2(answer, velocity)")

nb.markdown("""
## 5. Diffeomorphic registration of two brains

Everything so far was a field we made up. In registration we *search* for the field. The classical
dense method of notebook 02 can optimise either

* the **displacement** itself (`method="affine+dense"`): free, but nothing prevents folding, or
* a **velocity** whose exponential is the displacement (`method="affine+svf"`, stationary velocity field):
  every candidate the optimiser tries is a diffeomorphism.

The fixed image is a synthetic subject: the brain template pushed through a random affine and a strong
random diffeomorphism (magnitude 8 voxels), with intensity changes. We know its tissue labels, so Dice
measures how well each method aligns anatomy. Both use the same similarity (local NCC), the same light
regularisation (`weight=0.2`) and the same iterations.
""")

nb.code("""
subject = data.synth_subject(brain.image, brain.labels, magnitude=8.0, smoothness=12.0, seed=3)
moving, fixed = brain.image, subject.image
moving_labels, fixed_labels = brain.labels, subject.labels

# warm-up, not timed: the first registration of a session pays a one-off start-up cost (PyTorch loads
# its optimiser machinery, several seconds), which would be charged to whichever method ran first
_ = regedu.register(moving, fixed, method="affine+dense", iterations=1, progress=False,
                    affine_options={"iterations": 1})
results = {}
for method in ["affine+dense", "affine+svf"]:
    results[method] = regedu.register(moving, fixed, method=method, moving_labels=moving_labels,
                                      weight=0.2, iterations=ITERATIONS, progress=False,
                                      affine_options={"iterations": AFFINE_ITERATIONS})

dice_before = metrics.dice(moving_labels, fixed_labels).mean().item()
print(f"{'':14s} mean Dice  folding %  min det J  seconds")
print(f"{'before':14s} {dice_before:9.3f}")
for method, result in results.items():
    print(f"{method:14s} {metrics.dice(result.warped_labels, fixed_labels).mean().item():9.3f}  "
          f"{100 * metrics.folding_fraction(result.disp).item():9.2f}  "
          f"{metrics.min_jacobian(result.disp).item():+9.2f}  {result.seconds:7.1f}")
time_ratio = results["affine+svf"].seconds / results["affine+dense"].seconds
print(f"affine+svf took {time_ratio:.2f}x the time of affine+dense on this machine (one run each)")
""")

nb.markdown("""
Both methods align the tissues well (higher Dice is better; the velocity-based one as well as or better
than the free displacement here), but the free displacement folds in places while the velocity-based
one does not. The guarantee is not free: every iteration of `affine+svf` integrates the velocity (7 more
warps of the field) before it can warp the image, so with the same iterations it takes longer. The last
line gives the ratio measured here: the `seconds` each result records (affine stage included), one run
each after an untimed warm-up run, so the load of the machine moves it; the README's benchmark measured
1.33x over 10 brain pairs (14.2 s against 10.7 s per pair).

In the figure, look at the yellow voxels in the Jacobian maps (left column: free displacement) and at
where they sit: mostly in the middle of the brain, around the ventricles, where the optimiser squeezes
and shears intensity boundaries to improve the similarity a little more. The warped labels (contours on
the fixed image) show that both reach similar overlap.
""")

nb.code("""
fig, axes = viz.new_figure(3, 2, height=3 * viz.PANEL_INCHES + 0.6)
for col, (method, result) in enumerate(results.items()):
    dice_after = metrics.dice(result.warped_labels, fixed_labels).mean().item()
    viz.overlay(fixed, result.warped_labels, style="contour", ax=axes[0, col], orientation=True,
                title=f"{method}: warped labels on fixed\\nmean Dice {dice_after:.3f}")
    viz.deformation_grid(result.disp, spacing=4, ax=axes[1, col], image=moving, orientation=True,
                         title=f"{method}: grid on moving")
    viz.jacobian_map(result.disp, ax=axes[2, col], orientation=True, title=f"{method}: det J")
fig
""")

nb.markdown("""
The SVF result comes with its inverse. Its velocity (on the fixed grid, without the affine part) is kept
in `results["affine+svf"].parameters["velocity"]`, and integrating its negative undoes the deformable
part, as in section 4 (the affine part has its inverse matrix). The free displacement has no inverse of
its own, and where it folds none exists.
""")

nb.code("""
velocity_svf = results["affine+svf"].parameters["velocity"]
residual_svf = metrics.inverse_consistency(warps.integrate(velocity_svf), warps.integrate(-velocity_svf),
                                           mask=fixed_labels > 0).item()
print(f"SVF result, out with exp(v), back with exp(-v): mean distance from the identity "
      f"{residual_svf:.4f} voxels")
""")

nb.exercise("""
**Exercise 3 (demons, plain and diffeomorphic).** Demons (notebook 02) comes in both flavours too:
`method="affine+demons"` adds each update to the displacement, `method="affine+diffeomorphic_demons"`
composes the exponential of each update. Register the same pair with both (same `iterations=ITERATIONS`,
`affine_options` as above, `progress=False`) and print mean Dice, folding percentage and the smallest
Jacobian determinant. Keep the two results in the dict `demons` (method -> result), and put in
`answer` the method that keeps further away from folding (the larger min det J).
""", starter="""
demons = {}  # method -> the result of regedu.register
# your code here

answer = ...  # "affine+demons" or "affine+diffeomorphic_demons"
""", solution="""
demons = {}
for method in ["affine+demons", "affine+diffeomorphic_demons"]:
    result = regedu.register(moving, fixed, method=method, moving_labels=moving_labels,
                             iterations=ITERATIONS, progress=False,
                             affine_options={"iterations": AFFINE_ITERATIONS})
    demons[method] = result
    print(f"{method:28s} Dice {metrics.dice(result.warped_labels, fixed_labels).mean().item():.3f}, "
          f"folding {100 * metrics.folding_fraction(result.disp).item():.2f}%, "
          f"min det J {metrics.min_jacobian(result.disp).item():+.2f}")
answer = max(demons, key=lambda method: metrics.min_jacobian(demons[method].disp).item())
print("further from folding:", answer)
# Demons smooth their field strongly (sigma_diffusion), so here neither folds; the diffeomorphic
# variant keeps the smallest determinant further from 0, i.e. a safety margin against folding.
""", check="check.ex3(answer, demons)")

nb.markdown("""
## 6. Learned diffeomorphic registration

A network can predict a velocity instead of a displacement and integrate it by scaling and squaring
inside its forward pass: the diffeomorphic VoxelMorph (Dalca et al., MICCAI 2018). The kit ships two
networks trained alike, so that this is the only difference between them:

* `models.pretrained("voxelmorph2d_brain_lambda1")` predicts the displacement itself (**plain**);
* `models.pretrained("voxelmorph2d_brain_diff")` predicts a stationary velocity `v` and returns the
  displacement of the computed `exp(v)` (**diffeomorphic**: 7 scaling-and-squaring steps on a grid half
  as fine, `model.exponential`).

Both were trained without labels (local NCC + diffusion regulariser with weight 1) for 4000 steps on
`data.BrainSlicePairs` (sections from every axial level of the cerebrum, small to large deformations,
intensity changes, with and without a head) by `scripts/train_pretrained.py`; their logs sit beside the
weights in `regedu/weights/`. We test them on held-out pairs of the same kind that training never saw:
`data.BrainSlicePairs(N_PAIRS, seed=7)` (training used seeds from 10**6 on). Loading a network takes
a moment, so this section runs in fast mode too, on fewer pairs.
""")

nb.code("""
N_PAIRS = 8 if FAST else 32
held_out = data.BrainSlicePairs(N_PAIRS, seed=7, device=device)
items = [held_out[i] for i in range(N_PAIRS)]
test = {key: torch.stack([item[key] for item in items]) for key in items[0]}
networks = {"plain": models.pretrained("voxelmorph2d_brain_lambda1", device=device),
            "diffeomorphic": models.pretrained("voxelmorph2d_brain_diff", device=device)}
print({key: tuple(value.shape) for key, value in test.items()})
""")

nb.markdown("""
Each network registers every pair **both ways**: `there = net(moving, fixed)` (on the fixed grid: where
each fixed voxel samples the moving image) and `back = net(fixed, moving)` (on the moving grid), two
separate predictions. The round trip `metrics.inverse_consistency(there, back)` (section 4) starts on the
fixed grid, so we measure it inside the fixed brain. For the diffeomorphic network we also ask for its
velocity (`return_velocity=True`) and integrate `-v` the same way: `net.exponential(-v)` is the network's
own inverse of `there`, with no second prediction.
""")

nb.predict("""
The diffeomorphic network is invertible by construction. Will the round trip through its two separate
answers, `net(moving, fixed)` then `net(fixed, moving)`, come back about as close as the round trip through
its own inverse `exp(-v)`?
""", """
No. Its own inverse undoes its map up to interpolation (a few hundredths of a voxel, the last line of the
table), while the round trip through its two answers misses by many times more, like the plain network's:
nothing in the network makes its velocity for (fixed, moving) the negative of its velocity for (moving,
fixed). Invertible is not inverse-consistent.
""")

nb.code("""
def mean_length(disp, mask):
    \"\"\"Mean length (voxels) of a field (B, ndim, *spatial) inside mask (B, 1, *spatial): (B,).\"\"\"
    inside = (mask[:, 0] != 0).to(disp.dtype)
    return (torch.linalg.vector_norm(disp, dim=1) * inside).flatten(1).sum(1) / inside.flatten(1).sum(1)


def register_both_ways(network):
    \"\"\"Fields m -> f and f -> m of every held-out pair, and the seconds per registration.\"\"\"
    network(test["moving"][:1], test["fixed"][:1])                  # warm-up, not timed
    start = time.perf_counter()
    there = network(test["moving"], test["fixed"]).disp
    back = network(test["fixed"], test["moving"]).disp
    return there, back, (time.perf_counter() - start) / (2 * N_PAIRS)


fixed_brain = test["fixed_labels"] > 0
dice_before_learned = metrics.dice(test["moving_labels"], test["fixed_labels"]).nanmean(1)
learned = {}
with torch.no_grad():
    for name, network in networks.items():
        there, back, seconds = register_both_ways(network)
        warped_labels = warps.warp_labels(test["moving_labels"], there)
        learned[name] = {"there": there, "back": back, "ms": 1000 * seconds,
                         "dice": metrics.dice(warped_labels, test["fixed_labels"]).nanmean(1),
                         "folding": metrics.folding_fraction(there), "min_det": metrics.min_jacobian(there),
                         "length": mean_length(there, fixed_brain),
                         "round_trip": metrics.inverse_consistency(there, back, mask=fixed_brain)}
    diffeo_net = networks["diffeomorphic"]
    velocity_net = diffeo_net(test["moving"], test["fixed"], return_velocity=True).velocity
    own_inverse = diffeo_net.exponential(-velocity_net)
own_round_trip = metrics.inverse_consistency(learned["diffeomorphic"]["there"], own_inverse, mask=fixed_brain)

print(f"{N_PAIRS} held-out pairs: means over the pairs (min det J: the smallest over all of them)")
print(f"{'':14s} Dice   folding %  pairs that fold  min det J  mean |u|  round trip  ms/registration")
print(f"{'before':14s} {dice_before_learned.mean().item():.3f}")
for name, r in learned.items():
    print(f"{name:14s} {r['dice'].mean().item():.3f}  {100 * r['folding'].mean().item():9.3f}  "
          f"{int((r['folding'] > 0).sum()):15d}  {r['min_det'].min().item():+9.3f}  "
          f"{r['length'].mean().item():8.2f}  {r['round_trip'].mean().item():10.3f}  {r['ms']:15.1f}")
print(f"round trip of the diffeomorphic network with its own inverse exp(-v): "
      f"{own_round_trip.mean().item():.3f} voxels")
""")

nb.markdown("""
**Reading the table.** `mean |u|` is how far the field moves a fixed brain voxel on average, `round trip`
how far a fixed brain voxel lands from where it started after `there` and then `back` (both in voxels).

* **Dice.** Both networks register pairs they never saw: their Dice is well above before registration.
* **Folding.** The diffeomorphic network's computed `exp(v)` does not fold on these pairs, and its
  smallest det J stays positive. The guarantee belongs to the exact flow; the computed one keeps it only
  while the grid can represent the flow (the next cell stretches the network's velocities until it folds).
  The plain network has no guarantee at all: whatever it does not fold, its regulariser prevented.
* **Invertible, not inverse-consistent.** The diffeomorphic network is *invertible by construction*:
  integrating `-v` undoes its map up to interpolation (the last line). Ask it the other way round,
  though, `net(fixed, moving)`, and it makes a *second prediction* from swapped inputs; nothing in the
  network makes that velocity `-v`. The round trip through its two answers misses by many times the own
  inverse's residual, like the plain network's round trip, though by less than the field's mean length:
  the two answers agree roughly, not exactly. A diffeomorphic network is invertible but **not
  inverse-consistent**; that has to be built in or trained for (exercise 4 builds it in).
* **Time.** The diffeomorphic network integrates its velocity (7 warps of a field half as fine in each
  direction) after the U-Net: compare the last column (warm, milliseconds per registration on this machine).

The figure shows the held-out pair on which the diffeomorphic network moves most. Top row: the plain
network, bottom row: the diffeomorphic one. Columns: warped labels (contours) on the fixed image; det J
(one colour scale for both rows); where the round trip through the two predictions misses (distance in
voxels, inside the fixed brain, brighter is farther); and, bottom row only, the round trip through the
network's own `exp(-v)`, on the same scale as the third column.
""")

nb.code("""
pair = int(learned["diffeomorphic"]["length"].argmax())
one = slice(pair, pair + 1)


def miss_map(there, back):
    \"\"\"How far the round trip (out with `there`, back with `back`) misses at each voxel, in voxels;
    0 outside the fixed brain. Shape (1, 1, *spatial).\"\"\"
    return torch.linalg.vector_norm(warps.compose(back, there), dim=1, keepdim=True) * fixed_brain[one]


miss_maps = {name: miss_map(r["there"][one], r["back"][one]) for name, r in learned.items()}
miss_maps["own"] = miss_map(learned["diffeomorphic"]["there"][one], own_inverse[one])
miss_max = max(m.max().item() for m in miss_maps.values())
det_range = viz.jacobian_range([r["there"][one] for r in learned.values()])

fig, axes = viz.new_figure(2, 4, height=2 * viz.PANEL_INCHES + 0.6)
for row, (name, r) in enumerate(learned.items()):
    labels_warped = warps.warp_labels(test["moving_labels"][one], r["there"][one])
    viz.overlay(test["fixed"][one], labels_warped, style="contour", ax=axes[row, 0], orientation=True,
                names=data.TISSUE_NAMES if row == 0 else None,
                title=f"{name}: warped labels\\nDice {r['dice'][pair].item():.3f}")
    viz.jacobian_map(r["there"][one], ax=axes[row, 1], orientation=True, title=f"{name}: det J",
                     vmin=det_range[0], vmax=det_range[1])
    viz.show_image(miss_maps[name], ax=axes[row, 2], cmap="magma", vmin=0, vmax=miss_max, colorbar=True,
                   orientation=True, title=f"{name}: round trip via net(f, m)")
viz.show_image(miss_maps["own"], ax=axes[1, 3], cmap="magma", vmin=0, vmax=miss_max, colorbar=True,
               orientation=True, title="diffeomorphic: round trip via exp(-v)")
axes[0, 3].axis("off")
axes[0, 3].text(0.5, 0.5, "a plain network has\\nno inverse of its own", ha="center", va="center")
fig
""")

nb.markdown("""
**When does a network's computed exponential fold?** Stretch the diffeomorphic network's velocities
(all held-out pairs) by `s = 1, 2, 4, 8` and integrate them as the network does
(`diffeo_net.exponential(s * v)`). The exact `exp(s v)` never folds; the computed one does once the
stretch is large enough, for the reason exercise 2 found: the flow squeezes some regions below what the
voxel grid can represent. The network's own velocities (`s = 1`) stay in the safe range because training
and its regulariser kept them there, not because of the integration.
""")

nb.code("""
stretch_folding = {}
print("  s   largest |s v| (voxels)   folding %   min det J")
with torch.no_grad():
    for stretch in [1, 2, 4, 8]:
        stretched = diffeo_net.exponential(stretch * velocity_net)
        stretch_folding[stretch] = metrics.folding_fraction(stretched).mean().item()
        largest = torch.linalg.vector_norm(stretch * velocity_net, dim=1).max().item()
        print(f"{stretch:3d}  {largest:23.1f}  {100 * stretch_folding[stretch]:10.3f}  "
              f"{metrics.min_jacobian(stretched).min().item():+10.2f}")
""")

nb.exercise("""
**Exercise 4 (inverse-consistent by construction).** A stationary velocity lives in one space for both
directions: ideally the velocity for (fixed, moving) is exactly `-v`. Force it: with `v1` the network's
velocity for (moving, fixed) and `v2` the one for (fixed, moving), use `w = (v1 - v2) / 2` for
(moving, fixed) and `-w` for (fixed, moving). Compute both fields with `diffeo_net.exponential`, the mean
Dice of the held-out pairs with `w`, and the round trip with `metrics.inverse_consistency`. Compare with
the table above: did inverse consistency cost Dice? Put the two fields (every held-out pair) in
`answer = (there_sym, back_sym)`.
""", starter="""
# your code here

answer = ...  # (there_sym, back_sym): exp(w) and exp(-w) for every held-out pair
""", solution="""
with torch.no_grad():
    v1 = diffeo_net(test["moving"], test["fixed"], return_velocity=True).velocity
    v2 = diffeo_net(test["fixed"], test["moving"], return_velocity=True).velocity
    w = (v1 - v2) / 2
    there_sym, back_sym = diffeo_net.exponential(w), diffeo_net.exponential(-w)
dice_sym = metrics.dice(warps.warp_labels(test["moving_labels"], there_sym), test["fixed_labels"]).nanmean(1)
round_trip_sym = metrics.inverse_consistency(there_sym, back_sym, mask=fixed_brain)
print(f"symmetrised: Dice {dice_sym.mean().item():.3f} "
      f"(network: {learned['diffeomorphic']['dice'].mean().item():.3f}), "
      f"round trip {round_trip_sym.mean().item():.3f} voxels "
      f"(network: {learned['diffeomorphic']['round_trip'].mean().item():.3f})")
answer = (there_sym, back_sym)
# The round trip is now an own-inverse residual (interpolation only): the two answers are exp(w) and
# exp(-w) by construction, whatever the network predicts.
""", check="check.ex4(answer, diffeo_net, test)")

nb.markdown("""
## Check what this notebook taught

* a large smooth velocity used as a displacement folds, while its computed exponential (scaling and
  squaring) does not here; the exact exponential never folds, the computed one can (exercise 2);
* `exp(-v)` inverts `exp(v)`; the naive `-disp` does not invert a folding field;
* diffeomorphic (SVF) registration improves Dice without any folding, where the free displacement folds,
  and its `exp(-v)` undoes its deformable part;
* the shipped diffeomorphic network registers held-out pairs (Dice well above before) without folding (and
  folds no more than the plain network); its own inverse `exp(-v)` undoes its map, its reverse prediction
  `net(fixed, moving)` does not: invertible, not inverse-consistent; and its computed exponential folds
  once its velocities are stretched far enough.
""")

nb.code("""
# thresholds of section 6 (the shipped networks on the held-out pairs)
DICE_GAIN_MIN = 0.15               # each network's mean Dice above before registration
DIFF_FOLDING_MAX = 0.0             # share of folded voxels of the diffeomorphic network, on every pair
OWN_INVERSE_MAX = 0.1              # voxels: exp(-v) undoes exp(v) up to interpolation
SEPARATE_OVER_OWN_MIN = 5.0        # the round trip through net(f, m) misses by this many times more ...
ROUND_TRIP_OVER_LENGTH_MAX = 0.5   # ... but by less than this share of the field's mean length

assert metrics.folding_fraction(raw).item() > 0.01
assert metrics.folding_fraction(diffeo).item() == 0 and metrics.min_jacobian(diffeo).item() > 0.05
assert residual_diffeo < 0.2 < 1.0 < residual_raw
svf, dense = results["affine+svf"], results["affine+dense"]
assert metrics.folding_fraction(svf.disp).item() == 0 and metrics.min_jacobian(svf.disp).item() > 0
assert metrics.folding_fraction(dense.disp).item() > 0
dice_svf = metrics.dice(svf.warped_labels, fixed_labels).mean().item()
assert dice_svf > dice_before + 0.2
assert dice_svf > metrics.dice(dense.warped_labels, fixed_labels).mean().item() - 0.01
assert residual_svf < 0.1

plain, diffeomorphic = learned["plain"], learned["diffeomorphic"]
for r in (plain, diffeomorphic):
    assert r["dice"].mean().item() > dice_before_learned.mean().item() + DICE_GAIN_MIN
    assert r["round_trip"].mean().item() < ROUND_TRIP_OVER_LENGTH_MAX * r["length"].mean().item()
    assert r["round_trip"].mean().item() > SEPARATE_OVER_OWN_MIN * own_round_trip.mean().item()
assert diffeomorphic["folding"].max().item() <= DIFF_FOLDING_MAX
assert diffeomorphic["folding"].mean().item() <= plain["folding"].mean().item()
assert own_round_trip.mean().item() < OWN_INVERSE_MAX
assert stretch_folding[max(stretch_folding)] > 0      # the computed exponential folds when stretched enough
print("all checks passed")
""")

nb.write()
