"""One writer per real on-disk layout; each module's docstring gives the tree it writes and its quirks."""

from sparrow.data.synthetic.writers.common import SourceWriter, Written
from sparrow.data.synthetic.writers.davis import DavisWriter
from sparrow.data.synthetic.writers.mevis import MevisWriter
from sparrow.data.synthetic.writers.revos import RevosWriter
from sparrow.data.synthetic.writers.tracking import TrackingWriter
from sparrow.data.synthetic.writers.videogcg import VideoGcgWriter
from sparrow.data.synthetic.writers.vidstg import VidstgWriter
from sparrow.data.synthetic.writers.ytvos import YtvosWriter

# Manifest order; the names are the source names of `sparrow curate --source NAME=ROOT`.
WRITERS: tuple[type[SourceWriter], ...] = (
    MevisWriter,
    YtvosWriter,
    DavisWriter,
    TrackingWriter,
    VidstgWriter,
    VideoGcgWriter,
    RevosWriter,
)

__all__ = [
    "WRITERS",
    "SourceWriter",
    "Written",
    "MevisWriter",
    "YtvosWriter",
    "DavisWriter",
    "TrackingWriter",
    "VidstgWriter",
    "VideoGcgWriter",
    "RevosWriter",
]
