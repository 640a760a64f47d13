"""The Objects every peer of `make bench-compare` is measured on, built once and written to
files, so every peer gets the very same bytes.

`bench` is the realistic CustomKeyCheck Object of benches/hmac_auth.rs (13 browser-like
headers, a query, `spec` with APIID, OrgID, bundle_hash and a `config_data` holding the
HMACSignatureAuth section with a session template), signed with hmac-sha512 over `date` with
the reference vector (key `c2VjcmV0`; the skew check is off so the fixed Date stays valid).
The other Objects are the same request with one thing changed, for the verdict smoke check.

`rsa` is a Post-hook Object for UpstreamRequestSigning with rsa-sha256: a POST with a few
headers, a session and metadata as the gateway sends after authentication, and a `config_data`
holding the section with the 2048-bit test key (tests/data/test_rsa2048_pkcs8.pem) inline; the
library signs the default header list and answers the `Authorization` header in `set_headers`.

    python bench/objects.py OUTDIR     # writes OUTDIR/<name>.bin for every Object, and rsa.bin
"""

import base64
import hashlib
import hmac
import json
import os
import sys
from urllib.parse import quote

import coprocess_pb2 as pb

API_ID = "b84fe1a04e5648927971c0557971565c"
KEY_ID = "client-42"
SECRET = "c2VjcmV0"  # the reference vector's key: test data, not a secret of anything
DATE = "Fri, 03 May 2024 12:00:42 GMT"
CONFIG_DATA = (
    '{"HMACSignatureAuth":{"keys":{"client-42":"c2VjcmV0"},"allowed_algorithms":["hmac-sha256","hmac-sha512"],'
    '"session":{"rate":1000,"per":60,"quota_max":-1,"tags":["hmac"],"access_rights":{"' + API_ID + '":{"api_id":"'
    + API_ID + '","versions":["Default"]}}}}}'
)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RSA_KEY = os.path.join(ROOT, "tests", "data", "test_rsa2048_pkcs8.pem")  # test-only key
RSA_PUB = os.path.join(ROOT, "tests", "data", "test_rsa2048_pub.pem")
RSA_KEY_ID = "bench-rsa"
HASHES = {"hmac-sha256": hashlib.sha256, "hmac-sha512": hashlib.sha512, "hmac-sha1": hashlib.sha1}


def sign(signing_string, algorithm="hmac-sha512", secret=SECRET):
    mac = hmac.new(secret.encode(), signing_string.encode(), HASHES[algorithm]).digest()
    return quote(base64.b64encode(mac).decode(), safe="")


def authorization(key_id=KEY_ID, algorithm="hmac-sha512", signature=None, headers=None):
    value = 'Signature keyId="%s",algorithm="%s",signature="%s"' % (key_id, algorithm, signature)
    if headers is not None:
        value += ',headers="%s"' % headers
    return value


def make(auth):
    """The benchmark Object with `auth` as its Authorization header."""
    obj = pb.Object(hook_type=pb.CustomKeyCheck, hook_name="HMACSignatureAuth")
    r = obj.request
    for k, v in [
        ("Accept", "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-GB,en;q=0.9,de;q=0.7"),
        ("Authorization", auth),
        ("Connection", "keep-alive"),
        ("Cookie", "session=8c1f0e6a2b; theme=dark; _ga=GA1.2.1234567890.1714737000"),
        ("Date", DATE),
        ("Referer", "https://app.example.com/dashboard/items?page=2"),
        ("Sec-Fetch-Dest", "empty"),
        ("Sec-Fetch-Mode", "cors"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36"),
        ("X-Forwarded-For", "203.0.113.7, 10.0.0.12"),
        ("X-Request-Id", "5f0c1a7e-8d8b-4b61-9a44-3c2f1e0d9b7a"),
    ]:
        r.headers[k] = v
    r.method = "GET"
    r.url = r.request_uri = "/v1/items?page=2&sort=desc"
    r.scheme = "https"
    r.return_overrides.response_code = -1
    obj.spec["APIID"] = API_ID
    obj.spec["OrgID"] = "5e9d9544a1dcd60001d0ed20"
    obj.spec["bundle_hash"] = ""
    obj.spec["config_data"] = CONFIG_DATA
    return obj.SerializeToString(deterministic=True)


def make_rsa():
    """The UpstreamRequestSigning rsa-sha256 Post-hook Object."""
    section = {"algorithm": "rsa-sha256", "keyId": RSA_KEY_ID, "privateKey": open(RSA_KEY).read()}
    obj = pb.Object(hook_type=pb.Post, hook_name="UpstreamRequestSigning")
    r = obj.request
    for k, v in [
        ("Accept", "application/json"),
        ("Content-Type", "application/json"),
        ("Content-Length", "36"),
        ("Date", DATE),
        ("User-Agent", "orders-client/2.4 (+https://app.example.com)"),
        ("X-Forwarded-For", "203.0.113.7"),
        ("X-Request-Id", "7f9c2ba4-e88f-4a2b-b8d6-0c5d1c6e2f10"),
    ]:
        r.headers[k] = v
    r.method = "POST"
    r.url = r.request_uri = "/v1/orders/12345/items?expand=product"
    r.scheme = "https"
    r.body = '{"product_id":"p-778","quantity":2}'
    r.return_overrides.response_code = -1
    obj.session.rate = 1000
    obj.session.per = 60
    obj.session.org_id = "5e9d9544a1dcd60001d0ed20"
    obj.metadata["token"] = KEY_ID
    obj.spec["APIID"] = API_ID
    obj.spec["OrgID"] = "5e9d9544a1dcd60001d0ed20"
    obj.spec["config_data"] = json.dumps({"UpstreamRequestSigning": section})
    return obj.SerializeToString(deterministic=True)


def objects():
    """name -> (serialised Object, expected verdict)."""
    good = sign("date: " + DATE)
    target = "(request-target): get /v1/items?page=2&sort=desc\ndate: " + DATE
    return {
        # the benchmark Object and the three verdicts of the smoke check
        "bench": (make(authorization(signature=good)), "authenticated"),
        "wrong-signature": (make(authorization(signature=good.replace("9", "8", 1))), 401),
        "malformed-header": (make('Signature keyId=client-42,algorithm="hmac-sha512",signature="%s"' % good), 400),
        # a few more of each, so the two implementations are compared on more than one path
        "sha256-request-target": (
            make(authorization(algorithm="hmac-sha256", signature=sign(target, "hmac-sha256"), headers="(request-target) date")),
            "authenticated",
        ),
        "unknown-key": (make(authorization(key_id="client-7", signature=good)), 401),
        "disallowed-algorithm": (make(authorization(algorithm="hmac-sha1", signature=sign("date: " + DATE, "hmac-sha1"))), 400),
        "missing-signed-header": (make(authorization(signature=good, headers="date x-missing")), 400),
    }


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    for name, (data, _) in objects().items():
        with open(os.path.join(out, name + ".bin"), "wb") as f:
            f.write(data)
    # not an HMACSignatureAuth Object: timed on its own, checked by bench/compare.py
    with open(os.path.join(out, "rsa.bin"), "wb") as f:
        f.write(make_rsa())


if __name__ == "__main__":
    main()
