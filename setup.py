"""Packaging detail pyproject.toml cannot express: the repository's firmware/
(on-device agent, QEMU recipe) and targets/ (shipped device profiles) travel
inside the wheel as harness/shipped/, so an installed gem-hil needs no checkout
(harness/resources.py finds them in either place)."""

from setuptools import find_packages, setup

SHIPPED = {"harness.shipped.targets": "targets", "harness.shipped.firmware": "firmware"}

setup(packages=find_packages(include=["harness*", "gem*"]) + list(SHIPPED),
      package_dir=SHIPPED)
