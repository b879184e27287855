"""A tiny local HTTP server that stands in for the CERNIQ HITL / scoring API in tests.

The real API cannot run here. ``HttpRecorder`` listens on 127.0.0.1 (or ``host``) on a free port in a
thread, records every request (method, path, headers, JSON body) and answers with a
status chosen by the test (queued answers first, then per path, default 200 and ``{"ok": true}``), so tests can
check the shape of what the modules send.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class LocalHttpServer:
    """An HTTP server on ``host`` and a free port, serving ``handler_class`` in a thread while in a ``with``."""

    def __init__(self, handler_class, host='127.0.0.1'):
        self.server = ThreadingHTTPServer((host, 0), handler_class)
        self.url = 'http://%s:%d' % (host, self.server.server_address[1])
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


class HttpRecorder(LocalHttpServer):

    def __init__(self, host='127.0.0.1'):
        self.requests = []
        self.responses = {}   # path -> (status, body dict)
        self.default = (200, {'ok': True})
        self.queued = []      # (status, body) answers used first, one per request, in order
        self._lock = threading.Lock()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                length = int(self.headers.get('Content-Length') or 0)
                raw = self.rfile.read(length) if length else b''
                try:
                    body = json.loads(raw.decode('utf-8')) if raw else None
                except ValueError:
                    body = raw.decode('utf-8', 'replace')
                with recorder._lock:
                    recorder.requests.append(dict(method='POST', path=self.path, headers=dict(self.headers),
                                                  body=body))
                    if recorder.queued:
                        status, answer = recorder.queued.pop(0)
                    else:
                        status, answer = recorder.responses.get(self.path, recorder.default)
                payload = json.dumps(answer).encode('utf-8')
                self.send_response(status)
                self.send_header('Content-Type', 'application/json')
                self.send_header('Content-Length', str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        super().__init__(Handler, host)
