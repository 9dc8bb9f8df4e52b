"""Write the small sample sequence of sample_data/sequence/ (generated, no third-party imagery).

8 PNG frames of 96 x 96 pixels: three textured objects moving over one of the project's own
synthetic aerial scenes (geoseg.synthetic.render_scene), one leaving the view and coming
back, plus their ground-truth instance maps (``truth/frame_<k>.png``, value = object id).
Run from the repository root: ``python3 sample_data/sequence/make_sequence_sample.py``.
"""

from __future__ import annotations

from pathlib import Path

from geoseg.sequence.io import write_frames
from geoseg.sequence.synthetic import make_sequence, synthetic_background

HERE = Path(__file__).resolve().parent


def main() -> None:
    """Generate the frames and the truth."""
    background = synthetic_background(96, 96, seed=3)
    sample = make_sequence(background, 8, n_objects=3, seed=12, leave_and_return=1)
    write_frames(sample.frames, HERE / "frames", fmt="png")
    write_frames(sample.instances[:, None].astype("uint8"), HERE / "truth", fmt="png")


if __name__ == "__main__":
    main()
