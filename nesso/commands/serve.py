"""`nesso serve`: the OpenAI-compatible server (chat completions with tools and JSON, a chat page at /)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from nesso.commands.model import MODEL_HELP, add_model_options
from nesso.errors import NessoError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="OpenAI-compatible server: chat completions, tool calls, JSON, a chat page")
    p.add_argument("model", nargs="?", default="default", help=MODEL_HELP)
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only; 0.0.0.0 for every interface)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--api-key", default=None,
                   help="require 'Authorization: Bearer KEY' on every request (default: $NESSO_API_KEY if set)")
    p.add_argument("--served-model-name", default=None,
                   help="the model id clients send (default: derived from MODEL, e.g. 'default' or a directory name)")
    p.add_argument("--slots", type=int, default=8, help="how many requests are decoded together (default 8)")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="upper bound on every completion's length (default: what the context window leaves)")
    add_model_options(p)
    p.set_defaults(func=cmd_serve)


def served_name(ref: str) -> str:
    path = Path(ref)
    if ref != "default" and (path.is_dir() or path.suffix == ".gguf"):
        return path.stem if path.suffix == ".gguf" else path.resolve().name
    return ref


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from nesso.server.app import create_app
    except ModuleNotFoundError as e:
        raise NessoError(f"nesso serve needs {e.name}: pip install fastapi uvicorn") from None
    from nesso.commands.model import load_for_inference
    from nesso.engine import Engine

    if not 0 < args.port < 65536:
        raise NessoError(f"--port must be between 1 and 65535 (got {args.port})")
    if args.slots < 1:
        raise NessoError(f"--slots must be at least 1 (got {args.slots})")
    if args.max_tokens is not None and args.max_tokens < 1:
        raise NessoError(f"--max-tokens must be at least 1 (got {args.max_tokens})")
    _check_port_free(args.host, args.port)  # before the model loads: fail fast on a taken port
    api_key = args.api_key if args.api_key is not None else os.environ.get("NESSO_API_KEY") or None
    name = args.served_model_name or served_name(args.model)
    loaded = load_for_inference(args)
    app = create_app(Engine(loaded.model, loaded.tokenizer), name, aliases=(args.model,), api_key=api_key,
                     slots=args.slots, max_tokens_cap=args.max_tokens)
    where = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    print(f"nesso serve — {loaded.source} as {name!r}; {args.slots} slots; "
          f"{'API key required' if api_key else 'no API key'}")
    print(f"  OpenAI base_url: {where}/v1    chat page: {where}/    spec: {where}/openapi.json")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _check_port_free(host: str, port: int) -> None:
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise NessoError(f"--host {host!r} is not an address this machine can bind: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(address)
        except OSError as e:
            raise NessoError(f"cannot listen on {host}:{port}: {e.strerror or e} (is another server running? "
                             "pick another --port)") from None
