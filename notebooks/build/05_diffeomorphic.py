"""Builds notebooks/05_diffeomorphic.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("05_diffeomorphic")

nb.markdown("""
# 05 · Diffeomorphic registration: velocity fields that never fold

**What you will learn (about 30 minutes):** why a displacement field can *fold* and why that matters;
how a smooth, invertible map (a *diffeomorphism*) is built from a **stationary velocity field** by
**scaling and squaring**; how to measure folding with the Jacobian determinant and read a Jacobian map;
how to invert a diffeomorphism by integrating the negated velocity; and how diffeomorphic classical
registration compares with the plain (non-diffeomorphic) one on the same pair of brains.

A displacement field `disp` says where each fixed voxel `x` samples the moving image: at `x + disp(x)`.
Nothing stops two neighbouring voxels from swapping places: the map then **folds**, the warped image
shows the same tissue twice, a structure can cross another, and no inverse exists. Anatomy does not do
that, so many applications (atlases, longitudinal studies, propagating labels) demand maps that are
*diffeomorphic*: smooth, one-to-one, with a smooth inverse.
""")

nb.code("""
import os

import torch

import regedu
from regedu import data, metrics, viz, warps, widgets

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
trajectories of a smooth flow never cross, `exp(v)` cannot fold, and flowing along `-v` brings every point
back: `exp(-v)` is its inverse.

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
   approximation of `exp(v / 2^N)` (and cannot fold: its gradient is tiny);
2. **square** `N` times: composing a map with itself doubles its time, `phi_{k+1} = phi_k o phi_k`,
   which `regedu.warps.compose(d, d)` computes.

`regedu.warps.integrate(velocity, steps=N)` does exactly this (default `N = 7`, i.e. 128 tiny steps for
the price of 7 warps). With `N = 0` the velocity is used as the displacement directly. Watch how the
result settles as `N` grows: the last column is how much the field still changes when one more step is
added.
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
Check that it matches `warps.integrate(velocity, 7)` to within `1e-4` voxels.
""", starter="""
def my_integrate(v, steps):
    # your code here
    return v


# print((my_integrate(velocity, 7) - warps.integrate(velocity, 7)).abs().max())
""", solution="""
def my_integrate(v, steps):
    disp = v / 2**steps                 # scaling: a tiny displacement, x + disp is almost exp(v / 2**steps)
    for _ in range(steps):
        disp = warps.compose(disp, disp)  # squaring: phi o phi doubles the flow time
    return disp


error = (my_integrate(velocity, 7) - warps.integrate(velocity, 7)).abs().max().item()
print(f"largest difference from warps.integrate: {error:.2e} voxels")
assert error < 1e-4
""")

nb.markdown("""
## 3. Folding: the same size, a different fate

Now compare the field `velocity` used *directly* as a displacement with `exp(velocity)`. Both move the brain
by up to about 16 voxels. The first folds, the second does not.

How we measure it: the map `x -> x + disp(x)` has a Jacobian matrix `I + grad disp` at every voxel, and its
**determinant** `det J` is the local change of volume (area in 2D): 1 keeps it, 0.5 halves it, 2 doubles it.
Where `det J <= 0` the map has turned space inside out: it **folds** there.
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
Its colour map is **centred at 1** (white: no change of area); blue shrinks, red grows. When anything
folds, the colour bar starts at 0, **where folding starts**, and folded voxels (det J <= 0) are painted
yellow and counted in the title (without folds it starts at the smallest determinant).
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

The inverse of `exp(v)` is `exp(-v)`: flow backwards for the same time. Composing the two should give the
identity, a zero displacement: `warps.compose(exp(v), exp(-v))` (DESIGN.md: `compose(u, w)` applies `w`
first, then `u`). For the folding field there is no inverse at all; the naive guess `-disp` fails badly.
We measure the residual inside the brain: near the image border the field pushes points out of the image,
where nothing can be recovered.
""")

nb.code("""
forward, backward = warps.integrate(velocity), warps.integrate(-velocity)
inside = brain.mask[:, 0] > 0
residual_diffeo = warps.compose(forward, backward).norm(dim=1)[inside].mean().item()
residual_raw = warps.compose(raw, -raw).norm(dim=1)[inside].mean().item()
print(f"exp(v) then exp(-v): mean distance from the identity {residual_diffeo:.3f} voxels")
print(f"raw disp then -disp: mean distance from the identity {residual_raw:.3f} voxels")
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
""", starter="""
# your code here
""", solution="""
print("   s   raw %   exp, 7 steps %   exp, 12 steps %")
for s in [0.5, 1, 2, 3, 4]:
    v = s * velocity
    folds = [metrics.folding_fraction(d).item() * 100
             for d in (v, warps.integrate(v, 7), warps.integrate(v, 12))]
    print(f"{s:4}  {folds[0]:6.2f}  {folds[1]:15.2f}  {folds[2]:16.2f}")
    if s <= 2:
        assert folds[1] == 0
# The raw field folds from s = 1 on; the computed exponential stays fold-free up to s = 2 and then folds
# a little (s = 3: motion up to 48 voxels on a 96 x 112 image), with 12 steps as with 7. The steps are
# not the problem: the flow squeezes some regions so hard (det J of the exact map close to 0) that they
# shrink below one voxel, and a field sampled on the voxel grid, differentiated by finite differences,
# can no longer represent them. In registration this is why a diffeomorphic method still needs a
# regulariser: it keeps the velocity smooth and its compressions within what the grid can show.
""")

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
""")

nb.markdown("""
Both methods align the tissues about equally well (higher Dice is better), but the free displacement
folds in places while the velocity-based one does not, and the diffeomorphic result is no slower. In the
figure, look at the yellow voxels in the Jacobian maps (left column: free displacement) and at where they
sit: mostly in the middle of the brain, around the ventricles, where the optimiser squeezes and shears
intensity boundaries to improve the similarity a little more. The warped labels (contours on the fixed
image) show
that both reach similar overlap.
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

nb.exercise("""
**Exercise 3 (demons, plain and diffeomorphic).** Demons (notebook 02) comes in both flavours too:
`method="affine+demons"` adds each update to the displacement, `method="affine+diffeomorphic_demons"`
composes the exponential of each update. Register the same pair with both (same `iterations=ITERATIONS`,
`affine_options` as above, `progress=False`) and print mean Dice, folding percentage and the smallest
Jacobian determinant. Which one keeps further away from folding (larger min det J)?
""", starter="""
# your code here
""", solution="""
for method in ["affine+demons", "affine+diffeomorphic_demons"]:
    result = regedu.register(moving, fixed, method=method, moving_labels=moving_labels,
                             iterations=ITERATIONS, progress=False,
                             affine_options={"iterations": AFFINE_ITERATIONS})
    print(f"{method:28s} Dice {metrics.dice(result.warped_labels, fixed_labels).mean().item():.3f}, "
          f"folding {100 * metrics.folding_fraction(result.disp).item():.2f}%, "
          f"min det J {metrics.min_jacobian(result.disp).item():+.2f}")
# Demons smooth their field strongly (sigma_diffusion), so here neither folds; the diffeomorphic
# variant keeps the smallest determinant further from 0, i.e. a safety margin against folding.
""")

nb.exercise("""
**Exercise 4 (inverting a registration).** The SVF result keeps its velocity (on the fixed grid, without
the affine part) in `results["affine+svf"].parameters["velocity"]`. Integrate it and its negative, and
check that composing the two is close to the identity inside the brain, as in section 4. What mean
residual do you get?
""", starter="""
# your code here
""", solution="""
v = results["affine+svf"].parameters["velocity"]
round_trip = warps.compose(warps.integrate(v), warps.integrate(-v))
residual = round_trip.norm(dim=1)[inside].mean().item()
print(f"mean distance from the identity: {residual:.4f} voxels")
assert residual < 0.1
""")

nb.markdown("""
## Check what this notebook taught

* a large smooth velocity used as a displacement folds, while its exponential (scaling and squaring) does not;
* `exp(-v)` inverts `exp(v)`; the naive `-disp` does not invert a folding field;
* diffeomorphic (SVF) registration improves Dice without any folding, where the free displacement folds.
""")

nb.code("""
assert metrics.folding_fraction(raw).item() > 0.01
assert metrics.folding_fraction(diffeo).item() == 0 and metrics.min_jacobian(diffeo).item() > 0.05
assert residual_diffeo < 0.2 < 1.0 < residual_raw
svf, dense = results["affine+svf"], results["affine+dense"]
assert metrics.folding_fraction(svf.disp).item() == 0 and metrics.min_jacobian(svf.disp).item() > 0
assert metrics.folding_fraction(dense.disp).item() > 0
assert metrics.dice(svf.warped_labels, fixed_labels).mean().item() > dice_before + 0.2
print("all checks passed")
""")

nb.write()
