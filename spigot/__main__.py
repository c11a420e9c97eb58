"""``python -m spigot`` (and ``torchrun -m spigot``) runs the command line."""

from spigot.cli import main

raise SystemExit(main())
