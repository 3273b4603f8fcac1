"""Maps the repository's top-level folders into one import namespace:
tidegate/ -> tidegate, shared/ -> tidegate.shared, services/ -> tidegate.services."""
from setuptools import find_namespace_packages, find_packages, setup


def packages_under(prefix: str, folder: str) -> list[str]:
    # namespace packages too: model folders (services/*/models/default) hold data files, not code
    return [prefix] + [f"{prefix}.{name}" for name in find_namespace_packages(folder, exclude=["*__pycache__*"])]


setup(
    packages=find_packages(include=["tidegate", "tidegate.*"])
    + packages_under("tidegate.shared", "shared")
    + packages_under("tidegate.services", "services")
)
