"""Shared test settings.

Real-data tests read the Wikipedia cross-modal dataset from $CROSSMODAL_DATA_DIR
(default: ../shared/data beside the repository, as CI lays it out) and skip, with that
path in the reason, when it is absent.
"""

import os
import pathlib
import sys

REPO = pathlib.Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # tests run from a checkout without installing too
  sys.path.insert(0, str(REPO))

DATA_DIR = pathlib.Path(os.environ.get("CROSSMODAL_DATA_DIR", REPO.parent / "shared" / "data"))
WIKI_DIR = (DATA_DIR / "wikipedia_dataset").resolve()
