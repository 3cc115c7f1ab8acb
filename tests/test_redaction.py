"""No secret reaches disk: key names, value patterns, user patterns, allow-list, truncation."""

from __future__ import annotations

from pathlib import Path

import pytest

import agent_debug as ad
from agent_debug.formats.reader import read_paths
from agent_debug.sdk.redact import Redactor
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
    assert tool["attributes"]["redacted.count"] >= 15
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
