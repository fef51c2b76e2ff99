"""``umedsam ui``: the box-prompting web app in the browser, served from this computer."""

from __future__ import annotations

import argparse
import sys

from umedsam.inference.engines import ENGINES
from umedsam.models.cards import DEFAULT_MODEL


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``umedsam ui``."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="interface to bind (default 127.0.0.1: only this computer can connect; "
        "0.0.0.0 exposes the app to the network)",
    )
    parser.add_argument("--port", type=int, default=7860, help="TCP port (default 7860)")
    parser.add_argument(
        "--max-upload-mb", type=float, default=256.0, help="largest upload accepted (MiB)"
    )
    parser.add_argument(
        "--max-image-mb",
        type=float,
        default=1024.0,
        help="largest decoded image or volume accepted (MiB)",
    )
    parser.add_argument(
        "--max-sessions", type=int, default=8, help="open images kept in memory at once"
    )
    parser.add_argument(
        "--model", default=DEFAULT_MODEL, help=f"registered model name (default {DEFAULT_MODEL})"
    )
    parser.add_argument("--checkpoint", help="weights file (default: the bundled weights)")
    parser.add_argument(
        "--engine",
        default="auto",
        choices=ENGINES,
        help="inference engine, as for umedsam predict (default auto: OpenVINO, then ONNX "
        "Runtime, when installed, else PyTorch)",
    )
    parser.add_argument("--no-examples", action="store_true", help="hide the bundled examples")
    parser.add_argument(
        "--workdir",
        help="folder where every image's work is saved after each change (default: the "
        "umedsam cache folder's ui-work); reopening an image offers to restore it",
    )
    parser.add_argument("--threads", type=int, help="engine threads (default: the engine's choice)")


def run(args: argparse.Namespace) -> int:
    """Start the server and block until Ctrl+C."""
    from umedsam.errors import MissingExtraError
    from umedsam.ui.app import UIConfig, serve

    try:
        config = UIConfig(
            host=args.host,
            port=args.port,
            max_upload_mb=args.max_upload_mb,
            max_image_mb=args.max_image_mb,
            max_sessions=args.max_sessions,
            model=args.model,
            checkpoint=args.checkpoint,
            engine=args.engine,
            threads=args.threads,
            examples=not args.no_examples,
            workdir=args.workdir,
        )
    except ValueError as err:
        print(f"umedsam ui: {err}", file=sys.stderr)
        return 2
    shown = "localhost" if config.host == "127.0.0.1" else config.host
    if config.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding {config.host}: anyone who can reach this computer can use the app",
            file=sys.stderr,
        )
    print(f"umedsam ui: open http://{shown}:{config.port}/ (Ctrl+C stops)", file=sys.stderr)
    try:
        serve(config)
    except MissingExtraError as err:
        print(f"umedsam ui: {err}", file=sys.stderr)
        return 1
    return 0
