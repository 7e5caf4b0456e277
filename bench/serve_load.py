"""Closed-loop HTTP load against ``agent-pipeline serve`` (loopback), for ``bench``'s serve section.

    python -m bench.serve_load --url http://127.0.0.1:PORT --texts FILE --concurrency C --seconds S

``C`` clients (one asyncio task each, keep-alive connections) send ``POST /route`` back to back
for ``S`` seconds (bounded also by ``--max-requests``) and one JSON object is printed: requests,
status counts, transport errors, latency percentiles of the 200s, throughput, whether every 503
carried ``Retry-After``, and per client the model versions seen in order (run-length encoded),
so a champion switch can be checked for failed requests and for clients going back.
Run in its own process so the client's work does not share the bench process's interpreter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

import httpx
import numpy as np


async def run(url: str, texts: list[str], concurrency: int, seconds: float, max_requests: int) -> dict:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    latencies: list[float] = []
    codes: dict[str, int] = {}
    transport_errors: list[str] = []
    retry_after_missing = 0
    versions: list[list[list]] = [[] for _ in range(concurrency)]
    sent = 0
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=url, timeout=30.0, limits=limits) as client:

        async def worker(i: int) -> None:
            nonlocal sent, retry_after_missing
            k = i
            while time.perf_counter() < deadline and sent < max_requests:
                sent += 1
                text = texts[k % len(texts)]
                k += concurrency
                t0 = time.perf_counter()
                try:
                    resp = await client.post("/route", json={"text": text})
                except httpx.HTTPError as exc:
                    transport_errors.append(f"{type(exc).__name__}: {exc}"[:200])
                    continue
                elapsed = time.perf_counter() - t0
                codes[str(resp.status_code)] = codes.get(str(resp.status_code), 0) + 1
                if resp.status_code == 200:
                    latencies.append(elapsed)
                    v = resp.json()["model_version"]
                    runs = versions[i]
                    if runs and runs[-1][0] == v:
                        runs[-1][1] += 1
                    else:
                        runs.append([v, 1])
                elif resp.status_code == 503 and "retry-after" not in resp.headers:
                    retry_after_missing += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
    lat = np.array(latencies) * 1000.0
    ok = codes.get("200", 0)
    return {
        "concurrency": concurrency,
        "seconds": wall,
        "requests": sent,
        "codes": codes,
        "transport_errors": len(transport_errors),
        "transport_error_examples": transport_errors[:3],
        "ok_per_s": ok / wall if wall else 0.0,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else float("nan"),
        "retry_after_missing": retry_after_missing,
        "versions": versions,
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="python -m bench.serve_load")
    p.add_argument("--url", required=True)
    p.add_argument("--texts", required=True, help="a file with one request text per line")
    p.add_argument("--concurrency", type=int, required=True)
    p.add_argument("--seconds", type=float, required=True)
    p.add_argument("--max-requests", type=int, default=200_000)
    args = p.parse_args(argv)
    if not args.url.startswith(("http://127.0.0.1", "http://localhost")):
        p.error("loopback only: --url must be http://127.0.0.1:PORT")
    texts = [t for t in open(args.texts, encoding="utf-8").read().splitlines() if t.strip()]
    print(json.dumps(asyncio.run(run(args.url, texts, args.concurrency, args.seconds, args.max_requests))))


if __name__ == "__main__":
    main()
