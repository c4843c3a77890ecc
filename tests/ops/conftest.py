"""Fixtures of the operations tests: podman and the image come from tests/ops/containers.py."""

from tests.ops.containers import podman, registry_image

__all__ = ["podman", "registry_image"]
