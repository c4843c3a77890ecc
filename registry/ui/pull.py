"""Pure: the commands that pull a tag or a digest with each common client, as the copy
buttons offer them. Over plain HTTP each client needs its own flag (docker none: it
trusts localhost and what ``insecure-registries`` lists)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

TOOLS = ("docker", "podman", "skopeo", "oras")


@dataclass(frozen=True)
class PullCommand:
    tool: str
    command: str


def image_reference(host: str, name: str, reference: str) -> str:
    """``host/name:tag`` or ``host/name@digest``."""
    separator = "@" if ":" in reference else ":"
    return f"{host}/{name}{separator}{reference}"


def pull_commands(host: str, name: str, reference: str, plain_http: bool) -> list[PullCommand]:
    """One command per tool in TOOLS. ``reference`` is a tag or a digest; ``host`` is
    how the browser reached the registry (its Host header)."""
    ref = image_reference(host, name, reference)
    leaf = name.rsplit("/", 1)[-1]
    # skopeo writes an OCI layout folder named after the repository (tagged in it).
    destination = f"oci:{leaf}" + ("" if ":" in reference else f":{reference}")
    commands = {
        "docker": ["docker", "pull", ref],
        "podman": ["podman", "pull", *(["--tls-verify=false"] if plain_http else []), ref],
        "skopeo": [
            "skopeo",
            "copy",
            *(["--src-tls-verify=false"] if plain_http else []),
            f"docker://{ref}",
            destination,
        ],
        "oras": ["oras", "pull", *(["--plain-http"] if plain_http else []), ref],
    }
    return [PullCommand(tool, shlex.join(commands[tool])) for tool in TOOLS]
