"""The user directory: the shipped example, validation errors, comment-keeping edits."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from softswitch.directory import (
    Account,
    DirectoryError,
    add_user,
    load_directory,
    remove_user,
    set_password,
)
from softswitch.sip.digest import Algorithm, ha1

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "conf" / "directory.yaml"
DOMAIN = "pbx.example.com"


@pytest.fixture
def conf(tmp_path: Path) -> Path:
    path = tmp_path / "directory.yaml"
    shutil.copy(SHIPPED, path)
    return path


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.yaml"
    path.write_text(text)
    return path


def errors_of(path: Path) -> list[str]:
    with pytest.raises(DirectoryError) as info:
        load_directory(path)
    return info.value.errors


def test_shipped_example_loads() -> None:
    directory = load_directory(SHIPPED)
    assert [d.name for d in directory.domains] == [DOMAIN]
    assert sorted(a.user for a in directory.accounts()) == ["1001", "1002", "1003", "1004"]
    alice = directory.find("1001")
    assert alice is not None and alice == directory.find("1001", "PBX.example.com")
    assert alice.display_name == "Alice Example"
    assert alice.context == "internal"
    assert alice.groups == ("sales",)
    assert alice.algorithms == (Algorithm.SHA256, Algorithm.MD5)
    assert alice.ha1(Algorithm.MD5) == ha1(Algorithm.MD5, "1001", DOMAIN, "1001pass")
    assert alice.auth_kind == "password"
    assert directory.find("1001", "other.example") is None
    assert directory.find("9999") is None


def test_ha1_account_serves_the_same_digest_as_its_password() -> None:
    carol = load_directory(SHIPPED).find("1003")
    assert carol is not None and carol.auth_kind == "ha1"
    for alg in (Algorithm.MD5, Algorithm.SHA256, Algorithm.SHA256_SESS):
        assert carol.ha1(alg) == ha1(alg.base, "1003", DOMAIN, "1003pass")


def test_old_phone_account_is_offered_md5_only() -> None:
    old = load_directory(SHIPPED).find("1004")
    assert old is not None and old.algorithms == (Algorithm.MD5,)


def test_secrets_stay_out_of_repr() -> None:
    alice = load_directory(SHIPPED).find("1001")
    assert alice is not None
    key = alice.ha1(Algorithm.MD5)
    assert key is not None
    assert "1001pass" not in repr(alice)
    assert key not in repr(alice)


def test_algorithm_without_ha1_is_not_offered(tmp_path: Path) -> None:
    md5 = ha1(Algorithm.MD5, "7", "a.example", "x")
    path = write(
        tmp_path,
        f'domains:\n  - name: a.example\n    users:\n      - user: "7"\n        ha1_md5: "{md5}"\n',
    )
    account = load_directory(path).find("7")
    assert account is not None
    assert account.algorithms == (Algorithm.MD5,)
    assert account.ha1(Algorithm.SHA256) is None


BAD = """\
domains:
  - name: pbx.example.com
    algorithms: [SHA-256, SHA-1]
    colour: blue
    users:
      - user: 1001
        password: "x"
      - user: "1002"
      - user: "1003"
        password: "p"
        ha1_md5: "abc"
      - user: "1004"
        ha1_md5: "ab88b13cea2e543d83148f837c477f7d"
        algorithms: [SHA-256]
      - user: "1005"
        password: "p"
        max_calls: -1
        groups: [ok, "bad group"]
        caller_id: 5
        allowed_destinations: nope
      - user: "1005"
        password: "q"
      - user: "a b"
        password: "q"
      - "just a string"
  - name: "bad domain!"
  - name: pbx.example.com
extra: 1
"""


def test_every_error_reported_at_once_with_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    errors = errors_of(path)
    expected = [
        "3:27: unknown digest algorithm 'SHA-1'",
        "4:5: unknown domain setting 'colour'",
        '6:15: user must be a string; quote it: user: "1001"',
        "8:9: user '1002' has no password",
        "10:9: give either password or ha1_md5/ha1_sha256, not both",
        "11:18: ha1_md5 must be 32 hex digits",
        "14:21: no HA1 stored for SHA-256",
        "17:20: max_calls must be a positive integer",
        "18:22: bad entry 'bad group' in groups",
        '19:20: caller_id must be a string; quote it: caller_id: "5"',
        "20:31: allowed_destinations must be a list of strings",
        "21:15: user 1005 is listed twice",
        "23:15: 'a b' is not a valid SIP user name",
        "25:9: a user must be a mapping",
        "26:11: 'bad domain!' is not a valid domain name",
        "27:11: domain pbx.example.com is listed twice",
        "28:1: unknown top-level key 'extra'",
    ]
    assert len(errors) == len(expected), "\n".join(errors)
    for got, want in zip(errors, expected, strict=True):
        assert got.startswith(f"{path}:{want}"), (got, want)


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("domains:\n  - name: a\n    users: [\n", "4:1", "YAML syntax error"),
        ("domains:\n  - name: a\n  - name: b\n    name: c\n", "4:5", "YAML syntax error"),
        ("domains:\n\t- name: a\n", "2:1", "YAML syntax error"),
        ("", "1:1", "must be a mapping"),
        ("- a\n", "1:1", "must be a mapping"),
        ("users: []\n", "1:1", "unknown top-level key 'users'"),
        ("domains: 3\n", "1:10", "domains must be a list"),
        ("domains:\n  - users: []\n", "2:5", "domain has no 'name'"),
        ("domains:\n  - name: a\n    algorithms: []\n", "3:17", "non-empty list"),
        ("domains:\n  - name: a\n    users: {}\n", "3:12", "users must be a list"),
        ('domains:\n  - name: a\n    users:\n      - password: "x"\n', "4:9", "has no 'user'"),
        ('domains:\n  - name: a\n    users:\n      - {user: "1", password: "x", '
         'allowed_destinations: [internal, intl]}\n', "4:58", "unknown destination class 'intl'"),
        ('domains:\n  - name: a\n    users:\n      - {user: "1", password: "x", '
         'calls_per_minute: 0}\n', "4:54", "calls_per_minute must be a positive integer"),
    ],
)
def test_single_errors(tmp_path: Path, text: str, where: str, message: str) -> None:
    path = write(tmp_path, text)
    errors = errors_of(path)
    assert any(e.startswith(f"{path}:{where}: ") and message in e for e in errors), errors


def test_missing_file(tmp_path: Path) -> None:
    errors = errors_of(tmp_path / "nope.yaml")
    assert "cannot read" in errors[0]


def test_add_user_keeps_comments_and_layout(conf: Path) -> None:
    before = conf.read_text()
    account = add_user(conf, None, "1005", password="s3cret", display_name="Dave")
    assert isinstance(account, Account) and account.aor == f"1005@{DOMAIN}"
    after = conf.read_text()
    assert after.startswith(before)  # appended, nothing else touched
    assert '      - user: "1005"\n        password: "s3cret"\n' in after
    found = load_directory(conf).find("1005")
    assert found is not None and found.ha1(Algorithm.MD5) == ha1(
        Algorithm.MD5, "1005", DOMAIN, "s3cret"
    )


def test_add_user_ha1_only(conf: Path) -> None:
    add_user(conf, DOMAIN, "1006", password="s3cret", store_ha1_only=True)
    assert "s3cret" not in conf.read_text()
    account = load_directory(conf).find("1006")
    assert account is not None and account.auth_kind == "ha1"
    assert account.ha1(Algorithm.SHA256) == ha1(Algorithm.SHA256, "1006", DOMAIN, "s3cret")
    assert account.algorithms == (Algorithm.SHA256, Algorithm.MD5)


def test_add_refuses_duplicates_unknown_domain_bad_names(conf: Path) -> None:
    before = conf.read_text()
    for domain, user, password in (
        (None, "1001", "x"),
        ("nope.example", "1009", "x"),
        (None, "bad user", "x"),
        (None, "1009", ""),
    ):
        with pytest.raises(DirectoryError):
            add_user(conf, domain, user, password=password)
    assert conf.read_text() == before


def test_edit_refuses_an_invalid_file(tmp_path: Path) -> None:
    path = write(tmp_path, BAD)
    with pytest.raises(DirectoryError) as info:
        add_user(path, None, "2000", password="x")
    assert len(info.value.errors) > 10
    assert path.read_text() == BAD


def test_remove_user_keeps_other_comments(conf: Path) -> None:
    remove_user(conf, None, "1003")
    text = conf.read_text()
    assert 'user: "1003"' not in text
    assert "# HA1 storage:" not in text  # the comment about 1003 went with it
    # The comment about 1004 was attached by ruamel to 1003's last key.
    assert "      # Old phones and test tools: some clients answer only the topmost\n" in text
    assert "# The first domain is the default one" in text
    assert sorted(a.user for a in load_directory(conf).accounts()) == ["1001", "1002", "1004"]
    with pytest.raises(DirectoryError, match="no user 1003"):
        remove_user(conf, None, "1003")


def test_remove_first_and_last_users_keep_neighbour_comments(tmp_path: Path) -> None:
    text = (
        "domains:\n"
        "  - name: a.example\n"
        "    users:\n"
        '      - user: "1"\n'
        '        password: "p"  # eol one\n'
        "      # about two\n"
        '      - user: "2"\n'
        '        password: "p"\n'
        "      # section b follows\n"
        "  - name: b.example\n"
        "    users:\n"
        '      - user: "3"\n'
        '        password: "p"\n'
        "      # after three\n"
    )
    path = write(tmp_path, text)
    remove_user(path, "a.example", "1")
    result = path.read_text()
    assert "# eol one" not in result
    assert "# about two" in result and "# section b follows" in result
    remove_user(path, "b.example", "3")
    result = path.read_text()
    assert "# after three" in result
    assert [a.user for a in load_directory(path).accounts()] == ["2"]


def test_set_password_keeps_kind_and_comments(conf: Path) -> None:
    set_password(conf, None, "1001", "newpass")
    text = conf.read_text()
    assert 'password: "newpass"' in text
    assert "# HA1 storage:" in text
    set_password(conf, None, "1003", "again")  # stays HA1-only
    directory = load_directory(conf)
    carol = directory.find("1003")
    assert carol is not None and carol.auth_kind == "ha1"
    assert carol.ha1(Algorithm.MD5) == ha1(Algorithm.MD5, "1003", DOMAIN, "again")
    assert "again" not in conf.read_text()


def test_set_password_switches_kind(conf: Path) -> None:
    set_password(conf, None, "1004", "hashed", store_ha1_only=True)
    old = load_directory(conf).find("1004")
    assert old is not None and old.auth_kind == "ha1" and old.algorithms == (Algorithm.MD5,)
    assert "hashed" not in conf.read_text()
    set_password(conf, None, "1004", "plain", store_ha1_only=False)
    again = load_directory(conf).find("1004")
    assert again is not None and again.auth_kind == "password"
    assert "# Old phones and test tools" in conf.read_text()
    with pytest.raises(DirectoryError, match="no user 9999"):
        set_password(conf, None, "9999", "x")


def test_write_is_atomic_and_keeps_mode(conf: Path) -> None:
    conf.chmod(0o640)
    add_user(conf, None, "1007", password="x")
    assert stat.S_IMODE(conf.stat().st_mode) == 0o640
    assert [p.name for p in conf.parent.iterdir()] == [conf.name]  # no temp file left


def test_toll_fields_are_read(tmp_path: Path) -> None:
    path = write(tmp_path, 'domains:\n  - name: a\n    users:\n      - {user: "1", password: "x", '
                 'allowed_destinations: [internal, international], max_calls: 2, '
                 'calls_per_minute: 5}\n')
    account = load_directory(path).find("1")
    assert account is not None
    assert account.allowed_destinations == ("internal", "international")
    assert (account.max_calls, account.calls_per_minute) == (2, 5)
