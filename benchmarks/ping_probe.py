"""What another Redis client sees during a run: a separate process doing PING round trips.

A thread of the benchmark process would measure its own waits for the GIL (the benchmark also
watches the module process with psutil), so the probe is a process of its own, started before
the run and stopped after it::

    with PingProbe(port) as probe:
        run()
    probe.worst_ms, probe.p99_ms, probe.pings
"""

import subprocess
import sys

# PING round trips 0.5 ms apart until stdin says stop (at least one: a run shorter than the probe's
# first round trip, stop already waiting, still has a sample); prints the count, the worst and the p99 (ms).
PROBE = r'''
import select, socket, sys, time
sock = socket.create_connection(('127.0.0.1', int(sys.argv[1])))
sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
samples = []
sys.stdout.write('ready\n')
sys.stdout.flush()
while True:
    start = time.perf_counter()
    sock.sendall(b'PING\r\n')
    data = b''
    while not data.endswith(b'\r\n'):
        data += sock.recv(64)
    samples.append(time.perf_counter() - start)
    if select.select([sys.stdin], [], [], 0)[0]:
        break
    time.sleep(0.0005)
samples.sort()
print('%d %.3f %.3f' % (len(samples), samples[-1] * 1000, samples[int(len(samples) * 0.99) - 1] * 1000))
'''


class PingProbe(object):
    def __init__(self, port):
        self.port = port
        self.proc = None
        self.pings, self.worst_ms, self.p99_ms = 0, None, None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, '-c', PROBE, str(self.port)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout.readline().strip() == 'ready'
        return self

    def stop(self):
        self.proc.stdin.write('stop\n')
        self.proc.stdin.flush()
        pings, worst, p99 = self.proc.stdout.readline().split()
        self.proc.wait()
        self.pings, self.worst_ms, self.p99_ms = int(pings), float(worst), float(p99)
        return self

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
