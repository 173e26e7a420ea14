"""A coledger client written without any of coledger's code: PyNaCl for ed25519, the
`rfc8785` package for canonical JSON, and the standard library for HTTP.

  python3 client.py keygen
      prints {"seed_hex": ..., "public_key": ...} for a fresh key
  python3 client.py pay URL SEED_HEX FROM TO UNIT AMOUNT_MINOR
      signs a payment intent, POSTs it, then POSTs a copy with the amount changed after
      signing; prints {"paid": {"status", "body"}, "tampered": {"status", "body"}}
"""
import base64
import json
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


def post(url, document):
    request = urllib.request.Request(
        url + "/v1/intents",
        data=json.dumps(document).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return {"status": response.status, "body": json.load(response)}
    except urllib.error.HTTPError as error:
        return {"status": error.code, "body": json.load(error)}


def keygen():
    key = nacl.signing.SigningKey.generate()
    print(json.dumps({"seed_hex": bytes(key).hex(), "public_key": b64url(bytes(key.verify_key))}))


def pay(url, seed_hex, source, target, unit, amount_minor):
    key = nacl.signing.SigningKey(bytes.fromhex(seed_hex))
    intent = {
        "intent_id": str(uuid.uuid4()),
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
    tampered_intent = dict(intent, intent_id=str(uuid.uuid4()))
    tampered_intent["action"] = dict(intent["action"], amount_minor=int(amount_minor) + 1)
    tampered = post(url, {"intent": tampered_intent, "signature": b64url(signature)})
    print(json.dumps({"paid": paid, "tampered": tampered}))


if __name__ == "__main__":
    if sys.argv[1] == "keygen":
        keygen()
    else:
        pay(*sys.argv[2:])
