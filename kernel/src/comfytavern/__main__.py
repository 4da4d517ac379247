"""``python -m comfytavern`` is the same as the ``comfytavern`` command."""

from comfytavern.cli import main

raise SystemExit(main())
