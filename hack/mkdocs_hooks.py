"""mkdocs hooks (mkdocs.yml ``hooks:``): the reference pages are generated from the model
and the CLI at every build (hack/docs_reference.py), as files that exist only in the
build, so a committed copy can never go stale."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # mkdocs loads this file by path; `hack` is a package of the root
    sys.path.insert(0, str(ROOT))

from hack.docs_reference import pages  # noqa: E402

REFERENCE_DIR = "reference"


def on_files(files: Any, config: Any) -> Any:
    from mkdocs.structure.files import File

    for name, text in pages().items():
        files.append(File.generated(config, f"{REFERENCE_DIR}/{name}", content=text))
    return files
