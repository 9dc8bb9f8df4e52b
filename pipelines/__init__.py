"""The pipelines and training configs shipped with geoseg (YAML files; no code).

This folder is installed as the data package ``geoseg.pipelines`` (see ``package-dir`` in
``pyproject.toml``); geoseg finds the files through :mod:`geoseg.shipped`.
"""
