"""Standalone: ``python -m tests.doubles.dashscope --port 8000`` prints the base URL and serves
until SIGTERM; ``GET /_double/stats`` returns the observation counters as JSON."""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.doubles.dashscope.server import FakeDashScope


async def _serve(args: argparse.Namespace) -> None:
    fake = FakeDashScope(
        api_key=args.api_key,
        pending_seconds=args.pending_seconds,
        running_seconds=args.running_seconds,
        max_concurrent=args.max_concurrent,
        submit_rps=args.submit_rps,
        query_qps=args.query_qps,
    )
    await fake.start(args.port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    print(fake.base_url, flush=True)
    try:
        await stop.wait()
    finally:
        await fake.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Local DashScope aitryon + OSS test double.")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="sk-test-key")
    parser.add_argument("--pending-seconds", type=float, default=0.05)
    parser.add_argument("--running-seconds", type=float, default=0.2)
    parser.add_argument("--max-concurrent", type=int, default=5)
    parser.add_argument("--submit-rps", type=int, default=10)
    parser.add_argument("--query-qps", type=int, default=20)
    asyncio.run(_serve(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
