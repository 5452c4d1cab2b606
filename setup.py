"""Packaging: the wheel installs ONE top-level package, `cardscore`.

The repository keeps the top-level folders users asked for (jobs/, features/, streaming/,
schemas/, expectations/); they are installed as subpackages of `cardscore` (cardscore.jobs,
cardscore.features, ...), so nothing generic like `jobs` or `features` can clash with another
package on a cluster's Python path. Everything else is in pyproject.toml.
"""

from setuptools import find_packages, setup

FOLDERS_UNDER_CARDSCORE = ("jobs", "features", "streaming", "schemas", "expectations")

packages = find_packages(include=["cardscore", "cardscore.*"])
package_dir = {"cardscore": "cardscore"}
for folder in FOLDERS_UNDER_CARDSCORE:
    package_dir[f"cardscore.{folder}"] = folder
    packages += [f"cardscore.{folder}"] + [f"cardscore.{folder}.{sub}" for sub in find_packages(folder)]

setup(packages=packages, package_dir=package_dir)
