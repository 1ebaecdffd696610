"""The production source: the Salesforce org itself, read through simple-salesforce
(docs/contract.md, Inputs: "Where the records come from"). It hands
:func:`quota_platform.lib.core.contract.conform` the same raw columns the file source does, so both
sources give the same frames.

How each object is read
-----------------------
* ``GET sobjects/<Object>/describe`` once per object, to select only the fields the org has. An
  optional object the org lacks is an empty typed frame; a missing required object or field is a
  :class:`ContractError` naming both; a missing optional field (``CurrencyIsoCode`` in a
  single-currency org, a custom field) is left out of the SOQL and filled by ``conform``.
* ``SELECT <fields> FROM <Object>`` through the REST query resource, paging through
  ``nextRecordsUrl``. Opportunity uses ``queryAll`` so that deleted records come back with
  ``IsDeleted = true``.
* Opportunity and OpportunityHistory switch to a Bulk API 2.0 query job when
  ``SELECT COUNT() FROM <Object>`` is above ``bulk_threshold`` (CSV pages, ``Sforce-Locator``
  paging).

Login (exactly one is used; see :func:`login_method` for the precedence)
-------------------------------------------------------------------------
* ``access_token``: an OAuth access token and the instance URL it was issued for.
* ``jwt``: OAuth 2.0 JWT bearer flow: username, connected app consumer key and its private key.
* ``password``: username, password and security token (SOAP login).

Environment variables (read only by :meth:`SalesforceSettings.from_env`, never at import)
------------------------------------------------------------------------------------------
==============================  ===========================================================
SALESFORCE_USERNAME             integration user's username (password and JWT logins)
SALESFORCE_PASSWORD             its password (password login)
SALESFORCE_SECURITY_TOKEN       its security token (password login; may be left unset only
                                when the org trusts the caller's IP range)
SALESFORCE_DOMAIN               ``login`` (default), ``test`` for a sandbox, or the My Domain
                                (``acme.my`` or ``https://acme.my.salesforce.com``)
SALESFORCE_INSTANCE_URL         instance URL for the access-token login
                                (``https://acme.my.salesforce.com``)
SALESFORCE_ACCESS_TOKEN         OAuth access token (access-token login)
SALESFORCE_CONSUMER_KEY         connected app consumer key (JWT login)
SALESFORCE_PRIVATE_KEY          PEM text of the connected app's private key (JWT login)
SALESFORCE_PRIVATE_KEY_FILE     path to that PEM file instead (JWT login)
SALESFORCE_API_VERSION          REST API version, default ``62.0``
SALESFORCE_BULK_THRESHOLD       record count above which Bulk API 2.0 is used, default 10000
SALESFORCE_CA_BUNDLE            CA bundle to verify Salesforce's certificate with (e.g. behind
                                a TLS-inspecting proxy); default: the system's trust store
==============================  ===========================================================

``SalesforceSource`` does not depend on Dagster; the ``crm`` resource builds a
:class:`SalesforceSettings` from ``dg.EnvVar`` values and calls it. Secrets never reach a log line,
an exception message or ``repr``.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import ssl
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import polars as pl
import requests
from requests.adapters import HTTPAdapter
from simple_salesforce import Salesforce
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceError,
    SalesforceExpiredSession,
    SalesforceMalformedRequest,
    SalesforceOperationError,
    SalesforceResourceNotFound,
)
from urllib3.exceptions import MaxRetryError, ResponseError, SSLError
from urllib3.util.retry import Retry

from quota_platform.lib.core.contract import (
    OBJECTS,
    ContractError,
    ObjectSpec,
    conform,
    empty_frame,
)

logger = logging.getLogger(__name__)

# Objects that may be large enough for Bulk API 2.0, and objects read with deleted records included.
BULK_OBJECTS = ("Opportunity", "OpportunityHistory")
INCLUDE_DELETED = ("Opportunity",)

# Transient answers retried by the session's adapter (Salesforce answers 503 during maintenance
# and instance switches, 502/504 from its edge, 500 for some UNKNOWN_EXCEPTION errors).
RETRY_STATUSES = (500, 502, 503, 504)
# GET for queries, describe and bulk job polling; POST for the OAuth token, the SOAP login and the
# creation of a Bulk 2.0 query job. This source never writes: a retried POST can at worst create
# a second read-only query job (Salesforce deletes abandoned jobs after 7 days). PATCH and DELETE
# are never retried.
RETRY_METHODS = frozenset({"GET", "HEAD", "POST"})

_HIRE_DATE = "Hire_Date__c"
_SECRET_FIELDS = ("password", "security_token", "access_token", "private_key")
_INVALID_TYPE = re.compile(r"sObject type '([\w.]+)' is not supported")
_INVALID_FIELD = re.compile(r"No such column '([\w.]+)'")


class SalesforceSourceError(RuntimeError):
    """Salesforce could not be read: login, session, network or API failure. The message says what
    happened and what to do, and never contains a secret."""


@dataclasses.dataclass(frozen=True, repr=False)
class SalesforceSettings:
    """How to reach the org. The login used follows from the fields set (:func:`login_method`)."""

    username: str | None = None
    password: str | None = None
    security_token: str | None = None
    domain: str = "login"
    instance_url: str | None = None
    access_token: str | None = None
    consumer_key: str | None = None
    private_key: str | None = None  # PEM text
    private_key_file: str | None = None
    api_version: str = "62.0"
    bulk_threshold: int = 10_000
    timeout_seconds: float = 120
    max_retries: int = 5
    hire_date_field: str = _HIRE_DATE
    verify: bool | str = True  # True: the system's trust store; a path: that CA bundle
    # urllib3 backoff factor: waits 0, 2x, 4x, 8x... this many seconds between retries (max 60 s).
    retry_backoff_seconds: float = 1.0
    # First wait before polling a Bulk 2.0 job; simple-salesforce then polls every ~2 s at most.
    bulk_poll_seconds: float = 5.0

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            shown = "'***'" if f.name in _SECRET_FIELDS and value else repr(value)
            parts.append(f"{f.name}={shown}")
        return f"SalesforceSettings({', '.join(parts)})"

    __str__ = __repr__

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SalesforceSettings:
        """Settings from the ``SALESFORCE_*`` variables (module docstring), plus the platform's
        ``QUOTA_PLATFORM_HIRE_DATE_FIELD``. Unset or empty variables keep their defaults."""
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        kwargs: dict[str, Any] = {
            "username": get("SALESFORCE_USERNAME"),
            "password": get("SALESFORCE_PASSWORD"),
            "security_token": get("SALESFORCE_SECURITY_TOKEN"),
            "instance_url": get("SALESFORCE_INSTANCE_URL"),
            "access_token": get("SALESFORCE_ACCESS_TOKEN"),
            "consumer_key": get("SALESFORCE_CONSUMER_KEY"),
            "private_key": get("SALESFORCE_PRIVATE_KEY"),
            "private_key_file": get("SALESFORCE_PRIVATE_KEY_FILE"),
        }
        for var, field in (
            ("SALESFORCE_DOMAIN", "domain"),
            ("SALESFORCE_API_VERSION", "api_version"),
            ("QUOTA_PLATFORM_HIRE_DATE_FIELD", "hire_date_field"),
            ("SALESFORCE_CA_BUNDLE", "verify"),
        ):
            if (value := get(var)) is not None:
                kwargs[field] = value
        if (threshold := get("SALESFORCE_BULK_THRESHOLD")) is not None:
            try:
                kwargs["bulk_threshold"] = int(threshold)
            except ValueError:
                raise ValueError(
                    f"SALESFORCE_BULK_THRESHOLD must be a whole number, got {threshold!r}"
                ) from None
        return cls(**kwargs)


def salesforce_configured(environ: Mapping[str, str] | None = None) -> bool:
    """Whether the env selects Salesforce as the source (a username or an access token is set)."""
    env = os.environ if environ is None else environ
    return any(env.get(var, "").strip() for var in ("SALESFORCE_USERNAME", "SALESFORCE_ACCESS_TOKEN"))


def login_method(settings: SalesforceSettings) -> str:
    """``'access_token'``, ``'jwt'`` or ``'password'``, from the fields that are set.

    An access token wins when set (it is the most explicit choice); otherwise a username with a
    consumer key means the JWT bearer flow, and a username alone the password login. Raises
    :class:`SalesforceSourceError` naming the env var(s) missing for an incomplete configuration.
    """
    s = settings
    if s.access_token:
        if not s.instance_url:
            raise SalesforceSourceError(
                "SALESFORCE_ACCESS_TOKEN is set but SALESFORCE_INSTANCE_URL is not: an access "
                "token only works against the instance that issued it "
                "(e.g. https://acme.my.salesforce.com)"
            )
        return "access_token"
    if s.username:
        if s.consumer_key:
            if not (s.private_key or s.private_key_file):
                raise SalesforceSourceError(
                    "JWT bearer login (SALESFORCE_USERNAME and SALESFORCE_CONSUMER_KEY are set) "
                    "needs the connected app's private key: set SALESFORCE_PRIVATE_KEY (PEM text) "
                    "or SALESFORCE_PRIVATE_KEY_FILE"
                )
            return "jwt"
        if not s.password:
            raise SalesforceSourceError(
                "SALESFORCE_USERNAME is set but SALESFORCE_PASSWORD is not: set "
                "SALESFORCE_PASSWORD and SALESFORCE_SECURITY_TOKEN for the password login, or "
                "SALESFORCE_CONSUMER_KEY and SALESFORCE_PRIVATE_KEY (or "
                "SALESFORCE_PRIVATE_KEY_FILE) for the JWT bearer login"
            )
        return "password"
    raise SalesforceSourceError(
        "no Salesforce login configured: set SALESFORCE_USERNAME, SALESFORCE_PASSWORD and "
        "SALESFORCE_SECURITY_TOKEN; or SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL; or "
        "SALESFORCE_USERNAME, SALESFORCE_CONSUMER_KEY and SALESFORCE_PRIVATE_KEY (or "
        "SALESFORCE_PRIVATE_KEY_FILE)"
    )


# --- HTTP session --------------------------------------------------------------------------------


class _SalesforceRetry(Retry):
    """urllib3 ``Retry`` that gives up at once where retrying cannot help or would do harm:

    * an HTTP error answer of the SOAP login endpoint: a failed SOAP login (wrong password,
      missing security token) is an HTTP 500 SOAP fault, and every retry would count as another
      failed login towards the user's lockout (connection errors and timeouts are still retried);
    * a certificate that fails verification (urllib3 would otherwise retry it like a dropped
      connection, with backoff, before reporting it).
    """

    def increment(
        self, method=None, url=None, response=None, error=None, _pool=None, _stacktrace=None
    ):
        if response is not None and response.status >= 500 and "/services/Soap/" in (url or ""):
            raise MaxRetryError(_pool, url, ResponseError("SOAP login faults are not retried"))
        cause = error.args[0] if isinstance(error, SSLError) and error.args else None
        if isinstance(cause, ssl.SSLCertVerificationError):
            raise MaxRetryError(_pool, url, error)
        return super().increment(method, url, response, error, _pool, _stacktrace)


class _SalesforceAdapter(HTTPAdapter):
    """The session's HTTPS adapter: retries (above), a default timeout (simple-salesforce passes
    none, so a stalled connection would otherwise hang a run forever) and, when a CA bundle is
    configured, that bundle even if ``REQUESTS_CA_BUNDLE`` in the environment says otherwise."""

    def __init__(self, *, timeout: float, verify: bool | str, retry: Retry):
        self._default_timeout = timeout
        self._verify = verify
        super().__init__(max_retries=retry)

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        if timeout is None:
            timeout = self._default_timeout
        if self._verify is not True:
            verify = self._verify
        return super().send(
            request, stream=stream, timeout=timeout, verify=verify, cert=cert, proxies=proxies
        )


def build_session(settings: SalesforceSettings) -> requests.Session:
    """The ``requests.Session`` simple-salesforce is given: retries with backoff on 500/502/503/504,
    connection errors and read timeouts (``max_retries`` times, GET and POST, see
    ``RETRY_METHODS``), a default timeout of ``timeout_seconds`` and certificate verification per
    ``verify``. A retried answer that still fails reaches simple-salesforce, which raises on it."""
    retry = _SalesforceRetry(
        total=settings.max_retries,
        connect=settings.max_retries,
        read=settings.max_retries,
        status=settings.max_retries,
        backoff_factor=settings.retry_backoff_seconds,
        backoff_max=60,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=RETRY_METHODS,
        raise_on_status=False,
        respect_retry_after_header=True,
    )
    session = requests.Session()
    session.mount(
        "https://",
        _SalesforceAdapter(timeout=settings.timeout_seconds, verify=settings.verify, retry=retry),
    )
    session.verify = settings.verify
    return session


# --- helpers -------------------------------------------------------------------------------------


def _domain(domain: str | None) -> str:
    """``login``, ``test`` or a My Domain as simple-salesforce wants it (``acme.my``), also when
    given as a host or URL (``https://acme.my.salesforce.com/``)."""
    text = (domain or "login").strip().rstrip("/")
    text = re.sub(r"^https?://", "", text)
    text = re.sub(r"\.salesforce\.com$", "", text)
    return text or "login"


def _instance_url(url: str | None) -> str:
    url = (url or "").strip().rstrip("/")
    return url if re.match(r"^https?://", url) else f"https://{url}"


def _api_version(version: str) -> str:
    return str(version).strip().lstrip("vV")


def _pem(text: str) -> str:
    """PEM text as pasted into an env var often has literal ``\\n`` instead of newlines."""
    return text.replace("\\n", "\n") if "\n" not in text else text


def _text(value: Any) -> str | None:
    """One JSON value as the text a CSV export would hold: ``conform`` parses both alike."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _error_text(exc: SalesforceError) -> str:
    """``ERRORCODE: message`` of a REST error answer (a list of {errorCode, message})."""
    content = exc.content
    if isinstance(content, list) and content and isinstance(content[0], Mapping):
        first = content[0]
        message = " ".join(str(first.get("message", "")).split())
        return f"{first.get('errorCode', exc.status)}: {message}"
    if isinstance(content, bytes):
        content = content.decode("utf-8", "replace")
    return f"HTTP {exc.status}: {' '.join(str(content).split())[:500]}"


def _records_frame(records: list[Mapping[str, Any]], columns: list[str]) -> pl.DataFrame:
    """REST records (``attributes`` dropped) as a frame of text columns."""
    return pl.DataFrame(
        {col: [_text(rec.get(col)) for rec in records] for col in columns},
        schema={col: pl.String for col in columns},
    )


def _csv_frame(pages: list[str], columns: list[str]) -> pl.DataFrame:
    """Bulk 2.0 CSV pages as one frame of text columns (Bulk writes an empty field for null)."""
    frames = [
        pl.read_csv(io.BytesIO(page.encode("utf-8")), infer_schema=False)
        for page in pages
        if page.strip()
    ]
    if not frames:
        return pl.DataFrame(schema={col: pl.String for col in columns})
    return pl.concat(frames, how="diagonal")


# --- the source ----------------------------------------------------------------------------------


class SalesforceSource:
    """Reads the contract's objects from a Salesforce org. Signs in on first use."""

    def __init__(self, settings: SalesforceSettings, session: requests.Session | None = None):
        """``session`` replaces the one :func:`build_session` would make (tests route the login
        host through it); it is used as given, so it should carry its own retrying adapter."""
        self.settings = settings
        self.method = login_method(settings)
        self.session = session if session is not None else build_session(settings)
        self._sf: Salesforce | None = None

    # -- login

    @property
    def client(self) -> Salesforce:
        """The signed-in simple-salesforce client."""
        if self._sf is None:
            self._sf = self._login()
        return self._sf

    def _login_label(self) -> str:
        s = self.settings
        if self.method == "access_token":
            return f"access token (SALESFORCE_ACCESS_TOKEN) for {_instance_url(s.instance_url)}"
        if self.method == "jwt":
            return (
                "JWT bearer (SALESFORCE_CONSUMER_KEY and private key) via "
                f"{_domain(s.domain)}.salesforce.com"
            )
        return f"password and security token via {_domain(s.domain)}.salesforce.com"

    def _login(self) -> Salesforce:
        s = self.settings
        common: dict[str, Any] = {"version": _api_version(s.api_version), "session": self.session}
        logger.info("Salesforce: signing in with %s", self._login_label())
        try:
            if self.method == "access_token":
                return Salesforce(
                    session_id=s.access_token, instance_url=_instance_url(s.instance_url), **common
                )
            if self.method == "password":
                return Salesforce(
                    username=s.username,
                    password=s.password,
                    # Empty when the org trusts the caller's IP range (simple-salesforce needs a
                    # str to choose this login).
                    security_token=s.security_token or "",
                    domain=_domain(s.domain),
                    client_id="quota_platform",
                    **common,
                )
            if s.private_key_file and not s.private_key and not Path(s.private_key_file).is_file():
                raise SalesforceSourceError(
                    f"SALESFORCE_PRIVATE_KEY_FILE {s.private_key_file} does not exist or is not a "
                    "file"
                )
            # instance_url is deliberately not passed: for JWT, simple-salesforce would build the
            # token URL as https://{instance_url}.salesforce.com. The domain is the audience.
            return Salesforce(
                username=s.username,
                consumer_key=s.consumer_key,
                privatekey=_pem(s.private_key) if s.private_key else None,
                privatekey_file=None if s.private_key else s.private_key_file,
                domain=_domain(s.domain),
                **common,
            )
        except SalesforceAuthenticationFailed as exc:
            raise SalesforceSourceError(
                self._scrub(
                    f"Salesforce login failed ({self._login_label()}): {str(exc).rstrip('.')}. "
                    f"{self._login_hint()}"
                )
            ) from None
        except requests.exceptions.SSLError as exc:
            raise SalesforceSourceError(self._scrub(self._certificate_message(exc))) from None
        except requests.RequestException as exc:
            raise SalesforceSourceError(
                self._scrub(
                    f"Salesforce login ({self._login_label()}) did not get through after "
                    f"{s.max_retries} retries: {exc}"
                )
            ) from None
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            if self.method != "jwt":
                raise
            # Raised by PyJWT/cryptography for a key that is not an RSA private key in PEM format.
            # The exception text is not shown: some key parsers quote the input.
            raise SalesforceSourceError(
                "JWT bearer login: the private key (SALESFORCE_PRIVATE_KEY or "
                "SALESFORCE_PRIVATE_KEY_FILE) is not a usable RSA private key in PEM format "
                f"({type(exc).__name__})"
            ) from None

    def _certificate_message(self, exc: Exception) -> str:
        bundle = (
            f"the CA bundle {self.settings.verify} (SALESFORCE_CA_BUNDLE)"
            if isinstance(self.settings.verify, str)
            else "the system's trust store"
        )
        return (
            f"Salesforce's TLS certificate could not be verified against {bundle} ({exc}). "
            "Behind a TLS-inspecting proxy, set SALESFORCE_CA_BUNDLE to the proxy's CA bundle."
        )

    def _login_hint(self) -> str:
        if self.method == "password":
            return (
                "Check SALESFORCE_USERNAME, SALESFORCE_PASSWORD and SALESFORCE_SECURITY_TOKEN (a "
                "password reset issues a new security token) and SALESFORCE_DOMAIN ('test' for a "
                "sandbox). A failed login is not retried, so as not to lock the user out."
            )
        if self.method == "jwt":
            return (
                "Check SALESFORCE_CONSUMER_KEY, that the connected app holds the certificate of "
                "this private key, that the user is pre-authorized for the app (admin approved "
                "users), and SALESFORCE_DOMAIN ('test' for a sandbox)."
            )
        return "Check SALESFORCE_ACCESS_TOKEN and SALESFORCE_INSTANCE_URL."

    def _expired_message(self, object_name: str, exc: SalesforceError) -> str:
        detail = _error_text(exc)
        if self.method == "access_token":
            todo = (
                "The access token has expired or was revoked: re-issue the token (e.g. `sf org "
                "display --target-org <alias> --verbose`, or your OAuth client) and update "
                "SALESFORCE_ACCESS_TOKEN. Unattended runs are better served by the JWT bearer "
                "login, which signs in afresh on every run."
            )
        else:
            todo = (
                "The session expired or was revoked and signing in again did not help (a Bulk "
                "API 2.0 job keeps the session it started with): check that the user is active "
                "with API access and that no session policy locks sessions to an IP range; with "
                "the password login, re-issue the security token if the password changed."
            )
        return self._scrub(
            f"Salesforce session expired while reading {object_name} ({detail}). Login method: "
            f"{self._login_label()}. {todo}"
        )

    def _scrub(self, text: str) -> str:
        """Masks every secret value that could have found its way into a message (defence in
        depth: no message is built from a secret). Values under 6 characters are left alone, as
        masking them would mangle ordinary words; real passwords and tokens are longer."""
        s = self.settings
        secrets = [s.password, s.security_token, s.access_token, s.private_key]
        if s.password and s.security_token:
            secrets.append(s.password + s.security_token)
        if self._sf is not None:
            secrets.append(self._sf.session_id)
        for secret in sorted((x for x in secrets if x and len(x) >= 6), key=len, reverse=True):
            text = text.replace(secret, "***")
        return text

    # -- reading

    def read_all(self) -> dict[str, pl.DataFrame]:
        """Every object of the contract, by name."""
        return {name: self.read_object(name) for name in OBJECTS}

    def read_object(self, object_name: str) -> pl.DataFrame:
        """One object, conformed to the contract (``where="Salesforce <Object>"``)."""
        spec = OBJECTS[object_name]
        try:
            raw = self._fetch(spec)
        except SalesforceExpiredSession as exc:
            raise SalesforceSourceError(self._expired_message(object_name, exc)) from None
        except SalesforceError as exc:
            raise SalesforceSourceError(
                self._scrub(
                    f"Salesforce answered an error while reading {object_name}: "
                    f"{_error_text(exc)}"
                )
            ) from None
        except SalesforceOperationError as exc:  # a Bulk 2.0 job that failed or was aborted
            raise SalesforceSourceError(
                self._scrub(f"Bulk API 2.0 query of {object_name} failed: {exc}")
            ) from None
        except requests.exceptions.SSLError as exc:
            raise SalesforceSourceError(self._scrub(self._certificate_message(exc))) from None
        except requests.RequestException as exc:
            raise SalesforceSourceError(
                self._scrub(
                    f"Salesforce could not be reached while reading {object_name} after "
                    f"{self.settings.max_retries} retries: {exc}"
                )
            ) from None
        if raw is None:
            return empty_frame(object_name)
        return conform(
            object_name,
            raw,
            where=f"Salesforce {object_name}",
            renames={self.settings.hire_date_field: _HIRE_DATE},
        )

    def _source_field(self, contract_field: str) -> str:
        return self.settings.hire_date_field if contract_field == _HIRE_DATE else contract_field

    def _describe(self, object_name: str) -> Mapping[str, Any] | None:
        """The object's describe, or None when the org does not have it (or hides it from the user).

        ``Salesforce.restful`` rather than ``sf.<Object>.describe()``: simple-salesforce's SFType
        re-signs-in on a 401 without counting its attempts (an endless loop on a revoked user)."""
        try:
            describe = self.client.restful(f"sobjects/{object_name}/describe")
        except SalesforceResourceNotFound:
            return None
        if not describe or describe.get("queryable") is False:
            return None
        return describe

    def _missing_object(self, spec: ObjectSpec, why: str) -> None:
        if spec.required:
            raise ContractError(
                f"{spec.name}: required object missing: {why} (check that the feature is enabled "
                "and that the integration user's profile or permission set can read the object)"
            )
        logger.info("Salesforce %s: not in this org (%s); using an empty frame", spec.name, why)
        return None

    def _fetch(self, spec: ObjectSpec) -> pl.DataFrame | None:
        """The raw text frame of one object, or None for an optional object the org lacks."""
        name = spec.name
        describe = self._describe(name)
        if describe is None:
            return self._missing_object(spec, f"the org has no queryable sObject {name}")
        available = {f["name"].lower(): f["name"] for f in describe.get("fields", [])}
        select: list[str] = []
        missing_required: list[str] = []
        for field in spec.fields:
            source = self._source_field(field.name)
            actual = available.get(source.lower())
            if actual is not None:
                select.append(actual)
            elif field.required:
                missing_required.append(source)
            elif field.name == _HIRE_DATE:
                logger.warning(
                    "Salesforce %s: hire date field %s not found; ramp factors will treat every "
                    "rep as fully ramped (set QUOTA_PLATFORM_HIRE_DATE_FIELD to the org's field)",
                    name,
                    source,
                )
            else:
                logger.info(
                    "Salesforce %s: optional field %s not in this org; left empty", name, source
                )
        if missing_required:
            raise ContractError(
                f"{name}: required field(s) {', '.join(missing_required)} missing from Salesforce "
                f"{name} (the org's describe does not list them: check that the field exists and "
                "that field-level security lets the integration user read it)"
            )

        sf = self.client
        include_deleted = name in INCLUDE_DELETED
        use_bulk = False
        if name in BULK_OBJECTS:
            count_soql = f"SELECT COUNT() FROM {name}"
            count = sf.query(count_soql, include_deleted=include_deleted)["totalSize"]
            use_bulk = count > self.settings.bulk_threshold
            logger.info(
                "Salesforce %s: %d records; %s (bulk threshold %d)",
                name,
                count,
                "Bulk API 2.0" if use_bulk else "REST query",
                self.settings.bulk_threshold,
            )

        # The describe decides the fields; should the query still reject an optional one (a field
        # listed but not queryable), drop it and try again.
        while True:
            soql = f"SELECT {', '.join(select)} FROM {name}"
            try:
                if use_bulk:
                    bulk = getattr(sf.bulk2, name)
                    run = bulk.query_all if include_deleted else bulk.query
                    raw = _csv_frame(list(run(soql, wait=self.settings.bulk_poll_seconds)), select)
                else:
                    records = sf.query_all(soql, include_deleted=include_deleted)["records"]
                    raw = _records_frame(records, select)
                break
            except SalesforceMalformedRequest as exc:
                detail = _error_text(exc)
                if _INVALID_TYPE.search(detail):
                    return self._missing_object(spec, f"Salesforce answered {detail}")
                bad = _INVALID_FIELD.search(detail)
                optional = {
                    self._source_field(f.name).lower() for f in spec.fields if not f.required
                }
                if bad and bad.group(1).lower() in optional and bad.group(1) in select:
                    logger.info(
                        "Salesforce %s: field %s rejected by the query; reading without it",
                        name,
                        bad.group(1),
                    )
                    select.remove(bad.group(1))
                    continue
                raise
        logger.info(
            "Salesforce %s: read %d records via %s",
            name,
            raw.height,
            "Bulk API 2.0" if use_bulk else ("REST queryAll" if include_deleted else "REST query"),
        )
        return raw

    def close(self) -> None:
        self.session.close()
