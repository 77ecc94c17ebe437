"""What `/openapi.json` promises, walked over every operation and every schema the app has
(not a list of today's routes), so a route added later is held to the same rules: a real
success envelope, error responses with their codes, both ways to present a key, descriptions
and examples on fields. And the view functions build exactly what the models document."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any, cast

import pytest
from pydantic import BaseModel

from rdev.adapters.http import codes, responses
from rdev.adapters.http.app import create_app
from rdev.adapters.http.openapi import operations
from rdev.adapters.http.routes import usage, webhooks
from rdev.adapters.http.schemas import audit_view, issued_view, key_view, project_view
from rdev.adapters.http.state import HttpServices
from rdev.domain.claude_env import ClaudeEnv
from rdev.domain.models import ApiKey, AuditEntry, IssuedKey, Project, ProjectStatus, Scope
from rdev.domain.usage import Tokens, UsageRow
from rdev.domain.webhooks import Attempt, Delivery, DeliveryStatus, Webhook, WebhookEvent
from rdev.services.usage import Report

# Operations anyone may call, without a key. Add one here only on purpose.
PUBLIC = {("get", "/health"), ("get", "/ready")}
# Schemas FastAPI adds for its own validation errors (rdev answers those in its envelope).
FASTAPI_OWN = {"HTTPValidationError", "ValidationError"}


def _spec() -> dict[str, Any]:
    return create_app(cast(HttpServices, None), max_body_bytes=1 << 20).openapi()


SPEC = _spec()
OPS = operations(SPEC)
IDS = [f"{m.upper()} {p}" for m, p, _ in OPS]


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = SPEC["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_the_walk_sees_every_route() -> None:
    assert len(OPS) >= 23
    assert {("get", "/projects"), ("get", "/commands/{command_id}/events")} <= {
        (m, p) for m, p, _ in OPS
    }


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_every_success_response_documents_its_body(
    method: str, path: str, op: dict[str, Any]
) -> None:
    success = {s: r for s, r in op["responses"].items() if s.startswith("2")}
    assert success, "no 2xx response"
    for status, response in success.items():
        if status == "204":
            assert "content" not in response
            continue
        content = response.get("content", {})
        assert content, f"{status}: no content"
        for media, body in content.items():
            schema = _resolve(body.get("schema", {}))
            assert schema, f"{status} {media}: empty schema"
            if media == "application/json":
                assert {"data", "meta"} <= set(schema.get("properties", {})), f"{status}: {schema}"
                data = _resolve(schema["properties"]["data"])
                assert data.get("properties") or data.get("items") or data.get("$ref"), (
                    f"{status}: `data` is {data}"
                )


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_every_operation_documents_its_errors_with_their_codes(
    method: str, path: str, op: dict[str, Any]
) -> None:
    errors = {s: r for s, r in op["responses"].items() if s[0] in "45"}
    assert errors, "no error response"
    if (method, path) not in PUBLIC:
        assert {"401", "403", "404", "422", "429", "503"} <= errors.keys()
    for status, response in errors.items():
        ref = response["content"]["application/json"]["schema"]
        assert ref == {"$ref": f"#/components/schemas/Error{status}"}
        body = _resolve(ref)
        code = body["properties"]["error"]["properties"]["code"]
        assert code["enum"] == codes.by_status()[int(status)], status
        assert all(c in response["description"] for c in code["enum"])
    for status in ("429", "503"):
        if status in errors and (method, path) not in PUBLIC:
            assert "Retry-After" in errors[status]["headers"]


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_every_operation_but_the_public_ones_takes_a_bearer_or_api_key(
    method: str, path: str, op: dict[str, Any]
) -> None:
    if (method, path) in PUBLIC:
        assert not op.get("security")
    else:
        assert op.get("security") == [{"Bearer": []}, {"ApiKey": []}]


def test_operation_ids_are_unique_plain_names() -> None:
    ids = [op["operationId"] for _, _, op in OPS]
    assert len(set(ids)) == len(ids)
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", i) for i in ids), ids


def test_both_security_schemes_are_declared() -> None:
    schemes = SPEC["components"]["securitySchemes"]
    assert schemes["Bearer"] == {**schemes["Bearer"], "type": "http", "scheme": "bearer"}
    assert schemes["ApiKey"] == {**schemes["ApiKey"], "type": "apiKey", "name": "X-API-Key"}


SCHEMAS = sorted(set(SPEC["components"]["schemas"]) - FASTAPI_OWN)


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_field_of_every_schema_is_described(name: str) -> None:
    schema = SPEC["components"]["schemas"][name]
    undescribed = [
        field
        for field, prop in schema.get("properties", {}).items()
        if "description" not in prop and "$ref" not in prop and "allOf" not in prop
    ]
    assert not undescribed, f"{name}: no description on {undescribed}"


@pytest.mark.parametrize(("method", "path", "op"), OPS, ids=IDS)
def test_every_parameter_is_described(method: str, path: str, op: dict[str, Any]) -> None:
    undescribed = [p["name"] for p in op.get("parameters", []) if not p.get("description")]
    assert not undescribed


def test_fields_carry_limits_enums_and_examples() -> None:
    schemas = SPEC["components"]["schemas"]
    assert schemas["KeyCreate"]["properties"]["name"]["maxLength"] == 200
    assert schemas["ClaudeRun"]["properties"]["max_turns"]["anyOf"][0]["maximum"] == 1000
    assert "enum" in schemas["CommandStatus"]
    assert schemas["CommandView"]["properties"]["command_id"]["examples"]
    assert schemas["GitRun"]["examples"]


# the view functions build what the models document (extra fields are refused)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
KEY = ApiKey(
    id="k1a2b3c4d5e6", name="ci", secret_hash="x", scopes=frozenset({Scope.PROJECTS_READ}),
    created_at=NOW, projects=frozenset({"demo"}), allowed_ips=("10.0.0.0/8",), expires_at=NOW,
)  # fmt: skip
HOOK = Webhook(
    id="wh_0123456789abcdef0123", owner_key_id=KEY.id, url="https://hooks.example.com/rdev",
    events=frozenset({WebhookEvent.COMMAND_COMPLETED, WebhookEvent.KEY_CREATED}),
    projects=frozenset({"demo"}), description="ci", enabled=False, created_at=NOW,
    updated_at=NOW, failing_since=NOW, disabled_reason="failing",
)  # fmt: skip
DELIVERY = Delivery(
    id="msg_0123456789abcdef01234567", webhook_id=HOOK.id, event=WebhookEvent.PING,
    payload="{}", status=DeliveryStatus.PENDING, created_at=NOW, next_attempt_at=NOW,
    attempts=(Attempt(NOW, 500, 12, "HTTP 500", "oops"), Attempt(NOW, None, 3, "timeout", "")),
)  # fmt: skip
DAY = date(2026, 1, 2)
REPORT = Report(DAY, DAY, [UsageRow(DAY, "claude-sonnet-4-5", 0.5, Tokens(1, 2, 3, 4), 2)])
EMPTY = Report(DAY, DAY, [])


@pytest.mark.parametrize(
    ("view", "model"),
    [
        (key_view(KEY), responses.KeyView),
        (issued_view(IssuedKey(key=KEY, secret="rdev_sk_k1a2b3c4d5e6_" + "s" * 43)),
         responses.IssuedKeyView),
        (project_view(Project(id="demo", status=ProjectStatus.RUNNING)), responses.ProjectView),
        (project_view(Project(id="demo", status=ProjectStatus.FAILED, status_reason="down",
                              claude_env=ClaudeEnv({"B": "s", "A": "t"}), max_concurrent=2)),
         responses.ProjectView),
        (audit_view(AuditEntry(id=1, at=NOW, action="command.submit", details={"a": 1})),
         responses.AuditView),
        (webhooks.webhook_view(HOOK), responses.WebhookView),
        (webhooks.webhook_view(HOOK) | {"secret": "whsec_x"}, responses.CreatedWebhookView),
        (webhooks.delivery_view(DELIVERY), responses.DeliveryView),
        (usage._view(REPORT, project="demo"), responses.ProjectUsageView),
        (usage._view(EMPTY, key_id=KEY.id), responses.KeyUsageView),
    ],
    ids=["key", "issued", "project", "project-env", "audit", "webhook", "created-webhook",
         "delivery", "project-usage", "key-usage"],
)  # fmt: skip
def test_each_view_is_what_its_model_documents(
    view: dict[str, Any], model: type[BaseModel]
) -> None:
    assert model.model_validate(view).model_dump(mode="json", by_alias=True) == view
