"""``cyclekit serve``: a web page (and HTTP API) for one model or a folder of models."""
from __future__ import annotations

import argparse

from cyclekit.config import CHOICES
from cyclekit.commands._config_args import INFER_PRECISION_HELP

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def register(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve a web page and HTTP API that translate uploaded photos",
        description="Open the printed address in a browser: upload a photo or take a webcam snapshot, "
                    "choose whole-image translation or face swap and the direction, download the PNG. "
                    "Scripts can POST an image to /api/translate (see the README).")
    p.add_argument("--model", "-m", default=None,
                   help="run directory, release folder or exported .onnx file, or a folder of them "
                        "(each offered by name); default: the built-in male <-> female face model, "
                        "which the page opens in face swap mode")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 = every network, "
                        "which needs --allowed-host)")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name or address clients use to reach the server (repeatable). Requests whose "
                        "Host header is not localhost, 127.0.0.1, [::1], the --host address or one of these are "
                        "refused (400), which stops DNS-rebinding pages. Required with --host 0.0.0.0 or ::, "
                        "e.g. --allowed-host 192.168.1.20 --allowed-host photos.lan; '*' accepts any name "
                        "(only behind a proxy that checks it)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch",
                   help="run releases with PyTorch or onnxruntime (exported in memory at start); "
                        ".onnx files always use onnxruntime")
    p.add_argument("--device", choices=CHOICES["device"], default="auto",
                   help="auto: the GPU when CUDA is available, else the CPU")
    p.add_argument("--precision", choices=CHOICES["precision"], default="auto",
                   help=INFER_PRECISION_HELP)
    p.add_argument("--max-upload-mb", type=float, default=20.0, help="largest upload accepted (default 20)")
    p.add_argument("--max-pixels", type=int, default=2048 * 2048,
                   help="largest image accepted, width x height (default 4194304 = 2048x2048)")
    p.add_argument("--max-pending", type=int, default=64,
                   help="requests held at once (reading, waiting or running); more get 503 (default 64)")
    p.add_argument("--workers", type=int, default=1, help="inference threads (default 1; see the README)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = PyTorch's default)")
    p.add_argument("--max-loaded", type=int, default=4, help="translators kept in memory at once (default 4)")
    p.add_argument("--max-connections", type=int, default=128,
                   help="open connections at once, uploading or waiting; more get 503 (default 128)")
    p.add_argument("--upload-idle-timeout", type=float, default=10.0, metavar="S",
                   help="drop an upload that sends nothing for S seconds, answering 408 (default 10)")
    p.add_argument("--upload-timeout", type=float, default=120.0, metavar="S",
                   help="drop an upload not complete after S seconds, however slowly it trickles (default 120)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from cyclekit.errors import ConfigError, require

    for name in ("max_pending", "workers", "max_pixels", "max_loaded", "max_connections"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    for name in ("upload_idle_timeout", "upload_timeout"):
        if not getattr(args, name) > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be a positive number of seconds, "
                              f"got {getattr(args, name)}")
    if args.max_upload_mb <= 0:
        raise ConfigError(f"--max-upload-mb must be positive, got {args.max_upload_mb}")
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port must be 0..65535, got {args.port}")
    wildcard = args.host in ("0.0.0.0", "::", "")
    if wildcard and not args.allowed_host:
        raise ConfigError(f"--host {args.host or '(all)'} listens on every network, so the server cannot tell which "
                          "host names are its own: add --allowed-host NAME for each name or address clients use "
                          "(e.g. --allowed-host 192.168.1.20), or --allowed-host '*' to accept any")
    uvicorn = require("uvicorn", "serve", "the web server")
    from cyclekit.serve.app import bind_socket, create_app, url_of
    from cyclekit.serve.limits import Limits
    from cyclekit.serve.server import uvicorn_config

    from cyclekit.runtime import pick_device

    device = str(pick_device(args.device).type)  # the one device policy
    limits = Limits(max_upload_bytes=int(args.max_upload_mb * 1024 * 1024), max_pixels=args.max_pixels,
                    body_idle_timeout=min(args.upload_idle_timeout, args.upload_timeout),
                    body_timeout=args.upload_timeout, max_connections=args.max_connections)
    hosts = list(args.allowed_host) + ([] if wildcard or args.host in LOOPBACK else [args.host])
    if args.model is None:
        from cyclekit.release import builtin_model

        args.model = str(builtin_model())
    app = create_app(args.model, limits, backend=args.backend, device=device, precision=args.precision,
                     max_pending=args.max_pending, workers=args.workers, threads=args.threads or None,
                     max_loaded=args.max_loaded, allowed_hosts=hosts)
    sock = bind_socket(args.host, args.port)
    url = url_of(sock)
    if args.host in ("0.0.0.0", "::"):  # every interface: this machine reaches it on loopback
        url = url.replace("[::]", "[::1]").replace("0.0.0.0", "127.0.0.1")
    models = ", ".join(app.state.service.store.entries)
    print(f"serving {models} at {url}  (open it in a browser; Ctrl+C to stop)")
    if args.host not in LOOPBACK:
        print(f"warning: listening on {args.host}: anyone who can reach this machine can use the model; "
              "the webcam works only on localhost or over https")
        print(f"accepting requests addressed to: {app.state.hosts.describe()} (add more with --allowed-host)")
    quiet = logging.getLogger().getEffectiveLevel() > logging.INFO
    config = uvicorn_config(app, limits, log_config=None, access_log=not quiet)
    uvicorn.Server(config).run(sockets=[sock])
    return 0
