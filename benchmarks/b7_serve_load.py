"""B7 (service) — prediction latency and throughput of `owlearn serve` under concurrent clients.

Starts the real server (`python -m owlearn serve`, its own process) on 127.0.0.1. This process is the
load generator: N client threads, each with one keep-alive HTTP/1.1 socket, send PNG uploads of
MNIST-10k digits (multipart, as the page's upload does) back to back, a fixed number in all, and stop
by themselves. Each client sends its next request as soon as its previous answer arrives (closed loop,
no think time), so the server always has N requests in flight. After a third of the requests a class
is taught (POST /api/classes) while the predictions go on. A short warm-up precedes the measurement.

Reported: predictions/s, p50/p99/max latency, errors, whether every request got its answer, the classes
before and after (the taught one added, none lost), whether the answers equal the model's own offline
predictions, and the CPU seconds of server and client (the client must not be the bottleneck).

python benchmarks/b7_serve_load.py [--quick] [--clients 16] [--requests 4000] [--model FILE.owl]
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np
from PIL import Image

from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.model import OwlModel
from owlearn.serve.inference import ImageJob, ImageLimits, predict_jobs
from owlearn.train import TrainConfig

from common import ROOT, SHARED_DATA, base_parser, write_results

TOKEN = "load-test-token"
TAUGHT = "inverted"
WORK = ROOT / "artifacts" / "b7-serve"


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class _Connection:
    """One keep-alive HTTP/1.1 connection sending prepared requests: a few microseconds of Python per request
    (http.client spends ~0.4 ms of CPU on each), so the load generator leaves the 2 cores to the server."""

    def __init__(self, port: int, timeout: float = 30):
        self.port, self.timeout, self.sock, self.buf = port, timeout, None, b""

    def exchange(self, request: bytes) -> tuple[int, bytes]:
        if self.sock is None:
            self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.buf = b""
        try:
            self.sock.sendall(request)
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                self.buf += self._recv()
            head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
            status = int(head.split(" ", 2)[1])
            length = next((int(line.split(":", 1)[1]) for line in head.split("\r\n")[1:]
                           if line.lower().startswith("content-length:")), None)
            if length is None:
                raise OSError(f"response without Content-Length: {head[:100]!r}")
            while len(self.buf) < length:
                self.buf += self._recv()
            body, self.buf = self.buf[:length], self.buf[length:]
            return status, body
        except (OSError, ValueError, IndexError):
            self.sock.close()
            self.sock = None
            raise

    def _recv(self) -> bytes:
        data = self.sock.recv(65536)
        if not data:
            raise OSError("connection closed by the server")
        return data


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _model(args, fit, calib) -> Path:
    """The served model: ``--model`` copied (teaching rewrites it), or one trained here."""
    path = WORK / "digits.owl"
    WORK.mkdir(parents=True, exist_ok=True)
    if args.model:
        shutil.copyfile(args.model, path)
        return path
    model = build_model(fit, "simplenet", "l2softmax", seed=0)
    train_model(model, fit, config=TrainConfig(epochs=1 if args.quick else 4, batch_size=64, seed=0),
                augment=preset("digits"), progress=False)
    model.fit_detector(fit, calib, "knn", accept_rate=0.99, n_neighbors=3)
    model.fit_gaussian(fit)
    return model.save(path)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.load(r)


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4000, help="predictions in all (fixed; the run stops by itself)")
    p.add_argument("--warmup", type=int, default=200, help="predictions before the measurement (not counted)")
    p.add_argument("--model", type=Path, default=None, help="serve this model file instead of training one")
    p.add_argument("--note", default="", help="a remark stored with the results (e.g. what else ran on the machine)")
    p.add_argument("--server-args", default="", help="extra `owlearn serve` options, e.g. '--batch-wait-ms 1'")
    args = p.parse_args()
    started = time.time()
    if args.quick:
        args.requests, args.warmup = 800, 100
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    train, held = mnist.split(8000)
    calib, fit = train.random_split(500, seed=0)
    path = _model(args, fit, calib)

    images = held.images[:200]
    pngs = [_png(img[0].numpy()) for img in images]
    bodies = [_multipart(png) for png in pngs]
    # what the model itself says about each image (the same PIL path as the server), to check the answers
    offline = OwlModel.load(path)
    jobs = [ImageJob(png, drawing=False) for png in pngs]
    expected = [r["answer"] for r in predict_jobs(offline, jobs, 3, ImageLimits(1 << 22, 1 << 24))]
    classes_before = offline.classes
    del offline

    port = _free_port()
    cmd = [sys.executable, "-m", "owlearn", "serve", str(path), "--port", str(port), *args.server_args.split()]
    server = subprocess.Popen(cmd, env={**os.environ, "OWLEARN_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(600):
            try:
                _get_json(base + "/api/health")
                break
            except OSError:
                if server.poll() is not None:
                    raise RuntimeError("owlearn serve exited before it answered") from None
                time.sleep(0.1)
        requests = [f"POST /api/predict HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {ctype}\r\n"
                    f"Content-Length: {len(body)}\r\n\r\n".encode() + body for body, ctype in bodies]
        load_before = os.getloadavg()[0]
        lock = threading.Lock()
        counter = iter(range(-args.warmup, args.requests))
        teach_at = args.requests // 3
        records: list[tuple[float, float, int, bool]] = []  # start, seconds, image index, answer as expected
        errors: list[str] = []
        mismatches: list[dict] = []
        teach_result: dict = {}

        def teach() -> None:
            examples = ["data:image/png;base64," + base64.b64encode(_png(255 - img[0].numpy())).decode()
                        for img in held.images[-6:]]
            body = json.dumps({"name": TAUGHT, "images": examples, "drawings": False}).encode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            t0 = time.perf_counter()
            conn.request("POST", "/api/classes", body, {"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            text = r.read().decode()
            teach_result.update(status=r.status, start=t0, seconds=time.perf_counter() - t0, body=text[:300])

        teacher = threading.Thread(target=teach)

        def client(seed: int) -> None:
            conn = _Connection(port)
            rng = np.random.default_rng(seed)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if i == teach_at:
                    teacher.start()
                k = int(rng.integers(len(bodies)))
                t0 = time.perf_counter()
                try:
                    status, payload = conn.exchange(requests[k])
                    problem = None if status == 200 else f"HTTP {status}: {payload[:100]!r}"
                except (OSError, ValueError, IndexError) as exc:
                    payload, problem = b"", f"{type(exc).__name__}: {exc}"
                dt = time.perf_counter() - t0
                if i < 0:
                    continue  # warm-up
                got = json.loads(payload)["answer"] if problem is None else None
                same = got == expected[k]
                with lock:
                    records.append((t0, dt, k, same))
                    if problem is None and not same:
                        mismatches.append({"image": k, "expected": expected[k], "got": got, "at": t0})
                    if problem:
                        errors.append(problem)

        threads = [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
        cpu_server0, cpu_client0 = _cpu_seconds(server.pid), _own_cpu_seconds()
        t_start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t_start
        cpu_server, cpu_client = _cpu_seconds(server.pid) - cpu_server0, _own_cpu_seconds() - cpu_client0
        if teacher.is_alive() or teacher.ident is not None:
            teacher.join()
        classes_after = _get_json(base + "/api/model")["classes"]
        health = _get_json(base + "/api/health")
    finally:
        server.terminate()
        server.wait(timeout=30)
    restarted = OwlModel.load(path).classes  # what a restart would serve

    # the measured window starts when the first measured request was sent
    t_first = min(r[0] for r in records)
    wall_measured = max(r[0] + r[1] for r in records) - t_first
    lat = np.asarray([r[1] for r in records]) * 1000
    t_teach0 = teach_result.get("start", float("nan"))
    t_teach1 = t_teach0 + teach_result.get("seconds", float("nan"))
    during = np.asarray([r[1] for r in records if r[0] < t_teach1 and r[0] + r[1] > t_teach0]) * 1000
    results = {
        "requests": len(records), "answered": len(records) - len(errors), "errors": len(errors),
        "error_kinds": sorted(set(errors))[:10], "predictions_per_s": len(records) / wall_measured,
        "p50_ms": float(np.percentile(lat, 50)), "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "wall_s": wall_measured,
        "answers_as_offline": float(np.mean([r[3] for r in records])),
        "mismatches": [m | {"at": round(m["at"] - t_first, 3)} for m in mismatches[:10]],
        # a class taught mid-run may rightly claim a few images: such answers are not errors of batching
        "mismatches_all_taught_class_after_teaching": all(m["got"] == TAUGHT and m["at"] >= t_teach0
                                                          for m in mismatches),
        "teach": {k: v for k, v in teach_result.items() if k != "start"},
        "during_teach": {"requests": len(during),
                         "p99_ms": float(np.percentile(during, 99)) if len(during) else None,
                         "max_ms": float(during.max()) if len(during) else None},
        # where the slowest requests fall (seconds from the first measured request), to tell stalls apart
        "slowest": [{"at_s": round(r[0] - t_first, 3), "ms": round(r[1] * 1000, 1)}
                    for r in sorted(records, key=lambda r: -r[1])[:10]],
        "teach_window_s": [round(t_teach0 - t_first, 3), round(t_teach1 - t_first, 3)],
        "classes_before": classes_before, "classes_after": classes_after, "classes_after_restart": restarted,
        "taught_class_kept": TAUGHT in classes_after and TAUGHT in restarted,
        "no_class_lost": set(classes_before) <= set(classes_after) and set(classes_before) <= set(restarted),
        "mean_batch": health["predictions"] / max(1, health["batches"]),  # warm-up included
        "server_cpu_s": cpu_server, "client_cpu_s": cpu_client, "run_wall_s": wall,
        "load_average_before": load_before, "note": args.note,
    }
    print(json.dumps({k: v for k, v in results.items() if not k.startswith("classes")}))
    config = {"quick": args.quick, "clients": args.clients, "requests": args.requests, "warmup": args.warmup,
              "model": str(args.model) if args.model else "simplenet l2softmax, kNN detector, Gaussian classifier",
              "server": f"owlearn serve {args.server_args}".strip() + " (uvicorn, 1 process, micro-batched, "
                        "1 torch thread unless --threads says otherwise)",
              "client": "closed-loop threads, one keep-alive HTTP/1.1 socket each, prepared requests, "
                        "a separate process"}
    write_results("b7_serve_load", config, results, started, args.out)


if __name__ == "__main__":
    main()
