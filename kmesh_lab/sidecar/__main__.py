"""`python -m kmesh_lab.sidecar apply|remove|stats` (see kmesh_lab.sidecar.apply)."""

from kmesh_lab.sidecar.apply import main

raise SystemExit(main())
