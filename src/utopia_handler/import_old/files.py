"""The old handler's files, read tolerantly into small records.

No specification of these files exists, and they were written by hand-edited code over two years,
so the readers take what they recognise and ignore the rest: unknown keys, users as a dict keyed
by name or as a list, several spellings of each field, missing fields. A file that cannot be read
at all becomes one problem line; an entry that cannot be used becomes a record the importer
reports as not imported.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from utopia_handler.settings.old_env import OldEnvReview, review_old_env

USERS_FILE = "users.json"
FAILED_ORDERS_FILE = "failed_orders.json"
ENV_FILE = ".env"
TEMPLATE_DIR = "ticket_descriptions"
TEMPLATE_FILE = "new_desc.txt"
# Where the old handler kept its JSON files: beside app.py, or in a data folder.
_JSON_FOLDERS = ("", "data", "instance")

_NAME_KEYS = ("username", "user_name", "user", "name", "login")
_HASH_KEYS = ("password_hash", "pw_hash", "passwd_hash", "hash", "bcrypt_hash", "password")
_CONFIG_FLAG_KEYS = (
    "can_view_config", "can_edit_config", "may_edit_config", "can_config", "config_access",
    "edit_config", "is_admin", "admin",
)  # fmt: skip
_USER_LIST_KEYS = ("users", "accounts")
_ORDER_LIST_KEYS = ("failed_orders", "failures", "orders", "entries", "items")
_REF_KEYS = ("orderref", "order_ref", "orderRef", "OrderRef", "order", "ref", "order_id")
_TYPE_KEYS = ("failure_type", "error_type", "type", "failure", "stage", "category")
_MESSAGE_KEYS = ("error_message", "message", "error", "details", "detail", "msg", "reason")
_RETRY_KEYS = ("retry_count", "retries", "attempts", "retry")
_TIME_KEYS = ("timestamp", "failed_at", "time", "created_at", "date")
_SITE_KEYS = ("site_id", "siteid", "siteId", "SiteID")
_NOTE_KEYS = ("resolution_note", "note", "notes", "resolution_notes", "comment")
_BY_KEYS = ("resolved_by", "resolver", "by", "user")
_AT_KEYS = ("resolved_at", "resolution_date", "resolved_on", "at", "date")
_EDITOR_KEYS = (
    "last_edited_by", "edited_by", "updated_by", "modified_by", "saved_by", "user", "author",
    "by",
)  # fmt: skip
_EDITED_KEYS = (
    "last_edited_at", "edited_at", "updated_at", "modified_at", "saved_at", "timestamp",
    "at", "date",
)  # fmt: skip
_TRUE_TEXTS = frozenset({"true", "yes", "y", "1", "on", "admin"})


@dataclass(frozen=True)
class OldUser:
    """A console user of the old handler, as its users.json had them."""

    name: str  # as written there
    password_hash: str | None
    may_edit_config: bool
    disabled: bool


@dataclass(frozen=True)
class OldFailure:
    """The last entry of failed_orders.json about one order (`entries`: how many there were)."""

    order_ref: str  # as written there, trimmed
    failure_type: str
    message: str
    retry_count: int | None
    failed_at: str  # as written, on the old handler's clock
    site_id: str | None
    resolved: bool
    resolved_by: str
    resolved_at: str
    note: str
    entries: int = 1


@dataclass(frozen=True)
class OldTemplate:
    """One ticket description template of the old handler, with who last edited it."""

    name: str
    source: str
    edited_by: str
    edited_at: str
    in_use: bool  # the one TICKET_TEMPLATE_FILE named (new_desc.txt unless changed)


@dataclass
class OldFile:
    """What one file gave: its path (None: not found) and the problems reading it."""

    label: str
    path: Path | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class OldInstallation:
    """Everything read from the old handler's folder."""

    folder: Path
    users_file: OldFile
    users: list[OldUser]
    orders_file: OldFile
    failures: list[OldFailure]
    unnamed_failures: int  # entries of failed_orders.json without any order ref
    templates_file: OldFile
    templates: list[OldTemplate]
    env: OldEnvReview | None


def read_old_installation(folder: Path) -> OldInstallation:
    """Read the old handler's users, failed orders, ticket templates and `.env` from its folder."""
    env_path = folder / ENV_FILE
    env = review_old_env(env_path) if env_path.is_file() else None
    users_file = OldFile(USERS_FILE, _find_json(folder, USERS_FILE))
    users = _users(_load_json(users_file))
    orders_file = OldFile(FAILED_ORDERS_FILE, _find_json(folder, FAILED_ORDERS_FILE))
    failures, unnamed = _failures(_load_json(orders_file))
    values = env.values if env is not None else {}
    template_dir = folder / (values.get("TICKET_TEMPLATE_DIR", "").strip() or TEMPLATE_DIR)
    in_use = values.get("TICKET_TEMPLATE_FILE", "").strip() or TEMPLATE_FILE
    templates_file = OldFile(os.path.relpath(template_dir, folder))
    templates = _templates(template_dir, in_use, templates_file)
    return OldInstallation(
        folder=folder,
        users_file=users_file,
        users=users,
        orders_file=orders_file,
        failures=failures,
        unnamed_failures=unnamed,
        templates_file=templates_file,
        templates=templates,
        env=env,
    )


# Reading JSON -----------------------------------------------------------------------------------


def _find_json(folder: Path, name: str) -> Path | None:
    for sub in _JSON_FOLDERS:
        path = folder / sub / name
        if path.is_file():
            return path
    return None


def _load_json(file: OldFile) -> Any:
    if file.path is None:
        return None
    try:
        return json.loads(file.path.read_text(encoding="utf-8-sig"))
    except UnicodeDecodeError:
        file.problems.append(f"{file.label} is not UTF-8 text; nothing was read from it")
    except json.JSONDecodeError as error:
        file.problems.append(
            f"{file.label} is not valid JSON (line {error.lineno}: {error.msg}); nothing was "
            "read from it"
        )
    except OSError as error:
        file.problems.append(f"{file.label} cannot be read ({error.strerror})")
    return None


def _first(entry: Mapping[str, Any], keys: Iterable[str]) -> Any:
    """The value of the first key present with a value (None, "" count as absent)."""
    for key in keys:
        value = entry.get(key)
        if value is not None and value != "":
            return value
    return None


def _text(value: Any) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    return " ".join(str(value).split())


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return value != 0
    return isinstance(value, str) and value.strip().casefold() in _TRUE_TEXTS


def _count(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return max(0, value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _unwrap(document: Any, keys: Sequence[str]) -> Any:
    """The list (or dict) inside a wrapper object such as {"users": ...}; else the document."""
    if isinstance(document, dict):
        for key in keys:
            if isinstance(document.get(key), (list, dict)):
                return document[key]
    return document


def _entries(document: Any, name_keys: Sequence[str]) -> list[tuple[str, Any]]:
    """(name, entry) pairs from a dict keyed by name, or a list of entries naming themselves."""
    if isinstance(document, dict):
        return [(str(name), entry) for name, entry in document.items()]
    if isinstance(document, list):
        return [
            (_text(_first(entry, name_keys)) if isinstance(entry, dict) else "", entry)
            for entry in document
        ]
    return []


# Users ------------------------------------------------------------------------------------------


def _users(document: Any) -> list[OldUser]:
    users = []
    for name, entry in _entries(_unwrap(document, _USER_LIST_KEYS), _NAME_KEYS):
        if isinstance(entry, str):  # {"name": "$2b$12$..."}
            users.append(OldUser(name, entry.strip() or None, False, disabled=False))
            continue
        if not isinstance(entry, dict):
            users.append(OldUser(name, None, False, disabled=False))
            continue
        raw_hash = _first(entry, _HASH_KEYS)
        role = _text(entry.get("role")).casefold()
        users.append(
            OldUser(
                name=name,
                password_hash=raw_hash.strip() if isinstance(raw_hash, str) else None,
                may_edit_config=_flag(_first(entry, _CONFIG_FLAG_KEYS)) or role == "admin",
                disabled=_flag(entry.get("disabled"))
                or entry.get("active") is False
                or entry.get("enabled") is False,
            )
        )
    return users


# Failed orders ----------------------------------------------------------------------------------


def _failures(document: Any) -> tuple[list[OldFailure], int]:
    """One record per order ref (the last entry about it) and the count of entries without one."""
    body = _unwrap(document, _ORDER_LIST_KEYS)
    by_ref: dict[str, OldFailure] = {}
    unnamed = 0
    for key, entry in _entries(body, _REF_KEYS):
        if not isinstance(entry, dict):
            unnamed += 1
            continue
        # In a dict keyed by order ref the key is the ref, unless the entry names its own.
        ref = _text(_first(entry, _REF_KEYS)) or key
        if not ref:
            unnamed += 1
            continue
        failure = _failure(ref, entry)
        earlier = by_ref.pop(ref, None)
        if earlier is not None:
            failure = replace(failure, entries=earlier.entries + 1)
        by_ref[ref] = failure  # re-inserted: the order of the file's last entries
    return list(by_ref.values()), unnamed


def _failure(ref: str, entry: Mapping[str, Any]) -> OldFailure:
    resolution = entry.get("resolution")
    nested: Mapping[str, Any] = resolution if isinstance(resolution, dict) else {}
    note = _text(_first(nested, _NOTE_KEYS)) or _text(_first(entry, _NOTE_KEYS))
    if isinstance(resolution, str):
        note = note or _text(resolution)
    status = _text(entry.get("status")).casefold()
    resolved = (
        _flag(entry.get("resolved"))
        or _flag(entry.get("is_resolved"))
        or _flag(nested.get("resolved"))
        or status in ("resolved", "done", "closed")
    )
    return OldFailure(
        order_ref=ref,
        failure_type=_text(_first(entry, _TYPE_KEYS)),
        message=_text(_first(entry, _MESSAGE_KEYS)),
        retry_count=_count(_first(entry, _RETRY_KEYS)),
        failed_at=_text(_first(entry, _TIME_KEYS)),
        site_id=_text(_first(entry, _SITE_KEYS)) or None,
        resolved=resolved,
        resolved_by=_text(_first(nested, _BY_KEYS)) or _text(entry.get("resolved_by")),
        resolved_at=_text(_first(nested, _AT_KEYS)) or _text(entry.get("resolved_at")),
        note=note,
    )


# Ticket templates -------------------------------------------------------------------------------


def _templates(folder: Path, in_use: str, file: OldFile) -> list[OldTemplate]:
    if not folder.is_dir():
        return []
    file.path = folder
    folder_meta = _meta(folder / ".meta.json", file)
    templates = []
    for path in sorted(folder.glob("*.txt")):
        meta = (
            _meta(path.with_name(f"{path.name}.meta.json"), file)
            or _meta(path.with_name(f"{path.stem}.meta.json"), file)
            or _meta_of(folder_meta, path.name)
        )
        try:
            source = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError:
            file.problems.append(f"{path.name} is not UTF-8 text; it was not read")
            continue
        except OSError as error:
            file.problems.append(f"{path.name} cannot be read ({error.strerror})")
            continue
        templates.append(
            OldTemplate(
                name=path.name,
                source=source.replace("\r\n", "\n"),
                edited_by=_text(_first(meta, _EDITOR_KEYS)),
                edited_at=_text(_first(meta, _EDITED_KEYS)),
                in_use=path.name == in_use,
            )
        )
    return templates


def _meta(path: Path, file: OldFile) -> dict[str, Any]:
    if not path.is_file():
        return {}
    meta_file = OldFile(path.name, path)
    loaded = _load_json(meta_file)
    file.problems.extend(meta_file.problems)
    return loaded if isinstance(loaded, dict) else {}


def _meta_of(folder_meta: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A folder-wide .meta.json: keyed by file name, or about the one template."""
    entry = folder_meta.get(name)
    if isinstance(entry, dict):
        return entry
    return dict(folder_meta) if _first(folder_meta, _EDITOR_KEYS + _EDITED_KEYS) else {}
