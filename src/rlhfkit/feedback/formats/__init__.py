"""Data formats in and out: preference data sets, and the labelling tools people answer in.

One module per format, each with its readers and writers side by side:

=================== ==============================================================================
module              format
=================== ==============================================================================
``trl``             TRL's *standard* rows ``{"prompt", "chosen", "rejected"}`` (plain text, optional
                    ``"margin"``) and its *conversational* rows (lists of chat messages)
``hh``              Anthropic HH-RLHF transcripts ``{"chosen": "\\n\\nHuman: ...", "rejected": ...}``
``scored``          several scored completions per prompt (UltraFeedback), turned into pairs
``label_studio``    Label Studio projects out (labelling config and tasks), its JSON export back in
``argilla``         Argilla datasets out (its on-disk layout), its saved records back in
=================== ==============================================================================

and what they share: ``common`` (the :class:`PreferenceRecord`, the one
:class:`ImportReport` of every reader and every import into the store, the
errors :class:`DataFormatError` and :class:`InteropError`), ``rows`` (a
preference file read row by row, each bad row named by file, line and field),
``labelling`` (pending queries grouped into labelling projects, videos,
answers checked against the store), ``read`` (the dispatch from a file to
records) and ``store_io`` (preference pairs into the store and out again).

**Preference files** (JSON Lines, one object per line). :func:`read_preferences`
is the one way from a file to records: the format named, or detected from the
first row (:func:`detect_format`). Each answer read becomes one
:class:`PreferenceRecord`; a malformed row raises :class:`DataFormatError`
naming the file, the line and the field, or, with ``skip_bad_rows=True``, is
skipped and counted in the :class:`ImportReport`. Rows held in memory (a
``datasets.Dataset``, a list of dicts) are read with :func:`read_rows`. Every
row of ``"trl"``, ``"trl_conversational"`` and ``"hh"`` files may also carry
``"mu": [mu_chosen, mu_rejected]`` (a tie or a graded label) or ``"mu": null``
(incomparable), an extension of ours that lets the exported files round-trip;
without it a row means ``mu = (1, 0)``. Other fields are ignored.
:func:`import_into_store` stores records as comparisons (importing the same
file again stores nothing twice) and :func:`export_store` writes a store's
comparisons back out in any of the four shapes.

**Label Studio and Argilla.** Both directions go through the store, and answers
come back as the same feedback records the web app and the loop write
(:class:`~rlhfkit.feedback_records.Comparison`, ``Rating``, ``Label``, ``Ranking``,
``Language``, ``Correction`` of a text), one per query and annotator: importing
the same file twice stores nothing new. A labelling project has one interface,
so an export writes one project per kind, ``OUT/KIND`` (``OUT/KIND-control``
for the control queries of a kind that also has text queries in the store).
Control segments are shown as WebM videos made by a :data:`MediaRenderer` the
caller passes (``rlhfkit export`` passes the web app's); text needs none. A bad
row stops an import with one :class:`InteropError` naming the file, the line
(Label Studio) or row (Argilla) and the field; nothing is written then: every
row is checked against the store first, and the records are stored in one
transaction.
"""

from rlhfkit.feedback.formats.argilla import export_argilla, import_argilla
from rlhfkit.feedback.formats.common import (
    DataFormatError,
    ImportReport,
    InteropError,
    PreferenceFormat,
    PreferenceRecord,
    TextValue,
)
from rlhfkit.feedback.formats.hh import read_hh
from rlhfkit.feedback.formats.label_studio import export_label_studio, import_label_studio
from rlhfkit.feedback.formats.labelling import ExportReport, MediaRenderer, Scales
from rlhfkit.feedback.formats.read import ReadFormat, detect_format, preference_file, read_preferences, read_rows
from rlhfkit.feedback.formats.rows import first_row
from rlhfkit.feedback.formats.scored import ScoredMode, read_scored
from rlhfkit.feedback.formats.store_io import export_store, import_into_store
from rlhfkit.feedback.formats.trl import read_trl, read_trl_conversational

__all__ = [
    "DataFormatError",
    "ExportReport",
    "ImportReport",
    "InteropError",
    "MediaRenderer",
    "PreferenceFormat",
    "PreferenceRecord",
    "ReadFormat",
    "Scales",
    "ScoredMode",
    "TextValue",
    "detect_format",
    "export_argilla",
    "export_label_studio",
    "export_store",
    "first_row",
    "import_argilla",
    "import_into_store",
    "import_label_studio",
    "preference_file",
    "read_hh",
    "read_preferences",
    "read_rows",
    "read_scored",
    "read_trl",
    "read_trl_conversational",
]
