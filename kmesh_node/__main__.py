from kmesh_node.cli import main

raise SystemExit(main())
