"""A fake Salesforce on 127.0.0.1 over TLS, speaking the parts of the real protocols that
``quota_platform.sources.salesforce`` uses through simple-salesforce:

* SOAP login: ``POST /services/Soap/u/<version>`` (the partner ``login`` call; a SOAP fault with
  HTTP 500 for bad credentials, as Salesforce answers).
* OAuth 2.0 JWT bearer: ``POST /services/oauth2/token``; the assertion is verified with PyJWT
  against the test's RSA public key (signature, ``iss``, ``sub``, ``aud``, ``exp``).
* REST: ``GET /services/data/vXX.X/sobjects/<Object>/describe``, ``GET .../query?q=`` and
  ``.../queryAll?q=`` for ``SELECT f1, f2 FROM Obj`` and ``SELECT COUNT() FROM Obj``, paged by
  ``nextRecordsUrl``.
* Bulk API 2.0 query jobs: ``POST .../jobs/query``, ``GET .../jobs/query/<id>`` (``InProgress``,
  then ``JobComplete``), ``GET .../jobs/query/<id>/results`` as CSV with ``Sforce-Locator`` and
  ``Sforce-NumberOfRecords`` paging.

Records are supplied by the test per object as lists of dicts holding JSON values (what Salesforce
would serialise). Every request is recorded in :attr:`FakeSalesforce.seen`, and faults (an error
status, a stall) can be queued with :meth:`FakeSalesforce.fail` and :meth:`FakeSalesforce.stall`.
"""

from __future__ import annotations

import base64
import dataclasses
import itertools
import json
import re
import secrets
import ssl
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import jwt
from requests.adapters import HTTPAdapter

ORG_ID = "00D000000000001AAA"
USER_ID = "005000000000001AAA"

_SOQL = re.compile(r"^\s*SELECT\s+(?P<fields>.+?)\s+FROM\s+(?P<object>\w+)\s*$", re.I | re.S)
_DATA = re.compile(r"^/services/data/v(?P<version>\d+\.\d+)/(?P<rest>.*)$")


@dataclasses.dataclass(frozen=True)
class Seen:
    """One request the fake received."""

    method: str
    path: str
    params: dict[str, list[str]]
    host: str
    body: bytes

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[0] if values else None


@dataclasses.dataclass
class _Fault:
    method: str
    path_suffix: str
    times: int
    status: int | None = None
    body: Any = None
    stall_seconds: float = 0.0
    headers: Mapping[str, str] = dataclasses.field(default_factory=dict)


class _Answer(Exception):
    """Raised inside a handler to answer with an error status."""

    def __init__(self, status: int, body: Any, content_type: str = "application/json"):
        super().__init__(status)
        self.status = status
        self.body = body
        self.content_type = content_type


def _error(status: int, code: str, message: str) -> _Answer:
    """A REST error answer as Salesforce writes it: a list of {errorCode, message}."""
    return _Answer(status, [{"errorCode": code, "message": message}])


def _not_found() -> _Answer:
    return _error(404, "NOT_FOUND", "The requested resource does not exist")


class FakeSalesforce:
    """The fake org and its server: a context manager, or :meth:`start` and :meth:`stop`.

    ``objects``: records per object the org has (an object absent here is not supported).
    ``fields``: the fields describe lists per object (default: the keys of its records, in order).
    ``unqueryable``: fields describe lists but a query rejects (INVALID_FIELD), per object.
    """

    def __init__(
        self,
        objects: Mapping[str, Sequence[Mapping[str, Any]]],
        *,
        ssl_context: ssl.SSLContext,
        fields: Mapping[str, Sequence[str]] | None = None,
        unqueryable: Mapping[str, Sequence[str]] | None = None,
        page_size: int = 2,
        bulk_page_size: int = 2,
        bulk_polls_in_progress: int = 1,
        username: str | None = None,
        password: str | None = None,
        security_token: str | None = None,
        consumer_key: str | None = None,
        jwt_public_key: bytes | None = None,
        jwt_audiences: Sequence[str] = (
            "https://login.salesforce.com",
            "https://test.salesforce.com",
        ),
        access_tokens: Sequence[str] = (),
    ):
        self.objects = {name: [dict(r) for r in recs] for name, recs in objects.items()}
        fields = fields or {}
        self.fields = {
            name: list(fields.get(name) or _keys(recs)) for name, recs in self.objects.items()
        }
        self.unqueryable = {name: set(f) for name, f in (unqueryable or {}).items()}
        self.page_size = page_size
        self.bulk_page_size = bulk_page_size
        self.bulk_polls_in_progress = bulk_polls_in_progress
        self.username = username
        self.password = password
        self.security_token = security_token
        self.consumer_key = consumer_key
        self.jwt_public_key = jwt_public_key
        self.jwt_audiences = list(jwt_audiences)
        self.valid_tokens: set[str] = set(access_tokens)
        self.issued_tokens: list[str] = []
        self.seen: list[Seen] = []
        self.connections = 0  # TCP connections accepted (a failed TLS handshake sends no request)
        self._faults: list[_Fault] = []
        self._cursors: dict[str, list[dict[str, Any]]] = {}
        self._jobs: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._ssl_context = ssl_context
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> FakeSalesforce:
        fake = self

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                # TLS handshake in the connection's own thread, not in the accept loop.
                with fake._lock:
                    fake.connections += 1
                request = fake._ssl_context.wrap_socket(request, server_side=True)
                super().finish_request(request, client_address)

            def handle_error(self, request, client_address):
                # Clients that time out and hang up (the stall fault) are expected; stay quiet.
                pass

        self._server = Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSalesforce:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "the fake is not started"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    # -- test controls

    def fail(
        self,
        method: str,
        path_suffix: str,
        status: int = 503,
        times: int = 1,
        body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``times`` requests whose path ends with ``path_suffix`` (trailing slash
        ignored) with ``status`` (and ``headers``, e.g. ``Retry-After``)."""
        if body is None:
            body = _error(status, "SERVER_UNAVAILABLE", "Server temporarily unavailable").body
        self._faults.append(
            _Fault(method, path_suffix, times, status=status, body=body, headers=dict(headers or {}))
        )

    def stall(self, method: str, path_suffix: str, seconds: float, times: int = 1) -> None:
        """Hold the next ``times`` matching requests for ``seconds`` before answering."""
        self._faults.append(_Fault(method, path_suffix, times, stall_seconds=seconds))

    def expire_sessions(self) -> None:
        """Every session and access token becomes invalid (Salesforce answers 401)."""
        self.valid_tokens.clear()

    def requests(self, method: str | None = None, path_suffix: str = "") -> list[Seen]:
        return [
            s
            for s in self.seen
            if (method is None or s.method == method) and s.path.rstrip("/").endswith(path_suffix)
        ]

    # -- dispatch

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        host = handler.headers.get("Host", "")
        seen = Seen(handler.command, parts.path, parse_qs(parts.query), host, body)
        with self._lock:
            self.seen.append(seen)
            fault = self._take_fault(seen)
        if fault is not None and fault.stall_seconds:
            time.sleep(fault.stall_seconds)
        try:
            if fault is not None and fault.status is not None:
                raise _Answer(fault.status, fault.body)
            status, payload, content_type, headers = self._route(handler, seen)
        except _Answer as answer:
            status, payload, content_type = answer.status, answer.body, answer.content_type
            headers = dict(fault.headers) if fault is not None and fault.status is not None else {}
        if isinstance(payload, (dict, list)):
            data = json.dumps(payload).encode()
        elif isinstance(payload, str):
            data = payload.encode()
        else:
            data = payload or b""
        handler.send_response(status)
        handler.send_header("Content-Type", content_type)
        handler.send_header("Content-Length", str(len(data)))
        for key, value in headers.items():
            handler.send_header(key, value)
        handler.end_headers()
        handler.wfile.write(data)

    def _take_fault(self, seen: Seen) -> _Fault | None:
        path = seen.path.rstrip("/")
        for fault in self._faults:
            if fault.times > 0 and fault.method == seen.method and path.endswith(fault.path_suffix):
                fault.times -= 1
                return fault
        return None

    def _route(self, handler, seen: Seen):
        path = seen.path
        if seen.method == "POST" and path.startswith("/services/Soap/u/"):
            return self._soap_login(seen)
        if seen.method == "POST" and path == "/services/oauth2/token":
            return self._oauth_token(seen)
        match = _DATA.match(path)
        if not match:
            raise _not_found()
        self._authorize(handler)
        # simple-salesforce asks for query/ and queryAll/ (trailing slash); Salesforce takes both.
        version, rest = match.group("version"), match.group("rest").rstrip("/")
        if seen.method == "GET" and rest in ("query", "queryAll"):
            return self._query(seen, version, include_deleted=rest == "queryAll")
        if seen.method == "GET" and (m := re.fullmatch(r"(query|queryAll)/(\w+)-(\d+)", rest)):
            return self._page(version, m.group(1), m.group(2), int(m.group(3)))
        if seen.method == "GET" and (m := re.fullmatch(r"sobjects/(\w+)/describe/?", rest)):
            return self._describe(m.group(1))
        if seen.method == "POST" and rest == "jobs/query":
            return self._create_job(seen, version)
        if seen.method == "GET" and (m := re.fullmatch(r"jobs/query/(\w+)", rest)):
            return self._job_status(m.group(1))
        if seen.method == "GET" and (m := re.fullmatch(r"jobs/query/(\w+)/results", rest)):
            return self._job_results(seen, m.group(1))
        raise _not_found()

    # -- auth

    def _new_token(self) -> str:
        token = f"{ORG_ID}!AQ{secrets.token_urlsafe(24)}"
        with self._lock:
            self.valid_tokens.add(token)
            self.issued_tokens.append(token)
        return token

    def _authorize(self, handler) -> None:
        auth = handler.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip()
        if not auth.startswith("Bearer ") or token not in self.valid_tokens:
            raise _error(401, "INVALID_SESSION_ID", "Session expired or invalid")

    def _soap_login(self, seen: Seen):
        version = seen.path.rstrip("/").rsplit("/", 1)[-1]
        root = ET.fromstring(seen.body)
        values = {el.tag.rsplit("}", 1)[-1]: (el.text or "") for el in root.iter()}
        expected = (self.password or "") + (self.security_token or "")
        given = (values.get("username"), values.get("password"))
        if self.username is None or given != (self.username, expected):
            raise _Answer(500, _SOAP_FAULT, "text/xml; charset=utf-8")
        token = self._new_token()
        server = f"{self.base_url}/services/Soap/u/{version}/{ORG_ID[:15]}"
        meta = f"{self.base_url}/services/Soap/m/{version}/{ORG_ID[:15]}"
        body = _SOAP_LOGIN_RESPONSE.format(
            meta=meta, server=server, session=token, user=USER_ID, org=ORG_ID, name=self.username
        )
        return 200, body, "text/xml; charset=utf-8", {}

    def _oauth_token(self, seen: Seen):
        form = parse_qs(seen.body.decode())

        def invalid(description: str, error: str = "invalid_grant"):
            return _Answer(400, {"error": error, "error_description": description})

        if form.get("grant_type") != ["urn:ietf:params:oauth:grant-type:jwt-bearer"]:
            raise invalid("grant type not supported", "unsupported_grant_type")
        if self.jwt_public_key is None or not form.get("assertion"):
            raise invalid("invalid assertion")
        try:
            claims = jwt.decode(
                form["assertion"][0],
                self.jwt_public_key,
                algorithms=["RS256"],
                audience=self.jwt_audiences,
                issuer=self.consumer_key,
                options={"require": ["iss", "sub", "aud", "exp"]},
            )
        except jwt.InvalidAudienceError:
            raise invalid("audience is invalid") from None
        except jwt.InvalidIssuerError:
            raise invalid("client identifier invalid", "invalid_client_id") from None
        except jwt.PyJWTError:
            raise invalid("invalid assertion") from None
        if claims["sub"] != self.username:
            raise invalid("user hasn't approved this consumer")
        token = self._new_token()
        host = seen.host.split(":")[0]
        return (
            200,
            {
                "access_token": token,
                "scope": "api",
                "instance_url": self.base_url,
                "id": f"https://{host}/id/{ORG_ID}/{USER_ID}",
                "token_type": "Bearer",
            },
            "application/json",
            {},
        )

    # -- REST

    def _canonical(self, soql: str) -> tuple[str, list[str] | None]:
        """The object and canonical field names of a SOQL query (None for COUNT()), or the
        INVALID_TYPE / INVALID_FIELD error Salesforce answers."""
        match = _SOQL.match(soql)
        if not match:
            raise _error(400, "MALFORMED_QUERY", f"unexpected token: {soql}")
        obj = match.group("object")
        if obj not in self.objects:
            raise _error(
                400,
                "INVALID_TYPE",
                f"\n{soql}\n^\nERROR at Row:1:Column:1\nsObject type '{obj}' is not supported. "
                "If you are attempting to use a custom object, be sure to append the '__c' after "
                "the entity name. Please reference your WSDL or the describe call for the "
                "appropriate names.",
            )
        requested = [f.strip() for f in match.group("fields").split(",")]
        if [f.upper() for f in requested] == ["COUNT()"]:
            return obj, None
        known = {f.lower(): f for f in self.fields[obj]}
        hidden = {f.lower() for f in self.unqueryable.get(obj, ())}
        canonical = []
        for name in requested:
            if name.lower() not in known or name.lower() in hidden:
                raise _error(
                    400,
                    "INVALID_FIELD",
                    f"\n{soql}\n^\nERROR at Row:1:Column:8\nNo such column '{name}' on entity "
                    f"'{obj}'. If you are attempting to use a custom field, be sure to append the "
                    "'__c' after the custom field name. Please reference your WSDL or the describe "
                    "call for the appropriate names.",
                )
            canonical.append(known[name.lower()])
        return obj, canonical

    def _rows(self, obj: str, fields: list[str], include_deleted: bool) -> list[dict[str, Any]]:
        rows = []
        for record in self.objects[obj]:
            if record.get("IsDeleted") is True and not include_deleted:
                continue
            rows.append({f: record.get(f) for f in fields} | {"_Id": record.get("Id")})
        return rows

    def _query(self, seen: Seen, version: str, include_deleted: bool):
        obj, fields = self._canonical(seen.param("q") or "")
        if fields is None:
            count = len(self._rows(obj, [], include_deleted))
            return 200, {"totalSize": count, "done": True, "records": []}, "application/json", {}
        rows = []
        for row in self._rows(obj, fields, include_deleted):
            url = f"/services/data/v{version}/sobjects/{obj}/{row.pop('_Id')}"
            rows.append({"attributes": {"type": obj, "url": url}} | row)
        cursor = f"01g{next(self._ids):015d}"
        self._cursors[cursor] = rows
        return self._page(version, "queryAll" if include_deleted else "query", cursor, 0)

    def _page(self, version: str, endpoint: str, cursor: str, offset: int):
        rows = self._cursors.get(cursor)
        if rows is None:
            raise _error(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        end = offset + self.page_size
        payload: dict[str, Any] = {
            "totalSize": len(rows),
            "done": end >= len(rows),
            "records": rows[offset:end],
        }
        if end < len(rows):
            payload["nextRecordsUrl"] = f"/services/data/v{version}/{endpoint}/{cursor}-{end}"
        return 200, payload, "application/json", {}

    def _describe(self, obj: str):
        if obj not in self.objects:
            raise _not_found()
        payload = {
            "name": obj,
            "label": obj,
            "queryable": True,
            "fields": [{"name": f, "label": f, "type": "string"} for f in self.fields[obj]],
        }
        return 200, payload, "application/json", {}

    # -- Bulk API 2.0

    def _create_job(self, seen: Seen, version: str):
        request = json.loads(seen.body)
        operation = request.get("operation")
        if operation not in ("query", "queryAll"):
            raise _error(400, "INVALIDJOB", f"Invalid operation: {operation}")
        try:
            obj, fields = self._canonical(request.get("query", ""))
        except _Answer as answer:
            raise _error(400, "INVALIDJOB", answer.body[0]["message"]) from None
        if fields is None:
            raise _error(400, "INVALIDJOB", "COUNT() is not supported by Bulk API 2.0")
        job_id = f"750{next(self._ids):015d}"
        rows = self._rows(obj, fields, include_deleted=operation == "queryAll")
        self._jobs[job_id] = {
            "fields": fields,
            "rows": rows,
            "polls": self.bulk_polls_in_progress,
            "info": {
                "id": job_id,
                "operation": operation,
                "object": obj,
                "createdById": USER_ID,
                "createdDate": "2024-06-30T12:00:00.000+0000",
                "systemModstamp": "2024-06-30T12:00:00.000+0000",
                "state": "UploadComplete",
                "concurrencyMode": "Parallel",
                "contentType": "CSV",
                "apiVersion": float(version),
                "lineEnding": request.get("lineEnding", "LF"),
                "columnDelimiter": request.get("columnDelimiter", "COMMA"),
            },
        }
        return 200, self._jobs[job_id]["info"], "application/json", {}

    def _job(self, job_id: str) -> dict[str, Any]:
        job = self._jobs.get(job_id)
        if job is None:
            raise _not_found()
        return job

    def _job_status(self, job_id: str):
        job = self._job(job_id)
        with self._lock:
            if job["polls"] > 0:
                job["polls"] -= 1
                state = "InProgress"
            else:
                state = "JobComplete"
        info = job["info"] | {
            "state": state,
            "numberRecordsProcessed": len(job["rows"]) if state == "JobComplete" else 0,
            "retries": 0,
            "totalProcessingTime": 10,
        }
        return 200, info, "application/json", {}

    def _job_results(self, seen: Seen, job_id: str):
        job = self._job(job_id)
        if job["polls"] > 0:
            raise _Answer(400, [{"errorCode": "INVALIDJOB", "message": "job is not complete"}])
        locator = seen.param("locator")
        offset = int(base64.b64decode(locator).decode()) if locator else 0
        max_records = int(seen.param("maxRecords") or 50000)
        end = offset + min(max_records, self.bulk_page_size)
        page = job["rows"][offset:end]
        lines = [",".join(_csv_cell(f) for f in job["fields"])]
        lines += [",".join(_csv_cell(_bulk_value(row[f])) for f in job["fields"]) for row in page]
        more = end < len(job["rows"])
        next_locator = base64.b64encode(str(end).encode()).decode() if more else "null"
        headers = {"Sforce-Locator": next_locator, "Sforce-NumberOfRecords": str(len(page))}
        return 200, "\n".join(lines) + "\n", "text/csv", headers


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeSalesforce/1.0"
    # Headers and body are separate writes; with Nagle on, each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self.server.fake._handle(self)  # type: ignore[attr-defined]

    do_POST = do_PATCH = do_DELETE = do_GET

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


class LoopbackAdapter(HTTPAdapter):
    """Sends requests for a public Salesforce login host (``login.salesforce.com``,
    ``test.salesforce.com``) to the fake on 127.0.0.1, over TLS: the fake's certificate is checked
    against the public host name (as SNI and for hostname verification) and the ``Host`` header
    keeps that name. Mount it on the session for ``https://<host>/``."""

    def __init__(self, host: str, port: int, **kwargs: Any):
        self._host = host
        self._port = port
        super().__init__(**kwargs)

    def init_poolmanager(self, connections, maxsize, block=False, **pool_kwargs):
        pool_kwargs["server_hostname"] = self._host
        super().init_poolmanager(connections, maxsize, block=block, **pool_kwargs)

    def send(self, request, **kwargs):
        parts = urlsplit(request.url)
        assert parts.hostname == self._host, f"{request.url} is not for {self._host}"
        request.url = urlunsplit(parts._replace(netloc=f"127.0.0.1:{self._port}"))
        request.headers["Host"] = self._host
        return super().send(request, **kwargs)


def _keys(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return list(dict.fromkeys(k for r in records for k in r))


def _bulk_value(value: Any) -> str | None:
    """A JSON value as Bulk API 2.0 writes it in CSV: booleans lower case, datetimes in Z form."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return re.sub(r"T(\d\d:\d\d:\d\d\.\d{3})\+0000$", r"T\1Z", text)


def _csv_cell(value: str | None) -> str:
    """Bulk 2.0 quotes every value and writes nothing at all for null."""
    if value is None:
        return ""
    return '"' + value.replace('"', '""') + '"'


_SOAP_LOGIN_RESPONSE = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns="urn:partner.soap.sforce.com"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<loginResponse>
<result>
<metadataServerUrl>{meta}</metadataServerUrl>
<passwordExpired>false</passwordExpired>
<sandbox>false</sandbox>
<serverUrl>{server}</serverUrl>
<sessionId>{session}</sessionId>
<userId>{user}</userId>
<userInfo>
<accessibilityMode>false</accessibilityMode>
<currencySymbol>$</currencySymbol>
<orgDefaultCurrencyIsoCode>USD</orgDefaultCurrencyIsoCode>
<organizationId>{org}</organizationId>
<organizationMultiCurrency>false</organizationMultiCurrency>
<organizationName>Fake Org</organizationName>
<userFullName>Integration User</userFullName>
<userId>{user}</userId>
<userName>{name}</userName>
<userTimeZone>Etc/UTC</userTimeZone>
</userInfo>
</result>
</loginResponse>
</soapenv:Body>
</soapenv:Envelope>"""

_SOAP_FAULT = """<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/"
    xmlns:sf="urn:fault.partner.soap.sforce.com"
    xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>
<soapenv:Fault>
<faultcode>sf:INVALID_LOGIN</faultcode>
<faultstring>INVALID_LOGIN: Invalid username, password, security token; or user locked out.</faultstring>
<detail>
<sf:LoginFault xsi:type="sf:LoginFault">
<sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>
<sf:exceptionMessage>Invalid username, password, security token; or user locked out.</sf:exceptionMessage>
</sf:LoginFault>
</detail>
</soapenv:Fault>
</soapenv:Body>
</soapenv:Envelope>"""
