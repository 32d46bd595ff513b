"""`python -m reconstruction.engine.postprocess postprocess --preset … --mesh … --out …`."""
from .cli import main

raise SystemExit(main())
