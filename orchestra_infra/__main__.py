"""``python -m orchestra_infra`` is ``orchestra-infra``."""

from .cli import main

main()
