"""The pipeline engine: step contract, registry, configuration, execution and batches."""

from geoseg.pipeline.engine import RunResult
from geoseg.pipeline.pipeline import Pipeline, load_pipeline
from geoseg.pipeline.registry import available_steps, get_step_class, register_step
from geoseg.pipeline.step import Step, StepContext

__all__ = [
    "Pipeline",
    "load_pipeline",
    "RunResult",
    "Step",
    "StepContext",
    "available_steps",
    "get_step_class",
    "register_step",
]
