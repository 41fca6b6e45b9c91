"""`saga describe`: a saga type's definition as text, a diagram, JSON or an image."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from orchestrator.api import catalogue
from orchestrator.cli import rendering as view
from orchestrator.cli.diagrams import describe
from orchestrator.cli.options import (
    EXIT_OK,
    EXIT_USAGE,
    definition_modules,
    load_definition_modules,
)
from orchestrator.client import ClientError
from orchestrator.client.sync_client import SyncSagaClient
from orchestrator.core.errors import ConfigurationError, SagaError
from orchestrator.core.registry import Registry

IMAGE_FORMATS = {".png": "png", ".svg": "svg"}
"""Output suffixes `saga describe --output` renders with Graphviz's `dot`."""
GRAPHVIZ_TIMEOUT_SECONDS = 60.0


def render_image(dot_source: str, output: Path) -> None:
    """Draw Graphviz text into a .png or .svg with the `dot` program, which must be on PATH."""
    dot = shutil.which("dot")
    if dot is None:
        raise ConfigurationError(
            f"drawing {output.name} needs Graphviz, and its `dot` program is not on PATH "
            "(install graphviz, e.g. `apt-get install graphviz` or `brew install graphviz`), "
            "or write the diagram as text with --format dot or --format mermaid"
        )
    try:
        subprocess.run(
            [dot, f"-T{IMAGE_FORMATS[output.suffix.lower()]}", "-o", str(output)],
            input=dot_source,
            text=True,
            capture_output=True,
            check=True,
            timeout=GRAPHVIZ_TIMEOUT_SECONDS,
        )
    except subprocess.CalledProcessError as error:
        raise ConfigurationError(f"dot failed to draw {output}: {error.stderr.strip()}") from None
    except subprocess.TimeoutExpired:
        raise ConfigurationError(
            f"dot did not draw {output} within {GRAPHVIZ_TIMEOUT_SECONDS:g}s"
        ) from None


def describe_command(args: argparse.Namespace) -> int:
    """`saga describe`: the definition as registered, so load-time checks apply here too;
    with --address, the catalogue entry of a running orchestrator."""
    try:
        if args.address is not None:
            return describe_remote(args)
        modules = definition_modules(args.definitions)
        registry = Registry(load_definition_modules(args.definitions))
        try:
            definition = (
                registry.latest(args.saga_type)
                if args.version is None
                else registry.get(args.saga_type, args.version)
            )
        except SagaError as error:
            raise ConfigurationError(
                f"{error}; looked in module(s) {', '.join(modules)}. Name yours with "
                "--definitions MODULE (env SAGA_DEFINITIONS), or ask a running orchestrator "
                "with --address HOST:PORT"
            ) from None
        output: Path | None = args.output
        image = output is not None and output.suffix.lower() in IMAGE_FORMATS
        if args.json:
            if image:
                raise ConfigurationError(f"--json writes text; name a .json file, not {output}")
            latest = registry.latest(definition.name) is definition
            document = view.definition_document(definition, latest=latest)
            text = json.dumps(document, indent=2) + "\n"
        else:
            output_format = args.format or ("dot" if image else "text")
            if image and output_format != "dot":
                raise ConfigurationError(
                    f"an image is drawn from Graphviz text; use --format dot (or no --format) "
                    f"for {output}, or write {output_format} text to another file name"
                )
            text = describe(definition, output_format)
        _write(text, output, image)
    except (SagaError, ClientError, ValueError, OSError) as error:
        print(f"saga describe: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK


def _write(text: str, output: Path | None, image: bool) -> None:
    if output is None:
        print(text, end="")
    elif image:
        render_image(text, output)
    else:
        output.write_text(text)


def describe_remote(args: argparse.Namespace) -> int:
    """The server's catalogue entry: as JSON with --json, else as text; diagrams need the
    definition modules, which a catalogue does not carry."""
    if args.format not in (None, "text") or (args.output is not None and not args.json):
        raise ConfigurationError(
            "with --address, describe prints text or --json; draw diagrams from the "
            "definition modules (--definitions)"
        )
    with SyncSagaClient(args.address) as client:
        entries = client.list_saga_types(args.saga_type)
    wanted = [e for e in entries if args.version is None or e.version == args.version]
    if args.version is None:
        wanted = [e for e in wanted if e.latest]
    if not wanted:
        versions = ", ".join(f"v{e.version}" for e in entries)
        raise ConfigurationError(
            f"saga type {args.saga_type!r} has no version {args.version} at {args.address} "
            f"(it has {versions})"
        )
    document = catalogue.definition_document(wanted[0])
    text = (
        json.dumps(document, indent=2) + "\n" if args.json else catalogue.describe_text(wanted[0])
    )
    _write(text, args.output, image=False)
    return EXIT_OK
