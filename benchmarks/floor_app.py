"""The load generator's floor for `make bench-serve`: an ASGI app that answers every request at
once with a small JSON body. Latency measured against it, through the same balancer, is what the
machine, its loopback, HAProxy and k6 add on their own; the service's figures are read next to it."""
import json

BODY = json.dumps({"items": []}).encode()


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:   # drain the request body
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(BODY)).encode())]})
    await send({"type": "http.response.body", "body": BODY})
