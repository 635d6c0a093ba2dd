"""The user directory (`conf/directory.yaml`): SIP domains and their accounts.

Owns loading and validating the file (every error as file:line:column), the
credentials the registrar checks digest responses against (RFC 3261 22.4 with
RFC 7616 HA1 = H(user:realm:password), realm = the domain name), the digest
algorithms offered to each account (RFC 8760 2.4, most preferred first), and
in-place edits that keep the operator's comments and ordering (ruamel.yaml
round trip), written atomically.

Format (others rely on it):

    domains:
      - name: pbx.example.com
        algorithms: [SHA-256, MD5]        # optional, this is the default
        users:
          - user: "1001"
            password: "..."               # or ha1_md5: / ha1_sha256:
            display_name: "..."           # optional
            context: internal             # optional, default internal
            groups: [sales]               # optional
            algorithms: [MD5]             # optional per-user override
            allowed_destinations: [internal, national, emergency]
                                          # optional: classes this user may dial
                                          # (default: toll.default_classes)
            max_calls: 4                  # optional: concurrent calls (486 beyond)
            calls_per_minute: 10          # optional: new calls a minute (403 beyond)
            mwi_unsolicited: false        # optional: no NOTIFY unless subscribed (default true)
            caller_id                     # reserved
"""

from __future__ import annotations

import io
import os
import re
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import CommentMark, MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from softswitch.sip.digest import DEFAULT_ALGORITHMS, Algorithm
from softswitch.sip.digest import ha1 as digest_ha1

DEFAULT_CONTEXT = "internal"
# The classes of `allowed_destinations` (softswitch/fraud/classes.py sorts numbers into them).
DESTINATION_CLASSES = ("internal", "national", "international", "premium", "emergency")

_DOMAIN_KEYS = frozenset({"name", "algorithms", "users"})
_USER_KEYS = frozenset(
    {
        "user",
        "password",
        "ha1_md5",
        "ha1_sha256",
        "display_name",
        "context",
        "groups",
        "algorithms",
        # Toll-fraud policy (softswitch/fraud/): classes and call limits.
        "max_calls",
        "calls_per_minute",
        "allowed_destinations",
        # Message-waiting NOTIFYs to registered phones that do not subscribe.
        "mwi_unsolicited",
        # Reserved: type-checked now, used later.
        "caller_id",
    }
)
_HOST = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*"
)
# RFC 3261 25.1 user: unreserved / escaped / user-unreserved.
_SIP_USER = re.compile(r"[A-Za-z0-9\-_.!~*'()&=+$,;?/%]+")
_NAME = re.compile(r"[A-Za-z0-9_.\-]+")
_HEX32 = re.compile(r"[0-9a-fA-F]{32}")
_HEX64 = re.compile(r"[0-9a-fA-F]{64}")


class DirectoryError(Exception):
    """The directory file is invalid or an edit was refused; one line per error."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


@dataclass(slots=True, frozen=True)
class Account:
    """One user of one domain. Secrets are kept out of repr()."""

    user: str
    domain: str
    display_name: str | None = None
    context: str = DEFAULT_CONTEXT
    groups: tuple[str, ...] = ()
    # What 401 challenges offer this account, in order; only algorithms whose
    # HA1 is available are ever listed.
    algorithms: tuple[Algorithm, ...] = DEFAULT_ALGORITHMS
    caller_id: str | None = None
    max_calls: int | None = None
    allowed_destinations: tuple[str, ...] | None = None
    calls_per_minute: int | None = None
    password: str | None = field(default=None, repr=False)
    ha1_md5: str | None = field(default=None, repr=False)
    ha1_sha256: str | None = field(default=None, repr=False)
    # Unsolicited message-waiting NOTIFYs to this account's registered
    # phones (softswitch.mwi_service); on by default, as in Asterisk.
    mwi_unsolicited: bool = True

    @property
    def aor(self) -> str:
        return f"{self.user}@{self.domain}"

    @property
    def auth_kind(self) -> str:
        """How the secret is stored, "password" or "ha1": safe to show."""
        return "password" if self.password is not None else "ha1"

    def ha1(self, algorithm: Algorithm) -> str | None:
        """HA1 for `algorithm` (realm = domain), or None if it cannot be served.

        -sess variants use the HA1 of their base algorithm (RFC 7616 3.4.2).
        """
        base = algorithm.base
        if self.password is not None:
            return digest_ha1(base, self.user, self.domain, self.password)
        stored = self.ha1_md5 if base is Algorithm.MD5 else self.ha1_sha256
        return stored.lower() if stored is not None else None


@dataclass(slots=True, frozen=True)
class Domain:
    name: str
    algorithms: tuple[Algorithm, ...]
    accounts: dict[str, Account]


@dataclass(slots=True, frozen=True)
class Directory:
    domains: list[Domain]

    @property
    def default_domain(self) -> Domain | None:
        return self.domains[0] if self.domains else None

    def domain(self, name: str | None) -> Domain | None:
        """The domain called `name` (case-insensitive), the default one for None."""
        if name is None:
            return self.default_domain
        wanted = name.lower()
        for d in self.domains:
            if d.name.lower() == wanted:
                return d
        return None

    def find(self, user: str, domain: str | None = None) -> Account | None:
        d = self.domain(domain)
        return d.accounts.get(user) if d is not None else None

    def accounts(self) -> Iterator[Account]:
        for d in self.domains:
            yield from d.accounts.values()


# ---------------------------------------------------------------------------
# Loading and validation.


def _yaml() -> YAML:
    yaml = YAML()  # round-trip: keeps comments, order, quoting and positions
    yaml.preserve_quotes = True
    # The layout of the shipped file; edits re-emit the whole file with it.
    yaml.indent(mapping=2, sequence=4, offset=2)
    return yaml


class _Checker:
    """Collects errors with positions while walking the round-trip tree."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._found: list[tuple[int, int, str]] = []

    @property
    def errors(self) -> list[str]:
        """Every error, in file order (lines and columns 1-based, as editors count)."""
        return [f"{self.path}:{ln + 1}:{col + 1}: {msg}" for ln, col, msg in sorted(self._found)]

    def count(self) -> int:
        return len(self._found)

    def at(self, line: int, col: int, message: str) -> None:
        self._found.append((line, col, message))

    def node(self, node: Any, message: str) -> None:
        lc = getattr(node, "lc", None)
        self.at(lc.line if lc else 0, lc.col if lc else 0, message)

    def key(self, m: CommentedMap, k: str, message: str) -> None:
        line, col = m.lc.key(k)
        self.at(line, col, message)

    def value(self, m: CommentedMap, k: str, message: str) -> None:
        line, col = m.lc.value(k)
        self.at(line, col, message)

    def item(self, s: CommentedSeq, i: int, message: str) -> None:
        line, col = s.lc.item(i)
        self.at(line, col, message)

    def string(self, m: CommentedMap, k: str, what: str) -> str | None:
        v = m.get(k)
        if v is None:
            return None
        if isinstance(v, str):
            return str(v)
        hint = f'; quote it: {k}: "{v}"' if isinstance(v, int | float) else ""
        self.value(m, k, f"{what} must be a string{hint}")
        return None

    def string_list(self, m: CommentedMap, k: str, pattern: re.Pattern[str] | None) -> list[str]:
        v = m.get(k)
        if not isinstance(v, CommentedSeq):
            self.value(m, k, f"{k} must be a list of strings")
            return []
        out = []
        for i, x in enumerate(v):
            if not isinstance(x, str) or (pattern is not None and not pattern.fullmatch(x)):
                self.item(v, i, f"bad entry {x!r} in {k}")
            else:
                out.append(str(x))
        return out

    def algorithms(self, m: CommentedMap, k: str) -> tuple[Algorithm, ...] | None:
        v = m.get(k)
        if not isinstance(v, CommentedSeq) or not v:
            known = ", ".join(a.value for a in Algorithm)
            self.value(m, k, f"algorithms must be a non-empty list of: {known}")
            return None
        out: list[Algorithm] = []
        for i, x in enumerate(v):
            a = Algorithm.from_token(x) if isinstance(x, str) else None
            if a is None:
                known = ", ".join(a.value for a in Algorithm)
                self.item(v, i, f"unknown digest algorithm {x!r} (known: {known})")
            elif a in out:
                self.item(v, i, f"algorithm {a.value} listed twice")
            else:
                out.append(a)
        return tuple(out) if len(out) == len(v) else None


def _check_account(
    c: _Checker, u: CommentedMap, domain: str, offered: tuple[Algorithm, ...]
) -> Account | None:
    errors_before = c.count()
    for k in u:
        if k not in _USER_KEYS:
            c.key(u, k, f"unknown user setting {k!r}")
    if "user" not in u:
        c.node(u, "user entry has no 'user'")
    user = c.string(u, "user", "user")
    if user is not None and not _SIP_USER.fullmatch(user):
        c.value(u, "user", f"{user!r} is not a valid SIP user name")
    password = c.string(u, "password", "password")
    if password is not None and not password:
        c.value(u, "password", "password is empty")
    ha1s: dict[str, str | None] = {}
    for k, pattern, digits in (("ha1_md5", _HEX32, 32), ("ha1_sha256", _HEX64, 64)):
        ha1s[k] = c.string(u, k, k)
        if ha1s[k] is not None and not pattern.fullmatch(ha1s[k] or ""):
            c.value(u, k, f"{k} must be {digits} hex digits")
            ha1s[k] = None
    has_ha1 = "ha1_md5" in u or "ha1_sha256" in u
    if "password" in u and has_ha1:
        c.key(u, "password", "give either password or ha1_md5/ha1_sha256, not both")
    elif "password" not in u and not has_ha1 and "user" in u:
        c.node(u, f"user {user or u.get('user')!r} has no password, ha1_md5 or ha1_sha256")

    # Which algorithms can be served: all with a password, else those with an HA1.
    if "password" in u:
        available = set(Algorithm)
    else:
        available = set()
        if ha1s["ha1_md5"] is not None:
            available |= {Algorithm.MD5, Algorithm.MD5_SESS}
        if ha1s["ha1_sha256"] is not None:
            available |= {Algorithm.SHA256, Algorithm.SHA256_SESS}
    algorithms: tuple[Algorithm, ...] = offered
    if "algorithms" in u:
        own = c.algorithms(u, "algorithms")
        if own is not None:
            algorithms = own
            missing = [a.value for a in own if a not in available]
            if missing and (password is not None or has_ha1):
                c.value(u, "algorithms", f"no HA1 stored for {', '.join(missing)}")
    else:
        algorithms = tuple(a for a in offered if a in available)
        if not algorithms and has_ha1 and c.count() == errors_before:
            c.node(u, "none of the domain's algorithms has a stored HA1 for this user")

    display_name = c.string(u, "display_name", "display_name")
    context = c.string(u, "context", "context")
    if context is not None and not _NAME.fullmatch(context):
        c.value(u, "context", f"bad context name {context!r}")
    groups = c.string_list(u, "groups", _NAME) if "groups" in u else []
    caller_id = c.string(u, "caller_id", "caller_id")
    max_calls = u.get("max_calls")
    if "max_calls" in u and (
        isinstance(max_calls, bool) or not isinstance(max_calls, int) or max_calls < 1
    ):
        c.value(u, "max_calls", "max_calls must be a positive integer")
    per_minute = u.get("calls_per_minute")
    if "calls_per_minute" in u and (
        isinstance(per_minute, bool) or not isinstance(per_minute, int) or per_minute < 1
    ):
        c.value(u, "calls_per_minute", "calls_per_minute must be a positive integer")
    destinations = (
        tuple(c.string_list(u, "allowed_destinations", None))
        if "allowed_destinations" in u
        else None
    )
    mwi_unsolicited = u.get("mwi_unsolicited", True)
    if not isinstance(mwi_unsolicited, bool):
        c.value(u, "mwi_unsolicited", "mwi_unsolicited must be true or false")
    for klass in destinations or ():
        if klass not in DESTINATION_CLASSES:
            c.value(u, "allowed_destinations",
                    f"unknown destination class {klass!r} "
                    f"(one of {', '.join(DESTINATION_CLASSES)})")
            break
    if c.count() != errors_before or user is None:
        return None
    return Account(
        user=user,
        domain=domain,
        display_name=display_name,
        context=context or DEFAULT_CONTEXT,
        groups=tuple(groups),
        algorithms=algorithms,
        caller_id=caller_id,
        max_calls=max_calls if isinstance(max_calls, int) else None,
        allowed_destinations=destinations,
        calls_per_minute=per_minute if isinstance(per_minute, int) else None,
        password=password,
        ha1_md5=ha1s["ha1_md5"],
        ha1_sha256=ha1s["ha1_sha256"],
        mwi_unsolicited=mwi_unsolicited is not False,
    )


def _check(doc: Any, c: _Checker) -> Directory:
    if not isinstance(doc, CommentedMap):
        c.node(doc, "the directory must be a mapping with a 'domains:' list")
        return Directory([])
    for k in doc:
        if k != "domains":
            c.key(doc, k, f"unknown top-level key {k!r}")
    domains_node = doc.get("domains")
    if not isinstance(domains_node, CommentedSeq):
        if "domains" in doc:
            c.value(doc, "domains", "domains must be a list")
        else:
            c.node(doc, "missing 'domains:'")
        return Directory([])
    domains: list[Domain] = []
    seen_domains: set[str] = set()
    for i, d in enumerate(domains_node):
        if not isinstance(d, CommentedMap):
            c.item(domains_node, i, "a domain must be a mapping with name: and users:")
            continue
        for k in d:
            if k not in _DOMAIN_KEYS:
                c.key(d, k, f"unknown domain setting {k!r}")
        name = c.string(d, "name", "domain name")
        if "name" not in d:
            c.node(d, "domain has no 'name'")
        elif name is not None:
            if not _HOST.fullmatch(name):
                c.value(d, "name", f"{name!r} is not a valid domain name")
            elif name.lower() in seen_domains:
                c.value(d, "name", f"domain {name} is listed twice")
            seen_domains.add(name.lower())
        offered = DEFAULT_ALGORITHMS
        if "algorithms" in d:
            offered = c.algorithms(d, "algorithms") or DEFAULT_ALGORITHMS
        accounts: dict[str, Account] = {}
        seen_users: set[str] = set()
        users = d.get("users")
        if users is None:
            users = CommentedSeq()  # a domain may have no users yet
        elif not isinstance(users, CommentedSeq):
            c.value(d, "users", "users must be a list")
            users = CommentedSeq()
        for j, u in enumerate(users):
            if not isinstance(u, CommentedMap):
                c.item(users, j, "a user must be a mapping with user: and password:")
                continue
            user = u.get("user")
            if isinstance(user, str):
                if user in seen_users:
                    c.value(u, "user", f"user {user} is listed twice in {name}")
                seen_users.add(user)
            account = _check_account(c, u, name or "", offered)
            if account is not None and account.user not in accounts:
                accounts[account.user] = account
        if name is not None:
            domains.append(Domain(name, offered, accounts))
    return Directory(domains)


def _parse(text: str, path: str) -> tuple[Any, Directory]:
    c = _Checker(path)
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line, mark.column) if mark is not None else (0, 0)
        c.at(line, col, f"YAML syntax error: {exc.problem or exc.context}")
        raise DirectoryError(c.errors) from None
    except YAMLError as exc:
        raise DirectoryError([f"{path}:1:1: YAML error: {exc}"]) from None
    except TypeError as exc:
        # ruamel cannot build a mapping whose key is itself a mapping or a
        # list (`? {a: [b]}`): it raises TypeError (found by fuzzing).
        raise DirectoryError([f"{path}:1:1: a mapping key must be a plain value ({exc})"]) from None
    directory = _check(doc, c)
    if c.errors:
        raise DirectoryError(c.errors)
    return doc, directory


def _read(path: str | os.PathLike[str]) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise DirectoryError([f"{path}: cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError as exc:
        raise DirectoryError([f"{path}: not UTF-8 text: {exc.reason}"]) from None


def load_directory(path: str | os.PathLike[str]) -> Directory:
    """Load and validate `path`; raises DirectoryError listing every problem."""
    return _parse(_read(path), str(path))[1]


# ---------------------------------------------------------------------------
# Editing in place.


def _write_atomically(path: Path, text: str) -> None:
    # Same directory, so os.replace is a rename on one filesystem: a reader (the
    # server reloading on SIGHUP) sees the old file or the new one, never half.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        try:
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        except FileNotFoundError:
            pass  # new file: keep mkstemp's 0600, right for a file of secrets
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _edit_target(
    doc: Any, directory: Directory, domain: str | None, path: str
) -> tuple[CommentedMap, Domain]:
    d = directory.domain(domain)
    if d is None:
        what = f"no domain {domain!r}" if domain is not None else "no domain at all"
        raise DirectoryError([f"{path}: {what}"])
    for node in doc["domains"]:
        if isinstance(node, CommentedMap) and str(node.get("name", "")).lower() == d.name.lower():
            return node, d
    raise DirectoryError([f"{path}: domain {d.name} not found"])  # pragma: no cover


def _user_index(users: CommentedSeq, user: str) -> int | None:
    for i, u in enumerate(users):
        if isinstance(u, CommentedMap) and str(u.get("user")) == user:
            return i
    return None


def _secret_entries(user: str, domain: str, password: str, ha1_only: bool) -> list[tuple[str, str]]:
    if not password:
        raise DirectoryError(["the password must not be empty"])
    if not ha1_only:
        return [("password", DoubleQuotedScalarString(password))]
    return [
        ("ha1_md5", DoubleQuotedScalarString(digest_ha1(Algorithm.MD5, user, domain, password))),
        (
            "ha1_sha256",
            DoubleQuotedScalarString(digest_ha1(Algorithm.SHA256, user, domain, password)),
        ),
    ]


def _save(path: str | os.PathLike[str], doc: Any) -> None:
    out = io.StringIO()
    _yaml().dump(doc, out)
    text = out.getvalue()
    _parse(text, str(path))  # never write a file we would refuse to load
    _write_atomically(Path(path), text)


def add_user(
    path: str | os.PathLike[str],
    domain: str | None,
    user: str,
    *,
    password: str,
    display_name: str | None = None,
    store_ha1_only: bool = False,
    context: str | None = None,
    groups: Sequence[str] = (),
) -> Account:
    """Append a user to `domain` (None: the default domain) and save the file."""
    doc, directory = _parse(_read(path), str(path))
    node, d = _edit_target(doc, directory, domain, str(path))
    if not _SIP_USER.fullmatch(user):
        raise DirectoryError([f"{user!r} is not a valid SIP user name"])
    if user in d.accounts:
        raise DirectoryError([f"user {user} already exists in {d.name}"])
    entry = CommentedMap()
    entry["user"] = DoubleQuotedScalarString(user)
    for k, v in _secret_entries(user, d.name, password, store_ha1_only):
        entry[k] = v
    if display_name:
        entry["display_name"] = DoubleQuotedScalarString(display_name)
    if context:
        entry["context"] = context
    if groups:
        listed = CommentedSeq(groups)
        listed.fa.set_flow_style()  # groups: [sales, support], as the shipped file writes them
        entry["groups"] = listed
    users = node.get("users")
    if not isinstance(users, CommentedSeq):
        users = CommentedSeq()
        node["users"] = users
    users.append(entry)
    _save(path, doc)
    account = load_directory(path).find(user, d.name)
    assert account is not None
    return account


def _remove_item(parent: CommentedMap, users: CommentedSeq, i: int) -> None:
    """Delete users[i] (a value of `parent`) keeping its neighbours' comments.

    ruamel attaches the comment lines after an item to the item's last key, so
    they would vanish with it; they describe what follows (the next user, the
    next domain), so they move to the item before, or above the next item when
    the first is removed. Comments just above the removed user go with it.
    """
    item = users[i]
    trailing: CommentToken | None = None
    if isinstance(item, CommentedMap) and item:
        slot = item.ca.items.get(list(item.keys())[-1])
        if slot is not None and len(slot) > 2:
            trailing = slot[2]
    del users[i]
    if trailing is None:
        return
    text = trailing.value
    if text.startswith("#"):
        # The first line is the end-of-line comment of the removed user's last key.
        text = text.split("\n", 1)[1] if "\n" in text else ""
    if not text.strip():
        return
    prev = users[i - 1] if i > 0 else None
    if isinstance(prev, CommentedMap) and prev:
        slot = prev.ca.items.setdefault(list(prev.keys())[-1], [None, None, None, None])
        if slot[2] is None:
            slot[2] = CommentToken(text, CommentMark(0), None)
        else:
            slot[2].value = slot[2].value.rstrip("\n") + "\n" + text.lstrip("\n")
    elif users:
        users.ca.comment = [None, [CommentToken(text.lstrip("\n"), CommentMark(0), None)]]
    else:
        # The list is now empty and emitted as `users: []`: keep the lines
        # above it, after the key that precedes `users`, if there is one.
        keys = list(parent.keys())
        at = keys.index(next(k for k in keys if parent[k] is users))
        if at > 0:
            slot = parent.ca.items.setdefault(keys[at - 1], [None, None, None, None])
            if slot[2] is None:
                slot[2] = CommentToken("\n" + text.lstrip("\n"), CommentMark(0), None)


def remove_user(path: str | os.PathLike[str], domain: str | None, user: str) -> None:
    doc, directory = _parse(_read(path), str(path))
    node, d = _edit_target(doc, directory, domain, str(path))
    users = node.get("users")
    i = _user_index(users, user) if isinstance(users, CommentedSeq) else None
    if i is None or not isinstance(users, CommentedSeq):
        raise DirectoryError([f"no user {user} in {d.name}"])
    _remove_item(node, users, i)
    _save(path, doc)


def set_password(
    path: str | os.PathLike[str],
    domain: str | None,
    user: str,
    password: str,
    *,
    store_ha1_only: bool | None = None,
) -> None:
    """Change a user's secret; keeps the storage kind unless `store_ha1_only` says."""
    doc, directory = _parse(_read(path), str(path))
    node, d = _edit_target(doc, directory, domain, str(path))
    account = d.accounts.get(user)
    users = node.get("users")
    i = _user_index(users, user) if isinstance(users, CommentedSeq) else None
    if account is None or i is None or not isinstance(users, CommentedSeq):
        raise DirectoryError([f"no user {user} in {d.name}"])
    entry = users[i]
    ha1_only = account.auth_kind == "ha1" if store_ha1_only is None else store_ha1_only
    new = _secret_entries(user, d.name, password, ha1_only)
    old = [k for k in ("password", "ha1_md5", "ha1_sha256") if k in entry]
    if [k for k, _ in new] == old:
        for k, v in new:
            entry[k] = v  # in place: the key keeps its comments
    else:
        keys = list(entry.keys())
        position = min(keys.index(k) for k in old)
        # The comment slot of a key also holds the lines after it; keep the
        # one of the last secret key and give it to the last new one.
        comments = [entry.ca.items.pop(k, None) for k in old]
        for k in old:
            del entry[k]
        for offset, (k, v) in enumerate(new):
            entry.insert(position + offset, k, v)
        kept = next((c for c in reversed(comments) if c is not None), None)
        if kept is not None:
            entry.ca.items[new[-1][0]] = kept
    _save(path, doc)
