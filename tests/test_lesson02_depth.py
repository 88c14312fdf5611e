"""Lesson 02, sections 9-13 (issue 14, graduate depth): the closing check fails when a section fails to
show its point (parameter scaling, initialisation, masks, B-spline control spacing, symmetric registration).

The check is the notebook's own last cell, run on made-up numbers: those of a lesson that showed its
points (about what full mode measures), then each spoiled the way a broken section would spoil it.
"""

from __future__ import annotations

import pytest
import torch
from test_landmarks import lesson02_closing_check, lesson02_results

TURNED = "shifted, turned 90°"
SEARCH_ANGLES = list(range(-180, 180, 30))


def _per_pair(*values: float) -> torch.Tensor:
    return torch.tensor(values)


def _search_scores(best: int, second: int) -> torch.Tensor:
    """Local NCC loss of each tried angle (angles, 2 pairs), lowest at ``best``, next at ``second``."""
    scores = torch.full((len(SEARCH_ANGLES), 2), -0.08)
    scores[SEARCH_ANGLES.index(best)] = -0.25
    scores[SEARCH_ANGLES.index(second)] = -0.15
    return scores


def depth_results() -> dict:
    """The names sections 9 to 13 leave for the closing check, from a lesson that showed its points."""
    tre = {("shifted", "before"): (51.0, 50.0), ("shifted", "geometric centre"): (1.0, 48.0),
           ("shifted", "centre of mass"): (1.3, 1.4), ("shifted", "search"): (1.3, 1.4),
           (TURNED, "before"): (66.0, 67.0), (TURNED, "geometric centre"): (54.0, 50.0),
           (TURNED, "centre of mass"): (47.0, 46.0), (TURNED, "search"): (1.3, 1.2)}
    return {
        "CONVERGED": torch.tensor([0.5, 0.5]),
        "raw_converged": torch.tensor([False] * 6),
        "scaled_converged": torch.tensor([False, False, False, True, True, True]),
        "limits": {"raw units": torch.tensor([1.09, 132.0, 140.0]),
                   "scaled": torch.tensor([204.0, 132.0, 140.0])},
        "adam_raw": torch.tensor([[[5.10, 4.62]]]),  # (steps, runs, 2): the last step is what counts
        "adam_regedu": torch.tensor([[[0.05, 0.01]]]),
        "CONVERGED_TRE": 3.0,
        "turned": TURNED,
        "init_tre": {key: _per_pair(*values) for key, values in tre.items()},
        "search_scores": {"shifted": _search_scores(0, -180), TURNED: _search_scores(-90, 90)},
        "search_angles": SEARCH_ANGLES,
        "mask_scores": {"no mask": [5.56, 1.80], "cavity masked": [0.20, 0.19],  # EPE: cavity, ring
                        "no cavity (section 5)": [0.27, 0.21]},
        "spacing_table": {4: {"dice": 0.934, "tre": 0.26, "sdlogj": 0.186},
                          8: {"dice": 0.945, "tre": 0.22, "sdlogj": 0.154},
                          16: {"dice": 0.945, "tre": 0.23, "sdlogj": 0.110}},
        "symmetry": {"separate": {"round_trip": _per_pair(0.11, 0.12), "other_way": _per_pair(0.11, 0.12),
                                  "dice": 0.912, "tre": 0.52},
                     "averaged velocity": {"round_trip": _per_pair(0.007, 0.007),
                                           "other_way": _per_pair(0.007, 0.007), "dice": 0.911, "tre": 0.53}},
    }


def _namespace() -> dict:
    """Everything the closing check reads: sections 1-8 (from test_landmarks) and 9-13."""
    namespace = lesson02_results(flipped_dice=0.8, flipped_tre=36.0)
    namespace.update(depth_results())
    return namespace


def _run_check(namespace: dict) -> None:
    exec(lesson02_closing_check(), namespace)  # noqa: S102 - the lesson's own cell, on made-up numbers


def test_closing_check_passes_when_every_section_shows_its_point():
    _run_check(_namespace())


def _set(path: tuple, value):
    """A spoiler: set ``namespace[path[0]][path[1]]...`` to ``value``."""
    def spoil(namespace: dict) -> None:
        target = namespace
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
    return spoil


SPOILERS = {
    # 9. one step size fits both parameters in raw units: nothing to scale
    "raw units converge": (_set(("raw_converged",), torch.tensor([False, False, True, False, False, False])),
                           "one step size"),
    "scaling does not help": (_set(("scaled_converged",), torch.tensor([False] * 5 + [True])),
                              "several step"),
    "Adam fine in raw units": (_set(("adam_raw",), torch.tensor([[[0.1, 0.1]]])), "Adam converges"),
    # 10. initialisation
    "geometric centre enough": (_set(("init_tre", ("shifted", "geometric centre")), _per_pair(1.1, 1.2)),
                                "geometric centre fails"),
    "centre of mass fails": (_set(("init_tre", ("shifted", "centre of mass")), _per_pair(1.3, 30.0)),
                             "centre of mass fixes"),
    "centre of mass turns": (_set(("init_tre", (TURNED, "centre of mass")), _per_pair(1.3, 1.4)), "no start"),
    "search fails": (_set(("init_tre", (TURNED, "search")), _per_pair(1.3, 45.0)), "every pair converges"),
    "search picks the wrong valley": (_set(("search_scores", TURNED), _search_scores(90, -90)), "valleys"),
    # 11. the mask does not help, or the cavity did no harm
    "mask useless": (_set(("mask_scores", "cavity masked"), [5.0, 1.7]), "cuts the error"),
    "cavity harmless": (_set(("mask_scores", "no mask"), [5.56, 0.3]), "cuts the error"),
    # 12. control spacing
    "spacing does not smooth": (_set(("spacing_table", 16, "sdlogj"), 0.2), "smoother field"),
    "finest grid wins": (_set(("spacing_table", 4, "dice"), 0.95), "finest grid"),
    "coarsest grid wins": (_set(("spacing_table", 16, "dice"), 0.96), "no better than 8"),
    # 13. averaging the velocities is no more symmetric, or costs accuracy
    "not symmetric": (_set(("symmetry", "averaged velocity", "round_trip"), _per_pair(0.05, 0.06)),
                      "inverse to each other"),
    "symmetry costs Dice": (_set(("symmetry", "averaged velocity", "dice"), 0.85), "no overlap"),
    "symmetry costs TRE": (_set(("symmetry", "averaged velocity", "tre"), 0.9), "landmark accuracy"),
}


@pytest.mark.parametrize("name", SPOILERS)
def test_closing_check_fails_when_a_section_does_not_show_its_point(name):
    spoil, message = SPOILERS[name]
    namespace = _namespace()
    spoil(namespace)
    with pytest.raises(AssertionError, match=message):
        _run_check(namespace)
