"""Stand-in for the CERNIQ HTTP API in the podman lab (the real API cannot run here).

Answers every POST with 200 ``{"ok": true}`` and appends one JSON line per request to
``--record`` (method, path, JSON body, and whether a bearer token came: never the token
itself). The collection's escalation (runbook 2.3) and scoring (2.4) calls land here;
scripts/demo.py reads the file for its summary.

    cerniq_lab_api.py --port 8080 --record /var/lib/cerniq-lab-api/requests.jsonl
"""

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def make_handler(record_path):
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's name)
            length = int(self.headers.get('Content-Length') or 0)
            raw = self.rfile.read(length) if length else b''
            try:
                body = json.loads(raw.decode('utf-8')) if raw else None
            except ValueError:
                body = raw.decode('utf-8', 'replace')
            entry = dict(method='POST', path=self.path, body=body,
                         bearer=(self.headers.get('Authorization') or '').startswith('Bearer '))
            with lock, open(record_path, 'a') as handle:
                handle.write(json.dumps(entry, sort_keys=True) + '\n')
            payload = b'{"ok": true}'
            self.send_response(200)
            self.send_header('Content-Type', 'application/json')
            self.send_header('Content-Length', str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    return Handler


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n', 1)[0])
    parser.add_argument('--port', type=int, default=8080)
    parser.add_argument('--record', required=True)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(('0.0.0.0', args.port), make_handler(args.record))
    server.serve_forever()
    return 0


if __name__ == '__main__':
    sys.exit(main())
