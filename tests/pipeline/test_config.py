"""Pipeline files: round trip, validation errors that name the field, parameters, overrides."""

from __future__ import annotations

import pytest

from geoseg import Pipeline, steps
from geoseg.errors import ConfigError, StepNotFoundError
from geoseg.pipeline.pipeline import load_pipeline

BASE = """\
schema_version: 1
params:
  gap: 12
steps:
  - type: threshold_mask
    threshold: 0
  - type: skeletonize
  - type: road_network
  - type: connect_network
    name: connect
    max_gap_m: ${gap}
outputs: [network, nodes]
"""


def _yaml(tmp_path, text, name="p.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_python_pipeline_round_trips_through_yaml(tmp_path):
    pipe = Pipeline(
        [steps.ThresholdMask(threshold=127), steps.Skeletonize(smooth_m=0.5), steps.RoadNetwork(), steps.ConnectNetwork(max_gap_m=20)],
        outputs=["network", "nodes"],
    )
    path = tmp_path / "saved.yaml"
    pipe.to_yaml(path)
    loaded = Pipeline.from_yaml(path)
    assert loaded == pipe
    assert loaded.steps == pipe.steps
    assert loaded.steps[3].max_gap_m == 20


def test_yaml_pipeline_round_trips_with_its_parameter_references(tmp_path):
    pipe = load_pipeline(_yaml(tmp_path, BASE))
    again = Pipeline.from_yaml_text(pipe.to_yaml())
    assert again == pipe
    assert again.specs[3]["max_gap_m"] == "${gap}"
    assert again.steps[3].max_gap_m == 12


def test_parameter_override_and_step_override(tmp_path):
    pipe = load_pipeline(_yaml(tmp_path, BASE), ["gap=30", "connect.max_angle_deg=10", "1.threshold=0.5", "assume_gsd_m=0.21"])
    bound = pipe.steps
    assert bound[3].max_gap_m == 30 and bound[3].max_angle_deg == 10
    assert bound[0].threshold == 0.5
    assert pipe.engine.assume_gsd_m == 0.21


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("nope=1", "'nope'"),
        ("connect.nope=1", "no field 'nope'"),
        ("ghost.max_gap_m=1", "no step named 'ghost'"),
        ("9.threshold=1", "no step 9"),
        ("connect.max_gap_m=abc", "field 'max_gap_m'"),
        ("justtext", "NAME=VALUE"),
    ],
)
def test_bad_overrides_name_what_is_wrong(tmp_path, override, needle):
    with pytest.raises(ConfigError, match=needle):
        load_pipeline(_yaml(tmp_path, BASE), [override]).steps


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        (BASE.replace("threshold: 0", "threshold: zero"), ["step 1 (threshold_mask)", "field 'threshold'", "zero"]),
        (BASE.replace("threshold: 0", "treshold: 0"), ["step 1 (threshold_mask)", "field 'treshold'", "unknown field"]),
        (BASE.replace("type: skeletonize", "type: skeletonise"), ["step 2", "unknown step type 'skeletonise'"]),
        (BASE.replace("schema_version: 1", "schema_version: 7"), ["field 'schema_version'", "unsupported schema_version 7"]),
        (BASE.replace("params:", "parameters:"), ["field 'parameters'", "unknown field"]),
        (BASE.replace("${gap}", "${gapp}"), ["step 4 (connect)", "field 'max_gap_m'", "undeclared pipeline parameter ${gapp}"]),
        (BASE.replace("  - type: skeletonize\n", ""), ["step 2 (road_network)", "needs layer(s) ['centerline']"]),
        (BASE.replace("[network, nodes]", "[network, saliency]"), ["outputs", "'saliency'"]),
        (BASE.replace("    threshold: 0\n", "    band: 0\n"), ["field 'band'", "greater than or equal to 1"]),
        ("steps: [", ["line", "invalid YAML"]),
        ("- a\n- b\n", ["YAML mapping"]),
        ("schema_version: 1\nsteps: []\n", ["field 'steps'", "at least one step"]),
        ("schema_version: 1\n", ["field 'steps'", "Field required"]),
    ],
)
def test_every_validation_error_names_file_and_field(tmp_path, text, needles):
    path = _yaml(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_pipeline(path)
    message = str(info.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message


def test_unknown_step_error_is_also_a_lookup_error(tmp_path):
    with pytest.raises(StepNotFoundError) as info:
        load_pipeline(_yaml(tmp_path, BASE.replace("type: skeletonize", "type: nothing")))
    assert isinstance(info.value, (LookupError, ValueError))


def test_required_parameter_without_value_validates_but_cannot_run(tmp_path):
    text = "schema_version: 1\nparams:\n  model: null\nsteps:\n  - type: mjcr_classify\n    model: ${model}\n"
    pipe = load_pipeline(_yaml(tmp_path, text))
    assert pipe.unset_params() == ["model"] and pipe.required_params() == ["model"]
    with pytest.raises(ConfigError, match="step 1 \\(mjcr_classify\\): field 'model': pipeline parameter model is not set .*--set model=VALUE"):
        pipe.steps
    assert pipe.with_overrides(["model=roads.npz"]).steps[0].model == "roads.npz"


def test_unset_optional_parameter_is_not_required(tmp_path):
    text = "schema_version: 1\nparams:\n  gap: null\nsteps:\n  - type: threshold_mask\n  - type: skeletonize\n  - type: road_network\n  - type: connect_network\n    max_gap_m: ${gap}\n"
    pipe = load_pipeline(_yaml(tmp_path, text))
    assert pipe.unset_params() == ["gap"] and pipe.required_params() == []
    assert pipe.steps[-1].max_gap_m is None  # the step's own default


def test_null_parameter_leaves_an_optional_field_at_its_default(tmp_path):
    pipe = load_pipeline(_yaml(tmp_path, BASE.replace("gap: 12", "gap: null")))
    assert pipe.steps[3].max_gap_m is None
    assert pipe.with_overrides(["gap=5"]).steps[3].max_gap_m == 5


def test_string_interpolation_of_parameters():
    pipe = Pipeline([{"type": "threshold_mask", "name": "t_${suffix}"}], params={"suffix": "x"})
    assert pipe.steps[0].name == "t_x"


def test_steps_are_validated_on_construction_from_python():
    with pytest.raises(ConfigError, match="field 'max_gap_m'"):
        Pipeline([{"type": "threshold_mask"}, {"type": "skeletonize"}, {"type": "road_network"}, {"type": "connect_network", "max_gap_m": -1}])


def test_one_text_where_a_list_is_expected_is_one_item_or_a_clear_error(tmp_path):
    """A string was iterated character by character ('--set 'm': expected NAME=VALUE', 'layer 'n'')."""
    import numpy as np

    import geoseg
    from tests.conftest import SAMPLE_DATA

    assert load_pipeline("road_centerlines", "smoothness=2").params["smoothness"] == 2
    [report] = load_pipeline("mask_to_centerlines").run_batch(str(SAMPLE_DATA / "scene_a_mask.tif"), tmp_path / "out")
    assert report.status == "done"
    with pytest.raises(ConfigError, match=r"outputs: a list of layer names \(got the text 'network'; write \['network'\]\)"):
        Pipeline([steps.ThresholdMask(), steps.Skeletonize(), steps.RoadNetwork()], outputs="network")
    with pytest.raises(ConfigError, match=r"steps: a list of steps \(got one RoadNetwork; write \[step, \.\.\.\]\)"):
        Pipeline(steps.RoadNetwork())
    with pytest.raises(ConfigError, match="scene: a raster file .path. or a geoseg.raster.Raster, got ndarray"):
        geoseg.run("mask_to_centerlines", np.zeros((8, 8), np.uint8))
