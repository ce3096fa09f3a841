"""Facts the Orchestra deploys read that pyinfra does not ship."""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase


class GpuInfo(FactBase):
    """
    NVIDIA GPUs as reported by ``nvidia-smi``; an empty list when there is none.

    .. code:: python

        [{"model": "NVIDIA A10", "driver": "535.129.03", "memory_mib": 23028}]
    """

    def command(self) -> str:
        return (
            "! command -v nvidia-smi >/dev/null || nvidia-smi "
            "--query-gpu=name,driver_version,memory.total --format=csv,noheader,nounits || true"
        )

    def default(self):
        return []

    def process(self, output):
        gpus = []
        for line in output:
            parts = [part.strip() for part in line.split(",")]
            if len(parts) == 3 and parts[2].isdigit():
                gpus.append({"model": parts[0], "driver": parts[1], "memory_mib": int(parts[2])})
        return gpus


class ContainerType(FactBase):
    """
    The container technology the host runs in (``systemd-detect-virt --container``),
    or ``None`` on a VM or bare metal: containers cannot set ``kernel.*`` sysctls.

    .. code:: python

        "systemd-nspawn"
    """

    def command(self) -> str:
        return "systemd-detect-virt --container || true"

    def process(self, output):
        value = "".join(output).strip()
        return None if value in ("", "none") else value


class FileState(FactBase):
    """
    Owner, group, mode and SHA-256 of a regular file in one command (pyinfra's File and
    Sha256File facts cost two), ``None`` when it does not exist.

    .. code:: python

        {"user": "root", "group": "orchestra", "mode": 640, "sha256": "9f86d0…"}
    """

    def command(self, path: str) -> str:
        quoted = shlex.quote(path)
        return (
            f"if [ -f {quoted} ]; then stat -c '%U %G %a' {quoted} && sha256sum {quoted}; "
            f"elif [ -e {quoted} ]; then echo not-a-file; fi"
        )

    def process(self, output):
        if not output:
            return None
        if output[0] == "not-a-file":
            raise ValueError("exists and is not a regular file")
        user, group, mode = output[0].split()
        return {"user": user, "group": group, "mode": int(mode), "sha256": output[1].split()[0]}
