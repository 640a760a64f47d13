#!/usr/bin/env python3
"""Independent verifier of draft-cavage-http-signatures-10 signatures, for the tests of
UpstreamRequestSigning. Written from the draft, sharing no code with the Rust signer:
HMAC with Python's standard library (hmac, hashlib), RSA-SHA256 (PKCS#1 v1.5) with the
`openssl dgst -sha256 -verify` command.

Usage: verify_cavage.py CASES.json

CASES.json: {"cases": [case, ...]}, each case an object:
  name              label printed in the report
  method, path      the request as it goes upstream: method and path with query
  headers           {name: value}: the request headers as the upstream receives them
  signature_header  where the signature is (default "Authorization"), matched case-insensitively
  secret            HMAC: the shared secret (its UTF-8 bytes are the key)
  public_key        RSA: path of a PEM public key
  plain             HMAC: the signature is plain base64, not URL-query-escaped (default false)
  key_id, algorithm optional: the keyId / algorithm parameters must equal these
  headers_param     optional: the headers parameter must equal this
  fresh_date        optional: the Date header must be canonical RFC 1123 GMT, within 120 s of now
  expect_valid      default true; false: the case passes when verification FAILS

Prints one line per case and exits 0 when every case came out as expected, 1 otherwise.
"""

import base64
import email.utils
import hashlib
import hmac
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse

HASHES = {"hmac-sha1": hashlib.sha1, "hmac-sha256": hashlib.sha256, "hmac-sha384": hashlib.sha384, "hmac-sha512": hashlib.sha512}
PARAM = re.compile(r'\s*([A-Za-z]+)="([^"]*)"\s*(?:,|$)')


class Invalid(Exception):
    pass


def header(headers, name):
    found = [v for k, v in headers.items() if k.lower() == name.lower()]
    if len(found) != 1:
        raise Invalid("header %r %s" % (name, "missing" if not found else "present more than once"))
    return found[0]


def parse_params(value):
    if value.startswith("Signature "):
        value = value[len("Signature "):]
    params, pos = {}, 0
    while pos < len(value):
        m = PARAM.match(value, pos)
        if not m or m.end() == pos:
            raise Invalid("malformed signature parameters at offset %d" % pos)
        key = m.group(1)
        if key in params:
            raise Invalid("duplicate parameter %s" % key)
        params[key] = m.group(2)
        pos = m.end()
    for required in ("keyId", "algorithm", "signature"):
        if required not in params:
            raise Invalid("parameter %s missing" % required)
    return params


def signing_string(case, names):
    lines = []
    for name in names:
        if name == "(request-target)":
            lines.append("(request-target): %s %s" % (case["method"].lower(), case["path"]))
        else:
            lines.append("%s: %s" % (name, header(case["headers"], name).strip()))
    return "\n".join(lines).encode()


def verify_rsa(public_key, message, signature):
    with tempfile.TemporaryDirectory() as d:
        data, sig = os.path.join(d, "data"), os.path.join(d, "sig")
        with open(data, "wb") as f:
            f.write(message)
        with open(sig, "wb") as f:
            f.write(signature)
        r = subprocess.run(["openssl", "dgst", "-sha256", "-verify", public_key, "-signature", sig, data],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise Invalid("openssl: " + r.stdout.decode(errors="replace").strip().splitlines()[0])


def verify(case):
    params = parse_params(header(case["headers"], case.get("signature_header", "Authorization")))
    for field, param in (("key_id", "keyId"), ("algorithm", "algorithm"), ("headers_param", "headers")):
        if field in case and params.get(param) != case[field]:
            raise Invalid("%s is %r, expected %r" % (param, params.get(param), case[field]))
    names = params.get("headers", "date").split(" ")
    if case.get("fresh_date"):
        date = header(case["headers"], "date")
        ts = email.utils.parsedate_to_datetime(date).timestamp()
        if email.utils.formatdate(ts, usegmt=True) != date:
            raise Invalid("Date %r is not canonical RFC 1123 GMT" % date)
        if abs(time.time() - ts) > 120:
            raise Invalid("Date %r is not now" % date)
    message = signing_string(case, names)
    algorithm = params["algorithm"]
    if algorithm in HASHES:
        if "secret" not in case:
            raise Invalid("HMAC signature but the case has no secret")
        sent = params["signature"] if case.get("plain") else urllib.parse.unquote_plus(params["signature"])
        want = base64.b64encode(hmac.new(case["secret"].encode(), message, HASHES[algorithm]).digest()).decode()
        if not hmac.compare_digest(sent, want):
            raise Invalid("HMAC signature does not match")
    elif algorithm == "rsa-sha256":
        if "public_key" not in case:
            raise Invalid("RSA signature but the case has no public_key")
        try:
            signature = base64.b64decode(params["signature"], validate=True)
        except ValueError:
            raise Invalid("RSA signature is not plain base64")
        verify_rsa(case["public_key"], message, signature)
    else:
        raise Invalid("unsupported algorithm %r" % algorithm)


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)["cases"]
    bad = 0
    for case in cases:
        expect = case.get("expect_valid", True)
        try:
            verify(case)
            ok, why = True, "valid"
        except Invalid as e:
            ok, why = False, str(e)
        if ok == expect:
            print("ok   %s (%s)" % (case["name"], why))
        else:
            bad += 1
            print("FAIL %s (%s, expected %s)" % (case["name"], why, "valid" if expect else "invalid"))
    print("verify_cavage: %d of %d cases as expected" % (len(cases) - bad, len(cases)))
    return 0 if bad == 0 and cases else 1


if __name__ == "__main__":
    sys.exit(main())
