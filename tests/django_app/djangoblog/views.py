"""Views that exercise what uwgate must carry between a client and uWSGI.

Each view is small and deterministic, so an integration test can check byte for byte what went
through uwgate in both directions. Nothing here is meant for production.
"""
import hashlib
import os
import time

from django.http import (
    HttpResponse,
    HttpResponseBadRequest,
    HttpResponseNotAllowed,
    JsonResponse,
    StreamingHttpResponse,
)
from django.views.decorators.csrf import csrf_exempt

try:  # Present inside a uWSGI worker only.
    import uwsgi  # type: ignore
except ImportError:  # pragma: no cover - manage.py commands
    uwsgi = None

HOME = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>uwgate demo: Django</title>
<link rel="stylesheet" href="/static/css/site.css">
</head>
<body>
<h1>Django behind uwgate</h1>
<p>This page comes from Django through uWSGI; its stylesheet is served by uwgate itself.</p>
<ul>
<li><a href="/environ">/environ</a>: the WSGI environ as Django sees it</li>
<li><a href="/stream?size=3000000">/stream?size=3000000</a>: a streamed response without Content-Length</li>
<li><a href="/admin/">/admin/</a>: the Django admin</li>
</ul>
</body>
</html>
"""

# The test harness's pattern (tests/common/mod.rs `pattern`): byte i is
# ((i % 251) * 7 + seed) mod 256, xor (i // 251) mod 256. Its period is 251 * 256 bytes.
PERIOD = 251 * 256
_periods = {}


def _period(seed):
    """Two periods of the pattern for `seed`, so any PERIOD-long window is one slice."""
    p = _periods.get(seed)
    if p is None:
        base = bytes(((k * 7 + seed) & 0xFF) for k in range(251))
        one = b"".join(bytes(b ^ x for b in base) for x in range(256))
        p = one + one
        _periods[seed] = p
    return p


def pattern_chunks(size, seed=0, chunk=65536, delay=0.0):
    """Yields `size` bytes of the pattern in pieces of at most `chunk` bytes."""
    doubled = _period(seed)
    chunk = max(1, min(chunk, PERIOD))
    off = 0
    while off < size:
        n = min(chunk, size - off)
        start = off % PERIOD
        yield doubled[start : start + n]
        off += n
        if delay:
            time.sleep(delay)


def _int(request, name, default):
    try:
        return int(request.GET.get(name, default))
    except ValueError:
        return default


def home(request):
    return HttpResponse(HOME)


@csrf_exempt
def environ(request):
    """JSON of everything Django derived from the WSGI environ uwgate's packet produced."""
    data = {
        # Every str value of the environ, as the WSGI server put it (PEP 3333: latin-1 "bytes
        # as str" for paths and headers).
        "environ": {k: v for k, v in request.META.items() if isinstance(v, str)},
        "method": request.method,
        "path": request.path,
        "path_info": request.path_info,
        "script_name": request.META.get("SCRIPT_NAME", None),
        "full_path": request.get_full_path(),
        "absolute_uri": request.build_absolute_uri(),
        "host": request.get_host(),
        "scheme": request.scheme,
        "is_secure": request.is_secure(),
        "GET": {k: request.GET.getlist(k) for k in request.GET},
        "COOKIES": request.COOKIES,
        "headers": dict(request.headers),
        "body_len": len(request.body),
    }
    return JsonResponse(data, json_dumps_params={"ensure_ascii": True, "sort_keys": True})


@csrf_exempt
def upload(request):
    """Length and sha256 of the request body, read in 64 KiB pieces (never whole in memory)."""
    if request.method not in ("POST", "PUT"):
        return HttpResponseNotAllowed(["POST", "PUT"])
    h = hashlib.sha256()
    n = 0
    while True:
        piece = request.read(65536)
        if not piece:
            break
        h.update(piece)
        n += len(piece)
    return JsonResponse(
        {
            "len": n,
            "sha256": h.hexdigest(),
            "content_length": request.META.get("CONTENT_LENGTH"),
            "content_type": request.META.get("CONTENT_TYPE"),
            "transfer_encoding": request.META.get("HTTP_TRANSFER_ENCODING"),
        }
    )


def stream(request):
    """`size` bytes of the pattern, streamed without Content-Length (unless `cl=1`).

    `seed` picks the pattern, `chunk` the size of each write, `delay` seconds between writes.
    """
    size = _int(request, "size", 3_000_000)
    seed = _int(request, "seed", 0) & 0xFF
    chunk = _int(request, "chunk", 65536)
    try:
        delay = float(request.GET.get("delay", "0"))
    except ValueError:
        delay = 0.0
    resp = StreamingHttpResponse(
        pattern_chunks(size, seed, chunk, delay), content_type="application/octet-stream"
    )
    if request.GET.get("cl") == "1":
        resp["Content-Length"] = str(size)
    return resp


def slow(request):
    """Answers after `secs` seconds (a view slower than uwsgi_read_timeout)."""
    try:
        secs = float(request.GET.get("secs", "5"))
    except ValueError:
        return HttpResponseBadRequest("secs")
    time.sleep(secs)
    return HttpResponse("slept %s\n" % secs, content_type="text/plain")


def crash(request):
    """Declares `declared` bytes, sends `sent` of them, then the worker process dies (os._exit),
    as a worker killed by the OOM killer or harakiri mid-response."""
    declared = _int(request, "declared", 1_000_000)
    sent = _int(request, "sent", 100_000)

    def body():
        yield from pattern_chunks(sent)
        time.sleep(0.2)
        os._exit(3)

    resp = StreamingHttpResponse(body(), content_type="application/octet-stream")
    resp["Content-Length"] = str(declared)
    return resp


def pid(request):
    """Which uWSGI instance and worker answered."""
    return JsonResponse(
        {
            "pid": os.getpid(),
            "worker_id": uwsgi.worker_id() if uwsgi else 0,
            "instance": os.environ.get("UWGATE_TEST_INSTANCE", ""),
        }
    )


def protected(request):
    """A protected download: Django checks, uwgate sends the file (X-Accel-Redirect)."""
    resp = HttpResponse(b"", content_type="text/plain")
    resp["X-Accel-Redirect"] = request.GET.get("to", "/protected/secret.txt")
    resp["Content-Disposition"] = 'attachment; filename="secret.txt"'
    return resp


def big_headers(request):
    """`n` headers `X-Big-<i>` of `size` bytes each."""
    n = _int(request, "n", 100)
    size = _int(request, "size", 100)
    resp = HttpResponse("big headers\n", content_type="text/plain")
    for i in range(n):
        resp["X-Big-%d" % i] = ("%d-" % i + "v" * size)[:size]
    return resp


@csrf_exempt
def respond(request):
    """A response shaped by the query: `status`, `reason`, `body`, repeated `h=Name:Value`
    headers and repeated `cookie=name=value` Set-Cookies."""
    status = _int(request, "status", 200)
    body = request.GET.get("body", "")
    resp = HttpResponse(body, status=status, reason=request.GET.get("reason") or None)
    for h in request.GET.getlist("h"):
        name, _, value = h.partition(":")
        resp[name] = value
    for c in request.GET.getlist("cookie"):
        name, _, value = c.partition("=")
        resp.set_cookie(name, value)
    return resp

