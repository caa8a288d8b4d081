"""The git-ignored state folder: broker data, secrets, keys and stores live here, never in git."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

STATE_ENV = "RENKEI_STATE"


def state_dir() -> Path:
    """The state folder: `$RENKEI_STATE`, else `.state` in the working directory."""
    path = Path(os.environ.get(STATE_ENV) or Path.cwd() / ".state")
    path.mkdir(parents=True, exist_ok=True)
    return path


def private_dir(*parts: str) -> Path:
    """A folder under the state folder that only this user may read."""
    path = state_dir().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> None:
    """Write a file readable by this user only (secrets, configs that embed them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)


def write_json(path: Path, data: Any, private: bool = False) -> None:
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    if private:
        write_private(path, text)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))
