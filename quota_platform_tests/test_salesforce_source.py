"""The Salesforce source, through simple-salesforce itself, against a loopback fake Salesforce over
TLS (quota_platform_tests/fakes/salesforce_server.py). Every request really crosses a TLS socket:
the login hosts (login/test/My Domain .salesforce.com) are routed to 127.0.0.1 by a transport
adapter that still checks the certificate against the public host name."""

from __future__ import annotations

import logging
import ssl
from datetime import UTC, date, datetime

import polars as pl
import pytest
import requests
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from polars.testing import assert_frame_equal

from quota_platform.lib.core.contract import OBJECTS, ContractError, empty_frame
from quota_platform.sources import files
from quota_platform.sources.salesforce import (
    SalesforceSettings,
    SalesforceSource,
    SalesforceSourceError,
    build_session,
    login_method,
    salesforce_configured,
)
from quota_platform_tests.fakes.salesforce_server import FakeSalesforce, LoopbackAdapter

USERNAME = "integration@acme.example"
PASSWORD = "pa<ss>&word-Secret1"  # XML-special characters: the SOAP body must escape them
SECURITY_TOKEN = "SECTOKxq81Lm2ZpW9aB"
ACCESS_TOKEN = "00D000000000001!AQcAQHandIssuedAccessTokenValue"
CONSUMER_KEY = "3MVG9fakeConsumerKey.forTheConnectedApp"
LOGIN_HOSTS = ("login.salesforce.com", "test.salesforce.com", "acme.my.salesforce.com")

# Users as Salesforce's REST API serialises them (JSON values).
USERS = [
    {"Id": "005000000000001AAA", "Name": "Avery Chief", "Email": "avery@acme.example",
     "ManagerId": None, "IsActive": True, "Hire_Date__c": "2021-03-01"},
    {"Id": "005000000000002AAA", "Name": "Blake Lead", "Email": "blake@acme.example",
     "ManagerId": "005000000000001AAA", "IsActive": True, "Hire_Date__c": "2022-07-15"},
    {"Id": "005000000000003AAA", "Name": "Casey Rep", "Email": None,
     "ManagerId": "005000000000002AAA", "IsActive": False, "Hire_Date__c": None},
    {"Id": "005000000000004AAA", "Name": "Devon Rep", "Email": "devon@acme.example",
     "ManagerId": "005000000000002AAA", "IsActive": True, "Hire_Date__c": "2024-05-20"},
    {"Id": "005000000000005AAA", "Name": "Emery Rep", "Email": "emery@acme.example",
     "ManagerId": "005000000000002AAA", "IsActive": True, "Hire_Date__c": "2024-06-03"},
]
USER_IDS = [f"00500000000000{i}AAA" for i in range(1, 6)]

OPPORTUNITIES = [
    {"Id": "006000000000001AAA", "Name": "Acme - New", "AccountId": "001000000000001AAA",
     "OwnerId": "005000000000004AAA", "Type": "New Business", "StageName": "Closed Won",
     "Amount": 120000.0, "CurrencyIsoCode": "USD", "Probability": 100.0, "CloseDate": "2024-05-15",
     "CreatedDate": "2024-01-10T09:30:00.000+0000", "IsClosed": True, "IsWon": True,
     "ForecastCategoryName": "Closed", "IsDeleted": False},
    {"Id": "006000000000002AAA", "Name": "Globex \"EU\", Renewal", "AccountId": None,
     "OwnerId": "005000000000005AAA", "Type": "Renewal", "StageName": "Negotiation/Review",
     "Amount": 45500.5, "CurrencyIsoCode": "EUR", "Probability": 60.0, "CloseDate": "2024-06-28",
     "CreatedDate": "2024-02-29T23:59:59.000+0000", "IsClosed": False, "IsWon": False,
     "ForecastCategoryName": "Commit", "IsDeleted": False},
    {"Id": "006000000000003AAA", "Name": "Initech - Upsell", "AccountId": "001000000000003AAA",
     "OwnerId": "005000000000004AAA", "Type": "Upsell", "StageName": "Closed Won",
     "Amount": 9999.99, "CurrencyIsoCode": "USD", "Probability": 100.0, "CloseDate": "2024-04-02",
     "CreatedDate": "2024-03-01T08:00:00.000+0000", "IsClosed": True, "IsWon": True,
     "ForecastCategoryName": "Closed", "IsDeleted": True},
]

# The same opportunities as a RevOps export would write them for the file source.
OPPORTUNITY_CSV = """\
Id,Name,AccountId,OwnerId,Type,StageName,Amount,CurrencyIsoCode,Probability,CloseDate,CreatedDate,IsClosed,IsWon,ForecastCategoryName,IsDeleted
006000000000001AAA,Acme - New,001000000000001AAA,005000000000004AAA,New Business,Closed Won,120000,USD,100,2024-05-15,2024-01-10T09:30:00Z,true,true,Closed,false
006000000000002AAA,"Globex ""EU"", Renewal",,005000000000005AAA,Renewal,Negotiation/Review,45500.50,EUR,60,2024-06-28,2024-02-29T23:59:59Z,false,false,Commit,false
006000000000003AAA,Initech - Upsell,001000000000003AAA,005000000000004AAA,Upsell,Closed Won,9999.99,USD,100,2024-04-02,2024-03-01T08:00:00Z,true,true,Closed,true
"""

# The same users, with the org's hire date in a custom field named Start_Date__c.
USER_CSV = """\
Id,Name,Email,ManagerId,IsActive,Start_Date__c
005000000000001AAA,Avery Chief,avery@acme.example,,true,2021-03-01
005000000000002AAA,Blake Lead,blake@acme.example,005000000000001AAA,true,2022-07-15
005000000000003AAA,Casey Rep,,005000000000002AAA,false,
005000000000004AAA,Devon Rep,devon@acme.example,005000000000002AAA,true,2024-05-20
005000000000005AAA,Emery Rep,emery@acme.example,005000000000002AAA,true,2024-06-03
"""


# --- TLS, keys and the fake ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def ca_file(ca, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture(scope="module")
def server_ssl(ca) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", *LOGIN_HOSTS).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def rsa_key() -> tuple[str, bytes]:
    """The connected app's key pair: private PEM text (the client's), public PEM (the fake's)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


@pytest.fixture
def org(server_ssl, rsa_key):
    """Starts fakes for a test (stopped afterwards): ``org({"User": USERS}, **options)``."""
    started: list[FakeSalesforce] = []

    def start(objects, **options) -> FakeSalesforce:
        options = {
            "username": USERNAME,
            "password": PASSWORD,
            "security_token": SECURITY_TOKEN,
            "consumer_key": CONSUMER_KEY,
            "jwt_public_key": rsa_key[1],
            "access_tokens": [ACCESS_TOKEN],
            **options,
        }
        fake = FakeSalesforce(objects, ssl_context=server_ssl, **options).start()
        started.append(fake)
        return fake

    yield start
    for fake in started:
        fake.stop()


def connect(fake: FakeSalesforce, ca_file: str, **fields) -> SalesforceSource:
    """A source for the fake. Without login fields, the access-token login at the fake's URL."""
    if not fields.keys() & {"username", "access_token"}:
        fields |= {"access_token": ACCESS_TOKEN, "instance_url": fake.base_url}
    fields = {"verify": ca_file, "retry_backoff_seconds": 0, "bulk_poll_seconds": 0.01, **fields}
    settings = SalesforceSettings(**fields)
    session = build_session(settings)
    session.trust_env = False  # no proxy or CA bundle from the environment of the test run
    retry = session.get_adapter("https://127.0.0.1/").max_retries
    for host in LOGIN_HOSTS:
        session.mount(f"https://{host}/", LoopbackAdapter(host, fake.port, max_retries=retry))
    return SalesforceSource(settings, session=session)


def password_login(**extra) -> dict:
    return {"username": USERNAME, "password": PASSWORD, "security_token": SECURITY_TOKEN, **extra}


# --- login ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("domain", "login_host"),
    [
        ("login", "login.salesforce.com"),
        ("https://acme.my.salesforce.com/", "acme.my.salesforce.com"),
    ],
)
def test_password_login_reads_users(org, ca_file, domain, login_host):
    """Username + password + security token: the SOAP login at the domain's host, then REST."""
    fake = org({"User": USERS})
    frame = connect(fake, ca_file, **password_login(domain=domain)).read_object("User")

    logins = fake.requests("POST", "/services/Soap/u/62.0")
    assert [s.host for s in logins] == [login_host]
    assert frame["Id"].to_list() == USER_IDS
    assert frame.filter(pl.col("Id") == "005000000000003AAA").row(0, named=True) == {
        "Id": "005000000000003AAA", "Name": "Casey Rep", "Email": None,
        "ManagerId": "005000000000002AAA", "IsActive": False, "Hire_Date__c": None,
    }


def test_access_token_login_reads_users(org, ca_file):
    fake = org({"User": USERS})
    frame = connect(fake, ca_file).read_object("User")

    assert frame["Id"].to_list() == USER_IDS
    assert frame["Hire_Date__c"].to_list()[:2] == [date(2021, 3, 1), date(2022, 7, 15)]
    assert not fake.requests("POST")  # no login round trip: the token is used as it is


@pytest.mark.parametrize("key_as", ["pem_text", "pem_text_escaped_newlines", "file"])
def test_jwt_bearer_login_reads_users(org, ca_file, rsa_key, tmp_path, key_as):
    """Username + consumer key + private key, against the sandbox login host ('test'). The fake
    verifies the assertion's RS256 signature with the public key and its iss/sub/aud/exp."""
    fake = org({"User": USERS})
    private = rsa_key[0]
    if key_as == "file":
        (tmp_path / "server.key").write_text(private)
        key = {"private_key_file": str(tmp_path / "server.key")}
    elif key_as == "pem_text_escaped_newlines":
        key = {"private_key": private.replace("\n", "\\n")}
    else:
        key = {"private_key": private}
    source = connect(
        fake, ca_file, username=USERNAME, consumer_key=CONSUMER_KEY, domain="test", **key
    )

    frame = source.read_object("User")

    assert source.method == "jwt"
    tokens = fake.requests("POST", "/services/oauth2/token")
    assert [s.host for s in tokens] == ["test.salesforce.com"]
    assert frame["Id"].to_list() == USER_IDS


def test_failed_password_login_is_clear_and_not_retried(org, ca_file):
    """A SOAP login fault is an HTTP 500; retrying it would walk the user towards lockout."""
    fake = org({"User": USERS})
    source = connect(fake, ca_file, **password_login(security_token="StaleToken000"))

    with pytest.raises(SalesforceSourceError) as err:
        source.read_object("User")

    message = str(err.value)
    assert "INVALID_LOGIN" in message
    assert "SALESFORCE_SECURITY_TOKEN" in message
    assert PASSWORD not in message and "StaleToken000" not in message
    assert len(fake.requests("POST", "/services/Soap/u/62.0")) == 1


def test_unusable_private_key_is_a_clear_error_without_the_key(org, ca_file):
    fake = org({"User": USERS})
    not_a_key = (
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWJ1dC1ub3QtYS1rZXk=\n-----END PRIVATE KEY-----\n"
    )
    source = connect(
        fake, ca_file, username=USERNAME, consumer_key=CONSUMER_KEY, private_key=not_a_key
    )

    with pytest.raises(SalesforceSourceError, match="SALESFORCE_PRIVATE_KEY") as err:
        source.read_object("User")
    assert "c2VjcmV0LWJ1dC1ub3QtYS1rZXk" not in str(err.value)
    assert not fake.requests("POST", "/services/oauth2/token")


def test_password_login_signs_in_again_when_the_session_expires(org, ca_file):
    forecasting_types = [{"Id": "0Db000000000001AAA", "DeveloperName": "NewBusiness"}]
    fake = org({"User": USERS, "ForecastingType": forecasting_types})
    source = connect(fake, ca_file, **password_login())
    source.read_object("User")
    fake.expire_sessions()

    frame = source.read_object("ForecastingType")

    assert frame["DeveloperName"].to_list() == ["NewBusiness"]
    assert len(fake.requests("POST", "/services/Soap/u/62.0")) == 2


# --- paging, retries, errors ---------------------------------------------------------------------


def test_query_pages_through_next_records_url(org, ca_file):
    """5 users with 2 records a page: the first query and two nextRecordsUrl pages."""
    fake = org({"User": USERS}, page_size=2)
    frame = connect(fake, ca_file).read_object("User")

    assert frame["Id"].to_list() == USER_IDS
    assert len(fake.requests("GET", "/query")) == 1
    more = [s.path for s in fake.seen if "/query/01g" in s.path]
    assert [p.rsplit("-", 1)[1] for p in more] == ["2", "4"]


def test_503_is_retried_by_the_sessions_adapter(org, ca_file):
    fake = org({"User": USERS})
    fake.fail("GET", "/query", status=503, times=1)

    frame = connect(fake, ca_file).read_object("User")

    assert len(fake.requests("GET", "/query")) == 2
    assert frame["Id"].to_list() == USER_IDS


def test_retries_are_bounded(org, ca_file):
    fake = org({"User": USERS})
    fake.fail("GET", "/query", status=503, times=10)

    with pytest.raises(SalesforceSourceError, match="reading User: SERVER_UNAVAILABLE"):
        connect(fake, ca_file, max_retries=2).read_object("User")
    assert len(fake.requests("GET", "/query")) == 3  # the request and 2 retries


def test_read_timeout_is_retried(org, ca_file):
    fake = org({"User": USERS})
    fake.stall("GET", "/query", seconds=1.5, times=1)

    frame = connect(fake, ca_file, timeout_seconds=0.4).read_object("User")

    assert len(fake.requests("GET", "/query")) == 2
    assert frame["Id"].to_list() == USER_IDS


def test_expired_access_token_is_a_clear_error_without_the_token(org, ca_file):
    fake = org({"User": USERS})
    fake.expire_sessions()

    with pytest.raises(SalesforceSourceError) as err:
        connect(fake, ca_file).read_object("User")

    message = str(err.value)
    assert "session expired" in message.lower()
    assert "INVALID_SESSION_ID" in message
    assert "access token" in message and "SALESFORCE_ACCESS_TOKEN" in message
    assert "re-issue the token" in message
    assert ACCESS_TOKEN not in message


# --- Bulk API 2.0 --------------------------------------------------------------------------------


def test_bulk_api_2_above_the_threshold(org, ca_file):
    """3 opportunities (one deleted) above a threshold of 1: a queryAll Bulk 2.0 job whose CSV
    results come in 2 pages linked by Sforce-Locator."""
    fake = org({"Opportunity": OPPORTUNITIES}, bulk_page_size=2)

    frame = connect(fake, ca_file, bulk_threshold=1).read_object("Opportunity")

    jobs = fake.requests("POST", "/jobs/query")
    assert len(jobs) == 1
    assert '"operation": "queryAll"' in jobs[0].body.decode()
    assert "FROM Opportunity" in jobs[0].body.decode()
    pages = fake.requests("GET", "/results")
    assert len(pages) == 2
    assert pages[0].param("locator") is None and pages[1].param("locator") is not None
    assert frame["Id"].to_list() == [
        "006000000000001AAA", "006000000000002AAA", "006000000000003AAA"
    ]
    assert frame["IsDeleted"].to_list() == [False, False, True]
    assert frame["Amount"].to_list() == [120000.0, 45500.5, 9999.99]
    assert frame["AccountId"].to_list() == ["001000000000001AAA", None, "001000000000003AAA"]


def test_rest_query_all_below_the_threshold(org, ca_file):
    fake = org({"Opportunity": OPPORTUNITIES})

    frame = connect(fake, ca_file).read_object("Opportunity")

    assert not fake.requests("POST", "/jobs/query")
    count, query = fake.requests("GET", "/queryAll")
    assert count.param("q") == "SELECT COUNT() FROM Opportunity"
    assert query.param("q").startswith("SELECT Id, Name, AccountId, OwnerId, Type, StageName")
    assert frame["IsDeleted"].to_list() == [False, False, True]


# --- the contract --------------------------------------------------------------------------------


def test_unsupported_optional_object_is_an_empty_typed_frame(org, ca_file):
    fake = org({"User": USERS})

    frame = connect(fake, ca_file).read_object("OpportunitySplit")

    assert_frame_equal(frame, empty_frame("OpportunitySplit"))
    assert frame.schema["SplitPercentage"] == pl.Float64
    assert fake.requests("GET", "/sobjects/OpportunitySplit/describe")
    assert not fake.requests("GET", "/query")


def test_missing_required_object_is_a_contract_error(org, ca_file):
    fake = org({"User": USERS})

    with pytest.raises(ContractError, match="ForecastingQuota: required object missing"):
        connect(fake, ca_file).read_object("ForecastingQuota")


def test_missing_required_field_names_object_and_field(org, ca_file):
    fake = org({"User": USERS}, fields={"User": ["Id", "Name", "Email", "IsActive"]})

    with pytest.raises(ContractError) as err:
        connect(fake, ca_file).read_object("User")

    assert str(err.value).startswith(
        "User: required field(s) ManagerId missing from Salesforce User"
    )
    assert not fake.requests("GET", "/query")


def test_single_currency_org_has_no_currency_iso_code(org, ca_file):
    """The org's describe has no CurrencyIsoCode, and querying it would fail (INVALID_FIELD)."""
    single = [{k: v for k, v in o.items() if k != "CurrencyIsoCode"} for o in OPPORTUNITIES]
    fake = org({"Opportunity": single})

    frame = connect(fake, ca_file).read_object("Opportunity")

    count, query = fake.requests("GET", "/queryAll")  # chosen from describe: no failed attempt
    assert "CurrencyIsoCode" not in query.param("q")
    assert frame["CurrencyIsoCode"].to_list() == [None, None, None]
    assert frame["Amount"].to_list() == [120000.0, 45500.5, 9999.99]


def test_optional_field_rejected_by_the_query_is_dropped(org, ca_file):
    fake = org({"User": USERS}, unqueryable={"User": ["Email"]})

    frame = connect(fake, ca_file).read_object("User")

    first, second = (s.param("q") for s in fake.requests("GET", "/query"))
    assert "Email" in first and "Email" not in second
    assert frame["Email"].to_list() == [None] * 5
    assert frame["Id"].to_list() == USER_IDS


@pytest.mark.parametrize("bulk_threshold", [10_000, 1], ids=["rest", "bulk"])
def test_same_frames_as_the_file_source(org, ca_file, tmp_path, bulk_threshold):
    """Same frames from both: the org's records through REST (JSON) or Bulk 2.0 (CSV) equal the
    same records exported to CSV and read by the file source, with the same hire date rename."""
    org_users = [
        {("Start_Date__c" if k == "Hire_Date__c" else k): v for k, v in u.items()} for u in USERS
    ]
    fake = org({"User": org_users, "Opportunity": OPPORTUNITIES})
    (tmp_path / "User.csv").write_text(USER_CSV)
    (tmp_path / "Opportunity.csv").write_text(OPPORTUNITY_CSV)
    renames = {"Start_Date__c": "Hire_Date__c"}
    source = connect(fake, ca_file, hire_date_field="Start_Date__c", bulk_threshold=bulk_threshold)

    for name in ("User", "Opportunity"):
        from_files = files.read_object(tmp_path, name, renames=renames)
        assert_frame_equal(source.read_object(name), from_files)

    opp = source.read_object("Opportunity").row(1, named=True)
    assert opp["Name"] == 'Globex "EU", Renewal'
    assert opp["CreatedDate"] == datetime(2024, 2, 29, 23, 59, 59, tzinfo=UTC)
    assert opp["CloseDate"] == date(2024, 6, 28)
    assert opp["Probability"] == 60.0
    assert source.read_object("User")["Hire_Date__c"][4] == date(2024, 6, 3)
    assert bool(fake.requests("POST", "/jobs/query")) == (bulk_threshold == 1)


def test_read_all_reads_every_contract_object(org, ca_file):
    quota = {
        "Id": "0J9000000000001AAA", "QuotaOwnerId": "005000000000004AAA",
        "ForecastingTypeId": "0Db000000000001AAA", "StartDate": "2024-04-01",
        "QuotaAmount": 250000.0, "PeriodId": None, "ProductFamily": None,
    }
    fake = org({
        "User": USERS,
        "ForecastingType": [{"Id": "0Db000000000001AAA", "DeveloperName": "NewBusiness"}],
        "ForecastingQuota": [quota],
        "Opportunity": OPPORTUNITIES,
    })

    frames = connect(fake, ca_file).read_all()

    assert list(frames) == list(OBJECTS)
    heights = {name: frame.height for name, frame in frames.items() if frame.height}
    assert heights == {"User": 5, "ForecastingType": 1, "ForecastingQuota": 1, "Opportunity": 3}
    assert frames["ForecastingQuota"]["Ramp_Adjusted__c"].to_list() == [False]  # contract default


def test_configured_ca_bundle_wins_over_requests_ca_bundle(org, ca_file, monkeypatch):
    """With the environment trusted (as in production), REQUESTS_CA_BUNDLE would replace the
    session's CA bundle on every request; SALESFORCE_CA_BUNDLE (settings.verify) must still hold."""
    fake = org({"User": USERS})
    source = connect(fake, ca_file)
    source.session.trust_env = True
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # does not know the test CA
    for var in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    assert source.read_object("User")["Id"].to_list() == USER_IDS


def test_untrusted_certificate_fails_at_once_with_a_hint(org, ca_file):
    """A certificate that does not verify is not a transient failure: no retries, and the
    message points at SALESFORCE_CA_BUNDLE."""
    fake = org({"User": USERS})
    source = connect(fake, ca_file, verify=requests.certs.where())  # public CAs only

    with pytest.raises(SalesforceSourceError, match="could not be verified.*SALESFORCE_CA_BUNDLE"):
        source.read_object("User")
    assert fake.connections == 1
    assert not fake.seen


# --- secrets and settings ------------------------------------------------------------------------


def test_no_secret_in_logs_or_repr(org, ca_file, rsa_key, caplog):
    caplog.set_level(logging.DEBUG)
    fake = org({"User": USERS, "Opportunity": OPPORTUNITIES})
    connect(fake, ca_file, **password_login()).read_object("User")
    jwt_source = connect(
        fake,
        ca_file,
        username=USERNAME,
        consumer_key=CONSUMER_KEY,
        private_key=rsa_key[0],
        bulk_threshold=1,
    )
    jwt_source.read_object("Opportunity")
    connect(fake, ca_file).read_object("User")

    assert "Opportunity: read 3 records via Bulk API 2.0" in caplog.text
    assert "User: read 5 records via REST query" in caplog.text
    key_body = rsa_key[0].splitlines()[1]
    for secret in [PASSWORD, SECURITY_TOKEN, ACCESS_TOKEN, key_body, *fake.issued_tokens]:
        assert secret not in caplog.text

    settings = SalesforceSettings(
        username=USERNAME, password=PASSWORD, security_token=SECURITY_TOKEN,
        access_token=ACCESS_TOKEN, private_key=rsa_key[0],
    )
    shown = repr(settings)
    assert USERNAME in shown and shown.count("'***'") == 4
    for secret in [PASSWORD, SECURITY_TOKEN, ACCESS_TOKEN, key_body]:
        assert secret not in shown and secret not in str(settings)


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"username": "u", "password": "p", "security_token": "t"}, "password"),
        ({"username": "u", "password": "p"}, "password"),  # org trusts the IP range: no token
        ({"access_token": "a", "instance_url": "https://acme.my.salesforce.com"}, "access_token"),
        ({"username": "u", "consumer_key": "c", "private_key_file": "/k.pem"}, "jwt"),
        (
            {"username": "u", "password": "p", "access_token": "a", "instance_url": "https://x"},
            "access_token",
        ),
    ],
)
def test_login_method(fields, expected):
    assert login_method(SalesforceSettings(**fields)) == expected


@pytest.mark.parametrize(
    ("fields", "missing"),
    [
        ({}, "SALESFORCE_USERNAME"),
        ({"access_token": "a"}, "SALESFORCE_INSTANCE_URL"),
        ({"username": "u"}, "SALESFORCE_PASSWORD"),
        ({"username": "u", "consumer_key": "c"}, "SALESFORCE_PRIVATE_KEY"),
    ],
)
def test_incomplete_login_names_the_missing_env_var(fields, missing):
    with pytest.raises(SalesforceSourceError, match=missing):
        login_method(SalesforceSettings(**fields))


def test_settings_from_env():
    env = {
        "SALESFORCE_USERNAME": "u@acme.example",
        "SALESFORCE_PASSWORD": "pw",
        "SALESFORCE_SECURITY_TOKEN": " tok ",
        "SALESFORCE_DOMAIN": "test",
        "SALESFORCE_BULK_THRESHOLD": "50000",
        "SALESFORCE_CA_BUNDLE": "/etc/ssl/corp.pem",
        "SALESFORCE_API_VERSION": "",
    }
    settings = SalesforceSettings.from_env(env)
    assert settings.username == "u@acme.example"
    assert (settings.security_token, settings.domain) == ("tok", "test")
    assert (settings.bulk_threshold, settings.verify) == (50000, "/etc/ssl/corp.pem")
    assert settings.api_version == "62.0"  # empty variable: the default
    assert settings.access_token is None
    with pytest.raises(ValueError, match="SALESFORCE_BULK_THRESHOLD"):
        SalesforceSettings.from_env({"SALESFORCE_BULK_THRESHOLD": "10k"})


def test_salesforce_configured():
    assert salesforce_configured({"SALESFORCE_USERNAME": "u"})
    assert salesforce_configured({"SALESFORCE_ACCESS_TOKEN": "a"})
    assert not salesforce_configured({"SALESFORCE_PASSWORD": "p", "SALESFORCE_USERNAME": ""})
