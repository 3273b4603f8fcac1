"""Maps the repository's top-level folders into one import namespace:
tidegate/ -> tidegate, shared/ -> tidegate.shared, services/ -> tidegate.services."""
from setuptools import find_packages, setup


def packages_under(prefix: str, folder: str) -> list[str]:
    return [prefix] + [f"{prefix}.{name}" for name in find_packages(folder)]


setup(
    packages=find_packages(include=["tidegate", "tidegate.*"])
    + packages_under("tidegate.shared", "shared")
    + packages_under("tidegate.services", "services")
)
