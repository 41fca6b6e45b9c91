"""`saga describe`: a saga type's definition as text, a diagram, JSON or an image."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

from orchestrator import console as view
from orchestrator.cli.options import EXIT_OK, EXIT_USAGE, load_definition_modules
from orchestrator.describe import describe
from orchestrator.errors import ConfigurationError, SagaError
from orchestrator.registry import Registry

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
    """`saga describe`: the definition as registered, so load-time checks apply here too."""
    try:
        registry = Registry(load_definition_modules(args.definitions))
        definition = (
            registry.latest(args.saga_type)
            if args.version is None
            else registry.get(args.saga_type, args.version)
        )
        output: Path | None = args.output
        image = output is not None and output.suffix.lower() in IMAGE_FORMATS
        if args.json:
            if image:
                raise ConfigurationError(f"--json writes text; name a .json file, not {output}")
            text = json.dumps(view.definition_document(definition), indent=2) + "\n"
        else:
            output_format = args.format or ("dot" if image else "text")
            if image and output_format != "dot":
                raise ConfigurationError(
                    f"an image is drawn from Graphviz text; use --format dot (or no --format) "
                    f"for {output}, or write {output_format} text to another file name"
                )
            text = describe(definition, output_format)
        if output is None:
            print(text, end="")
        elif image:
            render_image(text, output)
        else:
            output.write_text(text)
    except (SagaError, ValueError, OSError) as error:
        print(f"saga describe: {error}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_OK
