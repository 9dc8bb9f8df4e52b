"""Fuzzing the pipeline loader and the CLI parser: any input gives a valid pipeline or a
clear error (ConfigError / a usage error), never another exception."""

from __future__ import annotations

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoseg.cli.main import cli
from geoseg.errors import ConfigError
from geoseg.pipeline.pipeline import Pipeline

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STEP_TYPES = ["threshold_mask", "band_probability", "skeletonize", "tensor_voting", "non_max_suppression", "road_network",
              "connect_network", "mjcr_classify", "graph_cut", "no_such_step"]
KEYS = ["schema_version", "steps", "params", "engine", "outputs", "description", "type", "name", "band", "threshold",
        "max_gap_m", "model", "smoothness", "assume_gsd_m", "max_memory", "tile_px", "max_pixels", "bogus"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**12), st.floats(allow_nan=True, allow_infinity=True),
                    st.sampled_from(STEP_TYPES + ["${model}", "${nope}", "1GB", "-1", "network", "nodes", "mask", "x${max_gap_m}y"]),
                    st.text(max_size=12))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.sampled_from(KEYS), inner, max_size=4)), max_leaves=12)
step = st.fixed_dictionaries({"type": st.sampled_from(STEP_TYPES)}, optional={k: values for k in ("name", "band", "threshold", "max_gap_m", "model", "smoothness", "bogus", 3, None)})
documents = st.fixed_dictionaries(
    {"schema_version": st.one_of(st.just(1), scalars), "steps": st.one_of(st.lists(step, max_size=5), values)},
    optional={"params": st.dictionaries(st.sampled_from(["model", "max_gap_m", "smoothness"]), scalars, max_size=3),
              "engine": st.dictionaries(st.sampled_from(["assume_gsd_m", "max_memory", "tile_px", "max_pixels", "bogus"]), scalars, max_size=3),
              "outputs": st.one_of(st.lists(st.sampled_from(["network", "nodes", "mask", "probability", "image", "../x"]), max_size=3), scalars),
              "description": scalars, "bogus": values},
)


def _load(text: str) -> None:
    try:
        pipe = Pipeline.from_yaml_text(text, "fuzz.yaml")
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yaml"), str(exc)
        return
    pipe.to_yaml()  # a valid pipeline round-trips
    try:
        pipe.steps  # noqa: B018 - binding may only fail on an unset parameter
    except ConfigError as exc:
        assert "is not set" in str(exc), str(exc)


@FAST
@given(documents)
def test_structured_pipeline_documents(doc):
    _load(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))


@FAST
@given(st.text(alphabet=st.sampled_from(list("schema_version: 1\nsteps:- type[]{}${}&*!|>'\"#%@`\t ,?0.5e")), max_size=200))
def test_arbitrary_yaml_text(text):
    _load(text)


def test_found_by_fuzzing():
    for text in ("?", "schema_version: 1\nsteps:\n  - {type: threshold_mask, 3: x}\n"):  # keys that are not names
        _load(text)


@FAST
@given(st.lists(st.sampled_from(["nope=1", "model=", "=3", "max_gap_m=abc", "max_gap_m=[1, 2]", "1.band=0", "99.band=1",
                                 "threshold_mask.threshold=x", "tensor_voting.", ".x=1", "assume_gsd_m=-1", "max_memory=1KB",
                                 "max_pixels=0", "tile_px=7", "connect_network.max_gap_m=null", "x"]) | st.text(max_size=20), max_size=3))
def test_set_overrides(overrides):
    from geoseg.pipeline.pipeline import load_pipeline

    try:
        load_pipeline("mask_to_centerlines", overrides).steps  # noqa: B018
    except ConfigError:
        pass


ARGS = ["run", "validate", "steps", "info", "eval", "report", "overlay", "mask_to_centerlines", "road_segmentation",
        "-o", "--set", "--format", "shp", "gpkg", "kml", "--progress", "json", "--workers", "0", "1", "-1", "--json",
        "--buffer-m", "--slack-px", "nope=1", "max_gap_m=x", "--overwrite", "-v", "-q", "--help", "--max-size", "missing.tif", ""]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(ARGS) | st.text(max_size=8), max_size=6))
def test_cli_argument_lists(tmp_path_factory, args):
    cwd = tmp_path_factory.mktemp("fuzz")
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=cwd):
        result = runner.invoke(cli, ["-q", *args], catch_exceptions=True)
    assert result.exit_code in (0, 1, 2), (args, result.output)
    assert result.exception is None or isinstance(result.exception, SystemExit), (args, repr(result.exception))
