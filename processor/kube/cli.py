"""``processor kube render`` and ``processor kube invoke``: the command line.

Exit status: 0 when everything rendered (warnings go to stderr), 2 for a
configuration problem (the processor's own message, naming the YAML path) or a bad
flag, 1 for an output file that cannot be written. ``invoke`` exits 0 on a 2xx
answer, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.config import ConfigError
from core.function_set import config_files
from processor.kube.envoy import EnvoyOptions
from processor.kube.render import RenderOptions, render, to_yaml
from processor.kube.workload import DEFAULT_IMAGE

EXIT_CONFIG = 2


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number 1-65535, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="processor kube",
        description="Kubernetes manifests from a function.yaml, and the CronJob helper.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{render,invoke}")
    r = sub.add_parser(
        "render", help="print or write the manifests for one or more function.yaml files",
        description="Renders a ConfigMap (function.yaml, platform.yaml, small handler code), "
                    "a Deployment or Job, Services, an HPA or KEDA ScaledObject, kube-mode "
                    "CronJobs and the Envoy side of an extproc trigger. Warnings (keys not "
                    "rendered) go to stderr.")
    r.add_argument("--config", action="append", required=True, metavar="FILE",
                   help="a function.yaml, or a directory of */function.yaml; repeat for "
                        "several functions (one set of objects each)")
    r.add_argument("--platform-config", metavar="FILE", default=None,
                   help="Nuclio platform.yaml put in the ConfigMap (health, metrics, logger, "
                        "cronTriggerCreationMode); default: built-in defaults")
    r.add_argument("--function-dir", metavar="DIR", default=None,
                   help="where the handler module is (default: the config's folder)")
    r.add_argument("--image", default=None,
                   help=f"processor image (default: spec.image, else {DEFAULT_IMAGE})")
    r.add_argument("--namespace", default=None,
                   help="namespace of every object (default: metadata.namespace)")
    r.add_argument("-o", "--output", default="-", metavar="DIR|-",
                   help="'-' prints one YAML stream (default); a directory gets "
                        "<function>.yaml per function")
    r.add_argument("--code-in-image", action="store_true",
                   help="the handler code is baked into the image: do not look for it or "
                        "put it in the ConfigMap")
    r.add_argument("--no-keda", dest="keda", action="store_false",
                   help="for the NATS async backend render an HPA instead of a KEDA "
                        "ScaledObject (KEDA must be installed for the ScaledObject)")
    r.add_argument("--envoy", choices=["none", "snippet", "sidecar"], default="snippet",
                   help="extproc functions: 'snippet' (default) renders envoy.yaml in a "
                        "ConfigMap, 'sidecar' also runs Envoy in the pod, 'none' neither")
    r.add_argument("--envoy-image", default=EnvoyOptions.image,
                   help="Envoy sidecar image (default: %(default)s)")
    r.add_argument("--envoy-port", type=_port, default=EnvoyOptions.port,
                   help="Envoy listener port (default: %(default)s)")
    r.add_argument("--envoy-upstream", default=EnvoyOptions.upstream, metavar="HOST:PORT",
                   help="the app Envoy forwards to (default: %(default)s)")
    r.add_argument("--strict", action="store_true",
                   help="treat warnings as errors (exit 2)")
    i = sub.add_parser(
        "invoke", help="send a cron trigger's event to the function (what kube-mode "
                       "CronJobs run)",
        description="Sends the event of cron trigger TRIGGER in FILE to URL with header "
                    "x-nuclio-invoke-trigger: cron; exit 0 on a 2xx answer, else 1.")
    i.add_argument("--config", required=True, metavar="FILE", help="the function.yaml")
    i.add_argument("--trigger", required=True, help="the cron trigger's key in spec.triggers")
    i.add_argument("--url", required=True, help="base URL of the function's HTTP trigger")
    i.add_argument("--timeout", type=float, default=60.0,
                   help="seconds to wait for the answer (default: %(default)s)")
    return parser


def _render(args: argparse.Namespace) -> int:
    options = RenderOptions(
        image=args.image, namespace=args.namespace, function_dir=args.function_dir,
        code_in_image=args.code_in_image, keda=args.keda,
        envoy=EnvoyOptions(mode=args.envoy, image=args.envoy_image, port=args.envoy_port,
                           upstream=args.envoy_upstream))
    outputs: list[tuple[str, str]] = []
    try:
        for path in config_files(args.config):
            rendered = render(path, args.platform_config, options)
            for warning in rendered.warnings:
                print(f"warning: {path}: {warning}", file=sys.stderr)
            if args.strict and rendered.warnings:
                raise ConfigError(f"{path}: {len(rendered.warnings)} warning(s) with --strict")
            outputs.append((rendered.plan.name, to_yaml(rendered.objects)))
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.output == "-":
        sys.stdout.write("---\n".join(text for _, text in outputs))
        return 0
    try:
        os.makedirs(args.output, exist_ok=True)
        for name, text in outputs:
            with open(os.path.join(args.output, f"{name}.yaml"), "w", encoding="utf-8") as out:
                out.write(text)
    except OSError as exc:
        print(f"cannot write {args.output}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str]) -> None:
    args = _parser().parse_args(argv)
    if args.command == "render":
        sys.exit(_render(args))
    from processor.kube.invoke import invoke

    try:
        sys.exit(invoke(args.config, args.trigger, args.url, args.timeout))
    except ConfigError as exc:
        print(f"Configuration error: {exc}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
