"""``python -m geoseg``: the ``geoseg`` command, for environments whose scripts folder is not on PATH."""

from geoseg.cli.main import cli

if __name__ == "__main__":
    cli(prog_name="geoseg")
