"""HMACSignatureAuth written as a Python rich plugin: the embedded-interpreter peer.

What an embedded-Python plugin driver does per hook, and what this module does in
`dispatch(data)`: parse the serialised `coprocess.Object` with the official `protobuf`
package, run the middleware registered under the hook's name, serialise the Object back.

The middleware has the semantics of the library's `HMACSignatureAuth`
(docs/builtins/hmac-signature-auth.md), written independently in idiomatic Python:
- `Authorization: Signature keyId="..",algorithm="..",signature=".."[,headers=".."]`, parsed
  strictly (scheme, `name="value"` pairs, optional spaces/tabs after commas only, no control
  characters, no unknown or duplicate parameters);
- signing string: one `name: value` line per name of `headers=` (default `date`),
  `(request-target): <method> <request_uri>`, joined by `\\n`;
- HMAC over it keyed with the secret's bytes, compared in constant time
  (`hmac.compare_digest`) with the percent-decoded, base64-decoded signature;
- success: the configured session template with `hmac_enabled`, `hmac_secret` and
  `last_updated` (unix seconds) set, and `metadata["token"] = keyId`;
- failure: `request.return_overrides` 400 (malformed, unsupported algorithm) or 401 (unknown
  key, wrong signature, Date outside the clock-skew window).

Configuration comes from `spec["config_data"]`, parsed once per distinct value (as the
library does), and each secret's keyed HMAC state is built once and copied per request (the
library does the same), so neither side pays a per-request key schedule.
"""

import base64
import binascii
import email.utils
import hashlib
import hmac
import json
import re
import time
from urllib.parse import unquote_to_bytes

import coprocess_pb2 as pb
from google.protobuf import json_format

NAME = "HMACSignatureAuth"
BAD_REQUEST = "Custom middleware: Bad request"
UNSUPPORTED_ALGORITHM = "Bad HMAC request, unsupported algorithm"
NOT_AUTHORIZED = "Custom middleware: Not authorized"

ALGORITHMS = {
    "hmac-sha1": hashlib.sha1,
    "hmac-sha256": hashlib.sha256,
    "hmac-sha384": hashlib.sha384,
    "hmac-sha512": hashlib.sha512,
}
MAX_KEY_ID_LEN = 1024
MAX_SIGNED_HEADERS = 64
CONFIG_KEYS = {"keys", "store_prefix", "allowed_algorithms", "clock_skew_ms", "session",
               "store_cache_ms", "id_extractor_ttl_s"}

_CTL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_PARAM = re.compile(r"(" + _TOKEN + r')="([^"]*)"')
# the scheme, spaces, then name="value" pairs separated by a comma and optional spaces/tabs
_SIGNATURE = re.compile(r"(?i:signature) +(" + _TOKEN + r'="[^"]*"(?:,[ \t]*' + _TOKEN + r'="[^"]*")*)\Z', re.ASCII)
_IS_TOKEN = re.compile(_TOKEN + r"\Z")
_PARAM_NAMES = ("keyid", "algorithm", "signature", "headers")
_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")


class ConfigError(Exception):
    """An invalid section (the library answers -5). Never quotes secrets."""


class Refused(Exception):
    def __init__(self, code, message):
        super().__init__(code)
        self.code, self.message = code, message


def parse_signature(value):
    """The parameters of a `Signature` Authorization value, or None when malformed."""
    if _CTL.search(value):
        return None
    m = _SIGNATURE.match(value.strip(" \t"))
    if m is None:
        return None
    params = {}
    for name, val in _PARAM.findall(m.group(1)):
        name = name.lower()
        if name not in _PARAM_NAMES or name in params:
            return None
        params[name] = val
    return params


def percent_decode(s):
    """Strict %XX decoding (either case); None on a bad escape."""
    if "%" not in s:
        return s.encode()
    # fast path: the three escapes a base64 signature needs
    fast = s.replace("%2B", "+").replace("%2F", "/").replace("%3D", "=").replace("%2b", "+").replace("%2f", "/").replace("%3d", "=")
    if "%" not in fast:
        return fast.encode()
    if _BAD_ESCAPE.search(s):
        return None
    return unquote_to_bytes(s)


def b64decode(raw):
    """Standard-alphabet base64, padding optional, canonical (unused trailing bits zero);
    None when invalid."""
    raw = raw.rstrip(b"=")
    try:
        out = base64.b64decode(raw + b"=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    if base64.b64encode(out).rstrip(b"=") != raw:
        return None
    return out


def header(headers, name):
    """A request header, names matched case-insensitively. The gateway sends canonical names
    (`X-Request-Id`), so the exact and the canonical form are tried before a scan."""
    v = headers.get(name)
    if v is not None:
        return v
    v = headers.get("-".join(p.capitalize() for p in name.split("-")))
    if v is not None:
        return v
    lower = name.lower()
    for k, v in headers.items():
        if k.lower() == lower:
            return v
    return None


class HmacSignatureAuth:
    def __init__(self, section, store=None):
        if not isinstance(section, dict):
            raise ConfigError("section must be an object")
        unknown = set(section) - CONFIG_KEYS
        if unknown:
            raise ConfigError("unknown keys: %s" % ", ".join(sorted(unknown)))
        allowed = section.get("allowed_algorithms", list(ALGORITHMS))
        if not allowed:
            raise ConfigError("allowed_algorithms must name at least one algorithm")
        self.allowed = {}
        for a in allowed:
            if a.lower() not in ALGORITHMS:
                raise ConfigError("allowed_algorithms: unknown algorithm")
            self.allowed[a.lower()] = ALGORITHMS[a.lower()]
        self.keys = {}
        for key_id, secret in section.get("keys", {}).items():
            if not key_id or len(key_id.encode()) > MAX_KEY_ID_LEN or not secret:
                raise ConfigError("keys: empty or over-long keyId, or empty secret")
            # keyed state per allowed algorithm, copied per request
            self.keys[key_id] = (secret, {n: hmac.new(secret.encode(), digestmod=h) for n, h in self.allowed.items()})
        self.store_prefix = section.get("store_prefix", "hmac-secret-")
        self.clock_skew_ms = int(section.get("clock_skew_ms", 0))
        self.id_extractor_ttl_s = int(section.get("id_extractor_ttl_s", 0))
        self.session = json_format.ParseDict(section.get("session", {}), pb.SessionState())
        self.store = store if store is not None else {}

    def lookup(self, key_id, alg):
        entry = self.keys.get(key_id)
        if entry is not None:
            return entry[0], entry[1][alg].copy()
        if not self.store_prefix or len(key_id.encode()) > MAX_KEY_ID_LEN:
            return None
        secret = self.store.get(self.store_prefix + key_id)
        if not secret:
            return None
        return secret, hmac.new(secret.encode(), digestmod=self.allowed[alg])

    def check(self, req, now):
        headers = req.headers
        authorization = header(headers, "Authorization")
        if not authorization:
            raise Refused(400, BAD_REQUEST)
        params = parse_signature(authorization)
        if params is None:
            raise Refused(400, BAD_REQUEST)
        key_id, algorithm, sig = params.get("keyid"), params.get("algorithm"), params.get("signature")
        if not key_id or not algorithm or not sig:
            raise Refused(400, BAD_REQUEST)
        alg = algorithm.lower()
        if alg not in self.allowed:
            raise Refused(400, UNSUPPORTED_ALGORITHM)
        date = header(headers, "Date")
        if not date:
            raise Refused(400, BAD_REQUEST)
        lines, has_date = [], False
        for name in params.get("headers", "date").replace("\t", " ").split(" "):
            if not name:
                continue
            if len(lines) == MAX_SIGNED_HEADERS:
                raise Refused(400, BAD_REQUEST)
            if name.lower() == "(request-target)":
                lines.append("(request-target): %s %s" % (req.method.lower(), req.request_uri))
                continue
            if not _IS_TOKEN.match(name):
                raise Refused(400, BAD_REQUEST)
            value = header(headers, name)
            if value is None:
                raise Refused(400, BAD_REQUEST)
            has_date = has_date or name.lower() == "date"
            lines.append("%s: %s" % (name.lower(), value.strip(" \t")))
        if not lines or (self.clock_skew_ms > 0 and not has_date):
            raise Refused(400, BAD_REQUEST)
        if self.clock_skew_ms > 0:
            try:
                sent = email.utils.parsedate_to_datetime(date).timestamp()
            except (TypeError, ValueError):
                raise Refused(401, NOT_AUTHORIZED)
            if abs(now - sent) * 1000 > self.clock_skew_ms:
                raise Refused(401, NOT_AUTHORIZED)
        found = self.lookup(key_id, alg)
        if found is None:
            raise Refused(401, NOT_AUTHORIZED)
        secret, mac = found
        raw = percent_decode(sig)
        if raw is None or len(raw) > 96:
            raise Refused(401, NOT_AUTHORIZED)
        provided = b64decode(raw)
        if provided is None:
            raise Refused(401, NOT_AUTHORIZED)
        mac.update("\n".join(lines).encode())
        if not hmac.compare_digest(mac.digest(), provided):
            raise Refused(401, NOT_AUTHORIZED)
        return key_id, secret

    def handle(self, obj):
        now = time.time()
        try:
            key_id, secret = self.check(obj.request, now)
        except Refused as r:
            ro = obj.request.return_overrides
            ro.response_code = r.code
            ro.response_error = r.message
            ro.response_body = ""
            return
        s = obj.session
        s.CopyFrom(self.session)
        s.hmac_enabled = True
        s.hmac_secret = secret
        s.last_updated = str(int(now))
        if self.id_extractor_ttl_s > 0:
            s.id_extractor_deadline = int(now) + self.id_extractor_ttl_s
        obj.metadata["token"] = key_id


class Dispatcher:
    """Routes an Object to the middleware named by its hook (`Name` or `Name:instance`), with
    the section of `spec["config_data"]` (first `Name:instance`, then `Name`), each distinct
    config_data parsed once."""

    def __init__(self, store=None):
        self.store = store
        self.instances = {}

    def middleware(self, obj):
        if obj.hook_type != pb.CustomKeyCheck or obj.hook_name.split(":", 1)[0] != NAME:
            raise LookupError("no middleware for this hook")
        key = (obj.hook_name, obj.spec.get("config_data", ""))
        m = self.instances.get(key)
        if m is None:
            config = json.loads(key[1]) if key[1] else {}
            section = config.get(obj.hook_name, config.get(NAME, {}))
            m = self.instances[key] = HmacSignatureAuth(section, self.store)
        return m

    def dispatch_object(self, obj):
        self.middleware(obj).handle(obj)
        return obj

    def dispatch(self, data):
        """bytes -> protobuf parse -> middleware -> bytes, as an embedded driver does per hook."""
        obj = pb.Object()
        obj.ParseFromString(data)
        self.dispatch_object(obj)
        return obj.SerializeToString()
