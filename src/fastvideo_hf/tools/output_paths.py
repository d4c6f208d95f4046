"""Checks that a command's output path can take what it writes, before the command does any work.

A file given where a folder goes (or the reverse) otherwise fails at the end of the work with an OS traceback
(``IsADirectoryError``, ``NotADirectoryError``), or writes somewhere else than the message says.
"""

from __future__ import annotations

from pathlib import Path

from ..refusal import SettingRefused


def output_file(path: str | Path, flag: str, suffix: str) -> Path:
    """``path`` as a file to (over)write with ``suffix``; its missing parent folders are made."""
    path = Path(path)
    if path.suffix.lower() != suffix:
        raise SettingRefused(f"{flag} {path}: name a {suffix} file (got {path.suffix or 'no suffix'})")
    if path.is_dir():
        raise SettingRefused(f"{flag} {path} is a folder: name a {suffix} file to write")
    _check_parents(path, flag)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def output_folder(path: str | Path, flag: str) -> Path:
    """``path`` as a folder to write into (it may exist)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise SettingRefused(f"{flag} {path} is a file: name a folder to write into")
    _check_parents(path, flag)
    return path


def _check_parents(path: Path, flag: str) -> None:
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise SettingRefused(f"{flag} {path}: {parent} is a file, not a folder")
            return
