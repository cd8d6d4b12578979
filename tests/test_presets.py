"""Every trainer's presets: one per tier plus the published recipe, each with its expected result and evidence."""

from pathlib import Path

import pytest

from course_lib.contrastive.simclr import EXPECTED, PRESETS
from course_lib.meta.omniglot import OMNIGLOT_EXPECTED, OMNIGLOT_PRESETS
from course_lib.presets import PRESET_NAMES, Expected, expectations_table

TRAINERS = {"simclr": (PRESETS, EXPECTED), "omniglot": (OMNIGLOT_PRESETS, OMNIGLOT_EXPECTED)}


@pytest.mark.parametrize("name", TRAINERS)
def test_every_preset_states_what_it_expects_and_how_that_is_known(name):
    presets, expected = TRAINERS[name]
    assert tuple(presets) == PRESET_NAMES and tuple(expected) == PRESET_NAMES
    assert expected["paper"].evidence == "cited"
    for preset in ("smoke", "laptop"):
        assert expected[preset].evidence == "measured" and "CPU" in expected[preset].source
    table = expectations_table(presets, expected)
    assert table.count("\n| `") == len(PRESET_NAMES)


def test_the_paper_presets_are_the_published_recipes():
    simclr = PRESETS["paper"]
    assert simclr.epochs >= 500 and simclr.budget_s is None and simclr.arch == "resnet18"
    omniglot = OMNIGLOT_PRESETS["paper"]
    assert omniglot.maml.steps == 60_000 and omniglot.maml.budget_s is None and omniglot.protonet_way == 60
    five, twenty = omniglot.maml_for(5), omniglot.maml_for(20)
    assert (five.meta_batch, five.inner_lr, five.inner_steps) == (32, 0.4, 1)
    assert (twenty.meta_batch, twenty.inner_lr, twenty.inner_steps) == (16, 0.1, 5)
    assert OMNIGLOT_PRESETS["full"].maml_for(20) is OMNIGLOT_PRESETS["full"].maml   # one recipe where none is given


def test_an_expectation_needs_known_evidence_and_a_source():
    with pytest.raises(ValueError, match="evidence must be one of"):
        Expected("95%", "guessed", "a hunch")
    with pytest.raises(ValueError, match="needs its source"):
        Expected("95%", "measured", " ")
    with pytest.raises(KeyError, match="no expectation"):
        expectations_table({"smoke": 1, "paper": 2}, {"smoke": Expected("x", "unmeasured", "why")})


def test_the_readme_states_the_expectations_the_code_holds():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    for presets, expected in TRAINERS.values():
        assert expectations_table(presets, expected) in readme, "README: regenerate the presets tables"
