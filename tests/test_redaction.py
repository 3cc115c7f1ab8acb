"""No secret reaches disk: key names, value patterns, user patterns, allow-list, truncation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings, strategies as st

import agent_debug as ad
from agent_debug.formats.reader import read_paths
from agent_debug.sdk.redact import TEDDY_MAX, Redactor
from conftest import read_all_bytes

# (kind, secret) pairs: shapes of real credentials (all fake)
SECRETS = [
    ("openai_key", "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr"),
    ("anthropic_key", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789"),
    ("google_api_key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q"),
    ("aws_access_key", "AKIAIOSFODNN7EXAMPLE"),
    ("github_token", "ghp_1234567890abcdefghijABCDEFGHIJ123456"),
    ("github_token", "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz"),
    ("slack_token", "xoxb-123456789012-abcdefghijkl"),
    ("jwt", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"),
    ("stripe_key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc"),
]
BEARER = "Bearer abc.def-ghi_jkl012345"
PRIVATE_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA7\nabc\n-----END RSA PRIVATE KEY-----"
AWS_SECRET = "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
URL = "https://admin:hunter2pass@db.internal:5432/prod"
AKIA = "AKIAIOSFODNN7EXAMPLE"


def test_value_patterns_and_key_names_never_reach_disk(sdk: Path) -> None:
    with ad.run("wf"):
        with ad.span("tool") as s:
            for i, (_, secret) in enumerate(SECRETS):
                s.set_attribute(f"out.{i}", f"prefix {secret} suffix")
            s.set_payload({
                "headers": {"Authorization": BEARER, "X-Api-Key": "plainvalue123", "Cookie": "sid=abc"},
                "env": {"DB_PASSWORD": "correct horse", "client_secret": "s3cr3t", "auth_token": "tok-123"},
                "stdout": f"{AWS_SECRET}\nconnecting to {URL}\n{PRIVATE_KEY}\nnested [\"{SECRETS[0][1]}\"]",
                "list": [{"password": "p@ss"}, "Bearer zzzzzzzzzzzz"],
            })
        with ad.span("error-path"):
            try:
                with ad.span("fails"):
                    raise PermissionError(f"token rejected: {SECRETS[4][1]}")
            except PermissionError:
                pass
    ad.shutdown()
    raw = read_all_bytes(sdk)
    leaked = [s for _, s in SECRETS if s.encode() in raw]
    for value in ("abc.def-ghi_jkl012345", "plainvalue123", "correct horse", "s3cr3t", "tok-123", "hunter2pass",
                  "MIIEowIBAAKCAQEA7", "wJalrXUtnFEMI", "p@ss", "zzzzzzzzzzzz", "sid=abc"):
        if value.encode() in raw:
            leaked.append(value)
    assert leaked == []
    records = {r["name"]: r for r in read_paths([sdk])}
    tool = records["tool"]
    paths = tool["attributes"]["redacted.paths"]
    assert "payload.headers.Authorization" in paths and "payload.env.DB_PASSWORD" in paths
    # 9 attributes; Authorization, X-Api-Key, Cookie; 3 env values; in stdout the AWS secret, the URL's password,
    # the private key and the nested key; the list's password and bearer token
    assert tool["attributes"]["redacted.count"] == 9 + 3 + 3 + 4 + 2
    assert "[REDACTED:openai_key]" in tool["attributes"]["out.0"]
    assert tool["attributes"]["out.0"].startswith("prefix ") and tool["attributes"]["out.0"].endswith(" suffix")
    assert "[REDACTED:github_token]" in records["fails"]["error"]["message"]


def test_ordinary_token_fields_are_not_redacted() -> None:
    r = Redactor()
    rec = {"trace_id": "t", "span_id": "s", "token_cost": {"prompt_tokens": 5, "completion_tokens": 3},
           "attributes": {"token.budget": 100, "max_tokens": 9, "task": "write a tokenizer", "tokens": 4}}
    before = {"token_cost": dict(rec["token_cost"]), "attributes": dict(rec["attributes"])}
    result = r.scrub_record(rec)
    assert result.count == 0
    assert rec["token_cost"] == before["token_cost"] and rec["attributes"] == before["attributes"]


def test_user_patterns_keys_and_allow_list() -> None:
    r = Redactor(extra_patterns=[r"CUST-\d{6}"], extra_keys=["ssn"], allow_keys=["session_key"])
    rec = {"payload": {"note": "customer CUST-123456 called", "ssn": "078-05-1120", "session_key": "keep-me"}}
    r.scrub_record(rec)
    assert rec["payload"] == {"note": "customer [REDACTED:custom0] called", "ssn": "[REDACTED]",
                              "session_key": "keep-me"}


def test_truncation_after_redaction_records_a_hash() -> None:
    r = Redactor(max_string_chars=100, max_payload_bytes=1000)
    secret = SECRETS[0][1]
    rec = {"payload": {"blob": secret + " " + "x" * 500}, "attributes": {}}
    r.scrub_record(rec)
    blob = rec["payload"]["blob"]
    assert secret not in blob and blob.startswith("[REDACTED:openai_key]")
    assert "truncated" in blob and "sha256:" in blob
    assert rec["attributes"]["payload.truncated"] is True
    rec2 = {"payload": {f"k{i}": "y" * 90 for i in range(50)}}
    r.scrub_record(rec2)
    assert rec2["payload"]["truncated"] is True and rec2["payload"]["bytes"] > 1000


@pytest.mark.parametrize("kind,secret", SECRETS)
def test_each_pattern(kind: str, secret: str) -> None:
    value, n = Redactor().scrub_value(f"see {secret} here")
    assert n == 1 and value == f"see [REDACTED:{kind}] here"


# -- adversarial shapes: what a writer of secrets does that the first patterns missed ---------------------------

GHP = SECRETS[4][1]
OPENAI = SECRETS[0][1]

# (where, value, the secret that must not survive, what must stay readable)
ADVERSARIAL: list[tuple[str, Any, str, str]] = [
    ("akia_before_underscore", f"key id {AKIA}_prod in use", AKIA, "_prod in use"),
    ("password_in_free_text", "connecting with password=hunter2 to db", "hunter2", "connecting with password="),
    ("password_colon_quoted", 'config: password: "correct horse" done', "correct horse", "done"),
    ("env_line_in_list", ["HOME=/root", "DB_PASSWORD=s3cr3tpw", "SHELL=/bin/sh"], "s3cr3tpw", "SHELL=/bin/sh"),
    ("query_string_api_key", "GET https://api.example.com/v1?api_key=abcd1234efgh&page=2", "abcd1234efgh",
     "&page=2"),
    ("query_string_token", "callback https://x.example/cb?token=tok9f8e7d6c5b&state=1", "tok9f8e7d6c5b",
     "&state=1"),
    ("url_credentials_postgres", "postgres://svc:pa55word@db.internal:5432/app", "pa55word", "@db.internal"),
    ("json_in_a_string", '{"api_key": "plainvalue123", "model": "m1"}', "plainvalue123", '"model": "m1"'),
    ("escaped_json_in_a_string", '{\\"client_secret\\": \\"zz-escaped-99\\"}', "zz-escaped-99", "client_secret"),
    ("key_after_escaped_newline", f"line one\n{OPENAI}", OPENAI, "line one"),
    ("key_after_control_char", f"\x01{OPENAI}", OPENAI, "\x01"),
    ("token_in_parentheses", f"(token: {GHP})", GHP, "(token: "),
    ("jwt_in_angle_brackets", f"<{SECRETS[7][1]}>", SECRETS[7][1], "<"),
    ("bearer_then_semicolon", "Authorization: Bearer abc.def-ghi_jkl012345; next", "abc.def-ghi_jkl012345", "; next"),
    ("google_key_in_quotes", f"key='{SECRETS[2][1]}'", SECRETS[2][1], "key="),
    ("cjk_neighbour", f"密钥{OPENAI}结束", OPENAI, "结束"),
    ("accented_neighbour", f"clé{GHP}", GHP, "clé"),
    ("akia_after_letter_with_accent", f"é{AKIA}日本", AKIA, "日本"),
]

# keys whose values are secrets whatever they look like, spelled as people spell them
SECRET_KEYS = ["pwd", "PWD", "Api-Key", "API.KEY", "api key", "apiKey", "PassWord", "accessToken", "X_AUTH_TOKEN",
               "Client-Secret", "privateKey", "session.key", "refresh-token", "API_\u212aEY"]

# things that look a little like secrets and are not: they must come through unchanged
NOT_SECRETS: dict[str, Any] = {
    "token_count": 512, "max_tokens": 9, "tokens": 4, "token.budget": 100, "tokenizer": "bpe",
    "prompt": "reset your password via the email link; the secret sauce is patience",
    "task_id": "task-1234567890abcdefghijklmnop", "region": "Asia/Tokyo AIDA cruise", "url":
    "https://example.com/docs?page=2&lang=en", "count_line": "token count: 5 tokens", "monkey": "keyboard",
    "author": "Ada", "session_id": "s-1", "note": "ask-the-user, risk_test_plan, work_live_notes",
}


def _scrub(value: Any, key: str = "value") -> tuple[Any, list[str], int]:
    rec = {"trace_id": "t", "span_id": "s", "name": "n", "payload": {key: value}}
    result = Redactor().scrub_record(rec)
    return rec["payload"][key], result.paths, result.count


@pytest.mark.parametrize("case,value,secret,kept", ADVERSARIAL, ids=[c[0] for c in ADVERSARIAL])
def test_adversarial_values(case: str, value: Any, secret: str, kept: str) -> None:
    out, paths, count = _scrub(value)
    text = out if isinstance(out, str) else "\n".join(out)
    assert secret not in text and count == 1 and len(paths) == 1  # one secret in each value
    assert kept in text
    # the batch path finds the same record and gives the same bytes
    data = orjson.dumps({"trace_id": "t", "span_id": "s", "name": "n", "payload": {"value": value}})
    assert Redactor().needs_work(data)
    assert secret.encode() not in Redactor().process(data)


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_key_spellings(key: str) -> None:
    out, paths, count = _scrub("hunter2-value", key)
    assert out == "[REDACTED]" and paths == [f"payload.{key}"] and count == 1
    data = orjson.dumps({"trace_id": "t", "span_id": "s", "attributes": {key: "hunter2-value"}})
    assert b"hunter2-value" not in Redactor().process(data)


def test_nothing_that_is_not_a_secret_is_redacted() -> None:
    rec = {"trace_id": "t", "span_id": "s", "name": "n", "payload": dict(NOT_SECRETS),
           "attributes": dict(NOT_SECRETS)}
    result = Redactor().scrub_record(rec)
    assert (result.paths, result.count) == ([], 0)
    assert rec["payload"] == NOT_SECRETS and rec["attributes"] == NOT_SECRETS


def test_secrets_in_list_items_and_nested_attributes_never_reach_disk(sdk: Path) -> None:
    with ad.run("wf"):
        with ad.span("tool", attributes={"db": {"password": "nested-pw-1", "host": "db1"}}) as s:
            s.set_attribute("auth", {"token": "nested-tok-2"})
            s.set_payload({"argv": ["deploy", "--key", GHP], "headers": [["Authorization", "Bearer zzzzzzzzzzzz9"]],
                           "items": [{"name": "a", "apiKey": "list-key-3"}]})
    ad.shutdown()
    raw = read_all_bytes(sdk)
    for secret in ("nested-pw-1", "nested-tok-2", GHP, "zzzzzzzzzzzz9", "list-key-3"):
        assert secret.encode() not in raw, secret
    (tool,) = [r for r in read_paths([sdk]) if r["name"] == "tool"]
    assert tool["attributes"]["db.host"] == "db1"
    assert set(tool["attributes"]["redacted.paths"]) >= {"attributes.db.password", "attributes.auth.token",
                                                         "payload.argv[2]", "payload.items[0].apiKey"}


# -- the batch scan misses nothing the walk would redact --------------------------------------------------------

_NEIGHBOURS = ["", " ", "\n", "\t", "\x01", '"', "'", "\\", "_", "-", ".", "=", ": ", "(", "x", "9", "é", "密",
               "\u212a", "://", "user:pw@"]
_SECRETISH = [s for _, s in SECRETS] + [BEARER, AWS_SECRET, URL, AKIA, "password=hunter2", "token: abc123",
                                        "api-key=zz9", "task-42", "Asia/Tokyo", "https://example.com/x", "plain"]
_KEY_WORDS = ["password", "passwd", "pwd", "secret", "api_key", "apikey", "api.key", "api key", "private-key",
              "access_key", "session key", "token", "auth_token", "cookie", "credential", "authorization", "name",
              "tokens", "keyboard", "monkey", "author"]
_CASINGS = [str.lower, str.upper, str.title, str.swapcase, lambda k: k.replace("k", "\u212a")]


def _cased(word: str, casing: int) -> str:
    return _CASINGS[casing](word)


_keys = st.builds(lambda pre, word, casing, post: pre + _cased(word, casing) + post,
                  st.sampled_from(["", "db_", "x-", "my", "X."]), st.sampled_from(_KEY_WORDS),
                  st.integers(0, len(_CASINGS) - 1), st.sampled_from(["", "_hash", "s", "Id", "-1"]))
_texts = st.builds(lambda pre, secret, post, casing: pre + _cased(secret, casing) + post,
                   st.sampled_from(_NEIGHBOURS), st.sampled_from(_SECRETISH), st.sampled_from(_NEIGHBOURS),
                   st.sampled_from([0, 0, 0, 1, 2, 3]).map(lambda c: c if c else -1))
_CASINGS.append(lambda k: k)  # index -1: as written
_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-5, 5), _texts),
                       lambda inner: st.one_of(st.lists(inner, max_size=3),
                                               st.dictionaries(_keys, inner, max_size=3)), max_leaves=6)
_records = st.lists(st.fixed_dictionaries({"payload": st.dictionaries(_keys, _values, max_size=3),
                                           "attributes": st.dictionaries(_keys, _values, max_size=3)}),
                    min_size=1, max_size=5)
_NO_TRUNCATION = Redactor(max_string_chars=10**9, max_payload_bytes=10**9)  # redaction only


@settings(max_examples=200, deadline=None)
@given(records=_records)
def test_the_batch_scan_finds_every_record_the_walk_would_redact(records: list[dict[str, Any]]) -> None:
    red = _NO_TRUNCATION
    batch = [orjson.dumps({"trace_id": "t", "span_id": str(i), "name": "n", **r}) for i, r in enumerate(records)]
    got, joined, changed = red.redact_batch(list(batch))
    walked = [red._walk_record(d) for d in batch]  # every record parsed and walked, no scan
    assert got == walked
    assert joined == b"\n".join(walked) and changed == sum(a != b for a, b in zip(batch, walked, strict=True))


@settings(max_examples=100, deadline=None)
@given(values=st.lists(_values, min_size=1, max_size=8), filler=st.integers(0, 70))
def test_a_long_list_scanned_item_by_item_is_redacted_as_the_walk_of_every_item_redacts_it(
        values: list[Any], filler: int) -> None:
    """`scrub_value` (packets) walks only the items of a long list whose JSON holds a trigger: the same result as
    walking every item, whatever the secrets' shapes, with the list long enough for the scan or not."""
    import copy

    from agent_debug.sdk import redact

    items = [{"name": f"step {i}", "attributes": {"n": i}} for i in range(filler)] + values
    scanned, count = _NO_TRUNCATION.scrub_value(copy.deepcopy({"spans": items}))
    limit = redact.PREFILTER_ITEMS
    try:
        redact.PREFILTER_ITEMS = 10**9  # every item walked
        walked, walked_count = _NO_TRUNCATION.scrub_value(copy.deepcopy({"spans": items}))
    finally:
        redact.PREFILTER_ITEMS = limit
    assert scanned == walked and count == walked_count


def test_more_triggers_than_one_automaton_takes_are_all_searched() -> None:
    """Extra keys that push the triggers past TEDDY_MAX are searched in groups: every record the walk would
    redact is still found, whichever group holds its trigger."""
    extra = ["db_pass_word_x", "client_key_id", "x_signature", "sig_hash_value", "mfa_code", "otp_seed"]
    red = Redactor(extra_keys=extra, max_string_chars=10**9, max_payload_bytes=10**9)
    assert len(red._triggers) > TEDDY_MAX
    words = _KEY_WORDS + [k.replace("_", sep) for k in extra for sep in ("_", "-", ".", " ")]
    records = [{"payload": {f"{casing(word)}": "v4lue-9"}} for word in words for casing in (str.lower, str.upper)]
    records += [{"payload": {"text": f"see {secret} here"}} for secret in _SECRETISH]
    batch = [orjson.dumps({"trace_id": "t", "span_id": str(i), "name": "n", **r}) for i, r in enumerate(records)]
    got, _, changed = red.redact_batch(list(batch))
    walked = [red._walk_record(d) for d in batch]
    assert got == walked and changed == sum(a != b for a, b in zip(batch, walked, strict=True)) > len(extra) * 8
