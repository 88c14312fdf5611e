"""Builds notebooks/07_3d_brains_and_nifti.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("07_3d_brains_and_nifti", checks="regedu.course.lesson07")

nb.markdown("""
    # 07 · 3D brains and NIfTI files

    **What you will learn (about 40 minutes, of which up to 10 of computing on a CPU):** how a 3D brain volume
    is stored (a tensor `(1, 1, X, Y, Z)` plus an *affine* that says where each voxel is, in millimetres),
    what RAS orientation and voxel spacing mean, how to look at a volume with a three-plane viewer, how
    classical and learned registration do in 3D and what they cost in time and memory, how to save results
    that open in ITK-SNAP or FSLeyes, and how to register your own NIfTI files with `check_pair` and the
    `regedu` command.
""")

nb.code("""
    import json
    import os
    import resource
    import subprocess
    import sys
    import tempfile
    import time
    from pathlib import Path

    import nibabel as nib
    import numpy as np
    import torch

    import regedu
    from regedu import data, metrics, models, train, viz, warps, widgets
    from regedu.course import lesson07 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)

    REG_SHAPE = (96, 112, 96)  # we register on the template's 2 mm grid, the shipped 3D network's grid
    CLASSICAL = {"iterations": (10, 10, 5), "affine_options": {"iterations": (20, 10, 0)}} if FAST else {}
    TRAIN_STEPS = 3 if FAST else 250                                     # live training steps (~5 min CPU)
    IO_STEPS = 20 if FAST else 50                                         # instance optimisation steps
    CLI_METHOD = "affine" if FAST else "default"
    OUT = Path(tempfile.mkdtemp(prefix="regedu_07_"))  # this run's own folder for the files it writes
    print(f"device: {device}, fast mode: {FAST}, registration grid: {REG_SHAPE}, files in {OUT}")
""")

nb.markdown("""
    ## 1. A volume is a tensor plus an affine

    `regedu.data.brain_volume()` gives the MNI brain at 2 mm, cropped to 96 x 112 x 96 voxels. The tensor has
    the usual `(B, C, *spatial)` layout, here `(1, 1, X, Y, Z)`. Its spatial axes are in **RAS** order: index
    `x` grows towards the subject's **R**ight, `y` towards **A**nterior, `z` towards **S**uperior. The
    **affine** is a 4 x 4 matrix that maps a voxel index `(i, j, k)` to millimetres in the scanner's (here
    MNI's) world coordinates; its columns' lengths are the voxel **spacing**.
""")

nb.code("""
    brain = data.brain_volume()
    volume, labels = brain.image, brain.labels
    print("tensor shape:", tuple(volume.shape))
    print("voxel spacing (mm):", brain.spacing)
    print("axis directions:", nib.aff2axcodes(brain.affine))
""", expect=(
    "tensor shape: (1, 1, 96, 112, 96)\n"
    "voxel spacing (mm): (2.0, 2.0, 2.0)\n"
    "axis directions: ('R', 'A', 'S')\n"
))

nb.code("""
    np.set_printoptions(precision=1, suppress=True)
    print("affine (voxel index -> mm):")
    print(brain.affine)
    centre = np.array([48, 56, 48, 1])
    print("voxel (48, 56, 48) is at", (brain.affine @ centre)[:3], "mm")
""")

nb.markdown("""
    The diagonal holds the spacing (2 mm, positive: the axes run R, A, S); the last column is where voxel
    `(0, 0, 0)` lies. Multiply by the affine to go from voxels to millimetres, by its inverse to go back.

    ## 2. Looking at a volume: three planes

    A 3D volume is read as three orthogonal slices through one point: **sagittal** (across x), **coronal**
    (across y) and **axial** (across z). `regedu.viz.three_plane` draws them as a radiologist expects (the
    patient's right on the left of the screen, letters on each side); the cyan lines show where the other two
    planes cut.
""")

nb.code("""
    viz.three_plane(volume, labels=labels, title="MNI brain, 2 mm, with tissue labels")
""")

nb.markdown("""
    Move through the volume with the sliders. Check that the letters match the anatomy: the eyes are
    anterior (A), the cerebellum posterior and inferior.
""")

nb.code("""
    widgets.slice_viewer_widget(volume, labels)
""")

nb.markdown("""
    ## 3. NIfTI files and orientation

    NIfTI (`.nii` or `.nii.gz`) stores the voxel array **and** the affine. Files in the wild store their
    voxels in many orders: LPS (DICOM's habit), LAS, or an oblique slab. `regedu.data.load_nifti` reads the
    affine and reorders the array to RAS, so every tensor in regedu has the same axis meaning. Let us write
    the brain in LPS order (x and y flipped, with the affine that says so) with nibabel, and read it back:
""")

nb.predict("""
    The file stores the voxels in LPS order, with an affine that says so. After `data.load_nifti`, will the
    tensor equal our original RAS volume voxel for voxel, or be its mirror image? And the affine?
""", """
    Both equal the original exactly: `load_nifti` reads the affine, sees L and P, and reverses those two axes
    of the array (adjusting the affine to match), so every tensor in regedu is in RAS order whatever order
    the file used.
""")

nb.code("""
    stored = volume[0, 0].numpy()[::-1, ::-1, :].copy()  # voxel order L->R and A->P flipped
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    flip[:2, 3] = [volume.shape[2] - 1, volume.shape[3] - 1]  # index i of the file is index X-1-i of ours
    lps_affine = brain.affine @ flip
    nib.save(nib.Nifti1Image(stored, lps_affine), OUT / "brain_lps.nii.gz")

    loaded = data.load_nifti(OUT / "brain_lps.nii.gz")
    print("in the file:", nib.aff2axcodes(lps_affine), "-> loaded:", nib.aff2axcodes(loaded.affine))
    print("same voxels as the original:", torch.equal(loaded.image, volume))
    print("same affine as the original:", np.allclose(loaded.affine, brain.affine))
""", expect=(
    "in the file: ('L', 'P', 'S') -> loaded: ('R', 'A', 'S')\n"
    "same voxels as the original: True\n"
    "same affine as the original: True\n"
))

nb.markdown("""
    Orientation mistakes are the most common silent failure in registration: a left-right flip still gives a
    plausible brain, and nothing in the pixels tells (exercise 3). Always load through the affine (never
    `nib.load(...).get_fdata()` alone), and check the letters in a viewer.

    ## 4. Classical versus learned registration in 3D

    3D costs: a 96 x 112 x 96 volume has 1 million voxels, 90 times a 2D slice, and every operation of a
    registration (a warp, a similarity, a convolution) touches each of them. A trick that makes a 3D network
    cheap enough for a CPU: let it *think* on a coarser grid. The shipped 3D network
    (`pyramid3d_brain_run5`, lesson 06's multiscale network: three U-Nets, coarse to fine) reads both
    images shrunk to 4 mm (48 x 56 x 48, eight times fewer voxels), registers them there (its levels see 16, 8
    and 4 mm) and resizes its field back to 2 mm (`PyramidNet(3, field_downsize=2)`): a smooth field loses
    little, and the network runs about eight times faster.

    Moving an image onto another grid is `regedu.data.resample_like`: it goes *through world coordinates*
    (the new grid's affine has 4 mm columns, and each new voxel samples the old volume where it lies in
    millimetres). We blur first (`gaussian_blur`) so the coarse grid does not alias. This is the grid the
    network thinks on:
""")

nb.code("""
    coarse_affine = brain.affine @ np.diag([2.0, 2.0, 2.0, 1.0])
    coarse = data.resample_like(data.gaussian_blur(volume, 1.0), brain.affine, (48, 56, 48), coarse_affine)
    print("4 mm grid:", tuple(coarse.shape), "spacing (mm):", np.linalg.norm(coarse_affine[:3, :3], axis=0))
    viz.three_plane(coarse, title="the brain on the network's 4 mm grid")
""")

nb.markdown("""
    We register on the 2 mm grid. The fixed image is a synthetic subject: the atlas through a random affine
    and a smooth deformation, with intensity changes; the moving image is the atlas, whose labels we carry
    over.
""")

nb.code("""
    reg_affine = brain.affine
    atlas, atlas_labels = volume.to(device), labels.to(device)
    subject = data.synth_subject(atlas, atlas_labels, seed=3)
    fixed, fixed_labels = subject.image, subject.labels
    reg_spacing = tuple(float(s) for s in np.linalg.norm(reg_affine[:3, :3], axis=0))  # column lengths
    print("registration grid:", tuple(atlas.shape), "spacing (mm):", reg_spacing)
    viz.three_plane(fixed.cpu(), labels=fixed_labels.cpu(), title="fixed: a synthetic subject")
""")

nb.markdown("""
    We time every method and record memory: on a GPU the peak memory torch allocated during the call
    (`torch.cuda.max_memory_allocated`); on a CPU the peak resident memory of this Python process so far
    (`resource.getrusage`), which only grows, so it tells when a step needed more than everything before it.
""")

nb.code("""
    def peak_memory_mb():
        if device.type == "cuda":
            return torch.cuda.max_memory_allocated() / 2**20
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux, bytes on macOS
        return peak / 2**20 if sys.platform == "darwin" else peak / 2**10


    def measured(function):
        \"\"\"Run function(); return its result, the seconds it took and the peak memory (MB).\"\"\"
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        result = function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return result, time.perf_counter() - start, peak_memory_mb()


    report = {}
    dice_before = metrics.dice(atlas_labels, fixed_labels, labels=[1, 2, 3]).mean().item()
    classical, seconds, memory = measured(
        lambda: regedu.register(atlas, fixed, moving_labels=atlas_labels, progress=False, **CLASSICAL))
    report["classical (affine + B-spline)"] = (classical, seconds, memory)
    print(f"classical: {seconds:.1f} s, peak memory {memory:.0f} MB")
""")

nb.markdown("""
    The learned side, in two steps. First, **watch a 3D network start**: the shipped network's architecture,
    untrained, learns with NCC + diffusion on synthetic atlas-to-subject pairs (`TemplatePairs`, other seeds
    than our test subject) for 250 steps, one pair each: about five minutes on a 2-core CPU, seconds on a GPU
    (three steps in fast mode). In 3D a network starts slowly: the loss, noisy from pair to pair, falls
    little, and on our pair the field starts to move and the labels' overlap rises a few hundredths. The
    shipped model trained for 18 100 steps in five runs, each continuing the one before: about fourteen hours
    on a busy 2-core CPU, except 3050 steps of the fourth run, which took 3.3 minutes on a GPU (`python
    scripts/train_pretrained.py pyramid3d_brain pyramid3d_brain_long pyramid3d_brain_longer
    pyramid3d_brain_longest pyramid3d_brain_run5`, its log beside the weights).
""")

nb.code("""
    live_network = models.PyramidNet(3, field_downsize=2).to(device)
    pairs = data.TemplatePairs(length=10**6, ndim=3, template=atlas, template_labels=atlas_labels, seed=100)
    live = viz.LiveLossPlot(title="3D training from scratch, NCC + diffusion", xlabel="step")
    history, seconds, memory = measured(lambda: train.train(live_network, pairs, batch_size=1,
                                                            steps=TRAIN_STEPS, progress=False, callback=live))
    live.finish()
    print(f"live training: {history.step} steps in {seconds:.0f} s, peak memory {memory:.0f} MB")
    LIVE = f"learned, live ({history.step} steps)"
    report[LIVE] = measured(lambda: regedu.register(atlas, fixed, method="voxelmorph", model=live_network,
                                                    moving_labels=atlas_labels))
    print(f"on our pair its field moves {report[LIVE][0].disp.abs().mean():.2f} voxels on average")
""")

nb.markdown("""
    Second, the **shipped** network on our pair: `regedu.register(..., method="voxelmorph")` uses it by
    default for 3D images (loaded once, then cached), and `method="voxelmorph+io"` refines its field on this
    one pair by a few gradient steps of the same loss (instance optimisation). For the shipped 3D model
    `"voxelmorph"` runs the network twice, on the pair and on its left-right mirror image, and averages the
    two fields (the mirrored one mirrored back: `regedu.models.FlipAveraged`). Brains are nearly symmetric,
    so the mirror image is as familiar to the network as the pair, and the two predictions' errors partly
    cancel: test-time augmentation, chosen on a development pair (`regedu.api.DEFAULT_FLIPS`; `flips=()`
    runs it once).
""")

nb.code("""
    shipped = regedu.api.DEFAULT_MODELS[3]  # the name of the shipped 3D model
    log = json.loads(models.pretrained_path(shipped).with_suffix(".log").read_text())
    print(f"shipped model: {shipped}: {log['description']}")
    _ = regedu.register(atlas, fixed, method="voxelmorph")  # the first call loads and caches the model
    for method, options in [("voxelmorph", {}), ("voxelmorph+io", {"steps": IO_STEPS})]:
        report[f"learned ({method})"] = measured(lambda: regedu.register(
            atlas, fixed, method=method, moving_labels=atlas_labels, **options))
""")

nb.predict("""
    Which will reach the best Dice here: the classical pipeline, the shipped network alone (no optimisation:
    two forward passes), or the network refined on this pair? And how many times faster than the classical
    pipeline is the network alone?
""", """
    The network alone is by far the fastest, a fraction of a second, tens of times faster than the classical
    pipeline on a CPU, and it moves the tissues a good part of the way. But the classical pipeline, which
    optimises this one pair, still reaches the best Dice; the network refined on the pair lands in between,
    in a few seconds.
""")

nb.code("""
    print(f"{'method':32s} {'seconds':>8s} {'peak MB':>8s} {'mean Dice':>10s}")
    print(f"{'before registration':32s} {'':8s} {'':8s} {dice_before:10.3f}")
    dice_after, seconds_of = {}, {}
    for name, (result, seconds, memory) in report.items():
        dice_after[name] = metrics.dice(result.warped_labels, fixed_labels, labels=[1, 2, 3]).mean().item()
        seconds_of[name] = seconds
        print(f"{name:32s} {seconds:8.2f} {memory:8.0f} {dice_after[name]:10.3f}")
    speedup = seconds_of["classical (affine + B-spline)"] / seconds_of["learned (voxelmorph)"]
    print(f"the network alone is {speedup:.0f} times faster than the classical pipeline")
""")

nb.markdown("""
    Read the table. The live network, after its 250 pairs, has only started. The shipped network registers
    the volume in two forward passes, a fraction of a second, and takes the tissues' overlap well above where
    it started; the classical pipeline, optimising this one pair for some seconds, still aligns them better.
    That is the honest state of a 3D network trained on 18 100 pairs (the 2D default saw 48 000), mostly on
    a 2-core CPU: its validation Dice was still rising when training stopped. The seeds'
    headline, a network as accurate as a classical method in about a second, holds for networks trained far
    longer, on GPUs and on many real brains; the 2D default (`pyramid2d_brain`), trained on 48 000 pairs,
    reaches 0.99 times ANTs SyNCC's Dice on held-out pairs.
    Instance optimisation is the practical middle: the network's field, refined on this pair by a few dozen
    steps, closes much of the gap in seconds.

    On held-out 3D pairs made differently from the training data, `benchmarks/learned3d.py` measures the same
    against ANTs SyNCC: the network alone (with the mirror image) reaches 0.94 times SyNCC's Dice in under a
    second, refined by 6 steps 0.99 times in under 2 seconds (two cores), by 50 steps 1.01 times in about
    10 seconds, against SyNCC's 72 minutes on a CPU (`benchmarks/results/learned3d_test_cpu.md` and
    `learned3d_test_2threads_cpu.md`).
    Learned registration pays for its training once, then wins whenever many pairs must be registered fast.

    The summary of the classical result, on the axial slice through the middle of the volume:
""")

nb.code("""
    result = report["classical (affine + B-spline)"][0]
    viz.registration_summary(atlas.cpu(), fixed.cpu(), result.warped.cpu(), result.disp.cpu(),
                             atlas_labels.cpu(), fixed_labels.cpu(), orientation=True,
                             title="3D classical registration (axial slice)")
""")

nb.markdown("""
    ## 5. Saving results that open in ITK-SNAP or FSLeyes

    Save everything on the **fixed** grid with the fixed image's affine (here `reg_affine`): the warped image,
    the warped labels (integers, kept as such) and the displacement field. `field="itk"` writes the field as
    ITK and ANTs expect it (vectors in millimetres, LPS), so `antsApplyTransforms` can apply it;
    `field="voxels"` is regedu's (and VoxelMorph's) own layout. `save_nifti` never overwrites a file unless
    you pass `overwrite=True`.
""")

nb.code("""
    files = {
        "fixed": data.save_nifti(fixed.cpu(), OUT / "fixed.nii.gz", reg_affine, overwrite=True),
        "warped": data.save_nifti(result.warped.cpu(), OUT / "warped.nii.gz", reg_affine, overwrite=True),
        "warped_labels": data.save_nifti(result.warped_labels.cpu().int(), OUT / "warped_labels.nii.gz",
                                         reg_affine, overwrite=True),
        "disp": data.save_nifti(result.disp.cpu(), OUT / "disp_itk.nii.gz", reg_affine, overwrite=True,
                                field="itk"),
    }
    for name, path in files.items():
        print(f"{name:14s} {path}")
    print("\\nopen them with:")
    print(f"  itksnap -g {files['fixed']} -o {files['warped']} -s {files['warped_labels']}")
    print(f"  fsleyes {files['fixed']} {files['warped']} {files['warped_labels']} -ot label")
""")

nb.code("""
    back = data.load_disp(files["disp"]).image
    print("field read back, largest difference (voxels):", f"{(back - result.disp.cpu()).abs().max():.1e}")
    print("warped image read back unchanged:",
          torch.allclose(data.load_nifti(files["warped"]).image, result.warped.cpu()))
""")

nb.markdown("""
    In ITK-SNAP, the label file is the segmentation layer: its outlines should sit on the fixed image's
    tissues. In FSLeyes, toggle the warped image on and off over the fixed one.

    ## 6. Your own files: `check_pair` and the `regedu` command

    Before registering your own pair, `regedu.data.check_pair` looks for what commonly goes wrong: NaNs,
    intensities outside [0, 1], different shapes or orientations, anisotropic voxels, sizes a network cannot
    halve, and a pair too far apart to start with. It reads NIfTI paths directly. Here we write a moving and a
    fixed file as if they were yours:
""")

nb.predict("""
    Both files lie on the registration grid, in RAS: 96 x 112 x 96 voxels of 2 mm. What will `check_pair`
    warn about, if anything?
""", """
    Nothing: orientation and spacing agree, every size is a multiple of 16 (what a network that halves the
    grid four times needs), and the label maps overlap with a mean Dice of about 0.42, just above the 0.4
    under which it would warn that the pair starts far apart.
""")

nb.code("""
    moving_file = data.save_nifti(atlas.cpu(), OUT / "moving.nii.gz", reg_affine, overwrite=True)
    moving_labels_file = data.save_nifti(atlas_labels.cpu().int(), OUT / "moving_labels.nii.gz", reg_affine,
                                         overwrite=True)
    fixed_labels_file = data.save_nifti(fixed_labels.cpu().int(), OUT / "fixed_labels.nii.gz", reg_affine,
                                        overwrite=True)
    pair_report = data.check_pair(moving_file, files["fixed"], moving_labels=moving_labels_file,
                                  fixed_labels=fixed_labels_file)
""")

nb.markdown("""
    Read the report: orientation, spacing and sizes agree, and the labels overlap enough to start from (a
    mean Dice just above the 0.4 under which `check_pair` advises an affine stage first; the default
    pipeline starts with one anyway). A clean report is what to hope for with your own files; exercise 3
    shows what it catches, and what nothing can.

    The `regedu` command does the whole job from a terminal: `regedu register MOVING FIXED -o warped.nii.gz`
    (add `--disp`, `--labels`/`--labels-out`, `--method`, `--model`; `regedu register --help` lists them). It
    runs `check_pair` first and prints its warnings. From a notebook we call it with the same Python
    (`sys.executable -m regedu`), which is what you would type as `regedu ...` in a terminal:
""")

nb.code("""
    command = [sys.executable, "-m", "regedu", "register", str(moving_file), str(files["fixed"]),
               "-o", str(OUT / "cli_warped.nii.gz"), "--disp", str(OUT / "cli_disp.nii.gz"),
               "--labels", str(moving_labels_file), "--labels-out", str(OUT / "cli_warped_labels.nii.gz"),
               "--fixed-labels", str(fixed_labels_file), "--method", CLI_METHOD, "--overwrite"]
    print("$ regedu " + " ".join(command[3:]))
    if FAST:
        command += ["--option", "iterations=(20, 10, 0)"]
    completed = subprocess.run(command, capture_output=True, text=True)  # captured: no progress bar
    print(completed.stdout + completed.stderr)
    print("exit code:", completed.returncode)
""")

nb.markdown("""
    `regedu evaluate PAIRS.csv` scores a method on many labelled pairs listed in a CSV file (columns
    `moving,fixed,moving_labels,fixed_labels`), and `regedu train --data brain3d --model light --loss ncc
    --minutes 30 --out model.pt` trains a 3D network that `--model model.pt` then uses.

    ## Exercises
""")

nb.exercise(
    """
    **Exercise 1.** Which voxel of the 2 mm volume lies at MNI coordinate (0, 0, 0) mm (near the anterior
    commissure)? Use the inverse of `brain.affine`, round to integers, and show the three planes through that
    voxel with `viz.three_plane(volume, index=...)`. Put the voxel in `answer` as a tuple `(i, j, k)`.
    """,
    starter="""
    # your code here

    answer = ...  # the voxel (i, j, k), integers
    """,
    solution="""
    index = np.linalg.inv(brain.affine) @ np.array([0.0, 0.0, 0.0, 1.0])
    index = tuple(int(round(i)) for i in index[:3])
    print("MNI (0, 0, 0) mm is voxel", index)
    viz.three_plane(volume, index=index, title="through MNI (0, 0, 0)")
    answer = index
    """,
    check="check.ex1(answer, brain.affine)",
)

nb.exercise(
    """
    **Exercise 2.** Displacements in regedu are in voxels. Convert the classical result's field to millimetres
    with `warps.disp_to_mm(disp, spacing)` (the spacing of the registration grid is `reg_spacing`) and print
    the largest displacement length in voxels and in mm, into `answer = {"voxels": ..., "mm": ...}`.
    """,
    starter="""
    # your code here

    answer = ...  # {"voxels": largest length in voxels, "mm": the same in mm}
    """,
    solution="""
    disp_mm = warps.disp_to_mm(result.disp.cpu(), reg_spacing)
    largest_voxels = result.disp.cpu().norm(dim=1).max().item()
    largest_mm = disp_mm.norm(dim=1).max().item()
    print(f"largest displacement: {largest_voxels:.2f} voxels = {largest_mm:.2f} mm")
    answer = {"voxels": largest_voxels, "mm": largest_mm}
    """,
    check="check.ex2(answer, result.disp, reg_spacing)",
)

nb.exercise(
    """
    **Exercise 3.** A left-right flip is invisible in the pixels: check the header. The cell below writes the
    moving image (the MNI atlas) a second time, stored right-to-left along x with the affine that says so
    (its x column negated: voxels and header flipped together, as some converters write files), so both
    files hold the same image in the world. (a) Read both raw arrays with `nib.load(path).get_fdata()`: are
    they equal? How well do they correlate (`np.corrcoef`)? Could you tell from the arrays, or from a picture
    of them, which one has the patient's right at index 0? (b) Read the orientation codes of both headers,
    `nib.aff2axcodes(nib.load(path).affine)`. (c) Load both with `data.load_nifti`: are the tensors equal
    now? (d) Give `data.check_pair` the two raw arrays as tensors, once without their affines and once with
    them (`moving_affine=`, `fixed_affine=`; `factor=8` keeps the size warning out): which call warns?
    (e) A converter that flips the voxels but keeps the RAS header: write that file and give `check_pair`
    the two paths. What does it find?

    Put your findings in `answer`: `"raw_arrays_equal"` (a), `"orientation_codes"` (b, a pair of strings,
    the RAS file first), `"equal_after_load_nifti"` (c), `"check_pair_warns_without_affines"` and
    `"check_pair_warns_with_affines"` (d), `"flip_under_kept_header_caught"` (e: did `check_pair` warn?).
    """,
    starter="""
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = atlas.shape[2] - 1  # index i of the file is index X-1-i of ours
    las_file = OUT / "moving_las.nii.gz"
    nib.save(nib.Nifti1Image(atlas[0, 0].cpu().numpy()[::-1].copy(), reg_affine @ flip_x), las_file)
    # your code here: compare moving_file (RAS) and las_file

    # answer: {"raw_arrays_equal": ..., "orientation_codes": (..., ...), "equal_after_load_nifti": ...,
    #          "check_pair_warns_without_affines": ..., "check_pair_warns_with_affines": ...,
    #          "flip_under_kept_header_caught": ...}
    answer = ...  # your findings, a dict with the keys above
    """,
    solution="""
    flip_x = np.diag([-1.0, 1.0, 1.0, 1.0])
    flip_x[0, 3] = atlas.shape[2] - 1  # index i of the file is index X-1-i of ours
    las_file = OUT / "moving_las.nii.gz"
    nib.save(nib.Nifti1Image(atlas[0, 0].cpu().numpy()[::-1].copy(), reg_affine @ flip_x), las_file)

    headers = {"RAS file": nib.load(moving_file), "LAS file": nib.load(las_file)}
    raw = {name: torch.from_numpy(img.get_fdata()).float()[None, None] for name, img in headers.items()}
    correlation = np.corrcoef(raw["RAS file"].ravel(), raw["LAS file"].ravel())[0, 1]
    print(f"(a) raw arrays equal: {torch.equal(*raw.values())}, correlation {correlation:.3f}")
    codes = {name: "".join(nib.aff2axcodes(img.affine)) for name, img in headers.items()}
    print("(b) orientation codes:", codes)
    loaded_pair = [data.load_nifti(path).image for path in (moving_file, las_file)]
    print("(c) tensors equal after load_nifti:", torch.equal(*loaded_pair))
    print("(d) check_pair on the raw arrays, without their affines:")
    blind = data.check_pair(*raw.values(), factor=8)
    print("(d) ... and with them:")
    told = data.check_pair(*raw.values(), moving_affine=headers["RAS file"].affine,
                           fixed_affine=headers["LAS file"].affine, factor=8)
    wrong_file = OUT / "moving_flipped_voxels_ras_header.nii.gz"
    nib.save(nib.Nifti1Image(atlas[0, 0].cpu().numpy()[::-1].copy(), reg_affine), wrong_file)
    print("(e) voxels flipped, header kept:")
    unnoticed = data.check_pair(moving_file, wrong_file, factor=8)
    # (a) The raw arrays are mirror images, yet they correlate almost perfectly: a brain (and this template
    # above all) is nearly symmetric, so no picture and no intensity check tells left from right.
    # (b) Only the header does: RAS against LAS. (c) load_nifti reads it and turns both into the same RAS
    # tensor. (d) check_pair warns about the orientation only when it has the affines; tensors alone carry
    # none. (e) Voxels flipped under an unchanged header: nothing here can see it (same codes, same grid,
    # a high correlation). The header is the only record of left and right: keep it with the data, load
    # through it, and check the letters in a viewer against something known to be on one side.
    answer = {"raw_arrays_equal": torch.equal(*raw.values()),
              "orientation_codes": (codes["RAS file"], codes["LAS file"]),
              "equal_after_load_nifti": torch.equal(*loaded_pair),
              "check_pair_warns_without_affines": not blind.ok, "check_pair_warns_with_affines": not told.ok,
              "flip_under_kept_header_caught": not unnoticed.ok}
    print(answer)
    """,
    check="check.ex3(answer, moving_file, las_file)",
)

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    # RAS order: loading an LPS file gives back the same voxels and affine
    assert torch.equal(loaded.image, volume) and nib.aff2axcodes(loaded.affine) == ("R", "A", "S")
    # 3D registration improves the overlap of the tissues
    assert dice_after["classical (affine + B-spline)"] > dice_before + 0.2
    # the live network started to learn: its loss fell and its field raised our pair's overlap (full mode;
    # three steps in fast mode prove nothing), and the shipped network, trained 62 times longer, is far ahead
    losses = history.losses
    assert FAST or sum(losses[-50:]) / 50 < sum(losses[:50]) / 50 - 0.01
    assert FAST or dice_after[LIVE] > dice_before + 0.02
    assert dice_after["learned (voxelmorph)"] > dice_after[LIVE] + 0.1
    # the shipped network alone moves the tissues well towards the fixed ones, many times faster than the
    # classical pipeline (fast mode cuts the classical pipeline short, so less), which still aligns better
    assert dice_after["learned (voxelmorph)"] > dice_before + 0.2
    assert speedup > (5 if FAST else 10)
    assert dice_after["classical (affine + B-spline)"] > dice_after["learned (voxelmorph)"]
    # instance optimisation lands in between: better than the network alone
    assert dice_after["learned (voxelmorph+io)"] > dice_after["learned (voxelmorph)"] + 0.05
    # files written on the fixed grid read back as they were
    assert torch.allclose(data.load_disp(files["disp"]).image, result.disp.cpu(), atol=1e-4)
    assert torch.equal(data.load_labels(files["warped_labels"]).image, result.warped_labels.cpu())
    # the regedu command ran and wrote a warped image on the fixed grid
    assert completed.returncode == 0, completed.stderr
    assert tuple(data.load_nifti(OUT / "cli_warped.nii.gz").image.shape) == (1, 1, *REG_SHAPE)
    print("all checks passed")
""")

nb.write()
