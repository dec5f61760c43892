"""`ovframe serve`: a web page (Gradio) where a person segments a picture with the words they type.

The recipe's pipeline is built once, as a Segmenter, and segments one example before the page opens, so
every request finds it warm. A request is a picture (uploaded, pasted, or one of the shipped examples)
and a vocabulary (comma-separated class names); the page shows the prediction over the picture with a
legend (the picture ovframe.results draws), the classes found with their colours and shares, and a
table of shares and scores. A vocabulary or a picture that cannot be used gets its reason on the page,
never a traceback. The same request is an HTTP API (`/segment`, e.g. with gradio_client).

Nothing leaves the machine: Gradio's analytics and version check are off, no share link is made, and
the page uses the system's fonts. The server listens on 127.0.0.1 unless --host says otherwise.
Gradio is imported only here (the `demo` extra).
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from .errors import BadInput, OvframeError

if TYPE_CHECKING:
    from PIL import Image

    from .api import Segmenter
    from .results import SegmentationResult

EXAMPLES_DIR = Path(__file__).resolve().parent / "serve_examples"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 7860
API_NAME = "segment"
TABLE_HEADERS = ["class", "share (%)", "score"]
INSTALL_HINT = "ovframe serve needs Gradio: pip install 'ovframe[demo]'"
log = logging.getLogger("ovframe")


@dataclass(frozen=True)
class Example:
    image: Path
    vocabulary: str
    caption: str = ""


def examples() -> list[Example]:
    """The shipped example pictures (synthetic scenes; scripts/make_serve_examples.py) with a vocabulary each."""
    manifest = EXAMPLES_DIR / "examples.json"
    if not manifest.is_file():
        return []
    return [Example(EXAMPLES_DIR / e["image"], e["vocabulary"], e.get("caption", ""))
            for e in json.loads(manifest.read_text(encoding="utf-8"))]


@dataclass
class PageResult:
    """What one request shows: the overlay, the legend (HTML), the table rows and a status line."""

    overlay: "Image.Image | None" = None
    legend: str = ""
    rows: list[list[Any]] = field(default_factory=list)
    status: str = ""

    def outputs(self) -> tuple[Any, str, list[list[Any]], str]:
        return self.overlay, self.legend, self.rows, self.status


def legend_html(result: "SegmentationResult") -> str:
    """The classes found, largest first: a swatch of each one's colour (the overlay's), its name and share."""
    from .visualize import class_colours

    colours = class_colours(result.class_names)
    items = []
    for segment in result.segments:
        r, g, b = (int(c) for c in colours[segment.label_id])
        items.append(
            f'<li class="ovf-class"><span class="ovf-swatch" style="background: rgb({r}, {g}, {b})"></span>'
            f'<span class="ovf-name">{html.escape(segment.label)}</span>'
            f'<span class="ovf-share">{100 * result.shares[segment.label]:.1f} %</span></li>'
        )
    absent = [n for n in result.class_names if result.segment(n) is None]
    note = f'<p class="ovf-absent">not found: {html.escape(", ".join(absent))}</p>' if absent else ""
    return f'<ul class="ovf-legend">{"".join(items)}</ul>{note}'


def table_rows(result: "SegmentationResult") -> list[list[Any]]:
    """[class, share in %, mean probability of its pixels] per class found, largest first."""
    return [
        [s.label, round(100 * result.shares[s.label], 2), "" if s.score is None else round(s.score, 3)]
        for s in result.segments
    ]


def segment_page(segmenter: "Segmenter", image: Any, vocabulary: str | None) -> PageResult:
    """One request, as the page shows it. Whatever the user must fix comes back as the status, in words."""
    if image is None:
        return PageResult(status="**Upload a picture** (or pick an example below), then press Segment.")
    if not (vocabulary or "").strip():
        return PageResult(status='**Type a vocabulary**: the class names to look for, separated by commas, e.g. "red star, lava".')
    from .api import vocabulary_names

    start = time.perf_counter()
    try:
        given = vocabulary_names(vocabulary)
        result = segmenter(image, given)
    except BadInput as e:
        return PageResult(status=f"**Cannot segment this:** {html.escape(str(e), quote=False)}")
    except Exception as e:  # noqa: BLE001 - the page must stay usable; the log keeps the traceback
        log.exception("ovframe serve: a request failed")
        kind = "" if isinstance(e, OvframeError) else f"{type(e).__name__}: "
        return PageResult(status=f"**Segmentation failed:** {html.escape(kind + str(e), quote=False)} (the server's log has the details)")
    seconds = time.perf_counter() - start
    h, w = result.size
    status = (f"Segmented {w} x {h} px with {len(result.class_names)} classes in {seconds:.2f} s: "
              f"{len(result.segments)} found.")
    shape = getattr(image, "shape", None)  # the page gives arrays [H, W, C]
    if shape is not None and tuple(shape[:2]) != (h, w):
        status += (f" The picture ({shape[1]} x {shape[0]} px) was shrunk to fit the limit of "
                   f"{segmenter.max_image_pixels:,} pixels (-o task.max_image_pixels=N).")
    if len(result.class_names) > len(given):
        status += ' One name was given, so "others" was added as a second class.'
    return PageResult(result.overlay(show_input=False), legend_html(result), table_rows(result), status)


CSS = """
.ovf-legend { list-style: none; padding: 0; margin: 0; }
.ovf-class { display: flex; align-items: center; gap: 0.5em; margin: 0.2em 0; }
.ovf-swatch { display: inline-block; width: 1.1em; height: 1.1em; border-radius: 3px; border: 1px solid #0004; }
.ovf-share { margin-left: auto; font-variant-numeric: tabular-nums; }
.ovf-absent { opacity: 0.7; margin-top: 0.5em; }
"""


def _theme(gr: Any) -> Any:
    """Gradio's default look with the system's fonts (its default fetches Google Fonts)."""
    return gr.themes.Default(
        font=["ui-sans-serif", "system-ui", "Helvetica", "Arial", "sans-serif"],
        font_mono=["ui-monospace", "SFMono-Regular", "Menlo", "monospace"],
    )


def build_app(segmenter: "Segmenter", title: str) -> Any:
    """The Gradio Blocks of the page (not launched)."""
    import gradio as gr

    shipped = examples()
    with gr.Blocks(title=f"ovframe: {title}", analytics_enabled=False) as app:
        gr.Markdown(
            f"# ovframe: open-vocabulary segmentation\n"
            f"Recipe **{html.escape(title)}** ({html.escape(_components(segmenter))}). Give a picture and the names "
            f"of the classes to look for; every pixel gets one of them."
        )
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Picture", type="numpy", image_mode="RGB", sources=["upload", "clipboard"], elem_id="ovf-image")
                vocabulary = gr.Textbox(
                    label="Vocabulary", placeholder="comma-separated class names, e.g. red star, orange heart, lava",
                    elem_id="ovf-vocabulary",
                )
                button = gr.Button("Segment", variant="primary", elem_id="ovf-segment")
            with gr.Column():
                overlay = gr.Image(label="Prediction", type="pil", interactive=False, format="png", elem_id="ovf-overlay")
                status = gr.Markdown(elem_id="ovf-status")
                legend = gr.HTML(elem_id="ovf-legend")
                table = gr.Dataframe(headers=TABLE_HEADERS, label="Classes found", type="array", interactive=False, elem_id="ovf-table")

        def segment(picture: Any, words: str | None) -> tuple[Any, str, list[list[Any]], str]:
            return segment_page(segmenter, picture, words).outputs()

        outputs = [overlay, legend, table, status]
        button.click(segment, [image, vocabulary], outputs, api_name=API_NAME, concurrency_limit=1)
        vocabulary.submit(segment, [image, vocabulary], outputs, api_visibility="private", concurrency_limit=1)
        if shipped:
            gr.Examples(
                [[str(e.image), e.vocabulary] for e in shipped], [image, vocabulary], outputs, fn=segment,
                run_on_click=True, cache_examples=False, elem_id="ovf-examples",
                label="Examples: scenes of the synthetic world, which the shipped demo models know (click one to segment it)",
            )
    return app


def _components(segmenter: "Segmenter") -> str:
    sections = segmenter.recipe.sections
    return ", ".join(f"{kind}: {sections[kind].spec.name}" for kind in ("proposals", "classifier", "adapter", "fuser") if kind in sections)


def import_gradio() -> Any:
    """Gradio, with its analytics and version check switched off before it loads."""
    os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
    try:
        import gradio as gr
    except ImportError:
        raise BadInput(INSTALL_HINT) from None
    return gr


def serve(
    recipe: str = "demo", *, overrides: Sequence[str] = (), host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
    device: str | None = None, ready: Any = print,
) -> None:
    """Build the recipe's pipeline, warm it on an example, and serve the page until interrupted."""
    import_gradio()
    from .api import Segmenter

    if not 0 < port < 65536:
        raise BadInput(f"--port must be between 1 and 65535, got {port}")
    segmenter = Segmenter(recipe, overrides=overrides, device=device)
    shipped = examples()
    if shipped:  # the first request should not pay for what loads lazily (text embeddings, caches)
        segmenter(str(shipped[0].image), shipped[0].vocabulary)
    app = build_app(segmenter, segmenter.recipe.name)
    try:
        app.launch(
            server_name=host, server_port=port, share=False, quiet=True, prevent_thread_lock=True,
            allowed_paths=[str(EXAMPLES_DIR)], footer_links=["api"], theme=_theme(__import__("gradio")), css=CSS,
        )
    except OSError as e:
        raise BadInput(f"cannot listen on {host}:{port} ({e}); choose another --port") from None
    shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    if host not in ("127.0.0.1", "localhost", "::1"):
        ready(f"ovframe serve: listening on {host}, reachable from other machines", flush=True)
    ready(f"ovframe serve: {segmenter.recipe.name} ready at http://{shown}:{port}/ (Ctrl+C stops it)", flush=True)
    try:
        while app.is_running:
            time.sleep(0.2)
    except KeyboardInterrupt:
        ready("ovframe serve: stopped", flush=True)
    finally:
        app.close()


__all__ = ["API_NAME", "Example", "PageResult", "build_app", "examples", "legend_html", "segment_page", "serve"]
