"""Checked exercises of lesson 08, multimodal registration and SynthMorph
(``notebooks/08_multimodal_and_synthmorph.ipynb``).

ex1: how much a shift costs mutual information with 8, 32 and 128 bins (relative drops, recomputed);
ex2: which similarities find the alignment of T1 and a FLAIR-like image (recomputed landscapes);
ex3: the Dice of NGF registration against MI's (judged on the student's own result).
"""

from __future__ import annotations

from regedu import losses, metrics, widgets
from regedu.course.feedback import exercise, expect

BINS = (8, 32, 128)
SIMILARITIES = ("mse", "global_ncc", "ncc", "mi", "ngf")
TISSUES = [1, 2, 3]


def _mi(fixed, moving, bins: int) -> float:
    """Mutual information in nats (losses.mi is its negative)."""
    return -float(losses.mi(fixed, moving, bins=bins))


@exercise(1, right="the relative drop of MI under a shift depends on the bins: too few merge tissues, too "
                   "many leave few voxels per bin and make even a shifted pair look sharp")
def ex1(answer, t1, t2, t2_shifted):
    """answer: {"relative_drop": {bins: (MI aligned - MI shifted) / MI aligned}, "best": the bins with the
    largest drop}; t1, t2, t2_shifted: the lesson's images."""
    expect(isinstance(answer, dict) and set(answer) == {"relative_drop", "best"},
           'give a dict {"relative_drop": {8: ..., 32: ..., 128: ...}, "best": ...}')
    drops = answer["relative_drop"]
    expect(isinstance(drops, dict) and set(drops) == set(BINS),
           f"give one relative drop per number of bins {BINS}")
    for bins in BINS:
        aligned, shifted = _mi(t1, t2, bins), _mi(t1, t2_shifted, bins)
        given = float(drops[bins])
        expect(abs(given - (aligned - shifted)) > 1e-3 or abs(aligned - 1) < 1e-3,
               f"with {bins} bins you gave the drop in nats; divide it by the aligned MI to compare bins")
        expect(abs(abs(given) - (aligned - shifted) / aligned) > 1e-3 or given > 0,
               f"with {bins} bins your drop is negative: subtract the shifted MI from the aligned one, which "
               "is the higher")
        expect(abs(given - (aligned - shifted) / aligned) < 1e-3,
               f"your relative drop for {bins} bins is not (MI aligned - MI shifted) / MI aligned, with "
               f"MI = -losses.mi(t1, t2, bins={bins}) and the same for t2_shifted")
    best = max(BINS, key=lambda bins: float(drops[bins]))
    expect(answer["best"] == best, f"the largest of your relative drops is that of {best} bins")


@exercise(2, right="whether a measure finds the alignment depends on the contrasts of the pair: check it "
                   "on a known alignment rather than assume it")
def ex2(answer, t1, flair, shifts):
    """answer: the names (from SIMILARITIES) whose landscape of t1 against flair has its minimum at zero
    shift; shifts: the shifts of the landscape (voxels, along each axis, including 0)."""
    expect(isinstance(answer, (list, tuple, set)) and set(answer) <= set(SIMILARITIES),
           f"give a list of names from {list(SIMILARITIES)}")
    expect(0 in shifts, "the shifts must include 0: the alignment to find")
    finds = set()
    for name in SIMILARITIES:
        values = widgets.similarity_landscape(t1, flair, shifts, similarity=name)
        i, j = divmod(int(values.argmin()), len(shifts))
        if shifts[i] == 0 and shifts[j] == 0:
            finds.add(name)
    missed = sorted(finds - set(answer))
    expect(not missed, f"{missed} also have their minimum at zero shift: compute every landscape, and do not "
                       "assume from the T2-like pair which measure fails")
    wrong = sorted(set(answer) - finds)
    expect(not wrong, f"{wrong} have their minimum away from zero shift on this pair: look where argmin "
                      "lands")


@exercise(3, right="edge directions register across contrasts too: compare the two Dice on the same pair "
                   "before calling one better")
def ex3(answer, ngf_result, results, fixed_labels, moving_labels):
    """answer: {"ngf": mean Dice of ngf_result, "mi": mean Dice of results["mi"]} over the tissues 1-3;
    results: the lesson's results by similarity; fixed_labels, moving_labels: the pair's label maps."""
    expect(isinstance(answer, dict) and set(answer) == {"ngf", "mi"}, 'give a dict {"ngf": ..., "mi": ...}')
    expect(hasattr(ngf_result, "warped_labels") and ngf_result.warped_labels is not None,
           "keep the result of regedu.register(..., similarity='ngf', moving_labels=labels) in ngf_result")
    for name, other in results.items():
        same = ngf_result.disp.shape == other.disp.shape and (ngf_result.disp - other.disp).abs().max() < 1e-6
        expect(not same, f"ngf_result is the {name} result of section 4: register again with "
                         "similarity='ngf'")
    dice = {"ngf": metrics.dice(ngf_result.warped_labels, fixed_labels, labels=TISSUES).mean().item(),
            "mi": metrics.dice(results["mi"].warped_labels, fixed_labels, labels=TISSUES).mean().item()}
    before = metrics.dice(moving_labels, fixed_labels, labels=TISSUES).mean().item()
    for name in ("ngf", "mi"):
        given = float(answer[name])
        expect(abs(given - before) > 1e-4 or abs(dice[name] - before) < 1e-4,
               f"your {name} Dice is that of the labels before registration: score the warped labels, "
               "result.warped_labels")
        expect(abs(given - dice[name]) < 1e-3,
               f"your {name} Dice is not the mean Dice of its warped labels against fixed_labels over the "
               "tissues (labels=TISSUES)")
