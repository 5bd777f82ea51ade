"""Schemathesis hooks for scripts/schemathesis.

Eight narrow exceptions to "schema-valid request rejected" (ST202), two to
"created resource not found" (ST302), two to "missing required header
accepted" (ST203), and nothing else; every other failure fails the run:

- A listing's `cursor` is sealed by the server (ChaCha20-Poly1305 over the
  query's shape), so no schema can say which strings are valid ones: a cursor
  schemathesis makes up is refused with 400
  `urn:constellation:problem:invalid-cursor`, as it must be. Only that answer
  is excused (any other 400 on the same request still fails); real cursors
  reach the listings through the stateful phase's links.
- The coverage phase can label a case positive while one of its values is
  not valid: for an optional header whose pattern needs characters other
  than letters and digits (an entity tag, `*`), it cannot make a valid value
  and sends `0`. Such a case is not schema-valid, so its rejection is the
  expected answer, not a finding. The hook checks each string parameter of
  the case against the document itself ($ST_DOCUMENT) to tell.
- An `Idempotency-Key` that an earlier generated case already used for
  another request is refused with 422
  `urn:constellation:problem:idempotency-key-reused`, as the contract says:
  an outcome of the key's history (like 409 or 412), not of this input.
  Only that answer, to a case that sent the header, is excused.
- An invite exists until it is accepted: the stateful phase can follow the
  link from `POST /invites` to `POST /accept-invite` (with the token the
  creation answered) and then to `DELETE /invites/{id}`, which rightly
  answers 404. Excused only when the server's own log ($ST_SERVE_LOG)
  records that this invite was accepted or revoked before. Likewise an
  announcement: a retried create (same `Idempotency-Key`) replays the
  first answer, whose announcement may have been retracted since; excused
  only when the log records that retraction.
- An amount of money has at most its currency's own number of decimals
  (JPY 0, EUR 2, KWD 3) and is at most 1,000,000 of it: rules between two
  fields that JSON Schema cannot state without one schema per currency. A
  400 `invalid-input` naming an amount field with exactly those reasons is
  excused (any other 400 still fails).
- An expense's `incurred_on` is no later than tomorrow and at most 365
  days ago, relative to the server's today: no schema can state it. A 400
  `invalid-input` naming `incurred_on` with exactly those reasons is
  excused.
- An announcement's `publish_at` and a reminder's `remind_at` are in the
  future and within a year, relative to the server's now. A 400
  `invalid-input` naming either with exactly those reasons is excused.
- An announcement's `attachments` must be ready attachments of the
  organization, and a reminder's `to.accounts` accounts of it: state
  that only media's and auth's events create, which no generated request
  can. A 400 `invalid-input` naming the field with exactly that reason is
  excused.
- An order's lines name distinct products: a rule across array items
  that JSON Schema cannot state for one property of objects. A 400
  `invalid-input` naming `lines` for a body that really repeats a
  `product_id` is excused.
- A route that requires `Idempotency-Key` (placing an order) answers its
  absence with 428 `idempotency-key-required`, as the contract says.
- A write that requires `If-Match` answers its absence with 428
  `urn:constellation:problem:precondition-required` (RFC 6585 section 3:
  the status for exactly this case), which the contract names; schemathesis
  expects a 400-family answer other than 428. Only that answer, for that
  header, is excused.
"""

import json
import os

import jsonschema
import schemathesis

INVALID_CURSOR = "urn:constellation:problem:invalid-cursor"
PRECONDITION_REQUIRED = "urn:constellation:problem:precondition-required"
KEY_REQUIRED = "urn:constellation:problem:idempotency-key-required"
INVALID_INPUT = "urn:constellation:problem:invalid-input"
AMOUNT_FIELDS = ("amount", "price.amount")
CURRENCY_RULES = ("decimal place", "has no minor unit", "must be at most 1000000")
DATE_RULES = ("days ago", "after tomorrow")
SCHEDULE_FIELDS = ("publish_at", "remind_at")
SCHEDULE_RULES = ("must be in the future", "must be within a year")
STATE_RULES = {
    "attachments": "is not a ready attachment of this organization",
    "to.accounts": "is not an account of this organization",
}
KEY_REUSED = "urn:constellation:problem:idempotency-key-reused"


with open(os.environ["ST_DOCUMENT"]) as f:
    DOCUMENT = json.load(f)


def _sent_values(case, location):
    values = {
        "header": case.headers,
        "query": case.query,
        "path": case.path_parameters,
    }.get(location) or {}
    if location == "header":
        return {k.lower(): v for k, v in values.items()}
    return values


def _breaks_document(case):
    """Whether a string parameter the case sends breaks its documented schema."""
    operation = DOCUMENT["paths"].get(case.operation.path, {}).get(case.method.lower(), {})
    for param in operation.get("parameters", []):
        schema = param.get("schema", {})
        if schema.get("type") != "string":
            continue
        name = param["name"].lower() if param["in"] == "header" else param["name"]
        value = _sent_values(case, param["in"]).get(name)
        if isinstance(value, str) and not jsonschema.Draft202012Validator(schema).is_valid(value):
            return True
    return False


# Resources a logged event ends: (created with, the resource's path, any
# method) -> (the log field naming the id, the messages that end it).
ENDED_BY = {
    ("POST /v1/auth/invites", "/v1/auth/invites/{id}"): (
        "invite",
        ("invite accepted", "invite revoked"),
    ),
    ("POST /v1/comms/announcements", "/v1/comms/announcements/{id}"): (
        "announcement",
        ("announcement retracted",),
    ),
}


def _ended_before(failure, case):
    """Whether serve logged that the resource named in the case's path was
    ended (an invite accepted or revoked, an announcement retracted)."""
    resource = failure.not_available_with.split(" ", 1)[-1]
    rule = ENDED_BY.get((failure.created_with, resource))
    ident = (case.path_parameters or {}).get("id")
    path = os.environ.get("ST_SERVE_LOG")
    if not rule or not ident or not path:
        return False
    field, messages = rule
    with open(path) as log:
        for line in log:
            if ident not in line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get(field) == ident and record.get("message") in messages:
                return True
    return False


def _repeats_a_product(case):
    """Whether the case's body lists one product_id twice."""
    body = case.body if isinstance(case.body, dict) else {}
    lines = body.get("lines")
    if not isinstance(lines, list):
        return False
    ids = [l.get("product_id") for l in lines if isinstance(l, dict)]
    return len(ids) != len(set(ids))


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if type(failure).__name__ == "EnsureResourceAvailability":
        return not (response.status_code == 404 and _ended_before(failure, case))
    if type(failure).__name__ == "MissingHeaderNotRejected":
        try:
            problem = json.loads(response.content)
        except (TypeError, ValueError):
            return True
        expected = {"if-match": PRECONDITION_REQUIRED, "idempotency-key": KEY_REQUIRED}
        required_header = (
            response.status_code == 428
            and isinstance(problem, dict)
            and problem.get("type") == expected.get(failure.header_name.lower())
        )
        return not required_header
    if type(failure).__name__ != "RejectedPositiveData":
        return True
    if _breaks_document(case):
        return False
    try:
        problem = json.loads(response.content)
    except (TypeError, ValueError):
        return True
    if not isinstance(problem, dict):
        return True
    if (
        response.status_code == 400
        and problem.get("type") == INVALID_INPUT
        and problem.get("field") in AMOUNT_FIELDS
        and any(rule in problem.get("detail", "") for rule in CURRENCY_RULES)
    ):
        return False
    if (
        response.status_code == 400
        and problem.get("type") == INVALID_INPUT
        and problem.get("field") == "incurred_on"
        and any(rule in problem.get("detail", "") for rule in DATE_RULES)
    ):
        return False
    if (
        response.status_code == 400
        and problem.get("type") == INVALID_INPUT
        and problem.get("field") in SCHEDULE_FIELDS
        and any(rule in problem.get("detail", "") for rule in SCHEDULE_RULES)
    ):
        return False
    if (
        response.status_code == 400
        and problem.get("type") == INVALID_INPUT
        and problem.get("field") in STATE_RULES
        and STATE_RULES[problem.get("field")] in problem.get("detail", "")
    ):
        return False
    if (
        response.status_code == 400
        and problem.get("type") == INVALID_INPUT
        and problem.get("field") == "lines"
        and _repeats_a_product(case)
    ):
        return False
    sent_key = "idempotency-key" in _sent_values(case, "header")
    if sent_key and response.status_code == 422 and problem.get("type") == KEY_REUSED:
        return False
    if not (case.query or {}).get("cursor"):
        return True
    return not (problem.get("type") == INVALID_CURSOR and problem.get("field") == "cursor")
