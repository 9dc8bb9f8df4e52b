"""``python -m geoseg``: the ``geoseg`` command, for environments whose scripts folder is not on PATH."""

from geoseg.cli.main import main

if __name__ == "__main__":
    main()
