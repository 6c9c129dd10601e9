"""Label Studio and Argilla: export pending queries to the tools labelling teams use, import their answers.

Both directions go through the store, and answers come back as the same
feedback records the web app and the loop write (:class:`~rlhfkit.types.Comparison`,
``Rating``, ``Label``, ``Ranking``, ``Language``, ``Correction`` of a text), one
per query and annotator: importing the same file twice stores nothing new.

A labelling project has one interface, so an export writes one project per
kind, ``OUT/KIND`` (``OUT/KIND-control`` for the control queries of a kind
that also has text queries in the store):

- :mod:`~rlhfkit.feedback.formats.label_studio`: ``label_config.xml`` and
  ``tasks.json`` per project, the videos of control segments in ``OUT/media``;
- :mod:`~rlhfkit.feedback.formats.argilla`: an Argilla dataset per project in
  Argilla's on-disk layout (``rg.Dataset.from_disk`` loads it), videos embedded
  in the records.

Control segments are shown as WebM videos made by a :data:`MediaRenderer` the
caller passes (``rlhfkit export`` passes the web app's); text needs none.

A bad row stops an import with one :class:`InteropError` naming the file, the
line (Label Studio) or row (Argilla) and the field; nothing is written then:
every row is checked against the store first, and the records are stored in one
transaction.
"""

from rlhfkit.feedback.formats.argilla import export_argilla, import_argilla
from rlhfkit.feedback.formats.label_studio import export_label_studio, import_label_studio
from rlhfkit.feedback.formats.labelling import (
    ExportReport,
    ImportReport,
    InteropError,
    MediaRenderer,
    Scales,
)

__all__ = [
    "ExportReport",
    "ImportReport",
    "InteropError",
    "MediaRenderer",
    "Scales",
    "export_argilla",
    "export_label_studio",
    "import_argilla",
    "import_label_studio",
]
