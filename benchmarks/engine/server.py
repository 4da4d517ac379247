"""The server under test: a real kernel with the engine test nodes, served by uvicorn.

Run as ``python -m benchmarks.engine.server --port P --data DIR`` (the benchmark starts it).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import uvicorn

import comfytavern_testnodes as testnodes
from comfytavern.app import create_app
from comfytavern.cli import WS_PROTOCOL
from comfytavern_testing import make_kernel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument(
        "--ws",
        default="serve",
        choices=["serve", "uvicorn-default"],
        help="serve = the WebSocket settings of `comfytavern serve`; uvicorn-default = uvicorn's own",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    kernel = make_kernel(
        Path(args.data),
        node_packs=[testnodes],
        storage={"projects": None},
        execution={"max_concurrent_workflows": 5, "history_size": 500},
        logging={"level": "WARNING"},
    )
    serve_settings = args.ws == "serve"
    # The same uvicorn settings as `comfytavern serve` (kernel/src/comfytavern/cli.py).
    config = uvicorn.Config(
        create_app(kernel),
        host="127.0.0.1",
        port=args.port,
        log_config=None,
        log_level="warning",
        access_log=False,
        ws=WS_PROTOCOL if serve_settings else "auto",
        ws_per_message_deflate=not serve_settings,
        ws_max_size=16 * 1024 * 1024,
    )
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
