"""A coledger client written without any of coledger's code: PyNaCl for ed25519, the
`rfc8785` package for canonical JSON, and the standard library for HTTP.

  python3 client.py keygen
      prints {"seed_hex": ..., "public_key": ...} for a fresh key
  python3 client.py register URL TOKEN ACCOUNT SEED_HEX
      registers the key for ACCOUNT (PUT /v1/accounts/ACCOUNT/key with a proof of
      possession signed by the key), as the operator holding TOKEN; prints the response
  python3 client.py balance URL ACCOUNT SEED_HEX
      logs in as the holder (signs a challenge) and reads the balance with the session
  python3 client.py pay URL SEED_HEX FROM TO UNIT AMOUNT_MINOR
      signs a payment intent, POSTs it, then POSTs a copy with the amount changed after
      signing; prints {"paid": {"status", "body"}, "tampered": {"status", "body"}}
"""
import base64
import json
import os
import sys
import time
import urllib.error
import urllib.request
import uuid

import nacl.signing
import rfc8785

CONTEXT = b"coledger/v1\n"


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def call(method, url, document=None, token=None):
    headers = {}
    data = None
    if document is not None:
        data = json.dumps(document).encode()
        headers["Content-Type"] = "application/json"
    if token is not None:
        headers["Authorization"] = "Bearer " + token
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {"status": response.status, "body": json.load(response)}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": json.load(error)}


def post(url, document):
    return call("POST", url + "/v1/intents", document)


def register(url, token, account, seed_hex):
    key = nacl.signing.SigningKey(bytes.fromhex(seed_hex))
    public = b64url(bytes(key.verify_key))
    proof = key.sign(("coledger/v1/key\n%s\n%s" % (account, public)).encode()).signature
    document = {"public_key": public, "proof": b64url(proof)}
    print(json.dumps(call("PUT", "%s/v1/accounts/%s/key" % (url, account), document, token)))


def balance(url, account, seed_hex):
    key = nacl.signing.SigningKey(bytes.fromhex(seed_hex))
    challenge = call("POST", url + "/v1/sessions/challenge", {"account_id": account})["body"]["challenge"]
    signed = key.sign(("coledger/v1/session\n%s\n%s" % (account, challenge)).encode()).signature
    session = call(
        "POST",
        url + "/v1/sessions",
        {"account_id": account, "challenge": challenge, "signature": b64url(signed)},
    )
    token = session["body"]["token"]
    print(json.dumps(call("GET", "%s/v1/accounts/%s/balance" % (url, account), None, token)))


def keygen():
    key = nacl.signing.SigningKey.generate()
    print(json.dumps({"seed_hex": bytes(key).hex(), "public_key": b64url(bytes(key.verify_key))}))


def intent_id():
    """A time-ordered (version 7) UUID: the ledger's index of intent ids takes these in order,
    where random (version 4) ones would each dirty an index page of their own."""
    ms = time.time_ns() // 1_000_000
    raw = bytearray(ms.to_bytes(6, "big") + os.urandom(10))
    raw[6] = (raw[6] & 0x0F) | 0x70
    raw[8] = (raw[8] & 0x3F) | 0x80
    return str(uuid.UUID(bytes=bytes(raw)))


def pay(url, seed_hex, source, target, unit, amount_minor):
    key = nacl.signing.SigningKey(bytes.fromhex(seed_hex))
    intent = {
        "intent_id": intent_id(),
        "not_after": int(time.time()) + 300,
        "signer": b64url(bytes(key.verify_key)),
        "action": {
            "type": "payment",
            "from": source,
            "to": target,
            "unit": unit,
            "amount_minor": int(amount_minor),
        },
    }
    signature = key.sign(CONTEXT + rfc8785.dumps(intent)).signature
    paid = post(url, {"intent": intent, "signature": b64url(signature)})
    tampered_intent = dict(intent, intent_id=intent_id())
    tampered_intent["action"] = dict(intent["action"], amount_minor=int(amount_minor) + 1)
    tampered = post(url, {"intent": tampered_intent, "signature": b64url(signature)})
    print(json.dumps({"paid": paid, "tampered": tampered}))


if __name__ == "__main__":
    commands = {"keygen": keygen, "register": register, "balance": balance, "pay": pay}
    commands[sys.argv[1]](*sys.argv[2:])
