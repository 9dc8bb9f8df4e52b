"""``python -m geoseg.cli``: the same as the ``geoseg`` command."""

from geoseg.cli.main import main

main()
