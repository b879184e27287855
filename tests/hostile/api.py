"""A stand-in for the CERNIQ HTTP API (HITL escalations, scoring) for the hostile layer.

The CERNIQ API cannot run here (it is the pipeline's own service), so this small local HTTP server on
127.0.0.1 answers the two calls the modules make, following a policy drawn per example (accept all,
reject all, reject every other call, reject one task) and records each call with the status it got:
the oracle counts the *accepted* calls, which are effects the database must record exactly once.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

POLICIES = ('accept', 'accept', 'reject_all', 'reject_every_other', 'reject_first', 'bad_json')


class ApiStandIn:

    def __init__(self):
        self.calls = []          # (path, body, status)
        self.policy = 'accept'
        self._lock = threading.Lock()
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                raw = self.rfile.read(int(self.headers.get('Content-Length') or 0))
                try:
                    body = json.loads(raw.decode('utf-8'))
                except ValueError:
                    body = raw.decode('utf-8', 'replace')
                with stand_in._lock:
                    status = stand_in._status(len(stand_in.calls))
                    stand_in.calls.append((self.path, body, status))
                answer = b'{"ok": true}' if status < 300 else b'{"error":\n"unavailable"}'
                if stand_in.policy == 'bad_json':
                    answer = b'<html>\n\x00</html>'
                self.send_response(status)
                self.send_header('Content-Length', str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.url = 'http://127.0.0.1:%d' % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _status(self, index):
        if self.policy == 'reject_all' or (self.policy == 'reject_every_other' and index % 2) \
                or (self.policy == 'reject_first' and index == 0):
            return 503
        return 200

    def reset(self, policy):
        with self._lock:
            self.calls = []
            self.policy = policy

    def accepted(self):
        with self._lock:
            return [(path, body) for path, body, status in self.calls if status < 300]

    def close(self):
        self.server.shutdown()
        self.server.server_close()
