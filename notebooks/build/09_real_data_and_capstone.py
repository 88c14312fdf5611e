"""Builds notebooks/09_real_data_and_capstone.ipynb and its solutions (see notebook_builder.py)."""

from notebook_builder import Notebook

nb = Notebook("09_real_data_and_capstone", checks="regedu.course.lesson09")

nb.markdown("""
    # 09 · Real inter-subject data, and a capstone

    **What you will learn (about 40 minutes):** where real brain pairs come from (the OASIS study, fetched
    once with the kit's `data_scripts`), how to read them with the same functions as your own NIfTI files,
    how the classical pipeline and the shipped network do on pairs of *two different people*, and what a
    real pair cannot tell you: it has no true field, so there is no end-point error and no target
    registration error, only the overlap of label maps. Then the capstone: register a pair of your choice
    with two methods, measure them, and defend your choice.

    Every pair registered in lessons 02 to 08 was made by the kit: a template (or random shapes) moved by a
    field the kit drew, so the right answer was always known. Real inter-subject registration (an atlas
    onto a patient, one subject onto another for a group study) has no such answer.

    The conventions used here (pulling warps, voxels, what a displacement means) are on one page:
    [docs/conventions.md](../docs/conventions.md).
""")

nb.code("""
    import os
    import tempfile
    from dataclasses import dataclass
    from pathlib import Path
    from types import SimpleNamespace

    import torch

    import regedu
    from regedu import data, metrics, viz, warps
    from regedu.course import lesson09 as check

    FAST = os.environ.get("REGEDU_FAST") == "1"
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    _ = torch.manual_seed(0)

    # sizes and budgets: seconds in fast mode (the tests), a real result without it
    PAIRS = 2 if FAST else 6  # real (or stand-in) pairs registered in section 3
    CLASSICAL = {"iterations": (40, 20, 10), "affine_options": {"iterations": (50, 25, 0)}} if FAST else {}
    LANDMARKS = 20            # landmarks on the synthetic pair of section 4
    print(f"device: {device}, fast mode: {FAST}, {PAIRS} pairs")
""")

nb.markdown("""
    ## 1. Where real pairs come from

    regedu ships no real scans. With internet, the kit's `data_scripts` (in the repository, beside
    `regedu/`) downloads the **neurite OASIS** data once: 414 subjects of the OASIS-1 study, processed with
    FreeSurfer and SAMSEG by A. Hoopes and A. V. Dalca. The 2D set (24 MB) holds one coronal slice per
    subject, 160 x 192 voxels at 1 mm, with a label map of 24 anatomical labels. Run once, in the repository
    root:

    ```bash
    python -m data_scripts.fetch neurite-oasis-2d --root regedu_data
    ```

    It checks the download, extracts it and prepares `regedu_data/neurite-oasis-2d/`:
    `images/<subject>.nii.gz`, `labels/<subject>.nii.gz` and `pairs.csv`, one row per pair (moving = subject
    k + 1, fixed = subject k). By downloading you accept the OASIS Data Use Agreement
    (`data_scripts/registry.py` has the licence and the papers to cite). The 3D set (`neurite-oasis-3d`, a
    6.6 GB download) and the Learn2Reg OASIS package are fetched the same way (the option `--list` lists
    them) and found by `data.find_oasis("neurite-oasis-3d")`; this lesson registers the 2D slices.

    `data.find_oasis()` looks for that folder: under `$REGEDU_DATA` when the variable is set, otherwise in
    `regedu_data/` of this folder or of its parent (the repository root). When it finds none, this lesson
    writes a **stand-in** to a temporary folder: the kit's own synthetic subjects (the MNI template slice,
    each through its own random affine and deformation, `data.write_oasis_stand_in`) in exactly the same
    layout, and every cell below reads it through the same functions. The stand-in makes the lesson run
    anywhere, but it is not real data: all its subjects are one brain, moved.
""")

nb.code("""
    oasis = data.find_oasis("neurite-oasis-2d")
    if oasis is not None:
        SOURCE, folder = "OASIS", oasis
        print(f"real data: {folder}")
    else:
        SOURCE = "stand-in"
        print("no prepared OASIS folder in", ", ".join(str(path) for path in data.data_roots()))
        print("to register real pairs, run this once in the repository root (24 MB, needs internet):")
        print("    " + data.fetch_command("neurite-oasis-2d", root="regedu_data"))
        stand_in = tempfile.TemporaryDirectory()  # removed when the kernel stops
        folder = data.write_oasis_stand_in(Path(stand_in.name) / "neurite-oasis-2d", count=PAIRS + 1, seed=0)
        print(f"meanwhile, a stand-in of {PAIRS + 1} synthetic subjects: {folder}")

    print("the folder holds:", sorted(path.name for path in folder.iterdir()))
    print(*(folder / "pairs.csv").read_text().splitlines()[:2], sep="\\n")
""")

nb.markdown("""
    ## 2. Reading real pairs: the functions you use for your own files

    Nothing here is specific to OASIS. `data.read_pair_list` reads `pairs.csv` into rows of file paths, and
    `data.load_pair` loads one pair ready to register: in canonical RAS order, intensities rescaled to [0, 1]
    between their 1st and 99th percentiles, the moving image put on the fixed grid if the headers disagree,
    and checked (`data.check_pair`). `data.NiftiPairs(folder / "pairs.csv")` reads the same rows as a torch
    Dataset, for training.
""")

nb.code("""
    rows = data.read_pair_list(folder / "pairs.csv")
    pairs = [data.load_pair(row["moving"], row["fixed"], row["moving_labels"], row["fixed_labels"])
             for row in rows[:PAIRS]]
    first = pairs[0]
    print(f"{len(rows)} pairs listed, {len(pairs)} loaded; the first: {rows[0]['moving'].name} onto "
          f"{rows[0]['fixed'].name}")
    print(f"images {tuple(first.fixed.shape[2:])} voxels of {first.voxel_size} mm, "
          f"{len(torch.unique(first.fixed_labels)) - 1} labels in the fixed label map")
    print("what a loaded pair holds:", ", ".join(name for name, value in vars(first).items()
                                                if isinstance(value, torch.Tensor)))
""")

nb.code("""
    fig, axes = viz.new_figure(1, 3, width=13, height=4.5)
    viz.show_image(first.moving, ax=axes[0, 0], title="moving")
    viz.show_image(first.fixed, ax=axes[0, 1], title="fixed")
    viz.overlay(first.fixed, first.fixed_labels, ax=axes[0, 2], alpha=0.45, title="fixed + its label map")
    fig
""")

nb.markdown("""
    A loaded pair holds images and label maps (those named `_original` are the moving files on their own
    grid, kept for writing results), and no displacement field: nobody knows where each point of one brain
    lies in the other. The labels are the only evidence there is, and on OASIS they come from automatic
    processing (FreeSurfer and SAMSEG, see `data_scripts/registry.py`), not from an expert's hand: the
    yardstick has its own errors.

    ## 3. Registering real pairs

    Four rows per pair: no registration, the classical default pipeline (`"default"`: affine, B-spline, dense
    refinement; told the voxel size from the header), the shipped network (`"voxelmorph"`, one forward pass)
    and the same network refined by 50 optimisation steps on the pair (`"voxelmorph+io"`). Each gets:

    - **Dice**, mean over the structures **both** label maps contain (`shared_labels`): on a slice, a
      structure cut in one subject may be missing in the other, and no registration can overlap it;
    - **HD95** in mm (the 95th percentile of the distance between label surfaces; a structure the warp lost
      entirely has no surface, so its HD95 is infinite and left out of the mean, while its Dice of 0 counts);
    - **folding**: the percentage of pixels where det J <= 0; and the **seconds** it took.

    The table also has columns for **TRE** and **EPE** (section 4 explains them; both need to know where each
    point truly belongs).
""")

nb.code("""
    METHODS = {"default": "classical (default)", "voxelmorph": "network",
               "voxelmorph+io": "network + refinement"}


    def register_pair(pair, method):
        \"\"\"`regedu.register` on a loaded pair, on `device`; a classical method gets the header's
        voxel size.\"\"\"
        learned = method.startswith("voxelmorph")
        options = {} if learned else {"progress": False, "voxel_size": pair.voxel_size, **CLASSICAL}
        return regedu.register(pair.moving.to(device), pair.fixed.to(device), method,
                               moving_labels=pair.moving_labels.to(device), **options)


    def shared_labels(pair):
        \"\"\"The label values (not 0) found in both the moving and the fixed label map.\"\"\"
        moving, fixed = (set(torch.unique(labels).tolist())
                         for labels in (pair.moving_labels, pair.fixed_labels))
        return sorted((moving & fixed) - {0})


    @dataclass
    class Truth:
        \"\"\"What only a synthetic pair has: the true field (voxels), landmarks, their true places.\"\"\"

        disp: torch.Tensor         # (1, ndim, *spatial): warp(moving, disp) is the fixed image
        points: torch.Tensor       # (1, N, ndim) landmarks on the fixed grid
        true_points: torch.Tensor  # (1, N, ndim) where they really are in the moving image


    def scorecard(pair, result=None, truth=None):
        \"\"\"Dice, HD95 (mm), TRE and EPE (mm, only with a `Truth`), folding (%) and seconds of `result`
        (anything with `disp`, `warped_labels` and `seconds`; None: no registration) on `pair`.\"\"\"
        if result is None:
            shape = pair.fixed.shape[2:]
            result = SimpleNamespace(disp=torch.zeros(1, len(shape), *shape, device=device),
                                     warped_labels=pair.moving_labels, seconds=0.0)
        warped_labels, fixed_labels = result.warped_labels.to(device), pair.fixed_labels.to(device)
        labels = shared_labels(pair)
        hd95 = metrics.hd95(warped_labels, fixed_labels, labels=labels, voxel_size=pair.voxel_size)
        card = {"Dice": float(metrics.dice(warped_labels, fixed_labels, labels=labels).mean()),
                "HD95 mm": float(hd95[torch.isfinite(hd95)].mean()),
                "TRE mm": float("nan"), "EPE mm": float("nan"),  # no truth, no number
                "folding %": 100 * float(metrics.folding_fraction(result.disp)), "seconds": result.seconds}
        if truth is not None:
            card["TRE mm"] = float(metrics.tre(truth.points, truth.true_points, result.disp,
                                               voxel_size=pair.voxel_size))
            card["EPE mm"] = float(metrics.end_point_error(result.disp, truth.disp, mask=fixed_labels > 0,
                                                           voxel_size=pair.voxel_size))
        return card


    def print_scorecards(cards):
        \"\"\"One row per scorecard; 'n/a' where a measure needs a truth the pair does not have.\"\"\"
        columns = ["Dice", "HD95 mm", "TRE mm", "EPE mm", "folding %", "seconds"]
        print(f"{'':24s}" + "".join(f"{column:>11s}" for column in columns))
        for name, card in cards.items():
            cells = ["n/a" if card[c] != card[c] else f"{card[c]:.3f}" for c in columns]  # NaN != NaN
            print(f"{name:24s}" + "".join(f"{cell:>11s}" for cell in cells))
""")

nb.predict("""
    Which columns of the table below will read "n/a" for every row, registered or not, and why?
""", """
    TRE and EPE. Both compare the registration with the true correspondence (landmarks' true positions, the
    true field), and a pair of two scans has none: only label maps. Dice, HD95, folding and time can be
    measured on any pair.
""")

nb.code("""
    cards = []    # one dict per pair: row name -> scorecard
    results = []  # the classical result of each pair, for the figure
    for pair in pairs:
        row = {"no registration": scorecard(pair)}
        for method, name in METHODS.items():
            result = register_pair(pair, method)
            row[name] = scorecard(pair, result)
            if method == "default":
                results.append(result)
        cards.append(row)

    mean_cards = {name: {key: sum(row[name][key] for row in cards) / len(cards) for key in cards[0][name]}
                  for name in cards[0]}
    print(f"{SOURCE}: mean over {len(pairs)} pairs")
    print_scorecards(mean_cards)
""")

nb.code("""
    best = results[0]
    viz.registration_summary(first.moving, first.fixed, best.warped, best.disp, first.moving_labels,
                             first.fixed_labels, title=f"{SOURCE}, first pair: classical default pipeline")
""")

nb.markdown("""
    How to read the table (the means printed above are for the data this notebook found: real OASIS pairs,
    or the stand-in):

    - **no registration** is where the pair starts: the two slices overlap only in part.
    - **classical (default)** optimises a field for this very pair. It knows nothing about where the pair came
      from, which is why it works on data no one prepared it for.
    - **the network** (`pyramid2d_brain`, the default 2D model: three small U-Nets, coarse to fine) was
      trained on axial sections of the MNI template at 2 mm, with varied deformations and intensities
      (`regedu.models.PRETRAINED`).
      The stand-in is that template at 2 mm: its training world. Real OASIS slices are coronal, at 1 mm
      (every structure twice as many voxels across), from real people with their own intensities. If the
      network's Dice falls below the classical pipeline's on real slices, the likely reason is that it meets
      data unlike anything it learned from.
    - **network + refinement** starts from the network's field and optimises it on the pair for 50 steps: the
      cheap repair when a network meets new data. The thorough one is to train on such pairs
      (`regedu train --data regedu_data/neurite-oasis-2d/pairs.csv --out oasis2d.pt`; the shipped network
      trained for 12000 steps, about half an hour on one core of a 2-core CPU).

    Read HD95 beside Dice: Dice averages the overlap, HD95 reports the large boundary errors (the 95th
    percentile of the distances between the label surfaces), in mm.

    ## 4. What a real pair cannot tell you

    On every synthetic pair of lessons 02 to 08 the answer was known, so a method could be scored against it
    everywhere: the **end-point error** (EPE: how far its field is from the true field, here averaged over the
    brain) and the **target registration error** (TRE: how far it puts landmarks from their true positions).
    A real pair has only its label maps.

    To see both kinds of pair side by side, we make a synthetic pair **from the real image**: the fixed image
    of the first pair, moved by a random transform we draw ourselves (`data.random_transform`, then
    `data.subject_from_disp` for its labels and intensity changes). Now the true field is known, and landmarks
    where three or more labels meet (`data.landmarks(..., where="junctions")`) get their true positions
    through it (`data.map_landmarks`), as in lesson 02.
""")

nb.predict("""
    The synthetic pair's first rows: "no registration" and "the true field" (the field we drew, used as if a
    method had found it). What will the true field score in Dice, HD95, TRE and EPE?
""", """
    Its exact answer: Dice 1, HD95 0, TRE 0 and EPE 0 (up to float rounding). Its fixed labels were made by
    warping the moving labels with that very field, and the landmarks' true positions by mapping them
    through it. Every method can be measured by its distance from this row; the real pair has no such row.
""")

nb.code("""
    image, labels = first.fixed.to(device), first.fixed_labels.to(device)
    true_disp = data.random_transform(tuple(image.shape[2:]), rotation=5, translation=3, magnitude=4, seed=3,
                                      device=device)
    moved = data.subject_from_disp(image, labels, true_disp, seed=3)
    synthetic = SimpleNamespace(moving=image, fixed=moved.image, moving_labels=labels,
                                fixed_labels=moved.labels, voxel_size=first.voxel_size)
    points = data.landmarks(synthetic.fixed_labels, LANDMARKS, seed=0, where="junctions")
    truth = Truth(disp=true_disp, points=points, true_points=data.map_landmarks(points, true_disp))

    the_answer = SimpleNamespace(disp=true_disp, warped_labels=warps.warp_labels(labels, true_disp),
                                 seconds=0.0)
    synthetic_cards = {"no registration": scorecard(synthetic, None, truth),
                       "the true field": scorecard(synthetic, the_answer, truth)}
    synthetic_results = {name: register_pair(synthetic, method) for method, name in METHODS.items()}
    for name, result in synthetic_results.items():
        synthetic_cards[name] = scorecard(synthetic, result, truth)

    print("synthetic pair made from the first pair's fixed image (true field known):")
    print_scorecards(synthetic_cards)
    print("\\nthe real pair itself (first pair, no true field):")
    print_scorecards(cards[0])
""")

nb.code("""
    def draw_points(ax, points, style, label):
        \"\"\"Mark `points` (N, 2) on a panel in the default (matrix) layout: axis 0 runs down the rows,
        axis 1 along the columns, and the data coordinates are voxel indices.\"\"\"
        rows_and_columns = points.detach().cpu()
        ax.plot(rows_and_columns[:, 1], rows_and_columns[:, 0], style, markersize=6, markeredgewidth=1.5,
                label=label)


    placed = data.map_landmarks(truth.points, synthetic_results[METHODS["default"]].disp)
    fig, axes = viz.new_figure(1, 2, width=2 * 4.2)
    viz.show_image(synthetic.fixed, ax=axes[0, 0], title="synthetic pair, fixed: landmarks")
    draw_points(axes[0, 0], truth.points[0], "c+", "landmark")
    viz.show_image(synthetic.moving, ax=axes[0, 1], title="moving: true and registered positions")
    for start, end in zip(truth.true_points[0].cpu(), placed[0].cpu()):
        axes[0, 1].plot([start[1], end[1]], [start[0], end[0]], "y-", linewidth=0.8)
    draw_points(axes[0, 1], truth.true_points[0], "go", "true position")
    draw_points(axes[0, 1], placed[0], "rx", "classical (default)")
    for ax in axes[0]:
        ax.legend(loc="lower right", fontsize="x-small")
    fig
""")

nb.markdown("""
    On the synthetic pair each landmark has a true position (green) and the registration's (red), and the
    yellow line between them is its error: TRE is their mean length in mm. On a real pair there is no green
    dot to draw.

    One more thing a real pair has and a synthetic one lacks: structures that are not in both images. The
    labels each pair's two maps do not share:
""")

nb.code("""
    only_in_one = [sorted(set(torch.unique(p.moving_labels).tolist())
                          ^ set(torch.unique(p.fixed_labels).tolist())) for p in pairs]
    for number, labels_missing in enumerate(only_in_one, start=1):
        print(f"pair {number}: labels present in only one of its two label maps: {labels_missing or 'none'}")
""")

nb.markdown("""
    What the two tables show:

    - **The synthetic pair has an exact answer.** Its row "the true field" scores Dice 1, HD95 0, TRE 0,
      EPE 0: the yardsticks have a top, and every method can be ranked by its distance from it, at every
      pixel of the brain (EPE) and at points an expert could click (TRE).
    - **The real pair has no such row.** Nobody knows the true correspondence between two people's brains,
      and there may be none: a fold of the cortex in one has no exact counterpart in the other, and a
      structure cut by one slice can be absent from the other slice (the list above: labels present in only
      one map). So Dice's best possible value on a real pair is unknown: 0.8 may be close to it or far below.
    - **Labels judge overlap, not correspondence.** A field may slide tissue *inside* a structure and keep
      its Dice (lesson 02, section 8: a good Dice with a poor TRE). On real images TRE needs landmarks that
      experts placed in both images; some public sets have them (lung CT: DIR-Lab, the Learn2Reg lung
      tasks), OASIS does not.
    - **A synthetic pair made from a real image is not a real pair.** Both of its images are one person, and
      the deformation is one we drew; it measures how well a method recovers *that* deformation, not how
      well it matches two people. Compare the classical pipeline's Dice in the two tables.

    In short: on synthetic pairs, report EPE and TRE (and Dice, HD95); on real pairs, report Dice and HD95
    over the shared structures, say what they cannot see, and use landmarks where a data set has them.

    ## Exercises
""")

nb.exercise(
    """
    **Exercise 1.** Which structures stay hardest to align? For the first pair and the classical result
    (`results[0]`), compute the Dice of each shared label
    (`metrics.dice(results[0].warped_labels, first.fixed_labels.to(device), labels=shared_labels(first))`)
    and its size in the fixed label map (number of pixels). Print the five worst. Are they the small
    structures? Why does one misplaced boundary pixel cost a small structure more Dice than a large one?
    Answer with `answer = {"worst": [the five labels, worst first], "how_many_small": ...}`, where
    `how_many_small` counts those of the five with fewer pixels than the median structure.
    """,
    starter="""
    # your code here

    answer = ...  # {"worst": [five labels, lowest Dice first], "how_many_small": ...}
    """,
    solution="""
    shared = shared_labels(first)
    per_label = metrics.dice(results[0].warped_labels, first.fixed_labels.to(device), labels=shared)[0]
    sizes = [int((first.fixed_labels == value).sum()) for value in shared]
    order = sorted(range(len(shared)), key=lambda k: float(per_label[k]))
    for k in order[:5]:
        print(f"label {shared[k]:3d}: Dice {float(per_label[k]):.3f}, {sizes[k]:5d} pixels")
    median_size = sorted(sizes)[len(sizes) // 2]
    worst_small = sum(sizes[k] < median_size for k in order[:5])
    print(f"{worst_small} of the 5 worst are smaller than the median structure ({median_size} pixels)")
    answer = {"worst": [shared[k] for k in order[:5]], "how_many_small": worst_small}
    # Dice = 2|A ∩ B| / (|A| + |B|): a boundary error of one pixel removes a share of the overlap that grows
    # as the structure shrinks (its boundary is a larger fraction of its area), so for the same boundary error
    # a small or thin structure loses more Dice. The worst are not always the smallest (read the printout): a
    # structure can also be hard because its edges are faint or its shape differs between the two subjects.
    # This is why Dice is reported per structure, and why HD95 (in mm) is read beside it.
    """,
    check="check.ex1(answer, results[0], first)",
)

nb.exercise(
    """
    **Exercise 2 (capstone).** Register a pair of your choice with two methods, report Dice, HD95, TRE,
    folding and time, and justify which method you would use for pairs like it.

    1. **Choose the pair.** `synthetic` with `truth` (section 4: the true field is known, so TRE and EPE
       exist), a real pair `pairs[k]` with `truth=None`, or your own files through `data.load_pair(...)`. To
       report TRE on a real image, make a synthetic pair from it as section 4 does, and say what that pair
       cannot tell you.
    2. **Choose two methods** from `regedu.api.METHODS`, for example `"default"`, `"affine+svf"`,
       `"affine+diffeomorphic_demons"`, `"voxelmorph"` or `"voxelmorph+io"`. `register_pair(pair, method)`
       runs one with this lesson's settings; call `regedu.register` yourself to change options.
    3. **Measure** each with `scorecard(pair, result, truth)` into the dict `capstone` (method -> scorecard)
       and print it with `print_scorecards(capstone)`.
    4. **Choose** and put it in `answer = {"scorecards": capstone, "choice": ..., "decided_by": ...}`: the
       method you would use, and the measure that decides (`"Dice"`, `"HD95 mm"`, `"TRE mm"`, `"folding %"`
       or `"seconds"`).
    5. **Justify** in a markdown cell of a few sentences: which method, for which use, and why. Say why that
       measure decides (overlap of structures, points in the right place, a plausible field), weigh time
       (one pair, or ten thousand?), and name what your numbers cannot tell you.

    The check below verifies the concrete part: two methods on one pair, every number in range (TRE "n/a"
    on a pair without a truth), a choice that is one of the two, and a measure that can decide it. It cannot
    judge your justification: the rubric in the solutions notebook does.
    """,
    starter="""
    capstone_pair, capstone_truth = synthetic, truth  # or a pair of your choice (truth None if not known)
    capstone = {}  # method -> scorecard(capstone_pair, register_pair(capstone_pair, method), capstone_truth)
    # your code here

    answer = ...  # {"scorecards": capstone, "choice": the method you choose, "decided_by": the measure}
    """,
    solution="""
    capstone_pair, capstone_truth = synthetic, truth  # the true field is known: TRE and EPE exist
    capstone = {}
    for method in ["default", "voxelmorph+io"]:
        capstone[method] = scorecard(capstone_pair, register_pair(capstone_pair, method), capstone_truth)
    print_scorecards(capstone)

    # A rule fixed before looking at the numbers: a field that folds in more than 0.1% of the pixels is not
    # plausible anatomy; among the plausible ones the lower TRE wins (points in the right place is what the
    # use below needs), unless both TREs lie within 0.2 mm (a tenth of a 2 mm voxel): then the faster one.
    MAX_FOLDING, TRE_TIE = 0.1, 0.2
    plausible = {name: card for name, card in capstone.items()
                 if card["folding %"] <= MAX_FOLDING} or capstone
    lowest = min(card["TRE mm"] for card in plausible.values())
    close = {name: card for name, card in plausible.items() if card["TRE mm"] <= lowest + TRE_TIE}
    choice = min(close, key=lambda name: close[name]["seconds"])
    other = next(name for name in capstone if name != choice)
    print(f"\\nchoice: {choice}. TRE {capstone[choice]['TRE mm']:.2f} mm against "
          f"{capstone[other]['TRE mm']:.2f}, "
          f"Dice {capstone[choice]['Dice']:.3f} against {capstone[other]['Dice']:.3f}, folding "
          f"{capstone[choice]['folding %']:.3f}% against {capstone[other]['folding %']:.3f}%, "
          f"{capstone[choice]['seconds']:.2f} s against {capstone[other]['seconds']:.2f} s.")
    print("Use: carrying landmarks or a planned target from one scan to another (TRE decides). Limits: one "
          "pair, a deformation we drew of one person onto themself, so no variance and no inter-subject "
          "differences; the network was trained on the template this image may come from (the stand-in).")
    answer = {"scorecards": capstone, "choice": choice, "decided_by": "TRE mm"}
    """,
    check="check.ex2(answer, capstone_truth)",
)

nb.instructor_note("""
    **For instructors: the worked answer and a rubric for the capstone.**

    The worked answer above chooses the synthetic pair *because* it has a truth, states its decision rule
    before printing (folding first, then TRE, then time on a tie), and prints the numbers that decide and the
    use the rule serves. Its verdict depends on the numbers of the run; what is marked is the reasoning.

    Rubric, 10 points; full marks for a criterion when the answer ...

    - **measurement (2 points):** reports Dice, HD95 (mm), TRE, folding and time for both methods on the
      same pair; writes "n/a" for TRE and EPE on a real pair and says why (no true field, no landmarks);
    - **choice of pair (2):** says what the chosen pair can and cannot measure (synthetic: an exact answer,
      but one person and a deformation we drew; real: only label overlap, and an unknown best Dice);
    - **deciding measure (3):** names the use (propagating a segmentation: Dice and HD95; carrying points or
      a target: TRE; a field used to measure volume change: folding and det J) and lets that measure
      decide, instead of counting the columns each method wins;
    - **time (1):** weighs the seconds against the use (one pair for a study, thousands for a cohort, or a
      tool that must answer at once);
    - **limits (2):** names at least two: a single pair (no spread: a difference of 0.01 in Dice means
      nothing), fast-mode budgets, automatic labels, a network outside its training data, a synthetic
      deformation of one person is not two people.

    `check.ex2` verifies only the concrete part (the two scorecards in range, TRE "n/a" without a truth, a
    choice among the two and a measure that can decide); every point above is the marker's.

    Common mistakes: comparing Dice measured on different pairs; including the background label in Dice;
    HD95 in voxels called mm; a TRE on a real pair without landmarks; declaring a winner on one pair by a
    margin smaller than the spread between pairs (the per-pair scorecards of section 3, `cards`, show it).
""")

nb.markdown("""
    ## Check what this notebook taught
""")

nb.code("""
    # margins of what sections 3 and 4 claim
    REAL_DICE_GAIN = 0.05      # section 3: classical Dice above no registration, mean over the pairs
    NETWORK_DICE_GAIN = 0.05   # section 3, stand-in only: the network's Dice above no registration
    TRE_FRACTION = 0.5         # section 4: classical TRE below this fraction of no registration's
    EXACT = 1e-4               # section 4: the true field scores its exact answer (float rounding only)

    # sections 1 and 2: the pairs were read from files in the OASIS layout, each with its two label maps
    assert (folder / "pairs.csv").is_file() and (folder / "images").is_dir() and (folder / "labels").is_dir()
    assert SOURCE in ("OASIS", "stand-in") and (SOURCE == "OASIS") == (oasis is not None)
    assert len(pairs) == PAIRS
    assert all(p.moving_labels is not None and p.fixed_labels is not None for p in pairs)

    # section 3: registration of the real (or stand-in) pairs improves overlap and boundaries
    none, classical = mean_cards["no registration"], mean_cards[METHODS["default"]]
    assert classical["Dice"] > none["Dice"] + REAL_DICE_GAIN, (
        f"classical mean Dice {classical['Dice']:.3f} is not {REAL_DICE_GAIN} above no registration's "
        f"{none['Dice']:.3f}")
    assert classical["HD95 mm"] < none["HD95 mm"], "section 3 says the boundaries come closer"
    assert all(card["TRE mm"] != card["TRE mm"] for row in cards for card in row.values()), (
        "a real pair has no TRE: its scorecards must say n/a")
    if SOURCE == "stand-in":  # the network's training world; on real slices the lesson claims nothing for it
        network = mean_cards[METHODS["voxelmorph"]]
        assert network["Dice"] > none["Dice"] + NETWORK_DICE_GAIN, (
            f"on the stand-in the network's Dice {network['Dice']:.3f} is not {NETWORK_DICE_GAIN} above no "
            f"registration's {none['Dice']:.3f}")

    # section 4: the synthetic pair has an exact answer, and registration gets closer to it
    exact = synthetic_cards["the true field"]
    assert exact["Dice"] > 1 - EXACT and exact["TRE mm"] < EXACT and exact["EPE mm"] < EXACT
    assert synthetic_cards["no registration"]["TRE mm"] > 1.0, "the drawn transform moves the landmarks"
    found = synthetic_cards[METHODS["default"]]
    assert found["TRE mm"] < TRE_FRACTION * synthetic_cards["no registration"]["TRE mm"]
    assert found["EPE mm"] < synthetic_cards["no registration"]["EPE mm"]
    print("all checks passed")
""")

nb.write()
