"""B7 (service) — prediction latency and throughput of `owlearn serve` under concurrent clients.

Starts the real server on 127.0.0.1, then N client threads (keep-alive HTTP connections) send a fixed
number of PNG uploads of MNIST-10k digits in total and stop by themselves. A class is taught in the
middle of the run. Reports throughput, p50/p99 latency, errors, and whether the taught class is there.

python benchmarks/b7_serve_load.py [--quick] [--clients 16] [--requests 4000]
"""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
import uuid

import numpy as np
from PIL import Image

from owlearn.api import build_model, train_model
from owlearn.data.augment import preset
from owlearn.data.sources import load_dataset
from owlearn.train import TrainConfig

from common import ROOT, SHARED_DATA, base_parser, write_results

TOKEN = "load-test-token"


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def _multipart(png: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + png + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = base_parser(__doc__)
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--requests", type=int, default=4000, help="predictions in all (fixed; the run stops by itself)")
    args = p.parse_args()
    started = time.time()
    if args.quick:
        args.requests = 400
    mnist = load_dataset("mnist", "test", data_dir=SHARED_DATA)
    train, held = mnist.split(8000)
    calib, fit = train.random_split(500, seed=0)
    model = build_model(fit, "simplenet", "l2softmax", seed=0)
    train_model(model, fit, config=TrainConfig(epochs=1 if args.quick else 4, batch_size=64, seed=0),
                augment=preset("digits"), progress=False)
    model.fit_detector(fit, calib, "knn", accept_rate=0.99, n_neighbors=3)
    model.fit_gaussian(fit)
    path = model.save(ROOT / "artifacts" / "b7-serve" / "digits.owl")

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "owlearn", "serve", str(path), "--port", str(port)],
                              env={**os.environ, "OWLEARN_TOKEN": TOKEN}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.STDOUT)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        bodies = [_multipart(_png(img[0].numpy())) for img in held.images[:200]]
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(args.requests))
        teach_at = args.requests // 3
        teach_result: dict = {}

        def teach() -> None:
            examples = ["data:image/png;base64," + base64.b64encode(_png(255 - img[0].numpy())).decode()
                        for img in held.images[-6:]]
            body = json.dumps({"name": "inverted", "images": examples, "drawings": False}).encode()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            t0 = time.perf_counter()
            conn.request("POST", "/api/classes", body, {"Content-Type": "application/json",
                                                          "Authorization": f"Bearer {TOKEN}"})
            r = conn.getresponse()
            teach_result.update(status=r.status, seconds=time.perf_counter() - t0, body=r.read().decode()[:200])

        def client(seed: int) -> None:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            rng = np.random.default_rng(seed)
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                if i == teach_at:
                    threading.Thread(target=teach).start()
                body, ctype = bodies[int(rng.integers(len(bodies)))]
                t0 = time.perf_counter()
                try:
                    conn.request("POST", "/api/predict", body, {"Content-Type": ctype})
                    r = conn.getresponse()
                    r.read()
                    ok = r.status == 200
                except OSError as exc:
                    ok, r = False, exc
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if not ok:
                        errors.append(str(getattr(r, "status", r)))

        t0 = time.perf_counter()
        threads = [threading.Thread(target=client, args=(s,)) for s in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        time.sleep(0.5)
        classes = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/api/model"))["classes"]
    finally:
        server.terminate()
        server.wait(timeout=20)
    lat = np.asarray(latencies) * 1000
    results = {
        "requests": len(latencies), "errors": len(errors), "error_kinds": sorted(set(errors))[:10],
        "predictions_per_s": len(latencies) / wall, "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max()), "wall_s": wall,
        "teach": teach_result, "taught_class_kept": "inverted" in classes, "classes_after": classes,
    }
    print(json.dumps({k: v for k, v in results.items() if k != "classes_after"}, indent=2))
    config = {"quick": args.quick, "clients": args.clients, "requests": args.requests, "model": "simplenet l2softmax",
              "server": "owlearn serve (uvicorn, 1 process)", "client": "http.client keep-alive threads, same machine"}
    write_results("b7_serve_load", config, results, started, args.out)


if __name__ == "__main__":
    main()
