"""Data: SPARROW-Mini generation (``synthetic``), real-format loaders (``sources``), curation (``curate``), the
curated-record contract (``records``, ``curated``), RLE helpers (``rle``) and dataset statistics (``statistics``)."""
